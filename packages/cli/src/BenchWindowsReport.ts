/**
 * The pure half of `sluice bench windows` (BenchWindows.ts): the truth every contender's output is checked against,
 * the check itself, the results and the summary with the targets. No Kafka and no Effect: data in, values out.
 *
 * The truth is recomputed from what was produced, independently of Windows.ts and of the loop: each reading's event
 * time as the generator meant it, its partition as the broker acknowledged it. Per partition, in offset order,
 * stream time is the largest event time so far (the reading's own included); a reading is late when its 60 s
 * window's end plus the grace is at or below it, and counts nowhere; a window must have been emitted once its
 * partition's final stream time has reached its end plus the grace. Windows still open at the end of the input are
 * emitted by no contender.
 */
import type { WindowAggregate } from "@sluice/processors/Sensors"
import { Schema } from "effect"
import { rate } from "./BenchState.ts"

/** In the order they run: the loop first, so every Sluice result can carry its ratio to it. */
export const contenders = ["loop", "at_least_once", "exactly_once"] as const
export type Contender = (typeof contenders)[number]

export const labels: Readonly<Record<Contender, string>> = {
  loop: "kafkajs loop + Map",
  at_least_once: "sluice at-least-once",
  exactly_once: "sluice exactly-once"
}

/** The targets of issue #10: at-least-once events/s, and how close to the loop Sluice must come. */
export const targetEventsPerSec = 100_000
export const withinOfLoop = 0.2

/** How many windows the readings span by default, whatever `--events`. */
export const defaultSpan = 20

/** Event time between readings: `span` windows over `events` readings, in whole ms, at least 1. */
export const defaultStepMs = (events: number, windowMs: number, span = defaultSpan): number =>
  Math.max(1, Math.floor((span * windowMs) / events))

export const windowKey = (sensor: string, start: number): string => `${sensor}@${start}`

// ---------------------------------------------------------------------------------------------------------------
// The truth
// ---------------------------------------------------------------------------------------------------------------

interface Open {
  readonly sensor: string
  readonly start: number
  readonly partition: number
  count: number
  min: number
  max: number
  sum: number
}

export interface Truth {
  /** The next reading of `partition`, in offset order. */
  readonly add: (partition: number, sensor: string, eventMs: number, temperature: number) => void
  /** The windows that must have been emitted, by `windowKey`. */
  readonly closed: () => ReadonlyMap<string, WindowAggregate>
  /** Readings late for their window so far (none, with the generator's defaults). */
  readonly late: () => number
}

