/**
 * clickstream-sessions against the real services: Kafka (SLUICE_BROKERS), Redis (REDIS_URL), ClickHouse
 * (CLICKHOUSE_URL, Debian's 18.16.1) and Postgres (DATABASE_URL); `bash scripts/services.sh start`. Each test has
 * its own topic prefix, Redis key prefix and tables, removed when it ends.
 *
 * The Redis outage test runs a Redis of its own on REDIS_OUTAGE_PORT (default 6399) with `scripts/redis.sh`, so
 * stopping it for 30 s disturbs nothing else that uses the shared one.
 */
import { execFileSync } from "node:child_process"
import { rmSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as ClickHouse from "@sluice/core/ClickHouse"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Metrics from "@sluice/core/Metrics"
import * as Postgres from "@sluice/core/Postgres"
import * as Redis from "@sluice/core/Redis"
import * as Runner from "@sluice/core/Runner"
import { type Duration, Effect, Fiber, Layer, Logger, Metric, Schema, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import { afterAll } from "vitest"
import * as Data from "../src/ClickstreamData.ts"
import * as Sessions from "../src/ClickstreamSessions.ts"
import * as Tables from "../src/ClickstreamTables.ts"
import { repoRoot } from "./support/workers.ts"

const brokers = Effect.runSync(brokersConfig)
const redisUrl = Effect.runSync(Redis.urlConfig)
const outagePort = Number(process.env.REDIS_OUTAGE_PORT ?? 6399)

const Databases = Layer.mergeAll(ClickHouse.layerConfig, Postgres.layerConfig)
const Services = (redis: Layer.Layer<Redis.Redis, Redis.RedisError>) =>
  Layer.mergeAll(KafkaJs.layer({ brokers, clientId: "sluice-clickstream-test" }), redis, Databases)

const freshPrefix = () => `it-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}-`

interface Deployment {
  readonly prefix: string
  readonly topics: Sessions.Topics
  readonly tables: Tables.Tables
  readonly group: string
}

const deployment = (prefix: string): Deployment => ({
  prefix,
  topics: Sessions.named(prefix),
  tables: Tables.tables(prefix),
  group: `${prefix}clickstream-sessions`
})

const cleanup = (d: Deployment, redis: Layer.Layer<Redis.Redis, Redis.RedisError>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.deleteTopics((yield* kafka.listTopics).filter((n) => n.startsWith(d.prefix)))
    yield* (yield* Redis.Redis).flushPrefix(d.prefix)
    yield* (yield* ClickHouse.ClickHouse).command(`DROP TABLE IF EXISTS ${d.tables.clickhouse}`)
    const sql = yield* SqlClient.SqlClient
    yield* sql`DROP VIEW IF EXISTS ${sql(d.tables.sessionsView)}`
    yield* sql`DROP TABLE IF EXISTS ${sql(d.tables.postgres)}`
  }).pipe(
    Effect.provide(Services(redis)),
    Effect.catch((e) => Effect.logWarning(`cleanup of ${d.prefix} failed: ${String(e)}`))
  )

/** A test on the real services, with a fresh deployment and its cleanup. */
const integration = <E>(
  name: string,
  body: (
    d: Deployment
  ) => Effect.Effect<void, E, Kafka | Redis.Redis | ClickHouse.ClickHouse | SqlClient.SqlClient | Scope.Scope>,
  options: { readonly timeout: number; readonly redis?: () => Layer.Layer<Redis.Redis, Redis.RedisError> }
) =>
  it.live(
    name,
    () => {
      const d = deployment(freshPrefix())
      const redis = options.redis?.() ?? Redis.layer({ url: redisUrl })
      return Effect.scoped(body(d)).pipe(Effect.provide(Services(redis)), Effect.ensuring(cleanup(d, redis)))
    },
    options.timeout
  )

/** Sends events; returns them by the position (`partition:offset`) they got. */
const send = (d: Deployment, events: ReadonlyArray<Sessions.ClickEvent>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const metadata = yield* kafka.send(Data.records(events, d.topics))
    return new Map(metadata.map((m, i) => [`${m.partition}:${m.offset}`, events[i]!]))
  })

