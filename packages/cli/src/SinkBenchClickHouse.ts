/**
 * The ClickHouse target of `sluice bench sinks`: clickstream-sessions' rows (processors' ClickstreamTables.ts: 26
 * columns, ~670 bytes of JSON each) into a fresh `clickstream_events` table (dropped afterwards) through the
 * ClickHouse sink, at-least-once (ClickHouse has no transactions to put the offsets in). A run verifies that the
 * table holds one row per input offset: `count() FINAL` and `uniqExact` over the source position.
 *
 * What the figure includes: decoding each event, building its row (enrichment from a profile computed in memory and
 * the session's metrics in a Map: the bench measures the sink, not Redis or the store), staging it, and the
 * `INSERT ... FORMAT JSONEachRow` statements (the client serializing the rows, the server parsing them and writing
 * one part per insert). Not the Kafka fetch when the input comes from the in-memory broker (the default).
 */
import * as Batch from "@sluice/core/Batch"
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as Topology from "@sluice/core/Topology"
import * as ClickstreamData from "@sluice/processors/ClickstreamData"
import * as ClickstreamSessions from "@sluice/processors/ClickstreamSessions"
import * as ClickstreamTables from "@sluice/processors/ClickstreamTables"
import { Effect, Schema } from "effect"
import * as SinkBench from "./SinkBench.ts"

const Count = Schema.Array(Schema.Struct({ n: Schema.NumberFromString }))

const count = (ch: ClickHouse.ClickHouseShape, sql: string) =>
  Effect.flatMap(ch.query(sql), (rows) => Effect.map(Schema.decodeUnknownEffect(Count)(rows), (r) => r[0]?.n ?? 0))

/** Events to ClickHouse rows, sessions in a Map per task, profiles from the generator's truth. */
const topology = (topics: ClickstreamSessions.Topics, sink: ReturnType<typeof ClickstreamTables.clickhouseSink>) => {
  const sessions = new Map<string, ClickstreamSessions.SessionState>()
  return Topology.make({
    name: "bench-clickhouse",
    input: topics.events,
    sinks: [sink],
    process: (records) =>
      Effect.sync(() =>
        Batch.forEach(records, ({ value: event, record }, out) => {
          const time = Date.parse(event.timestamp)
          const session =
            ClickstreamSessions.applyEvent(sessions.get(event.session_id), event, time, record.offset) ??
            sessions.get(event.session_id)!
          sessions.set(event.session_id, session)
          const user = Number(event.user_id.slice("user_".length))
          out.write(
            sink,
            ClickstreamTables.toClickHouse({
              event,
              time,
              profile: ClickstreamData.profileFor(user),
              profileFound: true,
              session,
              record
            })
          )
        })
      )
  })
}

/**
 * Batch size 1 is an insert, and a new part, per row (ClickHouse's known anti-pattern: ~10-40 ms each here), so it
 * runs on at most this many rows: enough for its rate, and within the run's stop bound on a busy machine.
 */
export const rowsAtOne = 500

const run = (planned: SinkBench.Run, prefix: string) =>
  Effect.gen(function* () {
    const run = planned.batchSize === 1 ? { ...planned, rows: Math.min(planned.rows, rowsAtOne) } : planned
    const ch = yield* ClickHouse.ClickHouse
    const tables = ClickstreamTables.tables(`bench_${prefix}`)
    yield* Effect.addFinalizer(() => ch.command(`DROP TABLE IF EXISTS ${tables.clickhouse}`).pipe(Effect.ignore))
    yield* ClickstreamTables.setupClickHouse(tables)
    const topics = ClickstreamSessions.named(prefix)
    const sink = ClickstreamTables.clickhouseSink(tables, { batchSize: run.batchSize, flushInterval: "30 seconds" })
    const events = ClickstreamData.generate({ count: run.rows, users: 1_000, sessions: Math.ceil(run.rows / 20) })
    const elapsedMs = yield* SinkBench.timed({
      topology: topology(topics, sink),
      input: topics.events.name,
      records: ClickstreamData.records(events, topics),
      written: SinkBench.rowsWritten(sink.name),
      expected: run.rows,
      groupId: `${prefix}bench`
    })
    const final = yield* count(ch, `SELECT toString(count()) AS n FROM ${tables.clickhouse} FINAL`)
    const offsets = yield* count(
      ch,
      `SELECT toString(uniqExact(source_topic, source_partition, source_offset)) AS n FROM ${tables.clickhouse}`
    )
    const correct = final === run.rows && offsets === run.rows
    return {
      ...run,
      elapsedMs,
      rowsPerSec: SinkBench.rate(run.rows, elapsedMs),
      verified: correct
        ? `${run.rows} rows, one per input offset (FINAL, uniqExact)`
        : `${final} rows (FINAL) for ${offsets} offsets, expected ${run.rows}`,
      correct
    } satisfies SinkBench.Result
  }).pipe(
    Effect.scoped,
    Effect.provide(ClickHouse.layerConfig),
    Effect.mapError((e) =>
      e instanceof SinkBench.SinkBenchFailed
        ? e
        : new SinkBench.SinkBenchFailed({ reason: `clickhouse batch ${planned.batchSize}: ${e.message}` })
    )
  )

export const target: SinkBench.Target = { name: "clickhouse", modes: ["at_least_once"], run }
