/**
 * The `sluice run clickstream-sessions` worker (RunClickstream.ts declares the command and its flags): Redis,
 * ClickHouse, Postgres, the tables and the topology. Imported when the command runs, so that other commands do not
 * load those clients' modules.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as Metrics from "@sluice/core/Metrics"
import * as Postgres from "@sluice/core/Postgres"
import * as Redis from "@sluice/core/Redis"
import * as Runner from "@sluice/core/Runner"
import * as ClickstreamSessions from "@sluice/processors/ClickstreamSessions"
import * as ClickstreamTables from "@sluice/processors/ClickstreamTables"
import { Duration, Effect, Layer, Metric } from "effect"
import * as Flags from "./Flags.ts"
import * as Run from "./Run.ts"
import type { Options } from "./RunClickstream.ts"

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

export const run = (o: Options) => {
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