/** Starts the topology in the current scope (a new consumer group member; interrupted when the scope closes). */
const startWorker = (d: Deployment, options: { readonly cacheTtl?: Duration.Input; readonly group?: string } = {}) =>
  Effect.gen(function* () {
    const topology = Sessions.topology({ topics: d.topics, sinks: Tables.sinks(d.tables, { batchSize: 500 }) })
    const profiles = Sessions.UserProfiles.redis({
      keyPrefix: d.topics.profileKeyPrefix,
      cache: { maxEntries: 10_000, ttl: options.cacheTtl ?? "1 minute" }
    })
    return yield* Runner.run(topology, { groupId: options.group ?? d.group, commitInterval: "500 millis" }).pipe(
      Effect.provide(profiles),
      Effect.forkScoped
    )
  })

class TestTimeout extends Schema.TaggedError<TestTimeout>()("TestTimeout", { what: Schema.String }) {}

/** Polls until `check` holds; fails if the worker stops first, or after `within`. */
const eventually = <A, E, R, E2>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  worker: Fiber.Fiber<A, E2>,
  within: Duration.Input = "60 seconds"
) =>
  Effect.raceFirst(
    Effect.gen(function* () {
      while (!(yield* check)) yield* Effect.sleep("250 millis")
    }),
    Effect.andThen(Fiber.await(worker), (exit) => Effect.die(new Error(`the worker stopped: ${String(exit)}`)))
  ).pipe(Effect.timeoutOrElse({ duration: within, orElse: () => Effect.fail(new TestTimeout({ what })) }))

const committedToEnd = (d: Deployment, group = d.group) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.events.name)
    const committed = new Map((yield* kafka.committedOffsets(group, d.topics.events.name)).map((c) => [c.partition, c]))
    return highs.every((h) => (committed.get(h.partition)?.offset ?? 0) === h.high)
  })

// --- reading the databases back ---

const PgRow = Schema.Struct({
  position: Schema.String,
  event_id: Schema.String,
  user_name: Schema.String,
  user_segment: Schema.String,
  user_tier: Schema.String,
  profile_found: Schema.Boolean
})
const SessionRow = Schema.Struct({
  session_id: Schema.String,
  user_id: Schema.String,
  start_ms: Schema.Number,
  end_ms: Schema.Number,
  event_count: Schema.Number,
  pages_viewed: Schema.Number
})

const pgCount = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(d.tables.postgres)}`
    return row?.n ?? 0
  })

const pgRows = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT source_partition || ':' || source_offset AS position, event_id, user_name,
      user_segment, user_tier, profile_found FROM ${sql(d.tables.postgres)}`
    return yield* Schema.decodeUnknownEffect(Schema.Array(PgRow))(rows)
  })

