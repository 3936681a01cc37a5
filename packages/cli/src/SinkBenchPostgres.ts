/**
 * The Postgres target of `sluice bench sinks`: the events-to-postgres topology (processors' EventsToPostgres.ts)
 * writing generated events into `events_raw` of a fresh schema (dropped afterwards), at-least-once or with the
 * offsets in the same transaction (exactly-once into Postgres). A run verifies that the table holds one row per
 * input offset and, exactly-once, that `sluice_offsets` holds the end offsets.
 *
 * What the figure includes: decoding and checking each record (a JSON object?), staging its row, the INSERT
 * statements (binding the arrays, the server parsing the JSON into jsonb, the unique index on the source) and, for
 * exactly-once, the offsets upsert and the transaction around each write. Not the Kafka fetch when the input comes
 * from the in-memory broker (the default), so the figure is the sink's.
 */
import * as Postgres from "@sluice/core/Postgres"
import * as EventsToPostgres from "@sluice/processors/EventsToPostgres"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import * as SinkBench from "./SinkBench.ts"

const run = (run: SinkBench.Run, prefix: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const schema = `bench_${prefix.replace(/[^a-z0-9]/gi, "_")}`.toLowerCase()
    const relations = EventsToPostgres.relations(schema)
    yield* Effect.addFinalizer(() => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.pipe(Effect.ignore))
    yield* EventsToPostgres.setup(relations)
    const topics = EventsToPostgres.named(prefix)
    const groupId = `${prefix}bench`
    const exactlyOnce = run.mode === "exactly_once"
    const sink = EventsToPostgres.sink(relations, {
      batchSize: run.batchSize,
      flushInterval: "30 seconds",
      ...(exactlyOnce ? { offsetsGroup: groupId } : {})
    })
    const records = EventsToPostgres.generate({ count: run.rows, topic: topics.raw.name, seed: 5 })
    const elapsedMs = yield* SinkBench.timed({
      topology: EventsToPostgres.topology({ sink, topics, exactlyOnce }),
      input: topics.raw.name,
      records,
      written: SinkBench.rowsWritten(sink.name),
      expected: run.rows,
      groupId
    })

    const [table] = yield* sql<{ readonly rows: number; readonly distinct: number }>`
      SELECT count(*)::int AS rows, count(DISTINCT (source_partition, source_offset))::int AS distinct
      FROM ${sql(relations.events)}`
    const problems: Array<string> = []
    if (table?.rows !== run.rows || table.distinct !== run.rows)
      problems.push(`${table?.rows} rows for ${table?.distinct} offsets, expected ${run.rows}`)
    if (exactlyOnce) {
      const [stored] = yield* sql<{ readonly next: string }>`
        SELECT coalesce(sum(next_offset), 0)::text AS next FROM ${sql(relations.offsets)} WHERE group_id = ${groupId}`
      if (Number(stored?.next) !== run.rows)
        problems.push(`sluice_offsets sums to ${stored?.next}, expected ${run.rows}`)
    }
    return {
      ...run,
      elapsedMs,
      rowsPerSec: SinkBench.rate(run.rows, elapsedMs),
      verified:
        problems.length === 0
          ? `${run.rows} rows, one per input offset${exactlyOnce ? ", offsets = end offsets" : ""}`
          : problems.join("; "),
      correct: problems.length === 0
    } satisfies SinkBench.Result
  }).pipe(
    Effect.scoped,
    Effect.provide(Postgres.layerConfig),
    Effect.mapError((e) =>
      e instanceof SinkBench.SinkBenchFailed
        ? e
        : new SinkBench.SinkBenchFailed({ reason: `postgres ${run.mode} batch ${run.batchSize}: ${e.message}` })
    )
  )

export const target: SinkBench.Target = {
  name: "postgres",
  modes: ["at_least_once", "exactly_once"],
  run
}
