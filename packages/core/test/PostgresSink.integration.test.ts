/**
 * The Postgres sink against the real server (`scripts/postgres.sh start`, DATABASE_URL): its statements (one
 * `unnest` insert per batch, idempotent; rows and offsets in one transaction), how the server's refusals and
 * absences map to `SinkError` reasons, and the whole path through the runtime on the in-memory broker: a row the
 * server refuses dead-letters its input with the server's message, and with offsets in Postgres a run in a new
 * group starts where the table says. Every test works in a schema of its own, dropped afterwards.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import * as DeadLetter from "../src/DeadLetter.ts"
import { isRetryable, type SinkError } from "../src/Errors.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import * as Postgres from "../src/Postgres.ts"
import * as PostgresSink from "../src/PostgresSink.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"

const url = Effect.runSync(Postgres.urlConfig)

interface Row {
  readonly k: string | null
  readonly payload: string
  readonly note: string | null
  readonly src_partition: number
  readonly src_offset: number
}

const columns = { k: "text", payload: "jsonb", note: "text", src_partition: "int4", src_offset: "int8" } as const

let schemas = 0
/** A fresh schema with the test table and the offsets table; dropped when the test's scope closes. */
const freshSchema = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const schema = `sluice_sink_${process.pid}_${Date.now().toString(36)}_${schemas++}`
  yield* sql`CREATE SCHEMA ${sql(schema)}`
  yield* Effect.addFinalizer(() => sql`DROP SCHEMA ${sql(schema)} CASCADE`.pipe(Effect.orDie))
  const table = `${schema}.rows`
  yield* sql`CREATE TABLE ${sql(table)} (
    id bigserial PRIMARY KEY,
    k text,
    payload jsonb NOT NULL,
    note varchar(5),
    src_partition int NOT NULL,
    src_offset bigint NOT NULL,
    UNIQUE (src_partition, src_offset)
  )`
  yield* PostgresSink.createOffsetsTable(`${schema}.sluice_offsets`)
  return { schema, table }
})

const rowsOf = (table: string) =>
  SqlClient.SqlClient.use(
    (sql) =>
      sql<{
        readonly k: string | null
        readonly payload: unknown
        readonly note: string | null
        readonly src_offset: bigint
      }>`SELECT k, payload, note, src_offset FROM ${sql(table)} ORDER BY src_partition, src_offset`
  )

const row = (offset: number, extra: Partial<Row> = {}): Row => ({
  k: `k${offset}`,
  payload: JSON.stringify({ n: offset }),
  note: null,
  src_partition: 0,
  src_offset: offset,
  ...extra
})

const failure = (e: Effect.Effect<void, SinkError, SqlClient.SqlClient>) => Effect.flip(e)

