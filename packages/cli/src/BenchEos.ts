/**
 * `sluice bench eos`: what exactly-once costs. The counting topology (processors/Counting.ts: its changelog-backed
 * store by default, or `--state none`, counting in a plain Map with no changelog) on the same input under
 * at-least-once and then exactly-once, run by `Runner.run` in this process against the broker, each run on fresh
 * topics and a fresh group. Every run starts with a warm-up (one record per task, until each one's output is
 * visible: the group joined, the tasks' producers open, the reader reading), then two runs per guarantee:
 *
 * - throughput: --events records produced as fast as this process can (much faster than the topology counts, so
 *   it works through a backlog). events/s is --events divided by the time from the first batch the topology
 *   processes to the moment the last output is visible, "visible" meaning delivered to a read_committed reader
 *   (`Kafka.read`, in this process). Not from the first output visible: under exactly-once that waits for the first
 *   commit, and the window would leave the first transaction's work out.
 * - latency: --latency-events records produced at --rate per second. An event's latency is the moment its output
 *   reached the read_committed reader minus the input record's timestamp, which this process sets just before the
 *   send: the produce request, the worker's fetch wait, the processing, the output and changelog writes (acks=all),
 *   under exactly-once the wait for the transaction to commit (up to the commit interval, 100 ms by default) and the
 *   commit itself, and the reader's fetch wait (up to 50 ms). In a throughput run it would mostly measure the time
 *   a record waited in the backlog, so it is measured apart.
 *
 * Every run is audited (CountingAudit.ts): under exactly-once a duplicate, a missing output or a wrong count fails
 * the benchmark, whatever its speed; under at-least-once duplicates are reported (a run without a crash has none).
 * The cost is the exactly-once throughput over the at-least-once one; the goal is at most 10% slower (>= 0.9).
 * With --rounds, both guarantees run that many times, alternating, and the cost is taken from the medians. A run
 * that fails before anything is measured (its topics not created, its topology not started) is started again on
 * fresh topics, at most 3 times, and stderr says so.
 */

