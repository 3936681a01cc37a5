/**
 * One end-to-end run of the click-enrichment join, shared by `sluice demo` and `sluice bench join`: fresh topics,
 * profiles produced, the join strategy's layer built (table loaded, Redis filled), the topology started, clicks
 * produced while it runs, and every enriched record read back and verified against the generator's truth.
 *
 * Timing: `elapsedMs` runs from the first click consumed to the moment the last enriched record is acknowledged
 * (the runtime counts an output only after its ack); per-event latency runs from a click's produce timestamp (set
 * here when its chunk is sent) to its enriched record's produce timestamp, read back from the output topic.
 *
 * In live mode the clicks are produced once the worker reports ready (joined its group, assigned its tasks).
 *
 * An enriched record is matched to its click by the click's `timestamp`, which the enriched value carries and which
 * is unique among the generated clicks (checked); the topology's provenance headers are not needed (they are off by
 * default, see `ClickEnrichment.clickHeaders`).
 */
import { Health } from "@sluice/core/Health"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import * as Reader from "@sluice/core/Reader"
import * as Runner from "@sluice/core/Runner"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Effect, Fiber, Layer, Result, Schedule, Schema, Stream } from "effect"
import * as ClickData from "./ClickData.ts"
import * as ClickEnrichment from "./ClickEnrichment.ts"

export interface JoinRunOptions<E> {
  readonly strategy: string
  readonly events: number
  readonly users: number
  readonly seed?: number
  readonly topics: ClickEnrichment.Topics
  readonly lookup: Layer.Layer<ClickEnrichment.ProfileLookup, E, Kafka>
  readonly unknownUsers?: ClickEnrichment.UnknownUserPolicy
  /** Called every couple of seconds with the number of enriched records so far. */
  readonly onProgress?: (done: number, total: number) => Effect.Effect<void>
  /** Produce every click before the topology starts (throughput), instead of while it runs (latency). */
  readonly backlog?: boolean
  /** Give up (and fail the run) after this long. Default 30 minutes. */
  readonly timeoutMs?: number
  /** Run the topology with its provenance headers on (`ClickEnrichment.topology`). Default false. */
  readonly provenance?: boolean
  /** Live mode: produce this many clicks per second, a send every 10 ms (default: chunks of 2,000, at once). */
  readonly ratePerSec?: number
}

export interface JoinReport {
  readonly strategy: string
  readonly events: number
  readonly users: number
  readonly verification: ClickData.Verification
  readonly correct: boolean
  readonly loadMs: number
  readonly elapsedMs: number
  readonly eventsPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** The 99.9th percentile and the largest latency: the tail's shape beyond p99. */
  readonly p999Ms: number
  readonly maxMs: number
  readonly peakRssMb: number
  /** The first enriched records, for printing. */
  readonly sample: ReadonlyArray<ClickEnrichment.EnrichedClick>
}

export class JoinRunFailed extends Schema.TaggedError<JoinRunFailed>()("JoinRunFailed", { reason: Schema.String }) {
  override get message(): string {
    return this.reason
  }
}

export const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