layer(Postgres.layer({ url }), { excludeTestServices: true })("PostgresSink (live server)", (it) => {
  it.effect("a batch is one idempotent insert: written twice, the rows are there once", () =>
    Effect.gen(function* () {
      const { table } = yield* freshSchema
      const { write } = PostgresSink.writes<Row>({ table, columns })
      // `k` is null in every row of the first batch: the typed array still binds.
      const rows = [row(0, { k: null }), row(1, { k: null }), row(2, { k: null, note: "short" })]
      yield* write(rows)
      yield* write(rows)
      yield* write([row(2), row(3)])
      const found = yield* rowsOf(table)
      assert.deepStrictEqual(
        found.map((r) => [r.k, r.payload, r.note, Number(r.src_offset)]),
        [
          [null, { n: 0 }, null, 0],
          [null, { n: 1 }, null, 1],
          [null, { n: 2 }, "short", 2],
          ["k3", { n: 3 }, null, 3]
        ]
      )
    })
  )

  it.effect("10,000 rows in one statement (more values than a statement may have parameters)", () =>
    Effect.gen(function* () {
      const { table } = yield* freshSchema
      const { write } = PostgresSink.writes<Row>({ table, columns })
      yield* write(Array.from({ length: 10_000 }, (_, i) => row(i)))
      const sql = yield* SqlClient.SqlClient
      const [counted] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(table)}`
      assert.strictEqual(counted?.n, 10_000)
    })
  )

  it.effect("statements of at most batchSize rows, one transaction per write (with the offsets, if any)", () =>
    Effect.gen(function* () {
      const { table } = yield* freshSchema
      const rows = Array.from({ length: 2_500 }, (_, i) => row(i, i === 2_400 ? { note: "much too long" } : {}))
      // Three statements (1,000 rows at most each): the third is refused, so none of them is committed.
      const plain = PostgresSink.writes<Row>({ table, columns, batchSize: 1_000 })
      assert.strictEqual((yield* failure(plain.write(rows))).reason._tag, "Rejected")
      assert.lengthOf(yield* rowsOf(table), 0)
      yield* plain.write(rows.filter((r) => r.note === null))
      assert.lengthOf(yield* rowsOf(table), 2_499)
      // With offsets, the statements and the positions are one transaction.
      const positioned = PostgresSink.writes<Row>({ table, columns, batchSize: 1_000, offsets: { group: "g" } })
      const later = rows.map((r) => ({ ...r, src_partition: 1 }))
      const failed = yield* failure(
        positioned.writeWithOffsets!(later, [{ topic: "events", partition: 1, offset: 2_500 }])
      )
      assert.strictEqual(failed.reason._tag, "Rejected")
      assert.lengthOf(yield* rowsOf(table), 2_499)
      assert.lengthOf(yield* positioned.readOffsets!([{ topic: "events", partition: 1 }]), 0)
    })
  )

  it.effect("a value the table refuses: Rejected, with the server's message; nothing of the batch written", () =>
    Effect.gen(function* () {
      const { table } = yield* freshSchema
      const { write } = PostgresSink.writes<Row>({ table, columns })
      const tooLong = yield* failure(write([row(0), row(1, { note: "much too long" })]))
      assert.strictEqual(tooLong.reason._tag, "Rejected")
      assert.isFalse(isRetryable(tooLong))
      assert.include(tooLong.reason.message, "value too long for type character varying(5)")
      assert.include(tooLong.reason.message, "22001")
      const nul = yield* failure(write([row(2, { payload: JSON.stringify({ note: "a\u0000b" }) })]))
      assert.strictEqual(nul.reason._tag, "Rejected")
      assert.include(nul.reason.message, "22P05")
      const keyNul = yield* failure(write([row(3, { k: "a\u0000b" })]))
      assert.strictEqual(keyNul.reason._tag, "Rejected")
      assert.lengthOf(yield* rowsOf(table), 0)
    })
  )

  it.effect("a missing table is not a row's fault: retryable (the worker retries, then stops)", () =>
    Effect.gen(function* () {
      const { schema } = yield* freshSchema
      const { write } = PostgresSink.writes<Row>({ table: `${schema}.nope`, columns })
      const error = yield* failure(write([row(0)]))
      assert.strictEqual(error.reason._tag, "Unavailable")
      assert.include(error.reason.message, "does not exist")
    })
  )

  it.effect("rows and offsets commit together: readOffsets returns them; a refused row leaves neither", () =>
    Effect.gen(function* () {
      const { table } = yield* freshSchema
      const sink = PostgresSink.writes<Row>({ table, columns, offsets: { group: "g1" } })
      const { writeWithOffsets, readOffsets } = sink
      if (writeWithOffsets === undefined || readOffsets === undefined) return assert.fail("offsets expected")
      yield* writeWithOffsets(
        [row(0), row(1)],
        [
          { topic: "events", partition: 0, offset: 2 },
          { topic: "events", partition: 1, offset: 7 }
        ]
      )
      const refused = yield* failure(
        writeWithOffsets([row(2), row(3, { note: "much too long" })], [{ topic: "events", partition: 0, offset: 4 }])
      )
      assert.strictEqual(refused.reason._tag, "Rejected")
      // Positions alone (the records were dead letters), and another group's positions apart.
      yield* writeWithOffsets([], [{ topic: "events", partition: 1, offset: 9 }])
      const other = PostgresSink.writes<Row>({ table, columns, offsets: { group: "g2" } })
      yield* other.writeWithOffsets!([], [{ topic: "events", partition: 0, offset: 100 }])

      assert.lengthOf(yield* rowsOf(table), 2)
      const stored = yield* readOffsets([
        { topic: "events", partition: 0 },
        { topic: "events", partition: 1 },
        { topic: "events", partition: 2 }
      ])
      assert.sameDeepMembers(
        [...stored],
        [
          { topic: "events", partition: 0, offset: 2 },
          { topic: "events", partition: 1, offset: 9 }
        ]
      )
      assert.deepStrictEqual(
        [...(yield* readOffsets([{ topic: "events", partition: 1 }]))],
        [{ topic: "events", partition: 1, offset: 9 }]
      )
    })
  )

  it.effect("migrate: workers starting together create the tables one after the other", () =>
    Effect.gen(function* () {
      const { schema } = yield* freshSchema
      const table = `${schema}.created`
      const sql = yield* SqlClient.SqlClient
      const create = PostgresSink.migrate(
        "sluice:test-migrate",
        Effect.andThen(
          sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (id int)`,
          PostgresSink.createOffsetsTable(`${schema}.offsets2`)
        )
      )
      yield* Effect.all([create, create, create, create], { concurrency: "unbounded" })
      const [found] = yield* sql<{ readonly n: number }>`
        SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = ${schema} AND tablename IN ('created', 'offsets2')`
      assert.strictEqual(found?.n, 2)
    })
  )
})

// ---------------------------------------------------------------------------------------------------------------
// Through the runtime: the in-memory broker, the real server
// ---------------------------------------------------------------------------------------------------------------

const events = Topic.make("events", { key: Codec.nullable(Codec.string), value: Codec.string })

