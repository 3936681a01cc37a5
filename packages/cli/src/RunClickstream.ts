/**
 * `sluice run clickstream-sessions`: the clickstream lab (processors' ClickstreamSessions.ts) as a worker: events
 * from Kafka, profiles from Redis (REDIS_URL), rows to ClickHouse (CLICKHOUSE_URL) and Postgres (DATABASE_URL),
 * tables created at startup when missing.
 *
 * Built by a function, called by Run.ts where it registers the subcommand: this module uses Run.ts's flags and
 * helpers and Run.ts imports it, so nothing here may run before Run.ts has finished loading.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as Metrics from "@sluice/core/Metrics"
import * as Postgres from "@sluice/core/Postgres"
import * as Redis from "@sluice/core/Redis"
import * as Runner from "@sluice/core/Runner"
import * as ClickstreamSessions from "@sluice/processors/ClickstreamSessions"
import * as ClickstreamTables from "@sluice/processors/ClickstreamTables"
import { Duration, Effect, Layer, Metric } from "effect"
import { Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Run from "./Run.ts"

/** Rows written per sink and events enriched with the default profile, for the progress line. */
const progress = (sinks: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const parts: Array<string> = []
    for (const sink of sinks) {
      const s = yield* Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink }))
      parts.push(`${sink}=${s.count}`)
    }
    const missing = yield* Metric.value(ClickstreamSessions.profilesMissing)
    return `${parts.join(" ")} profiles-missing=${missing.count}`
  })

export function command() {
  const redisDown = Flag.Literals("redis-down", ["wait", "defaults"]).pipe(
    Flag.withDescription(
      "while Redis is unreachable: wait (default: the batch is retried, 100 ms doubling to 5 s, for up to 2 minutes, then the worker stops; nothing is lost), or defaults (enrich with cached profiles or the defaults, counted as missing)"
    ),
    Flag.withDefault("wait")
  )
  const batchSize = Flags.int("batch-size", {
    description: "rows per INSERT into each database: a task's rows are written once it holds this many",
    min: 1,
    max: 100_000,
    default: 1_000
  })
  const cacheEntries = Flags.int("profile-cache-entries", {
    description: "profiles kept in the local cache in front of Redis",
    min: 1,
    default: 10_000
  })
  const cacheTtl = Flags.int("profile-cache-ttl-ms", {
    description: "how long a cached profile (or its absence) is served before Redis is asked again",
    min: 1,
    max: 86_400_000,
    default: 60_000
  })
  return Flags.command(
    "clickstream-sessions",
    { ...Run.common, redisDown, batchSize, cacheEntries, cacheTtlMs: cacheTtl },
    (o) => {
      const topics = ClickstreamSessions.named(o.prefix)
      const tables = ClickstreamTables.tables(o.prefix)
      return Effect.gen(function* () {
        yield* ClickstreamTables.setup(tables)
        const sinks = ClickstreamTables.sinks(tables, { batchSize: o.batchSize })
        const topology = ClickstreamSessions.topology({ topics, sinks, onLookupFailure: o.redisDown })
        const options = Run.runOptions(o, topology.name)
        yield* Effect.logInfo(
          `running clickstream-sessions on ${o.brokers} in group ${options.groupId} (${o.guarantee}): ${topics.events.name} + Redis ${topics.profileKeyPrefix}* -> ClickHouse ${tables.clickhouse}, Postgres ${tables.postgres} (view ${tables.sessionsView}); Redis down: ${o.redisDown}`
        )
        return yield* Runner.run(topology, options).pipe(
          Run.withProgress(progress([sinks.clickhouse.name, sinks.postgres.name]))
        )
      }).pipe(
        Effect.provide(
          Layer.mergeAll(
            Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }),
            ClickstreamSessions.UserProfiles.redis({
              keyPrefix: topics.profileKeyPrefix,
              cache: { maxEntries: o.cacheEntries, ttl: Duration.millis(o.cacheTtlMs) }
            }).pipe(Layer.provide(Redis.layerConfig)),
            ClickHouse.layerConfig,
            Postgres.layerConfig,
            Run.metricsLayer(o.metricsPort)
          )
        )
      )
    }
  ).pipe(
    Run.describedWithExitCodes(
      "Enrich click events with Redis profiles and session metrics (a store), into ClickHouse and Postgres",
      "Reads --topic-prefix + clickstream (keyed by session_id; `sluice produce clickstream`), profiles from Redis keys",
      "user:profile:<user_id> (`sluice produce user-profiles-redis`), writes ClickHouse clickstream_events and Postgres",
      "clickstream_session_events (view clickstream_sessions), one row per input offset in each. An input offset is",
      "committed once both hold its rows; outages of either are retried for up to 2 minutes, then the worker stops."
    )
  )
}