import { loadavg } from "node:os"
import type { Guarantee } from "@sluice/core/Delivery"
import { Kafka } from "@sluice/core/Kafka"
import { bytes, type ProducerRecord, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Topology from "@sluice/core/Topology"
import * as Counting from "@sluice/processors/Counting"
import * as CountingAudit from "@sluice/processors/CountingAudit"
import { percentile } from "@sluice/processors/JoinRun"
import { Console, Effect, Fiber, Option, Schema, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as BenchEosReport from "./BenchEosReport.ts"
import * as Flags from "./Flags.ts"

export class EosBenchFailed extends Schema.TaggedError<EosBenchFailed>()("EosBenchFailed", {
  reason: Schema.String,
  /** The run failed before it measured anything (its topology did not start): the run can be done again. */
  beforeMeasuring: Schema.Boolean
}) {
  override get message(): string {
    return this.reason
  }
}

/** How often a run whose topology failed to start is started again on fresh topics. */
const startAttempts = 3

export interface Settings {
  readonly events: number
  readonly latencyEvents: number
  readonly rate: number
  readonly keys: number
  readonly partitions: number
  readonly state: "store" | "none"
  readonly commitIntervalMs: Option.Option<number>
  readonly rounds: number
  readonly json: boolean
}

const say = (line: string) => Console.error(`bench eos: ${line}`)

/** Polls `check` until it holds, failing if the runner stopped or after `timeoutMs`. */
const awaitOrFail = Effect.fnUntraced(function* <E, R>(
  what: string,
  runner: Fiber.Fiber<never, unknown>,
  check: Effect.Effect<boolean, E, R>,
  onProgress: Effect.Effect<void>,
  beforeMeasuring = false,
  timeoutMs = 10 * 60_000
) {
  const deadline = Date.now() + timeoutMs
  let reported = Date.now()
  while (!(yield* check)) {
    if (runner.pollUnsafe() !== undefined) {
      const exit = yield* Fiber.await(runner)
      return yield* new EosBenchFailed({
        reason: `the topology stopped before ${what}: ${String(exit)}`,
        beforeMeasuring
      })
    }
    if (Date.now() > deadline)
      return yield* new EosBenchFailed({ reason: `timed out waiting until ${what}`, beforeMeasuring })
    if (Date.now() - reported > 2_000) {
      reported = Date.now()
      yield* onProgress
    }
    yield* Effect.sleep("5 millis")
  }
})

/** One run on fresh topics: produce (before or during), run the topology, watch the output read_committed. */
const measure = Effect.fnUntraced(function* (
  round: number,
  guarantee: Guarantee,
  phase: BenchEosReport.Phase,
  settings: Settings,
  runId: string,
  attempt: number
) {
  const kafka = yield* Kafka
  const prefix = `bench-eos-${runId}-${round}-${guarantee === "exactly_once" ? "eos" : "alos"}-${phase}-${attempt}-`
  const topics = Counting.named(prefix)
  const group = `${prefix}counts`
  const { partitions, keys } = settings
  const events = phase === "throughput" ? settings.events : settings.latencyEvents
  const label = `round ${round}, ${guarantee} ${phase}`
  yield* kafka
    .createTopics([
      { name: topics.input.name, partitions },
      { name: topics.output.name, partitions }
    ])
    .pipe(
      Effect.mapError(
        (e) => new EosBenchFailed({ reason: `creating the run's topics failed: ${e.message}`, beforeMeasuring: true })
      )
    )

  // Per input partition, when each measured record was produced, by offset (a fresh topic's offsets start at 0).
  const timestamps = Array.from({ length: partitions }, () => [] as Array<number>)
  const inputs: Array<CountingAudit.Input> = []
  /** Produces `records`, stamped with the time of the send; `timed` ones count in the latency. */
  const produce = Effect.fnUntraced(function* (records: ReadonlyArray<ProducerRecord>, timed: boolean) {
    const at = Date.now()
    const written = yield* kafka.send(records.map((r) => ({ ...r, timestamp: at })))
    for (let i = 0; i < written.length; i++) {
      const m = written[i]!
      if (timed) timestamps[m.partition]![m.offset] = at
      inputs.push({ partition: m.partition, offset: m.offset, key: text(records[i]!.key ?? new Uint8Array()) })
    }
  })
  const generated = (from: number, count: number) => Counting.generate({ count, keys, from, topic: topics.input.name })

  // The read_committed reader: when each output became visible, and the outputs themselves for the audit.
  const outputs: Array<Counting.Written> = []
  const latencies: Array<number> = []
  const seen = new Set<string>()
  let firstVisible = 0
  let lastVisible = 0
  const reader = yield* kafka.read({ topics: [topics.output.name], from: "earliest", maxWaitMs: 50 }).pipe(
    Stream.runForEach((batch) =>
      Effect.sync(() => {
        const now = Date.now()
        const decoded = Counting.decodeOutputs(batch.records, topics)
        for (const o of decoded) {
          outputs.push(o)
          const id = `${o.task}@${o.offset}`
          if (seen.has(id)) continue
          seen.add(id)
          const at = timestamps[o.task]?.[o.offset]
          if (at !== undefined) latencies.push(now - at)
        }
        if (decoded.length > 0) {
          if (measuring && firstVisible === 0) firstVisible = now
          lastVisible = now
        }
      })
    ),
    Effect.forkScoped
  )

  const commitIntervalMs = Option.getOrElse(settings.commitIntervalMs, () =>
    BenchEosReport.runtimeDefaultCommitMs(guarantee)
  )
  // The first batch processed after the warm-up: where a throughput run's clock starts.
  let measuring = false
  let firstBatchAt = 0
  const topology = Topology.tapBatches(
    Counting.topology({ topics, worker: `bench-${guarantee}`, partitions, state: settings.state }),
    () =>
      Effect.sync(() => {
        if (measuring && firstBatchAt === 0) firstBatchAt = Date.now()
      })
  )
  yield* say(`${label}: running the counting topology (store: ${settings.state}, commit every ${commitIntervalMs} ms)`)
  const runner = yield* Runner.run(topology, {
    groupId: group,
    guarantee,
    ...(Option.isSome(settings.commitIntervalMs) ? { commitInterval: `${commitIntervalMs} millis` } : {})
  }).pipe(Effect.forkScoped)
  const expected = events + partitions
  const progress = Effect.suspend(() => say(`${label}: ${seen.size}/${expected} outputs visible`))
  // One record per task first, until all of their outputs are visible: the group is joined, every task's producer
  // open and its store restored, the reader reading. No measured record waits for any of that.
  yield* produce(
    Array.from({ length: partitions }, (_, partition) => ({
      topic: topics.input.name,
      partition,
      key: bytes("warm-up"),
      value: bytes("warm-up")
    })),
    false
  )
  yield* awaitOrFail(
    "every task is running",
    runner,
    Effect.sync(() => seen.size >= partitions),
    progress,
    true
  )
  measuring = true
  if (phase === "throughput") {
    // As fast as this process can produce: far faster than the topology counts, so it works through a backlog.
    yield* say(`${label}: producing ${events} records`)
    for (let from = 0; from < events; from += 5_000)
      yield* produce(generated(from, Math.min(5_000, events - from)), false)
  } else {
    yield* say(`${label}: producing ${events} records at ${settings.rate}/s`)
    const tickMs = 20
    const perTick = Math.max(1, Math.round((settings.rate * tickMs) / 1000))
    const started = Date.now()
    for (let from = 0; from < events; from += perTick) {
      // Paced against the start, so a slow send is caught up rather than lowering the rate.
      const wait = started + (from / settings.rate) * 1000 - Date.now()
      if (wait > 0) yield* Effect.sleep(`${wait} millis`)
      yield* produce(generated(from, Math.min(perTick, events - from)), true)
    }
  }
  yield* awaitOrFail(
    `every output is visible (${expected})`,
    runner,
    Effect.sync(() => seen.size >= expected),
    progress
  )
  yield* Fiber.interrupt(runner)
  yield* Fiber.interrupt(reader)

  latencies.sort((a, b) => a - b)
  const audit = CountingAudit.audit(inputs, outputs)
  const exactlyOnce = CountingAudit.isExactlyOnce(audit)
  const elapsedMs = Math.max(1, lastVisible - firstBatchAt)
  const timed = phase === "latency"
  const result: BenchEosReport.RunResult = {
    round,
    guarantee,
    phase,
    state: settings.state,
    events,
    keys,
    partitions,
    commitIntervalMs,
    rate: timed ? settings.rate : null,
    elapsedMs,
    visibleWindowMs: Math.max(1, lastVisible - firstVisible),
    eventsPerSec: Math.round((events / elapsedMs) * 1000),
    p50Ms: timed ? percentile(latencies, 50) : null,
    p99Ms: timed ? percentile(latencies, 99) : null,
    maxMs: timed ? (latencies[latencies.length - 1] ?? 0) : null,
    duplicates: audit.duplicates,
    missing: audit.missing,
    exactlyOnce,
    correct:
      guarantee === "exactly_once" ? exactlyOnce : audit.missing === 0 && audit.unknown === 0 && audit.outputs > 0,
    load1: Math.round(loadavg()[0]! * 100) / 100
  }
  yield* say(
    `${label}: ${timed ? `p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms` : `${result.eventsPerSec} events/s`}; audit: ${CountingAudit.describe(audit)}`
  )
  return result
}, Effect.scoped)

/**
 * A run, started again on fresh topics (at most `startAttempts` times) when its topology failed before it measured
 * anything: a start-up failure of the runtime is reported on stderr, and is not a measurement.
 */
const attempts = (
  round: number,
  guarantee: Guarantee,
  phase: BenchEosReport.Phase,
  settings: Settings,
  runId: string,
  attempt = 1
): ReturnType<typeof measure> =>
  measure(round, guarantee, phase, settings, runId, attempt).pipe(
    Effect.catchTag("EosBenchFailed", (e) =>
      e.beforeMeasuring && attempt < startAttempts
        ? say(
            `round ${round}, ${guarantee} ${phase}: the topology did not start (${e.reason}); starting it again`
          ).pipe(Effect.andThen(attempts(round, guarantee, phase, settings, runId, attempt + 1)))
        : Effect.fail(e)
    )
  )

const bench = (settings: Settings) =>
  Effect.suspend(() => {
    const runId = Date.now().toString(36)
    const results: Array<BenchEosReport.RunResult> = []
    const runs = Effect.gen(function* () {
      for (let round = 1; round <= settings.rounds; round++) {
        for (const guarantee of ["at_least_once", "exactly_once"] as const) {
          for (const phase of ["throughput", "latency"] as const) {
            const result = yield* attempts(round, guarantee, phase, settings, runId)
            results.push(result)
            if (settings.json) yield* Console.log(JSON.stringify(result))
          }
        }
      }
    })
    // Also when a later run fails or the benchmark is interrupted: what was measured is still worth showing.
    const report = Effect.suspend(() => {
      if (results.length === 0) return Effect.void
      if (!settings.json) return Console.log(BenchEosReport.formatSummary(results))
      const summary = BenchEosReport.summarize(results)
      return summary === undefined ? Effect.void : Console.log(JSON.stringify(summary))
    })
    return runs.pipe(
      Effect.ensuring(report),
      Effect.andThen(
        Effect.suspend(() => {
          const wrong = results.filter((r) => !r.correct)
          return wrong.length === 0
            ? Effect.void
            : Effect.fail(
                new EosBenchFailed({
                  beforeMeasuring: false,
                  reason: `wrong results: ${wrong.map((r) => `round ${r.round} ${r.guarantee} ${r.phase} (${r.duplicates} duplicates, ${r.missing} missing)`).join(", ")}`
                })
              )
        })
      ),
      // The topics are throwaway: dropping them keeps a shared broker tidy. The run's prefix covers the changelogs
      // and dead-letter topics too, and no other run's topics.
      Effect.ensuring(
        Kafka.use((kafka) =>
          kafka.listTopics.pipe(
            Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith(`bench-eos-${runId}-`))))
          )
        ).pipe(Effect.ignore)
      )
    )
  })

