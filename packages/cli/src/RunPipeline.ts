/**
 * `sluice run --pipeline FILE`: a pipeline declared in JSON (processors' Pipeline.ts) as a worker, with the flags of
 * every `sluice run`. What the file says, and what the flags change:
 *
 * - brokers: `--brokers` (or `SLUICE_BROKERS`), else the file's `bootstrap_servers`, else 127.0.0.1:9092;
 * - group: `--group`, else `--topic-prefix` + `group_id` (which defaults to `pipeline_name`);
 * - `--topic-prefix P` also prefixes the Redis keys (P + `cache_prefix`) and the table (P as identifier characters,
 *   `-` becoming `_`), as it does for clickstream-sessions: one flag isolates a deployment;
 * - `auto_offset_reset` is where a group without committed offsets starts, `max_poll_records` the most records a
 *   task processes in one step (the runner's `maxStepRecords`);
 * - Redis from `REDIS_URL` (only with an enrichment), ClickHouse from `CLICKHOUSE_URL` or Postgres from
 *   `DATABASE_URL` (Redacted, as events-to-postgres reads it); the table is created at startup when absent, and one
 *   that does not fit stops the start with its columns' names (exit code 2);
 * - `--guarantee exactly_once` is what `Pipeline.delivery` says: with a Postgres output and no aggregation, the
 *   rows and offsets in one Postgres transaction (the runner itself at-least-once, tasks starting from
 *   `sluice_offsets`), otherwise Kafka's transaction.
 *
 * Called by Run.ts, which imports this module: nothing here may use Run.ts before it has finished loading.
 */
import * as CachedLookup from "@sluice/core/CachedLookup"
import * as ClickHouse from "@sluice/core/ClickHouse"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import * as Postgres from "@sluice/core/Postgres"
import * as Redis from "@sluice/core/Redis"
import * as RedisLookup from "@sluice/core/RedisLookup"
import * as Runner from "@sluice/core/Runner"
import type * as Sink from "@sluice/core/Sink"
import { defaultCache } from "@sluice/processors/ClickstreamSessions"
import * as Pipeline from "@sluice/processors/Pipeline"
import * as PipelineClickHouse from "@sluice/processors/PipelineClickHouse"
import * as PipelinePostgres from "@sluice/processors/PipelinePostgres"
import type * as PipelineSpec from "@sluice/processors/PipelineSpec"
import * as PipelineSummary from "@sluice/processors/PipelineSummary"
import * as PipelineTable from "@sluice/processors/PipelineTable"
import { Effect, Layer, Metric, Option } from "effect"
import type { Command } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as PipelineCommand from "./Pipeline.ts"
import * as Run from "./Run.ts"

export type RunFlags = Omit<Command.Command.Config.Infer<typeof Run.common>, "brokers"> & {
  /** `--brokers` or `SLUICE_BROKERS`, when either is set. */
  readonly brokers: Option.Option<string>
  readonly stateDir: Option.Option<string>
}

/** Brokers when neither the flags nor the file name any. */
export const defaultBrokers = Flags.defaultBrokers

/** Rows written, late events and missing profiles, for the progress line. */
const progress = (sink: string, inputs: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const rows = yield* Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink }))
    const late = yield* Effect.forEach(inputs, (topic) => Metric.value(Metrics.lateFor(topic)))
    const missing = yield* Metric.value(Pipeline.profilesMissing)
    const invalid = yield* Metric.value(Pipeline.profilesInvalid)
    return `rows=${rows.count} late=${late.reduce((n, s) => n + s.count, 0)} profiles-missing=${missing.count} profiles-invalid=${invalid.count}`
  })