export const truth = (windowMs: number, graceMs: number): Truth => {
  const windows = new Map<string, Open>()
  const streamTimes = new Map<number, number>()
  let late = 0
  return {
    add: (partition, sensor, eventMs, x) => {
      const streamTime = Math.max(streamTimes.get(partition) ?? -1, eventMs)
      streamTimes.set(partition, streamTime)
      const start = Math.floor(eventMs / windowMs) * windowMs
      if (start + windowMs + graceMs <= streamTime) {
        late++
        return
      }
      const key = windowKey(sensor, start)
      const w = windows.get(key)
      if (w === undefined) windows.set(key, { sensor, start, partition, count: 1, min: x, max: x, sum: x })
      else {
        w.count += 1
        w.min = Math.min(w.min, x)
        w.max = Math.max(w.max, x)
        w.sum += x
      }
    },
    closed: () => {
      const out = new Map<string, WindowAggregate>()
      for (const [key, w] of windows) {
        if (w.start + windowMs + graceMs > (streamTimes.get(w.partition) ?? -1)) continue
        out.set(key, {
          sensor_id: w.sensor,
          window_start: w.start,
          window_end: w.start + windowMs,
          count: w.count,
          min_temperature: w.min,
          max_temperature: w.max,
          mean_temperature: w.sum / w.count
        })
      }
      return out
    },
    late: () => late
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Checking an output
// ---------------------------------------------------------------------------------------------------------------

/** A contender's output topic, read back. */
export interface Collected {
  readonly windows: Map<string, WindowAggregate>
  records: number
  /** Records for a window already seen: with the same aggregate, and with a different one. */
  duplicates: number
  conflicting: number
  /** Records that are not a window aggregate. */
  undecodable: number
}

export const collected = (): Collected => ({
  windows: new Map(),
  records: 0,
  duplicates: 0,
  conflicting: 0,
  undecodable: 0
})

/** Means are sums divided by counts: equal up to rounding whatever the order of the sum. */
const same = (a: WindowAggregate, b: WindowAggregate): boolean =>
  a.sensor_id === b.sensor_id &&
  a.window_start === b.window_start &&
  a.window_end === b.window_end &&
  a.count === b.count &&
  a.min_temperature === b.min_temperature &&
  a.max_temperature === b.max_temperature &&
  Math.abs(a.mean_temperature - b.mean_temperature) <= 1e-9 * Math.max(1, Math.abs(b.mean_temperature))

/** Adds one output record (`undefined`: it did not decode). */
export const collect = (acc: Collected, window: WindowAggregate | undefined): Collected => {
  acc.records++
  if (window === undefined) {
    acc.undecodable++
    return acc
  }
  const key = windowKey(window.sensor_id, window.window_start)
  const before = acc.windows.get(key)
  if (before === undefined) acc.windows.set(key, window)
  else if (same(before, window)) acc.duplicates++
  else acc.conflicting++
  return acc
}

export interface Verification {
  readonly expected: number
  readonly exact: number
  readonly missing: number
  readonly wrong: number
  readonly unexpected: number
  readonly duplicates: number
  readonly correct: boolean
  /** `160000/160000 windows exact`, and what is wrong. */
  readonly verified: string
  /** A few of the windows that are wrong, missing or unexpected, for the report. */
  readonly examples: ReadonlyArray<string>
}

/**
 * Every expected window present with its aggregate, nothing else, nothing conflicting. A duplicate with the same
 * aggregate is what at-least-once allows after a crash (there is none in a benchmark run, so it is reported);
 * exactly-once allows none.
 */
export const verify = (
  expected: ReadonlyMap<string, WindowAggregate>,
  got: Collected,
  allowDuplicates: boolean
): Verification => {
  let exact = 0
  let missing = 0
  let wrong = 0
  const examples: Array<string> = []
  const example = (line: string) => {
    if (examples.length < 5) examples.push(line)
  }
  for (const [key, want] of expected) {
    const have = got.windows.get(key)
    if (have === undefined) {
      missing++
      example(`missing ${key}`)
    } else if (same(have, want)) exact++
    else {
      wrong++
      example(`wrong ${key}: ${JSON.stringify(have)}, expected ${JSON.stringify(want)}`)
    }
  }
  let unexpected = 0
  for (const key of got.windows.keys()) {
    if (expected.has(key)) continue
    unexpected++
    example(`unexpected ${key}`)
  }
  const problems = [
    missing > 0 ? `${missing} missing` : "",
    wrong > 0 ? `${wrong} wrong` : "",
    unexpected > 0 ? `${unexpected} unexpected` : "",
    got.conflicting > 0 ? `${got.conflicting} conflicting duplicates` : "",
    got.undecodable > 0 ? `${got.undecodable} undecodable` : "",
    got.duplicates > 0 ? `${got.duplicates} duplicates` : ""
  ].filter((s) => s !== "")
  const correct =
    exact === expected.size &&
    unexpected === 0 &&
    got.conflicting === 0 &&
    got.undecodable === 0 &&
    (allowDuplicates || got.duplicates === 0)
  return {
    expected: expected.size,
    exact,
    missing,
    wrong,
    unexpected,
    duplicates: got.duplicates,
    correct,
    verified: `${exact}/${expected.size} windows exact${problems.length === 0 ? "" : ` (${problems.join(", ")})`}`,
    examples
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------------------------

/** One contender's run: one JSON line with `--json` (a schema, so that scripts and tests can read the lines back). */
export const Result = Schema.Struct({
  contender: Schema.Literals(contenders),
  label: Schema.String,
  events: Schema.Int,
  sensors: Schema.Int,
  partitions: Schema.Int,
  stepMs: Schema.Int,
  graceMs: Schema.Int,
  /** Windows the truth says must have been emitted. */
  windows: Schema.Int,
  /** Output records read back. */
  outputRecords: Schema.Int,
  verified: Schema.String,
  correct: Schema.Boolean,
  /** First batch fetched to the last window visible (acknowledged; under exactly-once, committed). */
  elapsedMs: Schema.Number,
  /** Input readings / elapsed. */
  eventsPerSec: Schema.Number,
  /** CPU time of the benchmarking process (user + system) over `elapsedMs`. */
  cpuMs: Schema.Number,
  /** `cpuMs` as a share of one core. */
  cpuPercent: Schema.Number,
  /**
   * CPU time per input reading, µs: what the contender costs whatever share of the machine it got (on a loaded
   * machine, events/s mostly says how much CPU the process was given).
   */
  cpuUsPerEvent: Schema.Number,
  /** events/s over the loop's, when the loop ran. */
  vsLoop: Schema.NullOr(Schema.Number),
  /** The 1, 5 and 15 minute load averages when the contender started. */
  loadStart: Schema.Array(Schema.Number),
  /** The same when it ended. */
  loadEnd: Schema.Array(Schema.Number)
})
export type Result = typeof Result.Type

export const measured = (m: {
  readonly events: number
  readonly elapsedMs: number
  readonly cpuMs: number
  readonly loop: Result | undefined
}) => {
  const elapsedMs = Math.max(1, m.elapsedMs)
  const eventsPerSec = rate(m.events, elapsedMs)
  return {
    elapsedMs,
    eventsPerSec,
    cpuMs: Math.round(m.cpuMs),
    cpuPercent: Math.round((m.cpuMs / elapsedMs) * 100),
    cpuUsPerEvent: Math.round((m.cpuMs * 10_000) / m.events) / 10,
    vsLoop: m.loop === undefined ? null : Math.round((eventsPerSec / m.loop.eventsPerSec) * 100) / 100
  }
}

export const load = (averages: ReadonlyArray<number>): ReadonlyArray<number> =>
  averages.map((a) => Math.round(a * 100) / 100)

/** Whether the targets were met, one line each; nothing about what did not run. */
export const targets = (results: ReadonlyArray<Result>): ReadonlyArray<string> => {
  const lines: Array<string> = []
  const alo = results.find((r) => r.contender === "at_least_once")
  if (alo !== undefined) {
    const met = alo.correct && alo.eventsPerSec >= targetEventsPerSec
    lines.push(
      `target: at-least-once >= ${targetEventsPerSec.toLocaleString("en-US")} events/s: ${alo.eventsPerSec.toLocaleString("en-US")} (${met ? "met" : "not met"})`
    )
  }
  for (const r of results) {
    if (r.vsLoop === null) continue
    const met = r.correct && r.vsLoop >= 1 - withinOfLoop
    lines.push(
      `target: ${r.label} within ${withinOfLoop * 100}% of the loop: ${r.vsLoop}x its events/s (${met ? "met" : "not met"})`
    )
  }
  return lines
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

export const summary = (results: ReadonlyArray<Result>): string =>
  [
    `${"contender".padEnd(22)}${pad("events", 10)}${pad("windows", 9)}${pad("ms", 9)}${pad("events/s", 10)}${pad("cpu%", 6)}${pad("cpu µs/ev", 11)}${pad("vs loop", 9)}  load 1m start/end  verified`,
    ...results.map(
      (r) =>
        `${r.label.padEnd(22)}${pad(r.events, 10)}${pad(r.windows, 9)}${pad(r.elapsedMs, 9)}${pad(r.eventsPerSec, 10)}${pad(r.cpuPercent, 6)}${pad(r.cpuUsPerEvent, 11)}${pad(r.vsLoop ?? "-", 9)}  ${`${r.loadStart[0]}/${r.loadEnd[0]}`.padEnd(18)} ${r.verified}${r.correct ? "" : " WRONG"}`
    ),
    ...targets(results)
  ].join("\n")

/** A progress line: `loop: 120000/1000000 readings, 1500/160000 windows, 41000 readings/s`. */
export const progressLine = (
  label: string,
  consumed: number,
  events: number,
  visible: number,
  windows: number,
  perSec: number
) =>
  `bench windows: ${label}: ${consumed}/${events} readings, ${visible}/${windows} windows, ${Math.round(perSec)} readings/s`
