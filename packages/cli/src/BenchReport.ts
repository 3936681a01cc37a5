/**
 * The pure half of `sluice bench join` (Bench.ts): the settings, the run plan and sweep sizes,
 * the ratios between strategies (per event when the sizes differ), the JSON line's shape, the text table and
 * summary, progress lines, the outcome (a wrong output fails the benchmark, whatever its speed) and the SVG chart.
 * No Kafka and no Effect runtime: data in, values out, so the reporting can be tested without a broker.
 */
import * as JoinRun from "@sluice/processors/JoinRun"
import { Option, Result } from "effect"
import * as Strategy from "./Strategy.ts"
import * as Svg from "./Svg.ts"

// ---------------------------------------------------------------------------------------------------------------
// Settings, plan, ratios, report shapes
// ---------------------------------------------------------------------------------------------------------------

/** What the reporting needs from a run; `JoinRun.JoinReport` without the printed sample. */
export type Measured = Omit<JoinRun.JoinReport, "sample">

export type StrategyChoice = Strategy.Strategy | "all"

export interface Settings {
  readonly strategy: StrategyChoice
  readonly events: number
  readonly users: number
  /** The events the rescan strategy runs on, already capped at `events`. */
  readonly rescanEvents: number
  /** Run several sizes per strategy (for the chart) instead of one. */
  readonly sweep: boolean
  /** Produce every click before the topology starts (throughput) instead of while it runs (latency). */
  readonly backlog: boolean
  /** Live mode: produce this many clicks per second (else as fast as the producer goes). */
  readonly rate?: number | undefined
}

/** Rescan is the lab's N+1: a few hundred clicks already take minutes on a real broker. */
export const defaultRescanEvents = (events: number): number => Math.min(events, 200)

/** The settings the flags stand for (their ranges are checked by `Flags.command` before this runs). */
export const settings = (flags: {
  readonly strategy: StrategyChoice
  readonly events: number
  readonly users: number
  readonly rescanEvents: Option.Option<number>
  readonly sweep: boolean
  readonly backlog?: boolean
  readonly rate?: Option.Option<number>
}): Settings => {
  const rescan = Option.getOrElse(flags.rescanEvents, () => defaultRescanEvents(flags.events))
  return {
    strategy: flags.strategy,
    events: flags.events,
    users: flags.users,
    // More rescan events than table events would make no comparison fairer; it would only take longer.
    rescanEvents: Math.min(rescan, flags.events),
    sweep: flags.sweep,
    backlog: flags.backlog ?? false,
    rate: flags.rate === undefined ? undefined : Option.getOrUndefined(flags.rate)
  }
}

/** Table first: the ratios are relative to it, and JSON lines printed as runs finish can then carry them. */
export const strategiesFor = (choice: StrategyChoice): ReadonlyArray<Strategy.Strategy> =>
  choice === "all" ? Strategy.strategies : [choice]

export const eventsFor = (strategy: Strategy.Strategy, settings: Settings): number =>
  strategy === "rescan" ? settings.rescanEvents : settings.events

export interface PlannedRun {
  readonly strategy: Strategy.Strategy
  /** The events this run produces and verifies. */
  readonly events: number
  /** The size it stands for in the comparison (`--events`, or its sweep fraction); more than `events` for rescan. */
  readonly requested: number
  /** The strategy's full-size run: the one in the table and the JSON lines. */
  readonly headline: boolean
}

export const sweepFractions: ReadonlyArray<number> = [0.1, 0.25, 0.5, 1]

const scaled = (n: number, fraction: number): number => Math.max(1, Math.round(n * fraction))

/**
 * The runs to do, in order. Without a sweep, one per strategy; with one, each strategy also runs at 1/10, 1/4 and
 * 1/2 of its own size (deduplicated, at least 1), so the rescan line has several points even though it is capped.
 */
export const plan = (settings: Settings): ReadonlyArray<PlannedRun> =>
  strategiesFor(settings.strategy).flatMap((strategy) => {
    const own = eventsFor(strategy, settings)
    const bySize = new Map<number, number>()
    // Ascending fractions: when two round to the same size, the later (larger) requested size wins.
    for (const f of settings.sweep ? sweepFractions : [1]) bySize.set(scaled(own, f), scaled(settings.events, f))
    const sizes = [...bySize].sort((a, b) => a[0] - b[0])
    return sizes.map(([events, requested], i) => ({ strategy, events, requested, headline: i === sizes.length - 1 }))
  })

export const perEventMs = (r: Measured): number => r.elapsedMs / r.events