export const command = Flags.command(
  "eos",
  {
    events: Flags.int("events", {
      description:
        "records of the throughput runs, produced as fast as this process can once the warm-up is done (a backlog)",
      alias: "n",
      min: 1,
      default: 100_000
    }),
    latencyEvents: Flags.int("latency-events", {
      description: "records of the latency runs, produced at --rate while the topology runs",
      min: 1,
      default: 20_000
    }),
    rate: Flags.int("rate", {
      description: "records per second the latency runs produce",
      min: 1,
      default: 5_000
    }),
    keys: Flags.int("keys", { description: "distinct keys the records are counted under", min: 1, default: 1_000 }),
    partitions: Flags.int("partitions", {
      description: "partitions of the input, i.e. tasks (and transactional producers under exactly-once)",
      min: 1,
      max: 1_000,
      default: 6
    }),
    state: Flag.Literals("state", ["store", "none"]).pipe(
      Flag.withDescription(
        "store: counts in the changelog-backed store (the realistic case: every record also writes a changelog record); none: counts in a plain Map, a stateless job's cost (default store)"
      ),
      Flag.withDefault("store")
    ),
    commitIntervalMs: Flags.int("commit-interval-ms", {
      description:
        "commit interval of both guarantees (under exactly-once, how long a transaction stays open at most, and so the longest an output waits for its commit)",
      min: 1,
      max: 3_600_000,
      whenAbsent: "the runtime's default per guarantee: 1000 at-least-once, 100 exactly-once"
    }),
    rounds: Flags.int("rounds", {
      description:
        "times to run both guarantees, alternating; the cost is taken from the medians (a shared machine drifts)",
      min: 1,
      max: 100,
      default: 1
    }),
    brokers: Flags.brokers,
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "one JSON object per run on stdout (guarantee, phase, events, elapsedMs, eventsPerSec, p50Ms, p99Ms, duplicates, missing, exactlyOnce, correct, ...), then one with the cost (summary: true); progress stays on stderr"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    bench({
      events: o.events,
      latencyEvents: o.latencyEvents,
      rate: o.rate,
      keys: o.keys,
      partitions: o.partitions,
      state: o.state,
      commitIntervalMs: o.commitIntervalMs,
      rounds: o.rounds,
      json: o.json
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription(
    "Benchmark exactly-once against at-least-once: the counting topology on the same input under both guarantees (fresh topics each), throughput from a backlog and p99 latency at a fixed rate, every output audited; reports the cost (goal: exactly-once at most 10% slower). events/s: first batch processed -> last output visible to a read_committed reader in this process; latency: an input record's timestamp (set at its send) -> its output delivered to that reader, so under exactly-once it includes the wait for the transaction's commit (up to the commit interval) and the commit. Each run starts after a warm-up (one record per task), so joining the group and opening producers are not measured."
  ),
  Command.withExamples([
    {
      command: "sluice bench eos",
      description:
        "100,000 records per throughput run, 20,000 at 5,000/s per latency run, against Kafka on 127.0.0.1:9092"
    },
    {
      command: "sluice bench eos --state none --json > eos.jsonl",
      description: "the same without the store (no changelog), one JSON object per run"
    }
  ])
)
