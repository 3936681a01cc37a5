/**
 * `sluice bench eos`: what exactly-once costs. The counting topology (processors/Counting.ts: its changelog-backed
 * store by default, or `--state none`, counting in a plain Map with no changelog) on the same input under
 * at-least-once and then exactly-once, run by `Runner.run` in this process against the broker, each run on fresh
 * topics and a fresh group. Two runs per guarantee:
 *
 * - throughput: --events records produced first (a backlog), then the topology started. events/s is --events
 *   divided by the time from the first output visible to the last, "visible" meaning delivered to a read_committed
 *   reader (`Kafka.read`, in this process).
 * - latency: --latency-events records produced at --rate per second while the topology runs (once it has joined its
 *   group). An event's latency is the moment its output reached the read_committed reader minus the input record's
 *   timestamp, which this process sets just before the send: the produce request, the worker's fetch wait, the
 *   processing, the output and changelog writes (acks=all), under exactly-once the wait for the transaction to commit
 *   (up to the commit interval, 100 ms by default) and the commit itself, and the reader's fetch wait (up to 50 ms).
 *   In a backlog run this would mostly measure the time a record waited in the backlog, so it is measured apart.
 *
 * Every run is audited (CountingAudit.ts): under exactly-once a duplicate, a missing output or a wrong count fails
 * the benchmark, whatever its speed; under at-least-once duplicates are reported (a run without a crash has none).
 * The cost is the exactly-once throughput over the at-least-once one; the goal is at most 10% slower (>= 0.9).
 */

