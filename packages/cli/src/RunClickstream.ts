/**
 * `sluice run clickstream-sessions`: the clickstream lab (processors' ClickstreamSessions.ts) as a worker: events
 * from Kafka, profiles from Redis (REDIS_URL), rows to ClickHouse (CLICKHOUSE_URL) and Postgres (DATABASE_URL),
 * tables created at startup when missing.
 *
 * Built by a function, called by Run.ts where it registers the subcommand: this module uses Run.ts's flags and
 * helpers and Run.ts imports it, so nothing here may run before Run.ts has finished loading.
 */
import { Effect } from "effect"
import { type Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Run from "./Run.ts"

/** The flags of `sluice run clickstream-sessions`. */
const config = () => {
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
  return { ...Run.common, redisDown, batchSize, cacheEntries, cacheTtlMs: cacheTtl }
}

export type Options = Command.Command.Config.Infer<ReturnType<typeof config>>

/** The worker (RunClickstreamWorker.ts, with Redis, ClickHouse, Postgres and the topology) is imported when it runs. */
export function command() {
  return Flags.command("clickstream-sessions", config(), (o) =>
    Effect.flatMap(
      Effect.promise(() => import("./RunClickstreamWorker.ts")),
      (worker) => worker.run(o)
    )
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