/** A run's report from what it measured: `latencies` sorted ascending, `outputs` the enriched records read back. */
export const report = (measured: {
  readonly strategy: string
  readonly events: number
  readonly users: number
  readonly verification: ClickData.Verification
  readonly loadMs: number
  readonly elapsedMs: number
  readonly latencies: ReadonlyArray<number>
  readonly peakRssMb: number
  readonly outputs: ReadonlyArray<{ readonly value: ClickEnrichment.EnrichedClick }>
}): JoinReport => {
  const { latencies } = measured
  return {
    strategy: measured.strategy,
    events: measured.events,
    users: measured.users,
    verification: measured.verification,
    correct: ClickData.isCorrect(measured.verification),
    loadMs: measured.loadMs,
    elapsedMs: measured.elapsedMs,
    eventsPerSec: Math.round((measured.events / measured.elapsedMs) * 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    p999Ms: percentile(latencies, 99.9),
    maxMs: latencies.length === 0 ? 0 : latencies[latencies.length - 1]!,
    peakRssMb: measured.peakRssMb,
    sample: measured.outputs.slice(0, 20).map((o) => o.value)
  }
}

const sendChunk = 2_000

export const run = <E>(options: JoinRunOptions<E>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const { topics } = options
      yield* kafka.createTopics([
        ClickEnrichment.profilesSpec(topics),
        { name: topics.clicks.name, partitions: 3 },
        { name: topics.enriched.name, partitions: 3 }
      ])
      yield* kafka.send(ClickData.generateProfiles(options.users, topics))

      let peakRss = process.memoryUsage().rss
      yield* Effect.forkScoped(
        Effect.sync(() => {
          peakRss = Math.max(peakRss, process.memoryUsage().rss)
        }).pipe(Effect.repeat(Schedule.spaced("100 millis")))
      )

      const loadStarted = Date.now()
      const lookupContext = yield* Layer.build(options.lookup)
      const loadMs = Date.now() - loadStarted

      let firstConsumedAt = 0
      const base = ClickEnrichment.topology({
        topics,
        provenance: options.provenance ?? false,
        ...(options.unknownUsers === undefined ? {} : { unknownUsers: options.unknownUsers })
      })
      const topology = Topology.tapBatches(base, () =>
        Effect.sync(() => {
          if (firstConsumedAt === 0) firstConsumedAt = Date.now()
        })
      )
      // Clicks are made as they are produced, and only when each was produced is kept (by its index): the process
      // that measures holds little beside the topology, even for millions of clicks.
      const clickOptions = { count: options.events, users: options.users, seed: options.seed ?? 7, topics }
      const source = ClickData.clickSource(clickOptions)
      const producedAt = new Float64Array(options.events)
      let produced = 0
      /** Produces the next `count` clicks: in chunks of `sendChunk` at once, or paced at `rate` per second. */
      const produceClicks = (count: number, rate: number | undefined) =>
        Effect.gen(function* () {
          // Paced: one send every `tick` ms with the clicks due by then, so the load is steady.
          const tick = 10
          const started = Date.now()
          const from = produced
          const to = Math.min(options.events, produced + count)
          while (produced < to) {
            let n = sendChunk
            if (rate !== undefined) {
              const due = Math.min(to, from + Math.floor(((Date.now() - started + tick) * rate) / 1000))
              if (due <= produced) {
                yield* Effect.sleep(`${tick} millis`)
                continue
              }
              n = due - produced
            }
            const now = Date.now()
            const chunk = source.take(Math.min(n, to - produced)).map((r) => ({ ...r, timestamp: now }))
            yield* kafka.send(chunk)
            producedAt.fill(now, produced, produced + chunk.length)
            produced += chunk.length
          }
        })
      // Backlog: every click is in the topic before the topology starts, so elapsed time is the topology's own
      // throughput. Live (default): clicks are produced while it runs, so latency measures the pipeline.
      if (options.backlog === true) yield* produceClicks(options.events, undefined)
      const before = yield* Metrics.totals
      const runner = yield* Runner.run(topology, {
        groupId: `${topics.clicks.name}-${options.strategy}-${Date.now()}`,
        commitInterval: "500 millis"
      }).pipe(Effect.provideContext(lookupContext), Effect.forkScoped)
      if (options.backlog !== true) {
        // Live: the worker is running (in its group, assigned) before the first click, as it would be in
        // production; otherwise the first clicks' latency would be the group join's.
        const health = yield* Health
        const deadline = Date.now() + 60_000
        while (!(yield* health.report).ready) {
          if (runner.pollUnsafe() !== undefined || Date.now() > deadline) break
          yield* Effect.sleep("10 millis")
        }
        if (options.ratePerSec === undefined) yield* produceClicks(options.events, undefined)
        else {
          // Paced: the first click goes through alone, so that what is measured is the steady state, not the first
          // produce to each topic (metadata, connections) and the first steps of code not yet compiled.
          yield* produceClicks(1, undefined)
          while ((yield* Metrics.totals).out - before.out < 1 && runner.pollUnsafe() === undefined) {
            yield* Effect.sleep("5 millis")
          }
          yield* produceClicks(options.events - 1, options.ratePerSec)
        }
      }

      const deadline = Date.now() + (options.timeoutMs ?? 30 * 60_000)
      let lastProgress = Date.now()
      let doneAt = 0
      while (doneAt === 0) {
        const now = yield* Metrics.totals
        const done = now.out - before.out
        if (done >= options.events) doneAt = Date.now()
        else {
          if (runner.pollUnsafe() !== undefined) {
            const exit = yield* Fiber.await(runner)
            return yield* Effect.fail(new JoinRunFailed({ reason: `the topology stopped early: ${String(exit)}` }))
          }
          if (Date.now() > deadline)
            return yield* Effect.fail(
              new JoinRunFailed({ reason: `timed out with ${done}/${options.events} enriched` })
            )
          if (options.onProgress && Date.now() - lastProgress > 2_000) {
            lastProgress = Date.now()
            yield* options.onProgress(done, options.events)
          }
          yield* Effect.sleep("2 millis")
        }
      }
      yield* Fiber.interrupt(runner)
      const elapsedMs = Math.max(1, doneAt - firstConsumedAt)

      const outputs: Array<{ source: string; value: ClickEnrichment.EnrichedClick }> = []
      const latencies: Array<number> = []
      yield* Reader.readToEnd(topics.enriched.name).pipe(
        Stream.runForEach((records) =>
          Effect.sync(() => {
            for (const record of records) {
              const decoded = Topic.decode(topics.enriched, record)
              if (Result.isFailure(decoded)) continue
              const { value } = decoded.success
              outputs.push({ source: String(value.timestamp), value })
              const index = source.indexOf(value.timestamp)
              if (index >= 0 && producedAt[index]! > 0) latencies.push(record.timestamp - producedAt[index]!)
            }
          })
        )
      )
      latencies.sort((a, b) => a - b)
      // The truth, made again from the seed now that the measuring is over: each click by its timestamp.
      const verification = ClickData.verify(ClickData.sentByTimestamp(clickOptions), outputs)
      return report({
        strategy: options.strategy,
        events: options.events,
        users: options.users,
        verification,
        loadMs,
        elapsedMs,
        latencies,
        peakRssMb: Math.round(peakRss / 1024 / 1024),
        outputs
      })
    })
  )