import type { Guarantee } from "@sluice/core/Delivery"
import { Kafka } from "@sluice/core/Kafka"
import type { ProducerRecord } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Counting from "@sluice/processors/Counting"
import * as CountingAudit from "@sluice/processors/CountingAudit"
import { percentile } from "@sluice/processors/JoinRun"
import { Console, Effect, Fiber, Logger, Option, Schema, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"

export class EosBenchFailed extends Schema.TaggedError<EosBenchFailed>()("EosBenchFailed", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

export type Phase = "throughput" | "latency"

/** One measured run: one JSON line with `--json`. */
export interface RunResult {
  readonly guarantee: Guarantee
  readonly phase: Phase
  readonly state: "store" | "none"
  readonly events: number
  readonly keys: number
  readonly partitions: number
  /** The commit interval the run used: --commit-interval-ms, else the runtime's default for the guarantee. */
  readonly commitIntervalMs: number
  /** Latency runs: the produce rate asked for; null for throughput runs. */
  readonly rate: number | null
  /** First output visible to the last. */
  readonly elapsedMs: number
  readonly eventsPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly duplicates: number
  readonly missing: number
  readonly exactlyOnce: boolean
  /** Exactly-once: the audit passed. At-least-once: nothing missing or unknown (duplicates are allowed). */
  readonly correct: boolean
}

export interface Summary {
  readonly summary: true
  readonly alosEventsPerSec: number
  readonly eosEventsPerSec: number
  /** EOS throughput / ALOS throughput. */
  readonly cost: number
  readonly goal: number
  readonly met: boolean
  readonly alosP99Ms: number
  readonly eosP99Ms: number
}

/** At most 10% slower: the exactly-once throughput is at least 90% of the at-least-once one. */
export const goal = 0.9

export const runtimeDefaultCommitMs = (guarantee: Guarantee): number => (guarantee === "exactly_once" ? 100 : 1_000)

/** The cost and the goal from the runs, when both throughput runs are there. */
export const summarize = (results: ReadonlyArray<RunResult>): Summary | undefined => {
  const find = (guarantee: Guarantee, phase: Phase) =>
    results.find((r) => r.guarantee === guarantee && r.phase === phase)
  const alos = find("at_least_once", "throughput")
  const eos = find("exactly_once", "throughput")
  if (alos === undefined || eos === undefined) return undefined
  const cost = Math.round((eos.eventsPerSec / Math.max(1, alos.eventsPerSec)) * 1000) / 1000
  return {
    summary: true,
    alosEventsPerSec: alos.eventsPerSec,
    eosEventsPerSec: eos.eventsPerSec,
    cost,
    goal,
    met: cost >= goal,
    alosP99Ms: find("at_least_once", "latency")?.p99Ms ?? 0,
    eosP99Ms: find("exactly_once", "latency")?.p99Ms ?? 0
  }
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

/** The runs as a table, then the cost against the goal. */
export const formatSummary = (results: ReadonlyArray<RunResult>): string => {
  const lines = [
    `${"guarantee".padEnd(15)}${"phase".padEnd(12)}${pad("events", 8)}${pad("commit ms", 11)}${pad("elapsed ms", 12)}${pad("events/s", 10)}${pad("p50 ms", 8)}${pad("p99 ms", 8)}${pad("dup", 6)}  audit`,
    ...results.map(
      (r) =>
        `${r.guarantee.padEnd(15)}${r.phase.padEnd(12)}${pad(r.events, 8)}${pad(r.commitIntervalMs, 11)}${pad(r.elapsedMs, 12)}${pad(r.eventsPerSec, 10)}${pad(r.p50Ms, 8)}${pad(r.p99Ms, 8)}${pad(r.duplicates, 6)}  ${r.exactlyOnce ? "exactly once" : `${r.missing} missing`}${r.correct ? "" : " WRONG"}`
    )
  ]
  const s = summarize(results)
  if (s !== undefined) {
    const slower = Math.round((1 - s.cost) * 100)
    lines.push(
      `exactly-once cost: ${s.eosEventsPerSec} events/s against ${s.alosEventsPerSec} at-least-once = ${s.cost} ` +
        `(${slower >= 0 ? `${slower}% slower` : `${-slower}% faster`}); goal at most 10% slower: ${s.met ? "met" : "NOT met"}`,
      `p99 latency: ${s.eosP99Ms} ms exactly-once, ${s.alosP99Ms} ms at-least-once`
    )
  }
  lines.push(
    "events/s: throughput run, first output visible -> last; latency: input timestamp -> output delivered to a read_committed reader"
  )
  return lines.join("\n")
}

export interface Settings {
  readonly events: number
  readonly latencyEvents: number
  readonly rate: number
  readonly keys: number
  readonly partitions: number
  readonly state: "store" | "none"
  readonly commitIntervalMs: Option.Option<number>
  readonly json: boolean
}

const say = (line: string) => Console.error(`bench eos: ${line}`)

/** Polls `check` until it holds, failing if the runner stopped or after `timeoutMs`. */
const awaitOrFail = Effect.fnUntraced(function* <E, R>(
  what: string,
  runner: Fiber.Fiber<never, unknown>,
  check: Effect.Effect<boolean, E, R>,
  onProgress: Effect.Effect<void>,
  timeoutMs = 10 * 60_000
) {
  const deadline = Date.now() + timeoutMs
  let reported = Date.now()
  while (!(yield* check)) {
    if (runner.pollUnsafe() !== undefined) {
      const exit = yield* Fiber.await(runner)
      return yield* new EosBenchFailed({ reason: `the topology stopped before ${what}: ${String(exit)}` })
    }
    if (Date.now() > deadline) return yield* new EosBenchFailed({ reason: `timed out waiting until ${what}` })
    if (Date.now() - reported > 2_000) {
      reported = Date.now()
      yield* onProgress
    }
    yield* Effect.sleep("5 millis")
  }
})

/** One run on fresh topics: produce (before or during), run the topology, watch the output read_committed. */
const measure = Effect.fnUntraced(function* (guarantee: Guarantee, phase: Phase, settings: Settings, runId: string) {
  const kafka = yield* Kafka
  const prefix = `bench-eos-${runId}-${guarantee === "exactly_once" ? "eos" : "alos"}-${phase}-`
  const topics = Counting.named(prefix)
  const group = `${prefix}counts`
  const { partitions, keys } = settings
  const events = phase === "throughput" ? settings.events : settings.latencyEvents
  const label = `${guarantee} ${phase}`
  yield* kafka.createTopics([
    { name: topics.input.name, partitions },
    { name: topics.output.name, partitions }
  ])

  // Per input partition, each record's timestamp by offset (offsets of a fresh topic start at 0, contiguous).
  const timestamps = Array.from({ length: partitions }, () => [] as Array<number>)
  const inputs: Array<CountingAudit.Input> = []
  const produce = Effect.fnUntraced(function* (from: number, count: number) {
    const at = Date.now()
    const records: Array<ProducerRecord> = Counting.generate({ count, keys, from, topic: topics.input.name }).map(
      (r) => ({ ...r, timestamp: at })
    )
    const written = yield* kafka.send(records)
    for (let i = 0; i < written.length; i++) {
      const m = written[i]!
      timestamps[m.partition]![m.offset] = at
      inputs.push({ partition: m.partition, offset: m.offset, key: Counting.keyOf((from + i) % keys) })
    }
  })

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
          if (firstVisible === 0) firstVisible = now
          lastVisible = now
        }
      })
    ),
    Effect.forkScoped
  )

  const commitIntervalMs = Option.getOrElse(settings.commitIntervalMs, () => runtimeDefaultCommitMs(guarantee))
  const topology = Counting.topology({ topics, worker: `bench-${guarantee}`, partitions, state: settings.state })
  const chunk = 5_000
  if (phase === "throughput") {
    yield* say(`${label}: producing ${events} records to ${topics.input.name} (${partitions} partitions)`)
    for (let from = 0; from < events; from += chunk) yield* produce(from, Math.min(chunk, events - from))
  }
  yield* say(`${label}: running the counting topology (store: ${settings.state}, commit every ${commitIntervalMs} ms)`)
  const runner = yield* Runner.run(topology, {
    groupId: group,
    guarantee,
    ...(Option.isSome(settings.commitIntervalMs) ? { commitInterval: `${commitIntervalMs} millis` } : {})
  }).pipe(Effect.forkScoped)
  const progress = Effect.suspend(() => say(`${label}: ${seen.size}/${events} outputs visible`))
  if (phase === "latency") {
    // The clock starts once the topology has joined its group, so no event waits for the join.
    yield* awaitOrFail(
      "the topology has joined its group",
      runner,
      Effect.map(kafka.describeGroup(group), (members) => members.some((m) => m.assignment.length > 0)),
      progress
    )
    yield* say(`${label}: producing ${events} records at ${settings.rate}/s`)
    const tickMs = 20
    const perTick = Math.max(1, Math.round((settings.rate * tickMs) / 1000))
    const started = Date.now()
    for (let from = 0; from < events; from += perTick) {
      // Paced against the start, so a slow send is caught up rather than lowering the rate.
      const due = started + (from / settings.rate) * 1000
      const wait = due - Date.now()
      if (wait > 0) yield* Effect.sleep(`${wait} millis`)
      yield* produce(from, Math.min(perTick, events - from))
    }
  }
  yield* awaitOrFail(
    `every output is visible (${events})`,
    runner,
    Effect.sync(() => seen.size >= events),
    progress
  )
  yield* Fiber.interrupt(runner)
  yield* Fiber.interrupt(reader)

  latencies.sort((a, b) => a - b)
  const audit = CountingAudit.audit(inputs, outputs)
  const exactlyOnce = CountingAudit.isExactlyOnce(audit)
  const elapsedMs = Math.max(1, lastVisible - firstVisible)
  const result: RunResult = {
    guarantee,
    phase,
    state: settings.state,
    events,
    keys,
    partitions,
    commitIntervalMs,
    rate: phase === "latency" ? settings.rate : null,
    elapsedMs,
    eventsPerSec: Math.round((events / elapsedMs) * 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1] ?? 0,
    duplicates: audit.duplicates,
    missing: audit.missing,
    exactlyOnce,
    correct:
      guarantee === "exactly_once" ? exactlyOnce : audit.missing === 0 && audit.unknown === 0 && audit.outputs > 0
  }
  yield* say(
    `${label}: ${result.eventsPerSec} events/s, p99 ${result.p99Ms} ms; audit: ${CountingAudit.describe(audit)}`
  )
  return result
}, Effect.scoped)

