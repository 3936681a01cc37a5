/**
 * `sluice run events-to-postgres` worker processes against the real Kafka (SLUICE_BROKERS) and Postgres
 * (DATABASE_URL), as an operator runs them: the rows and the view for events with malformed ones among them; a
 * re-delivered record inserts no second row; Postgres stopped for 30 s mid-run; the worker killed with SIGKILL five
 * times during 50,000 events, at-least-once and exactly-once.
 *
 * Every test has fresh topics, a fresh group and a Postgres schema of its own (dropped afterwards). Each row names
 * its input's partition and offset, so every check is exact: one row per input offset, none missing, none twice.
 *
 * The outage test stops a Postgres of its own: a second Debian cluster on port 25432 (SLUICE_OUTAGE_PGPORT),
 * created and stopped/started with the project's script (`PGPORT=25432 bash scripts/postgres.sh start|stop`), so
 * that stopping it disturbs no other test or worker using the development server on 5432. It is started again
 * whatever happens in the test. The port lies below Linux's ephemeral range (32768-60999): a port inside it can be
 * taken, while the server is down, as the local port of any outgoing connection on the machine, and the restart
 * then fails with "Address already in use" (it did once in CI, on 55432).
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { assert, layer } from "@effect/vitest"
import * as DeadLetter from "@sluice/core/DeadLetter"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Postgres from "@sluice/core/Postgres"
import * as Reader from "@sluice/core/Reader"
import { type ConsumerRecord, header, type ProducerRecord, type RecordMetadata, text } from "@sluice/core/Record"
import { Effect, Fiber, Layer, Redacted, Stream } from "effect"
import { SqlClient } from "effect/sql"
import { afterEach } from "vitest"
import * as EventsToPostgres from "../src/EventsToPostgres.ts"
import { recordCount } from "./support/deployment.ts"
import * as Workers from "./support/workers.ts"
import { waitUntil } from "./support/workers.ts"

const brokers = Effect.runSync(brokersConfig)
const url = Effect.runSync(Postgres.urlConfig)
const outagePort = process.env.SLUICE_OUTAGE_PGPORT ?? "25432"
const outageUrl = (() => {
  const u = new URL(Redacted.value(url))
  u.port = outagePort
  return u.toString()
})()

afterEach(() => Workers.killAll())

type Guarantee = "at_least_once" | "exactly_once"

/** A fresh deployment: topics under a random prefix, a group, a Postgres schema (dropped when the scope closes). */
const fresh = Effect.fnUntraced(function* (guarantee: Guarantee) {
  const id = `${Date.now().toString(36)}${crypto.randomUUID().slice(0, 6)}`
  const prefix = `it-${id}-`
  const schema = `it_${id.replace(/-/g, "_")}`
  const sql = yield* SqlClient.SqlClient
  yield* Effect.addFinalizer(() => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.pipe(Effect.ignore))
  const topics = EventsToPostgres.named(prefix)
  return {
    prefix,
    topics,
    group: `it-group-${id}`,
    relations: EventsToPostgres.relations(schema),
    dlq: `${topics.raw.name}.dlq`,
    worker: (name: string, options: { readonly brokers?: ReadonlyArray<string> } = {}) =>
      Workers.start(name, [
        "events-to-postgres",
        ...(process.env.SLUICE_TEST_LOG_LEVEL === undefined ? [] : ["--log-level", process.env.SLUICE_TEST_LOG_LEVEL]),
        "--brokers",
        (options.brokers ?? brokers).join(","),
        "--topic-prefix",
        prefix,
        "--group",
        `it-group-${id}`,
        "--schema",
        schema,
        "--guarantee",
        guarantee
      ])
  }
})
type Deployment = Effect.Success<ReturnType<typeof fresh>>

const joined = /assigned [1-9]\d* partition\(s\)/

/** Creates the 3-partition input topic and produces `records`; returns where each one was written. */
const produce = (topic: string, records: ReadonlyArray<ProducerRecord>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topic, partitions: 3 }])
    const written: Array<RecordMetadata> = []
    for (let i = 0; i < records.length; i += 10_000) written.push(...(yield* kafka.send(records.slice(i, i + 10_000))))
    return written
  })

