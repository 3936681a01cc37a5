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
 * - Redis from `REDIS_URL` (only with an enrichment), ClickHouse from `CLICKHOUSE_URL`; the table is created at
 *   startup when absent, and one whose columns do not fit stops the start with their names.
 *
 * Called by Run.ts, which imports this module: nothing here may use Run.ts before it has finished loading.
 */
import * as CachedLookup from "@sluice/core/CachedLookup"
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as ClickHouseSink from "@sluice/core/ClickHouseSink"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import * as Redis from "@sluice/core/Redis"
import * as RedisLookup from "@sluice/core/RedisLookup"
import * as Runner from "@sluice/core/Runner"
import { defaultCache } from "@sluice/processors/ClickstreamSessions"
import * as Pipeline from "@sluice/processors/Pipeline"
import type * as PipelineSpec from "@sluice/processors/PipelineSpec"
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
export const defaultBrokers = "127.0.0.1:9092"

/** Rows written, late events and missing profiles, for the progress line. */
const progress = (sink: string, inputs: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const rows = yield* Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink }))
    const late = yield* Effect.forEach(inputs, (topic) => Metric.value(Metrics.lateFor(topic)))
    const missing = yield* Metric.value(Pipeline.profilesMissing)
    return `rows=${rows.count} late=${late.reduce((n, s) => n + s.count, 0)} profiles-missing=${missing.count}`
  })

/** Where a run of `p` reads and how its runner is set, from the file and the flags. */
export const resolve = (p: PipelineSpec.Pipeline, o: RunFlags) => {
  const group = Option.getOrElse(o.group, () => `${o.prefix}${p.groupId}`)
  return {
    brokers: Option.getOrElse(o.brokers, () => p.brokers?.join(",") ?? defaultBrokers),
    group,
    options: (topology: string): Runner.RunOptions => ({
      ...Run.runOptions({ ...o, group: Option.some(group) }, topology),
      fromBeginning: p.autoOffsetReset === "earliest",
      maxStepRecords: p.maxPollRecords,
      // A task holds more than one step's worth before it pauses its partitions.
      maxHeldRecords: Math.max(20_000, 2 * p.maxPollRecords),
      stateStore: Run.stateStore(o.stateDir)
    })
  }
}

export const run = (path: string, o: RunFlags) =>
  Effect.gen(function* () {
    const p = yield* PipelineCommand.load(path)
    const names = Pipeline.named(p, o.prefix)
    const { brokers, group, options } = resolve(p, o)
    const sink = ClickHouseSink.make<ClickHouse.Row>({
      table: names.table,
      batchSize: p.output.batchSize,
      flushInterval: `${p.output.flushIntervalMs} millis`
    })
    const start = (redis: Redis.RedisShape | undefined) =>
      Effect.gen(function* () {
        yield* PipelineTable.ensure(p, names.table)
        const { partitions } = yield* (yield* Kafka).describeTopic(names.topics[0])
        const profiles =
          redis === undefined
            ? undefined
            : CachedLookup.make(
                RedisLookup.strings(redis, {
                  key: (k: string) => names.profileKeyPrefix + k,
                  decode: Pipeline.decodeProfile
                }),
                defaultCache
              )
        const topology = Pipeline.topology(p, names, { sink, profiles, partitions })
        return yield* Runner.run(topology, options(topology.name)).pipe(
          Run.withProgress(progress(sink.name, names.topics))
        )
      })
    // Said before anything connects, so that a failure to reach something comes after what it was meant to be.
    yield* Effect.logInfo(
      [
        `running pipeline ${p.name} from ${path} (${o.guarantee}):`,
        ...Pipeline.summary(p, names, { brokers, group })
      ].join("\n  ")
    )
    // Redis is connected to only when the pipeline looks profiles up.
    const withRedis =
      p.enrichment === undefined
        ? start(undefined)
        : Effect.flatMap(Redis.Redis, start).pipe(Effect.provide(Redis.layerConfig))
    return yield* withRedis.pipe(
      Effect.provide(
        Layer.mergeAll(
          Flags.kafkaLayer(brokers, { waitForBroker: "forever" }),
          ClickHouse.layerConfig,
          Run.httpLayer(o)
        )
      )
    )
  })
