/**
 * A JSON pipeline with a Postgres output (src/PipelinePostgres.ts), run by the CLI process against the real Kafka,
 * Redis and Postgres as a user runs it: the seed's file with its `output` made `{"type": "postgres", ...}`,
 * `sluice produce user-profiles-redis` (JSON strings, then half of them again as hashes), `sluice produce
 * clickstream`, `sluice run --pipeline`. Each test has its topics under a random `--topic-prefix` and a Postgres
 * schema of its own (`output.schema`, dropped afterwards).
 *
 * - Windows, at-least-once: the rows equal a recomputation from the events read back from Kafka (profiles from
 *   hashes and strings both count, a key holding a list does not and is counted as invalid); a second run in a
 *   fresh group re-reads every event and emits every window again, and the table is unchanged (the primary key); a
 *   table that does not fit stops the start naming its columns, exit code 2.
 * - Windows, `--guarantee exactly_once` (Kafka's transaction: the windows' state is in Kafka): the worker killed
 *   with SIGKILL mid-run, its restart's rows still equal the recomputation, each window once.
 * - Events, `--guarantee exactly_once`: the worker killed with SIGKILL mid-run leaves rows and `sluice_offsets`
 *   consistent (each partition's rows are exactly the offsets below its stored one); the restart starts each task
 *   from those offsets (its log says where), writes only what is left, and every offset ends with exactly one row.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Postgres from "@sluice/core/Postgres"
import * as Redis from "@sluice/core/Redis"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Redis as IORedis } from "ioredis"
import { afterAll, afterEach } from "vitest"
import * as Clickstream from "./support/clickstream.ts"
import * as Reference from "./support/pipelineReference.ts"
import * as Workers from "./support/workers.ts"

const brokers = Effect.runSync(brokersConfig)
const local = ["127.0.0.1:9092", "localhost:9092"].includes(brokers.join(","))
const brokerArgs = local ? [] : ["--brokers", brokers.join(",")]
/** Users 1..profiles have a profile: 1..hashes as hashes, the others as JSON strings; the next user a list. */
const profiles = 80
const hashes = 40
const listUser = `user_${profiles + 1}`

const Services = Layer.mergeAll(
  KafkaJs.layer({ brokers, clientId: "sluice-pipeline-postgres-test" }),
  Redis.layerConfig,
  Postgres.layerConfig
)

afterEach(() => Workers.killAll())
const dir = mkdtempSync(join(tmpdir(), "sluice-pipeline-pg-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const seed = JSON.parse(readFileSync(new URL("../../../examples/seed-004-pipeline.json", import.meta.url), "utf8"))

/** A fresh deployment: a prefix, its schema (dropped when the scope closes), a pipeline file with a Postgres output. */
const fresh = Effect.fnUntraced(function* (name: string, processing: unknown, output: Record<string, unknown> = {}) {
  const id = `${Date.now().toString(36)}${crypto.randomUUID().slice(0, 6)}`
  const prefix = `itpg-${id}-`
  const schema = `itpg_${id}`
  const file = join(dir, `${name}-${id}.json`)
  writeFileSync(
    file,
    JSON.stringify({
      ...seed,
      processing,
      output: { type: "postgres", table: "clickstream_aggregates", schema, batch_size: 500, ...output }
    })
  )
  const sql = yield* SqlClient.SqlClient
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      yield* sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`
      const kafka = yield* Kafka
      yield* kafka.deleteTopics((yield* kafka.listTopics).filter((n) => n.startsWith(prefix)))
      yield* (yield* Redis.Redis).flushPrefix(prefix)
    }).pipe(Effect.catch((e) => Effect.logWarning(`cleanup of ${prefix} failed: ${String(e)}`)))
  )
  const table = `${schema}.${prefix.replace(/-/g, "_")}clickstream_aggregates`
  return {
    prefix,
    schema,
    file,
    table,
    topic: `${prefix}clickstream`,
    group: `${prefix}clickstream_processor`,
    run: (workerName: string, args: ReadonlyArray<string> = []) =>
      Workers.start(
        workerName,
        ["--pipeline", file, "--topic-prefix", prefix, "--shutdown-timeout-ms", "10000", ...brokerArgs, ...args],
        { env: { SLUICE_BROKERS: undefined } }
      )
  }
})

/** Profiles in Redis under `prefix`: JSON strings, half of them again as hashes, and one key that holds a list. */
const writeProfiles = (prefix: string) =>
  Effect.gen(function* () {
    for (const args of [
      ["--users", String(profiles)],
      ["--users", String(hashes), "--format", "hash"]
    ]) {
      const produced = yield* Workers.once(["produce", "user-profiles-redis", "--topic-prefix", prefix, ...args])
      assert.strictEqual(produced.code, 0, produced.stderr)
    }
    const url = Redacted.value(Effect.runSync(Redis.urlConfig))
    yield* Effect.acquireUseRelease(
      Effect.sync(() => new IORedis(url)),
      (client) => Effect.promise(() => client.rpush(`${prefix}user:profile:${listUser}`, "a", "b")),
      (client) => Effect.promise(() => client.quit())
    )
  })

const hasProfile = (user: string) => Number(user.slice("user_".length)) <= profiles

/** A window's row as the test reads it: bounds as epoch seconds, int8 as numbers. */
const WindowRow = Schema.Struct({
  window_start: Schema.Finite,
  window_end: Schema.Finite,
  key: Schema.String,
  event_count: Schema.Finite,
  unique_users: Schema.Finite,
  session_duration_ms: Schema.Finite,
  enriched_events: Schema.Finite
})

const windowRows = (table: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`SELECT extract(epoch FROM window_start)::float8 AS window_start,
        extract(epoch FROM window_end)::float8 AS window_end, key, event_count::float8 AS event_count,
        unique_users::float8 AS unique_users, session_duration_ms::float8 AS session_duration_ms,
        enriched_events::float8 AS enriched_events
      FROM ${sql(table)}`
  ).pipe(Effect.flatMap(Schema.decodeUnknownEffect(Schema.Array(WindowRow))))

const count = (table: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(table)}`
  ).pipe(
    Effect.map((rows) => rows[0]?.n ?? 0),
    Effect.catch(() => Effect.succeed(0))
  )

/** Whether `group` has committed every record of `topic`. */
const committedToEnd = (group: string, topic: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const committed = new Map((yield* kafka.committedOffsets(group, topic)).map((c) => [c.partition, c.offset]))
    return (yield* kafka.offsets(topic)).every((h) => committed.get(h.partition) === h.high)
  })

/** The last `rows=N` of a worker's progress lines. */
const rowsLogged = (worker: Workers.Worker) => {
  const all = [...worker.output().matchAll(/ rows=(\d+) /g)]
  return all.length === 0 ? undefined : Number(all[all.length - 1]![1])
}

const stop = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("30 seconds")
    assert.strictEqual(exit.code, 0, worker.output().slice(-3000))
  })