export interface Ratio {
  readonly strategy: string
  /** This strategy's elapsed per event divided by the table's. Equals the elapsed ratio when the sizes match. */
  readonly vsTable: number
  readonly events: number
  readonly tableEvents: number
  /** The two runs had different sizes, so only the per-event comparison means anything. */
  readonly perEvent: boolean
}

export const ratio = (report: Measured, table: Measured): Ratio => ({
  strategy: report.strategy,
  // One division of integer products, so equal sizes give exactly the elapsed ratio (1.5, not 1.4999999999999998).
  vsTable: (report.elapsedMs * table.events) / (table.elapsedMs * report.events),
  events: report.events,
  tableEvents: table.events,
  perEvent: report.events !== table.events
})

/** Every non-table strategy against the table run; none without a table run. */
export const ratios = (reports: ReadonlyArray<Measured>): ReadonlyArray<Ratio> => {
  const table = reports.find((r) => r.strategy === "table")
  return table === undefined ? [] : reports.filter((r) => r !== table).map((r) => ratio(r, table))
}

/** The table run to compare a run against: the one of the size it stands for, else the largest. */
export const tableFor = (requested: number, reports: ReadonlyArray<Measured>): Measured | undefined => {
  const tables = reports.filter((r) => r.strategy === "table")
  return tables.find((r) => r.events === requested) ?? tables.toSorted((a, b) => b.events - a.events)[0]
}

const round = (n: number, decimals: number): number => Math.round(n * 10 ** decimals) / 10 ** decimals

export interface JsonLine {
  readonly strategy: string
  readonly events: number
  readonly requestedEvents: number
  readonly users: number
  readonly correct: boolean
  readonly elapsedMs: number
  readonly eventsPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly maxMs: number
  readonly peakRssMb: number
  readonly loadMs: number
  readonly perEventMs: number
  readonly duplicates: number
  /** True when this run had fewer events than asked for (rescan): compare `perEventMs`, not `elapsedMs`. */
  readonly comparedPerEvent: boolean
  /** `perEventMs` divided by the table run's; null for the table itself or without a table run. */
  readonly vsTable: number | null
  readonly problems: ReadonlyArray<string>
}

/** The keys the issue requires in every JSON line; the others are extras. */
export const requiredJsonKeys = [
  "strategy",
  "events",
  "users",
  "correct",
  "elapsedMs",
  "eventsPerSec",
  "p50Ms",
  "p99Ms",
  "peakRssMb"
] as const

export const jsonLine = (report: Measured, requestedEvents: number, table: Measured | undefined): JsonLine => ({
  strategy: report.strategy,
  events: report.events,
  requestedEvents,
  users: report.users,
  correct: report.correct,
  elapsedMs: report.elapsedMs,
  eventsPerSec: report.eventsPerSec,
  p50Ms: report.p50Ms,
  p99Ms: report.p99Ms,
  p999Ms: report.p999Ms,
  maxMs: report.maxMs,
  peakRssMb: report.peakRssMb,
  loadMs: report.loadMs,
  perEventMs: round(perEventMs(report), 4),
  duplicates: report.verification.duplicates,
  comparedPerEvent: report.events !== requestedEvents,
  vsTable: table === undefined || table === report ? null : round(ratio(report, table).vsTable, 2),
  problems: report.verification.problems
})

/** The line `--json` prints for a run: the JSON line as one line of text, for scripts that read line by line. */
export const jsonText = (report: Measured, requestedEvents: number, table: Measured | undefined): string =>
  JSON.stringify(jsonLine(report, requestedEvents, table))

// ---------------------------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------------------------

/** Milliseconds with about three significant digits: 812, 81.2, 0.812. */
export const formatMs = (ms: number): string =>
  ms >= 100 ? String(Math.round(ms)) : ms >= 10 ? ms.toFixed(1) : String(Number(ms.toPrecision(3)))

export const formatRatio = (r: number): string =>
  r >= 100 ? `${Math.round(r)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`

export const formatRatioLine = (r: Ratio): string =>
  r.perEvent
    ? `${r.strategy}/table: ${formatRatio(r.vsTable)} per event (elapsed/events; ${r.strategy} ran ${r.events} events, table ${r.tableEvents})`
    : `${r.strategy}/table: ${formatRatio(r.vsTable)} elapsed (both ${r.events} events)`

