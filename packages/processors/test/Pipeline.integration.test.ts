/**
 * The seed's JSON pipeline, unchanged (examples/seed-004-pipeline.json), run by the CLI process against the real
 * Kafka, Redis and ClickHouse, as a user runs it: `sluice pipeline validate`, `sluice produce user-profiles-redis`,
 * `sluice produce clickstream`, `sluice run --pipeline`. Only the deployment is isolated, by `--topic-prefix`
 * (topics, group, Redis keys and table); the file's `localhost:9092` is the broker.
 *
 * ClickHouse is reached through a proxy the test takes away while the worker runs: meanwhile no offset past a
 * window's closing event may be committed, and every committed offset, before and after, must have its rows in the
 * table. The rows are checked against a recomputation from the events read back from Kafka (support/pipelineReference.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import * as ClickHouse from "@sluice/core/ClickHouse"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Redis from "@sluice/core/Redis"
import { Effect, Layer, Redacted, Schema } from "effect"
import * as Clickstream from "./support/clickstream.ts"
import * as Reference from "./support/pipelineReference.ts"
import { tcpProxy } from "./support/tcpProxy.ts"
import * as Workers from "./support/workers.ts"

const seedFile = "examples/seed-004-pipeline.json"
const brokers = Effect.runSync(brokersConfig)
const clickhouseUrl = new URL(Redacted.value(Effect.runSync(ClickHouse.urlConfig)))
const profiles = 80

const Services = Layer.mergeAll(
  KafkaJs.layer({ brokers, clientId: "sluice-pipeline-test" }),
  Redis.layerConfig,
  ClickHouse.layerConfig
)

/**
 * The seed names localhost:9092; where the tests' broker is another one (SLUICE_BROKERS), the worker is told so with
 * --brokers, the only change it gets.
 */
const local = ["127.0.0.1:9092", "localhost:9092"].includes(brokers.join(","))
const brokerArgs = local ? [] : ["--brokers", brokers.join(",")]

/** A row as ClickHouse's JSON gives it: UInt64 as strings, the window's bounds as epoch seconds. */
const Row = Schema.Struct({
  window_start: Schema.Finite,
  window_end: Schema.Finite,
  key: Schema.String,
  event_count: Schema.FiniteFromString,
  unique_users: Schema.FiniteFromString,
  session_duration_ms: Schema.FiniteFromString,
  enriched_events: Schema.FiniteFromString
})

const rowsOf = (table: string) =>
  Effect.flatMap(ClickHouse.ClickHouse, (ch) =>
    ch.query(
      `SELECT toUnixTimestamp(window_start) AS window_start, toUnixTimestamp(window_end) AS window_end, key,
         event_count, unique_users, session_duration_ms, enriched_events FROM ${table} FINAL`
    )
  ).pipe(Effect.flatMap(Schema.decodeUnknownEffect(Schema.Array(Row))))