const at = (partition: number, offset: number) => `${partition}@${offset}`

/** The input offsets that must have a row: the records that are JSON objects Postgres can store. */
const expectedRows = (records: ReadonlyArray<ProducerRecord>, written: ReadonlyArray<RecordMetadata>) =>
  new Set(
    written
      .filter((_, i) => header(records[i]!.headers ?? {}, EventsToPostgres.badHeader) === undefined)
      .map((m) => at(m.partition, m.offset))
  )

interface TableState {
  readonly rows: number
  /** `partition@offset` → how many rows name it (the unique key makes more than 1 impossible; checked anyway). */
  readonly offsets: ReadonlyMap<string, number>
}

const tableState = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const found = yield* sql<{ readonly p: number; readonly o: string; readonly n: number }>`
      SELECT source_partition AS p, source_offset::text AS o, count(*)::int AS n FROM ${sql(d.relations.events)}
      GROUP BY 1, 2`
    const offsets = new Map(found.map((r) => [at(r.p, Number(r.o)), r.n]))
    return { rows: found.reduce((n, r) => n + r.n, 0), offsets } satisfies TableState
  })

const rowCount = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [found] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(d.relations.events)}`
    return found?.n ?? 0
  }).pipe(Effect.catch(() => Effect.succeed(0)))

/** Missing, unexpected and duplicated rows against the offsets that must have one. */
const coverage = (expected: ReadonlySet<string>, state: TableState) => {
  const missing = [...expected].filter((o) => !state.offsets.has(o))
  const unexpected = [...state.offsets.keys()].filter((o) => !expected.has(o))
  const duplicates = [...state.offsets.values()].reduce((n, c) => n + c - 1, 0)
  return {
    missing,
    unexpected,
    duplicates,
    text: `${state.rows} rows for ${expected.size} expected; missing ${missing.length} (${missing.slice(0, 5).join(" ")}), unexpected ${unexpected.length}, duplicates ${duplicates}`
  }
}

/** Per partition: the group's committed offset and the end offset; `done` when every partition is committed. */
const progress = (d: Deployment) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.raw.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(d.group, d.topics.raw.name)).map((c) => [c.partition, c.offset])
    )
    return {
      highs,
      committed,
      done: highs.every((h) => committed.get(h.partition) === h.high),
      text: `committed ${highs.map((h) => `${h.partition}@${committed.get(h.partition) ?? "-"}/${h.high}`).join(" ")}`
    }
  })

const awaitCommittedToEnd = (d: Deployment, timeout: `${number} seconds`, workers: ReadonlyArray<Workers.Worker>) =>
  waitUntil(
    "the group has committed every input record",
    timeout,
    Effect.map(progress(d), (p) => p.done),
    workers,
    Effect.map(Effect.all([progress(d), rowCount(d)]), ([p, n]) => `${p.text}; ${n} rows`)
  )

const committedText = (committed: ReadonlyMap<number, number>) =>
  [...committed]
    .sort(([a], [b]) => a - b)
    .map(([p, o]) => `${p}@${o}`)
    .join(" ")

/** The positions in `sluice_offsets` for the deployment's group, by partition. */
const storedOffsets = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const found = yield* sql<{ readonly partition: number; readonly next: string }>`
      SELECT partition, next_offset::text AS next FROM ${sql(d.relations.offsets)}
      WHERE group_id = ${d.group} AND topic = ${d.topics.raw.name}`
    return new Map(found.map((r) => [r.partition, Number(r.next)]))
  })

const stopGracefully = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("20 seconds")
    assert.strictEqual(exit.code, 0, `${worker.name} exit code after SIGTERM\n${worker.output().slice(-3000)}`)
  })

const readAll = (topic: string) =>
  Reader.readToEnd(topic).pipe(
    Stream.runFold(
      (): Array<ConsumerRecord> => [],
      (acc, records) => {
        for (const r of records) acc.push(r)
        return acc
      }
    ),
    Effect.timeout("60 seconds")
  )

/** What the dead letter of each kind of malformed record must say. */
const reasons: ReadonlyArray<readonly [EventsToPostgres.BadKind, RegExp]> = [
  ["invalid-json", /not JSON/],
  ["not-an-object", /not an object/],
  ["empty-value", /not JSON/],
  ["invalid-utf8", /UTF-8/],
  ["nul-in-jsonb", /unsupported Unicode escape sequence.*22P05/]
]

const services = Layer.mergeAll(
  KafkaJs.layer({ brokers, clientId: "sluice-events-to-postgres-it" }),
  Postgres.layer({ url })
)

layer(services, { excludeTestServices: true, timeout: "60 seconds" })("events-to-postgres (Kafka + Postgres)", (it) => {
  it.effect(
    "5,000 events, 5% malformed: one row per JSON object, the view counts them, every other record dead-lettered",
    () =>
      Effect.gen(function* () {
        const d = yield* fresh("at_least_once")
        const records = EventsToPostgres.generate({ count: 5_000, badRatio: 0.05, topic: d.topics.raw.name, seed: 11 })
        const written = yield* produce(d.topics.raw.name, records)
        const w = yield* d.worker("worker")
        yield* w.waitForLog(joined, "30 seconds")
        yield* awaitCommittedToEnd(d, "60 seconds", [w])
        yield* stopGracefully(w)

        const expected = expectedRows(records, written)
        assert.strictEqual(expected.size, 4_750)
        const c = coverage(expected, yield* tableState(d))
        assert.deepStrictEqual([c.missing.length, c.unexpected.length, c.duplicates], [0, 0, 0], c.text)

        // Each row holds its record: key, JSON (as jsonb), source.
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{
          readonly msg_key: string | null
          readonly payload: unknown
          readonly source_topic: string
          readonly p: number
          readonly o: string
        }>`SELECT msg_key, payload, source_topic, source_partition AS p, source_offset::text AS o
           FROM ${sql(d.relations.events)}`
        const byOffset = new Map(written.map((m, i) => [at(m.partition, m.offset), records[i]!]))
        for (const row of rows) {
          const record = byOffset.get(at(row.p, Number(row.o)))!
          assert.deepStrictEqual(row.payload, JSON.parse(text(record.value ?? new Uint8Array())))
          assert.strictEqual(row.msg_key, text(record.key ?? new Uint8Array()))
          assert.strictEqual(row.source_topic, d.topics.raw.name)
        }

        // The view: per event type (missing: unknown), summed over the hours the run spanned.
        const truth = new Map<string, number>()
        for (const [i, m] of written.entries()) {
          if (!expected.has(at(m.partition, m.offset))) continue
          const event: unknown = JSON.parse(text(records[i]!.value ?? new Uint8Array()))
          const type =
            typeof event === "object" && event !== null && "event_type" in event ? event.event_type : undefined
          const name = typeof type === "string" ? type : "unknown"
          truth.set(name, (truth.get(name) ?? 0) + 1)
        }
        const view = yield* sql<{ readonly event_type: string; readonly n: number }>`
          SELECT event_type, sum(event_count)::int AS n FROM ${sql(d.relations.view)} GROUP BY 1`
        assert.deepStrictEqual(
          Object.fromEntries(view.map((v) => [v.event_type, v.n])),
          Object.fromEntries(truth),
          "hourly_aggregate per event type"
        )
        assert.isAbove(truth.get("unknown") ?? 0, 0)
        const [hours] = yield* sql<{ readonly aligned: boolean; readonly matches: boolean }>`
          SELECT bool_and(event_hour = date_trunc('hour', event_hour)) AS aligned,
                 (SELECT count(*) FROM ${sql(d.relations.events)}) = sum(event_count) AS matches
          FROM ${sql(d.relations.view)}`
        assert.deepStrictEqual(hours, { aligned: true, matches: true })

        // Every other record is a dead letter, with the reason for its kind.
        const letters = yield* readAll(d.dlq)
        assert.strictEqual(letters.length, 250)
        for (const [kind, reason] of reasons) {
          const ofKind = letters.filter((l) => header(l.headers, EventsToPostgres.badHeader) === kind)
          assert.strictEqual(ofKind.length, 50, kind)
          for (const l of ofKind) assert.match(header(l.headers, DeadLetter.headers.errorMessage) ?? "", reason, kind)
        }
      }).pipe(Effect.scoped),
    120_000
  )

  it.effect(
    "a re-delivered record inserts no second row: a second group reads everything again, the table is unchanged",
    () =>
      Effect.gen(function* () {
        const d = yield* fresh("at_least_once")
        const records = EventsToPostgres.generate({ count: 3_000, topic: d.topics.raw.name, seed: 12 })
        const written = yield* produce(d.topics.raw.name, records)
        const first = yield* d.worker("first")
        yield* awaitCommittedToEnd(d, "60 seconds", [first])
        yield* stopGracefully(first)
        const before = yield* tableState(d)
        assert.strictEqual(before.rows, 3_000)

        // Another group has no commits: it re-delivers every record to the sink.
        const again = { ...d, group: `${d.group}-again` }
        const second = yield* Workers.start("second", [
          "events-to-postgres",
          "--brokers",
          brokers.join(","),
          "--topic-prefix",
          d.prefix,
          "--group",
          again.group,
          "--schema",
          d.relations.schema
        ])
        yield* awaitCommittedToEnd(again, "60 seconds", [second])
        yield* stopGracefully(second)
        const c = coverage(expectedRows(records, written), yield* tableState(d))
        assert.deepStrictEqual([c.missing.length, c.unexpected.length, c.duplicates], [0, 0, 0], c.text)
        assert.strictEqual((yield* tableState(d)).rows, 3_000, "the second pass inserted nothing")
        assert.strictEqual(yield* recordCount(d.dlq), 0, "and refused nothing: a re-delivered row is no error")
        // The second pass did send its 3,000 rows: each took a value of the id sequence before its conflict.
        const sql = yield* SqlClient.SqlClient
        const [sequence] = yield* sql<{ readonly n: string }>`
          SELECT last_value::text AS n FROM pg_sequences
          WHERE schemaname = ${d.relations.schema} AND sequencename = 'events_raw_id_seq'`
        assert.isAtLeast(Number(sequence?.n), 6_000)
      }).pipe(Effect.scoped),
    120_000
  )

  for (const guarantee of ["at_least_once", "exactly_once"] as const) {
    it.effect(
      `kill -9 five times during 50,000 events (${guarantee}): exactly one row per input offset${guarantee === "exactly_once" ? ", sluice_offsets = the end offsets" : ""}`,
      () =>
        Effect.gen(function* () {
          // Produced while the workers run, 800 a second for about a minute: each worker is killed while events
          // still arrive, once it has written 2,000 rows of its own (a worker writes a fetched batch at a time).
          const d = yield* fresh(guarantee)
          const total = 50_000
          const records = EventsToPostgres.generate({ count: total, topic: d.topics.raw.name, seed: 13 })
          const kafka = yield* Kafka
          yield* kafka.createTopics([{ name: d.topics.raw.name, partitions: 3 }])
          const written: Array<RecordMetadata> = []
          const producer = yield* Effect.forkScoped(
            Effect.gen(function* () {
              for (let i = 0; i < total; i += 400) {
                written.push(...(yield* kafka.send(records.slice(i, i + 400))))
                yield* Effect.sleep("500 millis")
              }
            })
          )
          const kills: Array<string> = []
          for (let k = 0; k < 5; k++) {
            const w = yield* d.worker(`worker-${k}`)
            yield* w.waitForLog(joined, "60 seconds")
            const from = yield* rowCount(d)
            yield* waitUntil(
              `worker-${k} wrote 2,000 rows`,
              "90 seconds",
              Effect.map(rowCount(d), (n) => n >= from + 2_000),
              [w]
            )
            // Not always right after a write lands: at another point of the write-commit cycle each time.
            yield* Effect.sleep(`${(k * 397) % 1_200} millis`)
            yield* w.signal("SIGKILL")
            assert.strictEqual((yield* w.exit("10 seconds")).signal, "SIGKILL")
            const atKill = yield* rowCount(d)
            assert.isBelow(written.length, total, `killed while events were still produced (${kills.join("; ")})`)
            const committed = (yield* progress(d)).text
            const stored =
              guarantee === "exactly_once"
                ? ` stored ${[...(yield* storedOffsets(d))].map(([p, o]) => `${p}@${o}`).join(" ")}`
                : ""
            kills.push(`kill ${k + 1}: ${atKill} rows of ${written.length} produced, ${committed}${stored}`)
          }
          const last = yield* d.worker("worker-last")
          yield* Fiber.join(producer)
          yield* waitUntil(
            "50,000 rows",
            "150 seconds",
            Effect.map(rowCount(d), (n) => n === total),
            [last]
          )
          // At-least-once, the group's commits are where tasks start; exactly-once, the offsets table is (and a
          // partition finished before the last restart may have no group commit at all).
          if (guarantee === "at_least_once") yield* awaitCommittedToEnd(d, "60 seconds", [last])
          else
            yield* waitUntil(
              "sluice_offsets holds the end offsets",
              "60 seconds",
              Effect.map(Effect.all([storedOffsets(d), progress(d)]), ([stored, p]) =>
                p.highs.every((h) => stored.get(h.partition) === h.high)
              ),
              [last]
            )
          yield* stopGracefully(last)

          const state = yield* tableState(d)
          const c = coverage(expectedRows(records, written), state)
          assert.deepStrictEqual([c.missing.length, c.unexpected.length, c.duplicates], [0, 0, 0], c.text)
          assert.strictEqual(state.rows, total)
          assert.strictEqual(yield* recordCount(d.dlq), 0, "no record dead-lettered: a re-delivered row is no error")
          const ends = (yield* progress(d)).highs
          if (guarantee === "exactly_once") {
            const stored = yield* storedOffsets(d)
            assert.deepStrictEqual(
              Object.fromEntries(stored),
              Object.fromEntries(ends.map((e) => [e.partition, e.high])),
              "sluice_offsets holds the end offsets"
            )
            // Each restart started where the table said (the runner logs it per task).
            assert.match(last.output(), /task \d starts from/)
          }
          console.log(`${guarantee}: ${kills.join("; ")}; end: ${c.text}`)
        }).pipe(Effect.scoped),
      300_000
    )
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Postgres stopped for 30 s
// ---------------------------------------------------------------------------------------------------------------

const run = promisify(execFile)
/** `bash scripts/postgres.sh <action>` for the outage cluster; returns its output. */
const outagePostgres = (action: "start" | "stop") =>
  Effect.promise(() =>
    run("bash", [`${Workers.repoRoot}scripts/postgres.sh`, action], {
      env: { ...process.env, PGPORT: outagePort },
      timeout: 120_000
    })
  ).pipe(Effect.map((r) => `${r.stdout}${r.stderr}`.trim()))

/** Sets an environment variable for the workers started in the scope (they inherit this process's environment). */
const workerEnv = (name: string, value: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const old = process.env[name]
      process.env[name] = value
      return old
    }),
    (old) =>
      Effect.sync(() => {
        if (old === undefined) delete process.env[name]
        else process.env[name] = old
      })
  )

layer(KafkaJs.layer({ brokers, clientId: "sluice-events-outage-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("events-to-postgres, Postgres stopped (its own cluster on port 25432)", (it) => {
  it.effect(
    "Postgres stopped for 30 s mid-run: the worker stays up, commits nothing meanwhile, loses nothing, writes no row twice, catches up",
    () =>
      Effect.gen(function* () {
        yield* workerEnv("DATABASE_URL", outageUrl)
        const d = yield* fresh("exactly_once")
        const total = 60_000
        const records = EventsToPostgres.generate({ count: total, topic: d.topics.raw.name, seed: 14 })
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: d.topics.raw.name, partitions: 3 }])
        // Produced while the worker runs, 2,000 a second for 30 s: records keep arriving through the outage.
        const written: Array<RecordMetadata> = []
        const producer = yield* Effect.forkScoped(
          Effect.gen(function* () {
            for (let i = 0; i < total; i += 1_000) {
              written.push(...(yield* kafka.send(records.slice(i, i + 1_000))))
              yield* Effect.sleep("500 millis")
            }
          })
        )
        const w = yield* d.worker("worker")
        yield* w.waitForLog(joined, "30 seconds")
        yield* waitUntil(
          "10,000 rows",
          "60 seconds",
          Effect.map(rowCount(d), (n) => n >= 10_000),
          [w]
        )

        const rowsBefore = yield* rowCount(d)
        yield* outagePostgres("stop")
        const stoppedAt = Date.now()
        // Sampled once a second while Postgres is down: the group's commits must not move.
        yield* Effect.sleep("1 second")
        const heldAt = yield* progress(d)
        const samples: Array<string> = []
        while (Date.now() - stoppedAt < 30_000) {
          samples.push(committedText((yield* progress(d)).committed))
          assert.isTrue(w.isRunning(), `the worker stays up\n${w.output().slice(-3000)}`)
          yield* Effect.sleep("1 second")
        }
        const startedAt = Date.now()
        yield* outagePostgres("start")
        const restartedAt = Date.now()
        assert.isTrue(w.isRunning(), "the worker is up when Postgres comes back")

        yield* Fiber.join(producer)
        yield* waitUntil(
          "60,000 rows",
          "120 seconds",
          Effect.map(rowCount(d), (n) => n === total),
          [w]
        )
        const caughtUp = { sinceStart: Date.now() - startedAt, sinceReady: Date.now() - restartedAt }
        const retries = (w.output().match(/failed, retrying/g) ?? []).length
        yield* awaitCommittedToEnd(d, "60 seconds", [w])
        yield* stopGracefully(w)

        assert.deepStrictEqual(new Set(samples).size, 1, `no commit while Postgres was down:\n${samples.join("\n")}`)
        assert.strictEqual(samples[0], committedText(heldAt.committed))
        const sql = yield* SqlClient.SqlClient
        // Rows carry the server's now() of their transaction: what the group committed before and during the
        // outage was all written before Postgres stopped.
        for (const [partition, committed] of heldAt.committed) {
          const [before] = yield* sql<{ readonly n: number }>`
              SELECT count(*)::int AS n FROM ${sql(d.relations.events)}
              WHERE source_partition = ${partition} AND source_offset < ${committed} AND received_at < ${new Date(stoppedAt)}`
          assert.strictEqual(
            before?.n,
            committed,
            `partition ${partition}: every offset below ${committed} written before the stop`
          )
        }
        const state = yield* tableState(d)
        const c = coverage(expectedRows(records, written), state)
        assert.deepStrictEqual([c.missing.length, c.unexpected.length, c.duplicates], [0, 0, 0], c.text)
        const stored = yield* storedOffsets(d)
        assert.deepStrictEqual(
          Object.fromEntries(stored),
          Object.fromEntries((yield* progress(d)).highs.map((e) => [e.partition, e.high]))
        )
        assert.match(w.output(), /write of \d+ row\(s\) failed, retrying/, "the worker retried")
        assert.strictEqual((w.output().match(/assigned \d+ partition/g) ?? []).length, 1, "one assignment, no restart")
        console.log(
          `outage: ${rowsBefore} rows when Postgres stopped; the group's commits stayed at ${committedText(heldAt.committed)} for 30 s while ${total} records were produced; ` +
            `${retries} failed write attempts logged; caught up ${caughtUp.sinceStart} ms after \`postgres.sh start\` began ` +
            `(${caughtUp.sinceReady} ms after it returned, the server ready); end: ${c.text}`
        )
      }).pipe(
        Effect.scoped,
        Effect.provide(Postgres.layer({ url: outageUrl })),
        // The cluster must be up before the test's own pool is built, and is running again afterwards whatever
        // happened in the test.
        (body) => Effect.andThen(outagePostgres("start"), body),
        Effect.ensuring(Effect.ignore(outagePostgres("start")))
      ),
    240_000
  )
})