const columns: ReadonlyArray<{ readonly header: string; readonly cell: (r: Measured, requested: number) => string }> = [
  { header: "strategy", cell: (r, requested) => (r.events === requested ? r.strategy : `${r.strategy}*`) },
  { header: "events", cell: (r) => String(r.events) },
  { header: "users", cell: (r) => String(r.users) },
  {
    header: "correct",
    cell: (r) => `${r.correct ? "ok" : "FAIL"} ${r.verification.correct}/${r.verification.expected}`
  },
  { header: "dup", cell: (r) => String(r.verification.duplicates) },
  { header: "load ms", cell: (r) => String(r.loadMs) },
  { header: "elapsed ms", cell: (r) => String(r.elapsedMs) },
  { header: "ms/event", cell: (r) => formatMs(perEventMs(r)) },
  { header: "events/s", cell: (r) => String(r.eventsPerSec) },
  { header: "p50 ms", cell: (r) => String(r.p50Ms) },
  { header: "p99 ms", cell: (r) => String(r.p99Ms) },
  { header: "peak RSS MB", cell: (r) => String(r.peakRssMb) }
]

/** The aligned table, one row per strategy; the first column is left-aligned, numbers right-aligned. */
export const formatTable = (reports: ReadonlyArray<Measured>, requestedEvents: number): string => {
  const rows = [columns.map((c) => c.header), ...reports.map((r) => columns.map((c) => c.cell(r, requestedEvents)))]
  const widths = columns.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows
    .map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "))
    .join("\n")
}

/** The table plus what a reader needs to interpret it: per-event notes, ratios, definitions. */
export const formatSummary = (reports: ReadonlyArray<Measured>, requestedEvents: number): string => {
  const lines = [formatTable(reports, requestedEvents), ""]
  for (const r of reports) {
    if (r.events !== requestedEvents) {
      lines.push(
        `* ${r.strategy} ran ${r.events} of ${requestedEvents} events (--rescan-events): compare it per event (ms/event), not by elapsed ms`
      )
    }
  }
  const rs = ratios(reports)
  if (rs.length > 0) lines.push(`ratios: ${rs.map(formatRatioLine).join("; ")}`)
  lines.push(
    "elapsed: first click consumed -> last enriched record acknowledged; latency: click produced -> enriched record produced",
    "peak RSS: the whole process, so a run can inherit the heap of the runs before it in the same invocation"
  )
  return lines.join("\n")
}

export const progressLine = (strategy: string, done: number, total: number, perSec: number): string =>
  `  ${strategy}: ${done}/${total} enriched (${Math.round(perSec)}/s)`

export const endLine = (r: Measured): string =>
  r.correct
    ? `bench: ${r.strategy} done: ${r.events} events in ${r.elapsedMs} ms (${r.eventsPerSec}/s), all ${r.verification.expected} correct`
    : `bench: ${r.strategy} WRONG: ${r.verification.present}/${r.verification.expected} present, ${r.verification.correct} correct\n${r.verification.problems.map((p) => `  ${p}`).join("\n")}`

/** The benchmark fails if any run's output was wrong or incomplete, whatever its speed. */
export const outcome = (reports: ReadonlyArray<Measured>): Result.Result<void, JoinRun.JoinRunFailed> => {
  if (reports.length === 0) return Result.fail(new JoinRun.JoinRunFailed({ reason: "no run completed" }))
  const wrong = reports.filter((r) => !r.correct)
  if (wrong.length === 0) return Result.void
  const reason = wrong
    .map(
      (r) =>
        `${r.strategy} (${r.events} events): ${r.verification.present}/${r.verification.expected} present, ${r.verification.correct} correct: ${r.verification.problems.join("; ")}`
    )
    .join("\n")
  return Result.fail(new JoinRun.JoinRunFailed({ reason: `verification failed:\n${reason}` }))
}

/** Elapsed ms against events, one line per strategy, log y: the strategies differ by orders of magnitude. */
export const chart = (
  reports: ReadonlyArray<Measured>,
  context: { readonly users: number; readonly brokers: string }
) =>
  Svg.lineChart(
    Strategy.strategies
      .map((strategy) => ({
        name: strategy,
        points: reports.filter((r) => r.strategy === strategy).map((r) => ({ x: r.events, y: r.elapsedMs }))
      }))
      .filter((s) => s.points.length > 0),
    {
      title: `sluice bench join: elapsed vs events (${context.users} users, brokers ${context.brokers})`,
      xLabel: "events (clicks enriched and verified)",
      yLabel: "elapsed ms",
      // The sweep grows geometrically and rescan runs ~10x fewer events: a log x axis spreads all their points.
      logX: true,
      logY: true
    }
  )