describe("sluice run --pipeline (real Kafka, Redis, ClickHouse)", () => {
  it.live(
    "the seed's request, unchanged: rows match the events, and no offset is committed before its rows are written",
    () => {
      const prefix = `itp-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}-`
      const topic = `${prefix}clickstream`
      const group = `${prefix}clickstream_processor`
      const table = `${prefix.replace(/-/g, "_")}clickstream_aggregates`
      const cleanup = Effect.gen(function* () {
        const kafka = yield* Kafka
        yield* kafka.deleteTopics((yield* kafka.listTopics).filter((n) => n.startsWith(prefix)))
        yield* (yield* Redis.Redis).flushPrefix(prefix)
        yield* (yield* ClickHouse.ClickHouse).command(`DROP TABLE IF EXISTS ${table}`)
      }).pipe(Effect.catch((e) => Effect.logWarning(`cleanup of ${prefix} failed: ${String(e)}`)))

      return Effect.gen(function* () {
        const kafka = yield* Kafka
        const validated = yield* Workers.once(["pipeline", "validate", seedFile])
        assert.strictEqual(validated.code, 0, validated.stderr)
        assert.include(validated.stdout, "is a valid pipeline, clickstream_analytics")

        const produced = yield* Workers.once([
          "produce",
          "user-profiles-redis",
          "--users",
          String(profiles),
          "--topic-prefix",
          prefix
        ])
        assert.strictEqual(produced.code, 0, produced.stderr)
        yield* kafka.createTopics([{ name: topic, partitions: 3 }])

        const proxy = yield* tcpProxy({ host: clickhouseUrl.hostname, port: Number(clickhouseUrl.port || 8123) })
        const via = new URL(clickhouseUrl)
        via.host = `127.0.0.1:${proxy.port}`
        const worker = yield* Workers.start(
          "pipeline",
          ["--pipeline", seedFile, "--topic-prefix", prefix, "--shutdown-timeout-ms", "10000", ...brokerArgs],
          { env: { CLICKHOUSE_URL: via.toString(), SLUICE_BROKERS: undefined } }
        )
        yield* worker.waitForLog(/assigned 3 partition\(s\)/, "60 seconds")
        assert.include(worker.output(), `read     ${topic} from ${local ? "localhost:9092" : brokers.join(",")}`)

        // ClickHouse goes away before the events come.
        yield* proxy.stop
        yield* Clickstream.produce(prefix, 6000)
        const sent = yield* Clickstream.readBack(topic)
        assert.lengthOf(sent, 6000)
        const truth = Reference.expected(sent, {
          windowMs: 60_000,
          graceMs: 10_000,
          hasProfile: (user) => Number(user.slice("user_".length)) <= profiles
        })
        assert.isAbove(truth.rows.size, 500)

        /** Every window closed by an event below a committed offset has its row: rows are read after the offsets. */
        const committedHaveRows = Effect.gen(function* () {
          const committed = new Map((yield* kafka.committedOffsets(group, topic)).map((c) => [c.partition, c.offset]))
          const written = new Set((yield* rowsOf(table)).map((r) => Reference.rowId(r.key, r.window_start)))
          const unwritten = [...truth.closedBy].filter(
            ([id, at]) => at.offset < (committed.get(at.partition) ?? 0) && !written.has(id)
          )
          assert.deepStrictEqual(unwritten, [], "committed past a window whose row is not written")
          return { committed, written }
        })

        yield* worker.waitForLog(/sink clickhouse:\S+ write of \d+ row\(s\) failed, retrying/, "60 seconds")
        for (let i = 0; i < 8; i++) {
          const { written } = yield* committedHaveRows
          assert.strictEqual(written.size, 0, "no row while ClickHouse is away")
          yield* Effect.sleep("1 second")
        }

        yield* proxy.start
        yield* Workers.waitUntil(
          "every closed window's row is written and every offset committed",
          "120 seconds",
          Effect.gen(function* () {
            const { committed, written } = yield* committedHaveRows
            const highs = yield* kafka.offsets(topic)
            return written.size === truth.rows.size && highs.every((h) => committed.get(h.partition) === h.high)
          }),
          [worker]
        )
        const rows = yield* rowsOf(table)
        assert.deepStrictEqual<ReadonlyMap<string, unknown>>(
          new Map(rows.map((r) => [Reference.rowId(r.key, r.window_start), r])),
          truth.rows
        )
        assert.strictEqual(truth.late.size, 0, "the events came in time order")

        yield* worker.signal("SIGTERM")
        const exit = yield* worker.exit("30 seconds")
        assert.strictEqual(exit.code, 0, worker.output().slice(-3000))

        // A table that exists with columns the pipeline cannot write stops the start, naming them.
        yield* (yield* ClickHouse.ClickHouse).command(`DROP TABLE ${table}`)
        yield* (yield* ClickHouse.ClickHouse).command(
          `CREATE TABLE ${table} (window_start DateTime, key String, event_count String) ENGINE = MergeTree ORDER BY key`
        )
        const unfit = yield* Workers.once(["run", "--pipeline", seedFile, "--topic-prefix", prefix, ...brokerArgs], {
          env: { SLUICE_BROKERS: undefined }
        })
        assert.strictEqual(unfit.code, 2, unfit.stderr)
        assert.include(unfit.stderr, `ClickHouse table ${table} exists with columns that do not fit the pipeline`)
        assert.include(unfit.stderr, "window_end is missing (the pipeline writes DateTime)")
        assert.include(unfit.stderr, "event_count is String (the pipeline writes UInt64)")

        // A file with errors is refused by the process, exit code 2.
        const invalid = yield* Workers.once([
          "run",
          "--pipeline",
          "packages/processors/package.json",
          "--topic-prefix",
          prefix
        ])
        assert.strictEqual(invalid.code, 2)
        assert.include(invalid.stderr, "is not a valid pipeline")
        assert.include(invalid.stderr, "name: unknown field")
      }).pipe(Effect.scoped, Effect.ensuring(cleanup), Effect.provide(Services))
    },
    180_000
  )
})
