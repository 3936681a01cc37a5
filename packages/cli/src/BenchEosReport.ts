/**
 * The pure half of `sluice bench eos` (BenchEos.ts): a run's result, the cost of exactly-once against the goal
 * (medians over rounds), and the text table. No Kafka and no Effect runtime, so it is tested without a broker.
 */
import type { Guarantee } from "@sluice/core/Delivery"

export type Phase = "throughput" | "latency"

/** One measured run: one JSON line with `--json`. */
export interface RunResult {
  /** 1 to --rounds. */
  readonly round: number
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
  /** The first batch handed to the topology to the last output visible. */
  readonly elapsedMs: number
  /**
   * The first output visible to the last. Not the measure: under exactly-once the first output becomes visible
   * only with the first commit, so this window leaves out the first transaction's work.
   */
  readonly visibleWindowMs: number
  /** events / elapsedMs (in a latency run, about the rate asked for). */
  readonly eventsPerSec: number
  /** Latency runs only (null in throughput runs, where it would measure the backlog). */
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  readonly maxMs: number | null
  readonly duplicates: number
  readonly missing: number
  readonly exactlyOnce: boolean
  /** Exactly-once: the audit passed. At-least-once: nothing missing or unknown (duplicates are allowed). */
  readonly correct: boolean
  /** The machine's 1-minute load average when the run ended: the broker and other processes share the cores. */
  readonly load1: number
}

export interface Summary {
  readonly summary: true
  readonly rounds: number
  /** Medians over the rounds. */
  readonly alosEventsPerSec: number
  readonly eosEventsPerSec: number
  /** EOS throughput / ALOS throughput. */
  readonly cost: number
  readonly goal: number
  readonly met: boolean
  /** From the latency runs; null without them. */
  readonly alosP99Ms: number | null
  readonly eosP99Ms: number | null
}

/** At most 10% slower: the exactly-once throughput is at least 90% of the at-least-once one. */
export const goal = 0.9

export const runtimeDefaultCommitMs = (guarantee: Guarantee): number => (guarantee === "exactly_once" ? 100 : 1_000)

/** The median of some numbers (the lower middle one of an even count); null for none. */
export const median = (values: ReadonlyArray<number>): number | null => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

/**
 * The cost and the goal from the runs, when both guarantees have a throughput run: the medians over the rounds,
 * since rounds alternate the guarantees and a shared machine drifts.
 */
export const summarize = (results: ReadonlyArray<RunResult>): Summary | undefined => {
  const of = (guarantee: Guarantee, phase: Phase, value: (r: RunResult) => number | null) =>
    median(
      results.flatMap((r) => {
        const v = r.guarantee === guarantee && r.phase === phase ? value(r) : null
        return v === null ? [] : [v]
      })
    )
  const alos = of("at_least_once", "throughput", (r) => r.eventsPerSec)
  const eos = of("exactly_once", "throughput", (r) => r.eventsPerSec)
  if (alos === null || eos === null) return undefined
  const cost = Math.round((eos / Math.max(1, alos)) * 1000) / 1000
  return {
    summary: true,
    rounds: Math.max(...results.map((r) => r.round)),
    alosEventsPerSec: alos,
    eosEventsPerSec: eos,
    cost,
    goal,
    met: cost >= goal,
    alosP99Ms: of("at_least_once", "latency", (r) => r.p99Ms),
    eosP99Ms: of("exactly_once", "latency", (r) => r.p99Ms)
  }
}

const pad = (s: string | number | null, n: number) => (s === null ? "-" : String(s)).padStart(n)

/** The runs as a table, then the cost against the goal. */
export const formatSummary = (results: ReadonlyArray<RunResult>): string => {
  const lines = [
    `${"round".padEnd(7)}${"guarantee".padEnd(15)}${"phase".padEnd(12)}${pad("events", 8)}${pad("commit ms", 11)}${pad("elapsed ms", 12)}${pad("events/s", 10)}${pad("p50 ms", 8)}${pad("p99 ms", 8)}${pad("dup", 6)}  audit`,
    ...results.map(
      (r) =>
        `${String(r.round).padEnd(7)}${r.guarantee.padEnd(15)}${r.phase.padEnd(12)}${pad(r.events, 8)}${pad(r.commitIntervalMs, 11)}${pad(r.elapsedMs, 12)}${pad(r.eventsPerSec, 10)}${pad(r.p50Ms, 8)}${pad(r.p99Ms, 8)}${pad(r.duplicates, 6)}  ${r.exactlyOnce ? "exactly once" : `${r.missing} missing`}${r.correct ? "" : " WRONG"}`
    )
  ]
  const s = summarize(results)
  if (s !== undefined) {
    const slower = Math.round((1 - s.cost) * 100)
    lines.push(
      `exactly-once cost${s.rounds > 1 ? ` (medians of ${s.rounds} rounds)` : ""}: ${s.eosEventsPerSec} events/s against ${s.alosEventsPerSec} at-least-once = ${s.cost} ` +
        `(${slower >= 0 ? `${slower}% slower` : `${-slower}% faster`}); goal at most 10% slower: ${s.met ? "met" : "NOT met"}`,
      `p99 latency: ${s.eosP99Ms ?? "-"} ms exactly-once, ${s.alosP99Ms ?? "-"} ms at-least-once`
    )
  }
  lines.push(
    "events/s: throughput runs (a backlog), first batch processed -> last output visible to a read_committed reader;",
    "latency: latency runs (--rate while running), input timestamp -> output delivered to a read_committed reader"
  )
  return lines.join("\n")
}