describe("sluice run --pipeline into Postgres (real Kafka, Redis, Postgres)", () => {
  it.live(
    "windows: rows equal a recomputation, a second run writes nothing twice, a table that does not fit is refused",
    () =>
      Effect.gen(function* () {
        const d = yield* fresh("windows", seed.processing)
        const validated = yield* Workers.once(["pipeline", "validate", d.file])
        assert.strictEqual(validated.code, 0, validated.stderr)
        assert.include(validated.stdout, `write    Postgres ${d.schema}.clickstream_aggregates (DATABASE_URL;`)

        yield* writeProfiles(d.prefix)
        yield* (yield* Kafka).createTopics([{ name: d.topic, partitions: 3 }])
        const worker = yield* d.run("windows")
        yield* worker.waitForLog(/assigned 3 partition\(s\)/, "60 seconds")
        assert.include(worker.output(), `write    Postgres ${d.table} (DATABASE_URL; created if absent`)
        yield* Clickstream.produce(d.prefix, 4000)
        const sent = yield* Clickstream.readBack(d.topic)
        assert.lengthOf(sent, 4000)
        const truth = Reference.expected(sent, { windowMs: 60_000, graceMs: 10_000, hasProfile })
        assert.isAbove(truth.rows.size, 300)

        const rowsById = Effect.map(
          windowRows(d.table),
          (rows) => new Map(rows.map((r) => [Reference.rowId(r.key, r.window_start), r]))
        )
        yield* Workers.waitUntil(
          "every closed window's row is written and every offset committed",
          "120 seconds",
          Effect.gen(function* () {
            return (yield* count(d.table)) === truth.rows.size && (yield* committedToEnd(d.group, d.topic))
          }),
          [worker],
          Effect.map(count(d.table), (n) => `${n} of ${truth.rows.size} rows`)
        )
        assert.deepStrictEqual<ReadonlyMap<string, unknown>>(yield* rowsById, truth.rows)
        // Events of users with a hash profile are enriched like the others; the list is no profile, and is said.
        const hashed = sent.filter((s) => Number(s.event.user_id.slice("user_".length)) <= hashes)
        assert.isAbove(hashed.length, 0)
        assert.isAbove(
          sent.filter((s) => s.event.user_id === listUser).length,
          0,
          "some events of the user whose key holds a list"
        )
        yield* worker.waitForLog(/profiles-invalid=[1-9]/, "20 seconds")
        assert.match(worker.output(), new RegExp(`Redis ${d.prefix}user:profile:${listUser} is no profile: a list`))
        yield* stop(worker)

        // A fresh group re-reads every event from the earliest offset and emits every window again: the table
        // takes none of them a second time, and the numbers stay what they were.
        const again = yield* d.run("again", ["--group", `${d.prefix}again`])
        yield* Workers.waitUntil(
          "the second group has committed every event and written every window",
          "120 seconds",
          Effect.gen(function* () {
            return (yield* committedToEnd(`${d.prefix}again`, d.topic)) && rowsLogged(again) === truth.rows.size
          }),
          [again],
          Effect.sync(() => `rows=${rowsLogged(again)} of ${truth.rows.size}`)
        )
        assert.strictEqual(yield* count(d.table), truth.rows.size, "no window twice")
        assert.deepStrictEqual<ReadonlyMap<string, unknown>>(yield* rowsById, truth.rows)
        yield* stop(again)

        // A table that exists with columns the pipeline cannot write stops the start, naming them.
        const sql = yield* SqlClient.SqlClient
        yield* sql`DROP TABLE ${sql(d.table)}`
        yield* sql`CREATE TABLE ${sql(d.table)} (window_start timestamptz, key text, event_count text)`
        const unfit = yield* Workers.once(["run", "--pipeline", d.file, "--topic-prefix", d.prefix, ...brokerArgs], {
          env: { SLUICE_BROKERS: undefined }
        })
        assert.strictEqual(unfit.code, 2, unfit.stderr)
        assert.include(unfit.stderr, `Postgres table ${d.table} exists with columns that do not fit the pipeline`)
        assert.include(unfit.stderr, "window_end is missing (the pipeline writes timestamptz)")
        assert.include(unfit.stderr, "event_count is text (the pipeline writes int8)")
        assert.include(unfit.stderr, "no primary key or unique constraint on (key, window_start)")
      }).pipe(Effect.scoped, Effect.provide(Services)),
    300_000
  )

  it.live(
    "windows, exactly-once: killed -9 mid-run, the restart's rows still equal the recomputation, each window once",
    () =>
      Effect.gen(function* () {
        const d = yield* fresh("windows-eos", seed.processing, { batch_size: 100, flush_interval_ms: 50 })
        yield* writeProfiles(d.prefix)
        yield* (yield* Kafka).createTopics([{ name: d.topic, partitions: 3 }])
        yield* Clickstream.produce(d.prefix, 20_000)
        const sent = yield* Clickstream.readBack(d.topic)
        const truth = Reference.expected(sent, { windowMs: 60_000, graceMs: 10_000, hasProfile })

        const first = yield* d.run("first", ["--guarantee", "exactly_once"])
        assert.include(
          (yield* first.waitForLog(/deliver +exactly_once: .*/, "30 seconds"))[0],
          "one Kafka transaction per commit"
        )
        yield* Workers.waitUntil(
          "some windows written",
          "60 seconds",
          Effect.map(count(d.table), (n) => n >= truth.rows.size / 5),
          [first]
        )
        yield* first.signal("SIGKILL")
        yield* first.exit("10 seconds")
        const before = yield* count(d.table)
        assert.isBelow(before, truth.rows.size, "the kill came before the end")

        // The windows' state is restored as the last committed transaction left it, the records after it are
        // processed again: a window open at the kill counts each of its events once.
        const second = yield* d.run("second", ["--guarantee", "exactly_once"])
        yield* Workers.waitUntil(
          "every closed window's row",
          "120 seconds",
          Effect.map(count(d.table), (n) => n === truth.rows.size),
          [second],
          Effect.map(count(d.table), (n) => `${n} of ${truth.rows.size} rows`)
        )
        const rows = yield* windowRows(d.table)
        assert.deepStrictEqual<ReadonlyMap<string, unknown>>(
          new Map(rows.map((r) => [Reference.rowId(r.key, r.window_start), r])),
          truth.rows
        )
        yield* stop(second)
      }).pipe(Effect.scoped, Effect.provide(Services)),
    300_000
  )

  it.live(
    "events, exactly-once: killed -9 mid-run, rows and sluice_offsets agree; the restart resumes from sluice_offsets",
    () =>
      Effect.gen(function* () {
        const d = yield* fresh(
          "events",
          { enrichment: seed.processing.enrichment },
          { batch_size: 100, flush_interval_ms: 50 }
        )
        const offsetsTable = `${d.schema}.sluice_offsets`
        const sql = yield* SqlClient.SqlClient
        yield* writeProfiles(d.prefix)
        yield* (yield* Kafka).createTopics([{ name: d.topic, partitions: 3 }])
        yield* Clickstream.produce(d.prefix, 20_000)
        const sent = yield* Clickstream.readBack(d.topic)
        const total = sent.length

        const first = yield* d.run("first", ["--guarantee", "exactly_once"])
        assert.include((yield* first.waitForLog(/deliver +exactly_once: .*/, "30 seconds"))[0], `${offsetsTable}`)
        yield* Workers.waitUntil(
          "some rows",
          "60 seconds",
          Effect.map(count(d.table), (n) => n >= 2_000),
          [first]
        )
        yield* first.signal("SIGKILL")
        yield* first.exit("10 seconds")

        const stored = new Map(
          (yield* sql<{ readonly partition: number; readonly next: string }>`
            SELECT partition, next_offset::text AS next FROM ${sql(offsetsTable)}
            WHERE group_id = ${d.group} AND topic = ${d.topic}`).map((r) => [r.partition, Number(r.next)])
        )
        const rowsPerPartition = new Map(
          (yield* sql<{ readonly p: number; readonly n: number; readonly max: string | null }>`
            SELECT source_partition AS p, count(*)::int AS n, max(source_offset)::text AS max FROM ${sql(d.table)}
            GROUP BY 1`).map((r) => [r.p, r])
        )
        const storedSum = [...stored.values()].reduce((a, b) => a + b, 0)
        assert.isBelow(storedSum, total, "the kill came before the end")
        // Rows and offsets committed together: each partition has a row for exactly the offsets below its stored one.
        for (const p of [0, 1, 2]) {
          const rows = rowsPerPartition.get(p)
          assert.strictEqual(rows?.n ?? 0, stored.get(p) ?? 0, `partition ${p}: rows vs sluice_offsets`)
          if (rows !== undefined) assert.strictEqual(Number(rows.max), (stored.get(p) ?? 0) - 1)
        }

        const second = yield* d.run("second", ["--guarantee", "exactly_once"])
        yield* Workers.waitUntil(
          "a row for every event",
          "120 seconds",
          Effect.map(count(d.table), (n) => n === total),
          [second]
        )
        // Each task started where sluice_offsets said, not from the group's commits.
        // The first start of each task (a rebalance once the killed member's session expires starts them again).
        const starts = new Map<number, number>()
        for (const m of second.output().matchAll(/task \d+ starts from (\S+)\[(\d+)\]@(\d+)/g))
          if (!starts.has(Number(m[2]))) starts.set(Number(m[2]), Number(m[3]))
        assert.deepStrictEqual(
          [...starts].sort(([a], [b]) => a - b),
          [...stored].filter(([, o]) => o > 0).sort(([a], [b]) => a - b)
        )
        yield* Workers.waitUntil(
          "the restarted worker's progress line",
          "30 seconds",
          Effect.sync(() => rowsLogged(second) === total - storedSum),
          [second],
          Effect.sync(() => `rows=${rowsLogged(second)}, expected ${total - storedSum}`)
        )
        const [exact] = yield* sql<{ readonly rows: number; readonly offsets: number }>`
          SELECT count(*)::int AS rows, count(DISTINCT (source_partition, source_offset))::int AS offsets
          FROM ${sql(d.table)}`
        assert.deepStrictEqual(exact, { rows: total, offsets: total })
        const ends = yield* (yield* Kafka).offsets(d.topic)
        yield* Workers.waitUntil(
          "sluice_offsets at the end of every partition",
          "30 seconds",
          Effect.gen(function* () {
            const now = yield* sql<{ readonly partition: number; readonly next: string }>`
              SELECT partition, next_offset::text AS next FROM ${sql(offsetsTable)} WHERE group_id = ${d.group}`
            const at = new Map(now.map((r) => [r.partition, Number(r.next)]))
            return ends.every((e) => at.get(e.partition) === e.high)
          }),
          [second]
        )

        // Profiles: a hash's fields as text, a JSON string's values as they are, the list none.
        const profileOf = (user: string) =>
          sql<{ readonly user_id: string | null; readonly value: string | null; readonly found: boolean }>`
            SELECT profile->>'user_id' AS user_id, jsonb_typeof(profile->'lifetime_value') AS value,
              profile_found AS found
            FROM ${sql(d.table)} WHERE lookup_key = ${user} LIMIT 1`.pipe(Effect.map((rows) => rows[0]))
        assert.deepStrictEqual(yield* profileOf("user_1"), { user_id: "user_1", value: "string", found: true })
        assert.deepStrictEqual(yield* profileOf(`user_${profiles}`), {
          user_id: `user_${profiles}`,
          value: "number",
          found: true
        })
        assert.deepStrictEqual(yield* profileOf(listUser), { user_id: null, value: null, found: false })
        yield* stop(second)
      }).pipe(Effect.scoped, Effect.provide(Services)),
    300_000
  )
})