const bench = (settings: Settings) =>
  Effect.gen(function* () {
    const runId = Date.now().toString(36)
    const results: Array<RunResult> = []
    for (const guarantee of ["at_least_once", "exactly_once"] as const) {
      for (const phase of ["throughput", "latency"] as const) {
        const result = yield* measure(guarantee, phase, settings, runId)
        results.push(result)
        if (settings.json) yield* Console.log(JSON.stringify(result))
      }
    }
    const summary = summarize(results)
    yield* settings.json
      ? summary === undefined
        ? Effect.void
        : Console.log(JSON.stringify(summary))
      : Console.log(formatSummary(results))
    const wrong = results.filter((r) => !r.correct)
    if (wrong.length > 0) {
      return yield* new EosBenchFailed({
        reason: `wrong results: ${wrong.map((r) => `${r.guarantee} ${r.phase} (${r.duplicates} duplicates, ${r.missing} missing)`).join(", ")}`
      })
    }
  }).pipe(
    // The topics are throwaway: dropping them keeps a shared broker tidy; the prefix covers the changelog and the
    // dead-letter topic too.
    Effect.ensuring(
      Kafka.use((kafka) =>
        kafka.listTopics.pipe(
          Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith("bench-eos-"))))
        )
      ).pipe(Effect.ignore)
    )
  )

export const command = Flags.command(
  "eos",
  {
    events: Flags.int("events", {
      description: "records of the throughput runs (a backlog, produced before the topology starts)",
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
      json: o.json
    }).pipe(
      Effect.provide(Flags.kafkaLayer(o.brokers)),
      // stdout carries only the results; the runtime's logs go to stderr.
      Effect.provideService(Logger.LogToStderr, true)
    )
).pipe(
  Command.withDescription(
    "Benchmark exactly-once against at-least-once: the counting topology on the same input under both guarantees (fresh topics each), throughput from a backlog and p99 latency at a fixed rate, every output audited; reports the cost (goal: exactly-once at most 10% slower)"
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