const topology = (sink: ReturnType<typeof PostgresSink.make<Row>>, exactlyOnce: boolean) =>
  Topology.make({
    name: "pg-sink-test",
    input: events,
    sinks: [sink],
    ...(exactlyOnce ? { startOffsets: (_task, partitions) => sink.readOffsets(partitions) } : {}),
    process: (records) =>
      Effect.succeed(
        Batch.forEach(records, (r, out) =>
          out.write(sink, {
            k: r.key,
            payload: JSON.stringify({ v: r.value }),
            note: r.value,
            src_partition: r.record.partition,
            src_offset: r.record.offset
          })
        )
      )
  })

/** Waits (real time) until `check` holds, for at most 20 s. */
const until = <E, R>(what: string, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      if (yield* check) return
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.die(new Error(`never: ${what}`))
  })

const countRows = (table: string) =>
  SqlClient.SqlClient.use((sql) =>
    Effect.map(sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(table)}`, (r) => r[0]?.n ?? 0)
  )

describe("PostgresSink in a topology (in-memory broker, live server)", () => {
  const services = Layer.mergeAll(layerWith({ maxBatchSize: 200 }), Postgres.layer({ url: Redacted.value(url) }))

  it.live("rows reach the table before their offsets are committed; a refused row is its record's dead letter", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      const { table } = yield* freshSchema
      yield* kafka.createTopics([{ name: "events", partitions: 2 }])
      // Values of at most 5 characters fit `note varchar(5)`; one in 100 is longer.
      const values = Array.from({ length: 1_000 }, (_, i) => (i % 100 === 42 ? `long-${i}` : `v${i}`))
      yield* kafka.send(records(values))
      const sink = PostgresSink.make<Row>({ table, columns, batchSize: 100, flushInterval: "200 millis" })
      const fiber = yield* Effect.forkChild(Runner.run(topology(sink, false), { commitInterval: "200 millis" }))
      yield* until(
        "990 rows and 10 dead letters",
        Effect.map(
          Effect.all([countRows(table), broker.records("events.dlq")]),
          ([n, letters]) => n === 990 && letters.length === 10
        )
      )
      const letters = yield* broker.records("events.dlq")
      assert.sameMembers(
        letters.map((l) => text(l.value ?? new Uint8Array())),
        values.filter((v) => v.startsWith("long"))
      )
      assert.include(
        text(letters[0]!.headers[DeadLetter.headers.errorMessage]!),
        "value too long for type character varying(5)"
      )
      yield* until(
        "all 1,000 offsets committed",
        Effect.map(
          kafka.committedOffsets("pg-sink-test", "events"),
          (c) => c.reduce((n, o) => n + o.offset, 0) === 1_000
        )
      )
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped, Effect.provide(services))
  )

  it.live("exactly-once: the offsets table ends at the end offsets, and a new group starts from it", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const { table, schema } = yield* freshSchema
      yield* kafka.createTopics([{ name: "events", partitions: 3 }])
      yield* kafka.send(records(Array.from({ length: 600 }, (_, i) => `v${i}`)))
      const offsets = { group: "eo-group", table: `${schema}.sluice_offsets` }
      const sink = PostgresSink.make<Row>({ table, columns, offsets, batchSize: 50, flushInterval: "100 millis" })
      const first = yield* Effect.forkChild(Runner.run(topology(sink, true), { groupId: "first" }))
      yield* until(
        "600 rows",
        Effect.map(countRows(table), (n) => n === 600)
      )
      const ends = yield* kafka.offsets("events")
      const stored = () =>
        PostgresSink.readOffsets({
          group: "eo-group",
          table: offsets.table,
          partitions: ends.map((e) => ({ topic: "events", partition: e.partition }))
        })
      yield* until(
        "the stored offsets equal the end offsets",
        Effect.map(
          stored(),
          (s) => s.length === 3 && s.every((o) => ends.find((e) => e.partition === o.partition)?.high === o.offset)
        )
      )
      yield* Fiber.interrupt(first)
      // A new consumer group has no commits: without the stored offsets it would read from the beginning again. It
      // writes to a second table (the first one's unique key would hide a re-read), with the same offsets.
      yield* kafka.send(records(["late"]))
      const sql = yield* SqlClient.SqlClient
      const table2 = `${schema}.rows2`
      yield* sql`CREATE TABLE ${sql(table2)} (LIKE ${sql(table)} INCLUDING ALL)`
      const sink2 = PostgresSink.make<Row>({
        table: table2,
        columns,
        offsets,
        batchSize: 50,
        flushInterval: "100 millis"
      })
      const second = yield* Effect.forkChild(Runner.run(topology(sink2, true), { groupId: "second" }))
      yield* until(
        "the late row",
        Effect.map(countRows(table2), (n) => n === 1)
      )
      yield* Effect.sleep("1 second")
      assert.deepStrictEqual(
        (yield* rowsOf(table2)).map((r) => r.note),
        ["late"],
        "the second group started where the offsets table says, not at the beginning"
      )
      yield* Fiber.interrupt(second)
    }).pipe(Effect.scoped, Effect.provide(services))
  )
})

const records = (values: ReadonlyArray<string>) =>
  values.map((v, i) => ({ topic: "events", key: bytes(`k${i}`), value: bytes(v) }))