const pgSessions = (d: Deployment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT session_id, user_id,
      (extract(epoch from session_start) * 1000)::float8 AS start_ms,
      (extract(epoch from session_end) * 1000)::float8 AS end_ms, event_count, pages_viewed
      FROM ${sql(d.tables.sessionsView)}`
    return yield* Schema.decodeUnknownEffect(Schema.Array(SessionRow))(rows)
  })

const chNumber = (sql: string) =>
  Effect.gen(function* () {
    const rows = yield* (yield* ClickHouse.ClickHouse).query(sql)
    const [row] = yield* Schema.decodeUnknownEffect(Schema.Array(Schema.Struct({ n: Schema.NumberFromString })))(rows)
    return row?.n ?? 0
  })

const ChRow = Schema.Struct({
  position: Schema.String,
  event_id: Schema.String,
  ms: Schema.NumberFromString,
  user_name: Schema.String,
  user_segment: Schema.String,
  profile_found: Schema.Number
})
const chRows = (d: Deployment) =>
  Effect.gen(function* () {
    const rows = yield* (yield* ClickHouse.ClickHouse).query(
      `SELECT concat(toString(source_partition), ':', toString(source_offset)) AS position, event_id,
        toString(toUInt64(toUnixTimestamp(timestamp)) * 1000 + timestamp_ms) AS ms, user_name, user_segment,
        profile_found FROM ${d.tables.clickhouse} FINAL`
    )
    return yield* Schema.decodeUnknownEffect(Schema.Array(ChRow))(rows)
  })

const chSessions = (d: Deployment) =>
  Effect.gen(function* () {
    const rows = yield* (yield* ClickHouse.ClickHouse).query(
      `SELECT session_id, any(user_id) AS user_id,
        toString(argMax(toUInt64(toUnixTimestamp(session_start)) * 1000 + session_start_ms, session_event_count)) AS start_ms,
        toString(argMax(toUInt64(toUnixTimestamp(session_start)) * 1000 + session_start_ms + session_duration_ms, session_event_count)) AS end_ms,
        max(session_event_count) AS event_count, argMax(session_pages_viewed, session_event_count) AS pages_viewed
      FROM ${d.tables.clickhouse} FINAL GROUP BY session_id`
    )
    const decoded = yield* Schema.decodeUnknownEffect(
      Schema.Array(
        Schema.Struct({
          ...SessionRow.fields,
          start_ms: Schema.NumberFromString,
          end_ms: Schema.NumberFromString
        })
      )
    )(rows)
    return decoded
  })

const asTruth = (rows: ReadonlyArray<typeof SessionRow.Type>) =>
  new Map(
    rows.map((r) => [
      r.session_id,
      { user_id: r.user_id, start: r.start_ms, last: r.end_ms, events: r.event_count, pages: r.pages_viewed }
    ])
  )

/**
 * Both databases hold exactly one row per sent position, each enriched as the truth says (users above
 * `knownUsers` have no profile), and every session's metrics equal a recomputation from the events.
 */
const verify = (d: Deployment, sent: ReadonlyMap<string, Sessions.ClickEvent>, knownUsers: number) =>
  Effect.gen(function* () {
    const expect = (e: Sessions.ClickEvent) => {
      const n = Number(e.user_id.slice("user_".length))
      return n <= knownUsers
        ? { profile: Data.profileFor(n), found: true }
        : { profile: Sessions.defaultProfile(e.user_id), found: false }
    }
    const pg = yield* pgRows(d)
    assert.strictEqual(pg.length, sent.size, "Postgres: one row per input offset")
    assert.strictEqual(new Set(pg.map((r) => r.position)).size, sent.size)
    let missing = 0
    for (const row of pg) {
      const e = sent.get(row.position)
      assert.isDefined(e, `Postgres row for unknown position ${row.position}`)
      const { profile, found } = expect(e!)
      if (!found) missing++
      assert.deepStrictEqual(
        [row.event_id, row.user_name, row.user_segment, row.user_tier, row.profile_found],
        [e!.event_id, profile.name, profile.segment, profile.tier, found],
        `Postgres row ${row.position}`
      )
    }
    const ch = yield* chRows(d)
    assert.strictEqual(ch.length, sent.size, "ClickHouse (FINAL): one row per input offset")
    assert.strictEqual(
      yield* chNumber(`SELECT toString(uniqExact(source_partition, source_offset)) AS n FROM ${d.tables.clickhouse}`),
      sent.size
    )
    for (const row of ch) {
      const e = sent.get(row.position)
      assert.isDefined(e, `ClickHouse row for unknown position ${row.position}`)
      const { profile, found } = expect(e!)
      assert.deepStrictEqual(
        [row.event_id, row.ms, row.user_name, row.user_segment, row.profile_found],
        [e!.event_id, Date.parse(e!.timestamp), profile.name, profile.segment, found ? 1 : 0],
        `ClickHouse row ${row.position}`
      )
    }
    const truth = Data.recompute(sent.values())
    assert.deepStrictEqual(asTruth(yield* pgSessions(d)), truth, "Postgres clickstream_sessions = recomputation")
    assert.deepStrictEqual(asTruth(yield* chSessions(d)), truth, "ClickHouse session metrics = recomputation")
    return { missing }
  })

const allWritten = (d: Deployment, n: number) =>
  Effect.gen(function* () {
    const pg = yield* pgCount(d)
    const ch = yield* chNumber(
      `SELECT toString(uniqExact(source_partition, source_offset)) AS n FROM ${d.tables.clickhouse}`
    )
    return pg >= n && ch >= n
  })

/** Rows each sink of the deployment has written in this process (its `sluice_sink_rows_written`). */
const rowsWritten = (d: Deployment) =>
  Effect.gen(function* () {
    const of = (sink: string) =>
      Effect.map(Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink })), (s) => Number(s.count))
    const sinks = Tables.sinks(d.tables)
    return { clickhouse: yield* of(sinks.clickhouse.name), postgres: yield* of(sinks.postgres.name) }
  })

const loadProfiles = (d: Deployment, users: number) =>
  Effect.flatMap(Redis.Redis, (redis) => redis.setMany(Data.profileEntries(users, d.topics.profileKeyPrefix)))

/** The lines the runtime logs, kept (restores: "restored sessions of task N: k changelog record(s) ..."). */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ message }) => {
    for (const part of Array.isArray(message) ? message : [message]) lines.push(String(part))
  })
  return { lines, layer: Logger.layer([logger, Logger.consolePretty()]) }
}

const redisScript = (action: "start" | "stop") =>
  Effect.sync(() =>
    execFileSync("bash", [`${repoRoot}scripts/redis.sh`, action], {
      env: { ...process.env, REDIS_PORT: String(outagePort) },
      stdio: "inherit"
    })
  )

// The outage test's own Redis is not left running (its RDB file goes with the test).
let outageRedisStarted = false
afterAll(() => {
  if (outageRedisStarted) Effect.runSync(redisScript("stop"))
})

describe("clickstream-sessions (real Kafka, Redis, ClickHouse, Postgres)", () => {
  integration(
    "every event lands once per input offset in ClickHouse and Postgres, enriched (missing profiles: defaults); sessions equal a recomputation; a full re-delivery adds no row",
    (d) =>
      Effect.gen(function* () {
        yield* Tables.setup(d.tables)
        yield* (yield* Kafka).createTopics([{ name: d.topics.events.name, partitions: 3 }])
        yield* loadProfiles(d, 40)
        const sent = yield* send(d, Data.generate({ count: 3_000, users: 50, sessions: 150, seed: 11 }))
        const worker = yield* startWorker(d)
        yield* eventually("3,000 rows in each database", allWritten(d, 3_000), worker)
        yield* eventually("offsets committed", committedToEnd(d), worker)
        yield* Fiber.interrupt(worker)
        const { missing } = yield* verify(d, sent, 40)
        assert.isAbove(missing, 0, "some users have no profile")

        // At-least-once at its worst: a new group re-reads everything and writes every row again. Postgres keeps
        // one row per offset (ON CONFLICT DO NOTHING); ClickHouse holds the repeats until its parts merge, and
        // FINAL / uniqExact count each offset once.
        const writtenBefore = yield* rowsWritten(d)
        const again = yield* startWorker(d, { group: `${d.group}-again` })
        yield* eventually("re-delivered to the end", committedToEnd(d, `${d.group}-again`), again)
        yield* Fiber.interrupt(again)
        const writtenAgain = yield* rowsWritten(d)
        assert.deepStrictEqual(
          [writtenAgain.clickhouse - writtenBefore.clickhouse, writtenAgain.postgres - writtenBefore.postgres],
          [3_000, 3_000],
          "every row was written a second time"
        )
        yield* verify(d, sent, 40)
        const plain = yield* chNumber(`SELECT toString(count()) AS n FROM ${d.tables.clickhouse}`)
        yield* Effect.logInfo(`ClickHouse rows before merges: ${plain} for ${sent.size} offsets (FINAL: ${sent.size})`)
      }),
    { timeout: 180_000 }
  )

  {
    const logs = captureLogs()
    integration(
      "a restart restores the session store from its changelog: the second run's metrics go on from the first's",
      (d) =>
        Effect.gen(function* () {
          yield* Tables.setup(d.tables)
          yield* (yield* Kafka).createTopics([{ name: d.topics.events.name, partitions: 3 }])
          yield* loadProfiles(d, 30)
          const first = yield* send(d, Data.generate({ count: 1_500, users: 30, sessions: 60, seed: 21 }))
          const one = yield* startWorker(d)
          yield* eventually("first run committed", committedToEnd(d), one)
          yield* Fiber.interrupt(one)
          // The same sessions again, a day later.
          const second = yield* send(
            d,
            Data.generate({ count: 1_500, users: 30, sessions: 60, seed: 22, startTime: Date.UTC(2026, 11, 2) })
          )
          const before = logs.lines.length
          const two = yield* startWorker(d)
          yield* eventually("second run committed", committedToEnd(d), two)
          yield* eventually("3,000 rows", allWritten(d, 3_000), two)
          yield* Fiber.interrupt(two)
          const restored = logs.lines
            .slice(before)
            .filter((l) => /restored sessions of task \d+: [1-9]\d* changelog/.test(l))
          assert.isAbove(restored.length, 0, "the second run restored the store from the changelog")
          yield* verify(d, new Map([...first, ...second]), 30)
        }).pipe(Effect.provide(logs.layer)),
      { timeout: 180_000 }
    )
  }

  integration(
    "Redis stopped for 30 s mid-run (policy wait): the worker waits and retries, nothing is lost or defaulted",
    (d) =>
      Effect.gen(function* () {
        yield* Tables.setup(d.tables)
        yield* (yield* Kafka).createTopics([{ name: d.topics.events.name, partitions: 3 }])
        yield* loadProfiles(d, 20)
        // Profiles survive the restart in the RDB file (the script's Redis saves nothing by itself).
        execFileSync("redis-cli", ["-p", String(outagePort), "SAVE"])
        const events = Data.generate({ count: 6_000, users: 20, sessions: 100, seed: 31 })
        // A short TTL, so every batch during the outage needs Redis.
        const worker = yield* startWorker(d, { cacheTtl: "200 millis" })
        const sent = new Map<string, Sessions.ClickEvent>()
        // 40 events every 250 ms for 37.5 s: before, during and after the outage.
        const producer = yield* Effect.forkScoped(
          Effect.gen(function* () {
            for (let i = 0; i < events.length; i += 40) {
              for (const [k, v] of yield* send(d, events.slice(i, i + 40))) sent.set(k, v)
              yield* Effect.sleep("250 millis")
            }
          })
        )
        yield* Effect.sleep("5 seconds")
        yield* redisScript("stop")
        const stoppedAt = Date.now()
        yield* Effect.sleep("3 seconds")
        const during = yield* pgCount(d)
        yield* Effect.sleep("27 seconds")
        const stalled = yield* pgCount(d)
        assert.isAtMost(stalled - during, 40 * 3 * 4, "writes stopped while Redis was down (the batches waited)")
        yield* redisScript("start")
        const restartedAt = Date.now()
        const outageMs = restartedAt - stoppedAt
        assert.isUndefined(worker.pollUnsafe(), "the worker stayed up")
        yield* Fiber.join(producer)
        yield* eventually(`${events.length} rows`, allWritten(d, events.length), worker, "90 seconds")
        const caughtUpMs = Date.now() - restartedAt
        yield* eventually("offsets committed", committedToEnd(d), worker)
        yield* Fiber.interrupt(worker)
        const { missing } = yield* verify(d, sent, 20)
        assert.strictEqual(missing, 0, "no event was enriched with the defaults because of the outage")
        yield* Effect.logInfo(
          `Redis outage: ${outageMs} ms; rows written during it: ${stalled - during}; caught up ${caughtUpMs} ms after the restart (producer ran until then); all ${sent.size} events written once to each database, enriched`
        )
      }).pipe(
        Effect.ensuring(
          Effect.andThen(
            redisScript("start"),
            Effect.sync(() => rmSync(`${repoRoot}.services/redis-${outagePort}/dump.rdb`, { force: true }))
          )
        )
      ),
    {
      timeout: 180_000,
      redis: () => {
        // Its own Redis, started before the test's clients connect to it.
        Effect.runSync(redisScript("start"))
        outageRedisStarted = true
        return Redis.layer({ url: `redis://127.0.0.1:${outagePort}` })
      }
    }
  )
})