/** Where a run of `p` reads and how its runner is set, from the file and the flags. */
export const resolve = (p: PipelineSpec.Pipeline, o: RunFlags) => {
  const group = Option.getOrElse(o.group, () => `${o.prefix}${p.groupId}`)
  return {
    brokers: Option.getOrElse(o.brokers, () => p.brokers?.join(",") ?? defaultBrokers),
    group,
    options: (topology: string): Runner.RunOptions => ({
      ...Run.runOptions(
        { ...o, guarantee: Pipeline.delivery(p, o.guarantee).runner, group: Option.some(group) },
        topology
      ),
      fromBeginning: p.autoOffsetReset === "earliest",
      maxStepRecords: p.maxPollRecords,
      // A task holds more than one step's worth before it pauses its partitions.
      maxHeldRecords: Math.max(20_000, 2 * p.maxPollRecords),
      stateStore: Run.stateStore(o.stateDir)
    })
  }
}

/** What a run needs of its output's database: its rows' dialect, the sink, the table's check and the client. */
interface Output<V, R, E, LE> {
  readonly dialect: PipelineTable.Dialect<V>
  readonly sink: Sink.Sink<PipelineTable.Row<V>, R>
  readonly ensure: Effect.Effect<void, E, R>
  readonly layer: Layer.Layer<R, LE>
}

export const run = (path: string, o: RunFlags) =>
  Effect.gen(function* () {
    const p = yield* PipelineCommand.load(path)
    const names = Pipeline.named(p, o.prefix)
    const { brokers, group, options } = resolve(p, o)
    const { sinkOffsets } = Pipeline.delivery(p, o.guarantee)
    const runOn = <V, R, E, LE>(output: Output<V, R, E, LE>) => {
      const start = (redis: Redis.RedisShape | undefined) =>
        Effect.gen(function* () {
          yield* output.ensure
          const { partitions } = yield* (yield* Kafka).describeTopic(names.topics[0])
          const profiles =
            redis === undefined
              ? undefined
              : CachedLookup.make(
                  RedisLookup.values(redis, {
                    key: (k: string) => names.profileKeyPrefix + k,
                    decode: Pipeline.decodeProfile
                  }),
                  defaultCache
                )
          const topology = Pipeline.topology(p, names, {
            sink: output.sink,
            dialect: output.dialect,
            profiles,
            partitions,
            startFromSink: sinkOffsets
          })
          return yield* Runner.run(topology, options(topology.name)).pipe(
            Run.withProgress(progress(output.sink.name, names.topics))
          )
        })
      // Redis is connected to only when the pipeline looks profiles up.
      const withRedis =
        p.enrichment === undefined
          ? start(undefined)
          : Effect.flatMap(Redis.Redis, start).pipe(Effect.provide(Redis.layerConfig))
      return withRedis.pipe(
        Effect.provide(
          Layer.mergeAll(Flags.kafkaLayer(brokers, { waitForBroker: "forever" }), output.layer, Run.httpLayer(o))
        )
      )
    }
    // Said before anything connects, so that a failure to reach something comes after what it was meant to be.
    yield* Effect.logInfo(
      [
        `running pipeline ${p.name} from ${path} (${o.guarantee}):`,
        ...PipelineSummary.summary(p, names, { brokers, group, guarantee: o.guarantee })
      ].join("\n  ")
    )
    if (p.output.type === "clickhouse")
      return yield* runOn({
        dialect: PipelineTable.clickhouse,
        sink: PipelineClickHouse.sink(p, names.table),
        ensure: PipelineClickHouse.ensure(p, names.table),
        layer: ClickHouse.layerConfig
      })
    const relations = PipelinePostgres.relations(p.output.schema, names.table)
    return yield* runOn({
      dialect: PipelineTable.postgres,
      sink: PipelinePostgres.sink(p, relations, { offsetsGroup: sinkOffsets ? group : undefined }),
      ensure: PipelinePostgres.ensure(p, relations, { offsets: sinkOffsets }),
      // DATABASE_URL, as events-to-postgres reads it: Redacted, never logged.
      layer: Postgres.layerConfig
    })
  })
