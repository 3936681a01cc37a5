/**
 * The pure half of `sluice bench join` (src/BenchReport.ts, used by src/Bench.ts): the settings, the run plan and
 * sweep sizes, the ratios, the JSON line's shape, the text table, and the outcome, where a wrong output fails the
 * benchmark.
 */
import { Option, Result } from "effect"
import { describe, expect, it } from "vitest"
import * as BenchReport from "../src/BenchReport.ts"

const report = (
  overrides: Partial<BenchReport.Measured> & Pick<BenchReport.Measured, "strategy" | "events">
): BenchReport.Measured => ({
  users: 100,
  correct: true,
  loadMs: 8,
  elapsedMs: 100,
  eventsPerSec: 10_000,
  p50Ms: 20,
  p99Ms: 30,
  p999Ms: 35,
  maxMs: 40,
  peakRssMb: 180,
  verification: {
    expected: overrides.events,
    present: overrides.events,
    correct: overrides.events,
    duplicates: 0,
    problems: []
  },
  ...overrides
})

const table = report({ strategy: "table", events: 1000, elapsedMs: 100 })
const rescan = report({ strategy: "rescan", events: 200, elapsedMs: 20_000, eventsPerSec: 10 })
const redis = report({ strategy: "redis", events: 1000, elapsedMs: 150 })

const flags = { strategy: "all" as const, events: 1000, users: 100, rescanEvents: Option.none<number>(), sweep: false }
const settings = (overrides: Partial<BenchReport.Settings> = {}): BenchReport.Settings => ({
  strategy: "all",
  events: 1000,
  users: 100,
  rescanEvents: 200,
  sweep: false,
  backlog: false,
  ...overrides
})

describe("settings", () => {
  it("defaults --rescan-events to min(--events, 200) and caps it at --events", () => {
    expect(BenchReport.settings(flags).rescanEvents).toBe(200)
    expect(BenchReport.settings({ ...flags, events: 50 }).rescanEvents).toBe(50)
    expect(BenchReport.settings({ ...flags, rescanEvents: Option.some(5000) }).rescanEvents).toBe(1000)
    expect(BenchReport.settings({ ...flags, rescanEvents: Option.some(30) }).rescanEvents).toBe(30)
  })
})

describe("plan", () => {
  it("runs one headline per strategy without a sweep, table first, rescan on its own size", () => {
    expect(BenchReport.plan(settings())).toEqual([
      { strategy: "table", events: 1000, requested: 1000, headline: true },
      { strategy: "rescan", events: 200, requested: 1000, headline: true },
      { strategy: "redis", events: 1000, requested: 1000, headline: true }
    ])
    expect(BenchReport.plan(settings({ strategy: "rescan" }))).toEqual([
      { strategy: "rescan", events: 200, requested: 1000, headline: true }
    ])
  })

  it("sweeps 1/10, 1/4, 1/2 and all of each strategy's size; the largest is the headline", () => {
    const runs = BenchReport.plan(settings({ sweep: true }))
    const of = (s: string) => runs.filter((r) => r.strategy === s)
    expect(of("table").map((r) => r.events)).toEqual([100, 250, 500, 1000])
    expect(of("rescan").map((r) => [r.events, r.requested])).toEqual([
      [20, 100],
      [50, 250],
      [100, 500],
      [200, 1000]
    ])
    expect(of("redis").map((r) => r.headline)).toEqual([false, false, false, true])
  })

  it("deduplicates sizes and never goes below 1", () => {
    const sizes = (events: number) =>
      BenchReport.plan(settings({ strategy: "table", events, sweep: true })).map((r) => r.events)
    expect(sizes(3)).toEqual([1, 2, 3])
    expect(sizes(1)).toEqual([1])
    const one = BenchReport.plan(settings({ strategy: "rescan", events: 1, rescanEvents: 1, sweep: true }))
    expect(one).toEqual([{ strategy: "rescan", events: 1, requested: 1, headline: true }])
  })
})

describe("ratios", () => {
  it("compares per event when the sizes differ, and says so", () => {
    const [r, s] = BenchReport.ratios([table, rescan, redis])
    // rescan: 20000 ms / 200 = 100 ms per event; table: 100 ms / 1000 = 0.1 ms per event.
    expect(r).toEqual({ strategy: "rescan", vsTable: 1000, events: 200, tableEvents: 1000, perEvent: true })
    expect(s).toEqual({ strategy: "redis", vsTable: 1.5, events: 1000, tableEvents: 1000, perEvent: false })
    expect(BenchReport.formatRatioLine(r!)).toBe(
      "rescan/table: 1000x per event (elapsed/events; rescan ran 200 events, table 1000)"
    )
    expect(BenchReport.formatRatioLine(s!)).toBe("redis/table: 1.50x elapsed (both 1000 events)")
  })

  it("has none without a table run", () => {
    expect(BenchReport.ratios([rescan, redis])).toEqual([])
  })
})

describe("jsonLine", () => {
  it("has exactly the documented keys, including every required one", () => {
    const line = BenchReport.jsonLine(rescan, 1000, table)
    const keys = Object.keys(JSON.parse(JSON.stringify(line)))
    for (const key of BenchReport.requiredJsonKeys) expect(keys).toContain(key)
    expect(keys).toEqual([
      "strategy",
      "events",
      "requestedEvents",
      "users",
      "correct",
      "elapsedMs",
      "eventsPerSec",
      "p50Ms",
      "p99Ms",
      "p999Ms",
      "maxMs",
      "peakRssMb",
      "loadMs",
      "perEventMs",
      "duplicates",
      "comparedPerEvent",
      "vsTable",
      "problems"
    ])
  })

  it("carries the measurements, the per-event comparison and the ratio to the table", () => {
    expect(BenchReport.jsonLine(rescan, 1000, table)).toMatchObject({
      strategy: "rescan",
      events: 200,
      requestedEvents: 1000,
      correct: true,
      elapsedMs: 20_000,
      perEventMs: 100,
      comparedPerEvent: true,
      vsTable: 1000
    })
    const own = BenchReport.jsonLine(table, 1000, table)
    expect(own.vsTable).toBeNull()
    expect(own.comparedPerEvent).toBe(false)
    expect(BenchReport.jsonLine(redis, 1000, undefined).vsTable).toBeNull()
  })

  it("is one line of JSON, with the required keys and the run's values", () => {
    // A failed run's problems are free text, possibly over several lines: they must not break the line.
    const wrong = report({
      strategy: "redis",
      events: 1000,
      correct: false,
      verification: { expected: 1000, present: 999, correct: 998, duplicates: 0, problems: ["missing 3:14\nand more"] }
    })
    for (const [r, t] of [
      [table, table],
      [rescan, table],
      [wrong, undefined]
    ] as const) {
      const text = BenchReport.jsonText(r, 1000, t)
      expect(text.split(/\r?\n/)).toHaveLength(1)
      expect(text.trim()).toBe(text)
      const parsed: unknown = JSON.parse(text)
      expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)).toBe(true)
      for (const key of BenchReport.requiredJsonKeys) expect(parsed).toHaveProperty(key, r[key])
      expect(parsed).toEqual(BenchReport.jsonLine(r, 1000, t))
    }
  })
})

describe("tableFor", () => {
  it("picks the table run of the same size, else the largest", () => {
    const small = report({ strategy: "table", events: 100 })
    expect(BenchReport.tableFor(100, [small, table, rescan])).toBe(small)
    expect(BenchReport.tableFor(250, [small, table, rescan])).toBe(table)
    expect(BenchReport.tableFor(250, [rescan])).toBeUndefined()
  })
})

describe("outcome", () => {
  it("succeeds when every run is correct", () => {
    expect(Result.isSuccess(BenchReport.outcome([table, rescan, redis]))).toBe(true)
  })

  it("fails when any run has a wrong output, naming it and its problems", () => {
    const wrong = report({
      strategy: "redis",
      events: 1000,
      correct: false,
      verification: {
        expected: 1000,
        present: 1000,
        correct: 999,
        duplicates: 0,
        problems: ["click 0:7: got Bob-1, expected user 101 Alice-0"]
      }
    })
    const result = BenchReport.outcome([table, wrong])
    expect(Result.isFailure(result)).toBe(true)
    if (Result.isFailure(result)) {
      expect(result.failure._tag).toBe("JoinRunFailed")
      expect(result.failure.message).toContain("redis (1000 events): 1000/1000 present, 999 correct")
      expect(result.failure.message).toContain("expected user 101 Alice-0")
      expect(result.failure.message).not.toContain("table")
    }
  })

  it("fails when nothing was measured", () => {
    expect(Result.isFailure(BenchReport.outcome([]))).toBe(true)
  })
})

describe("text", () => {
  it("aligns the table, marks a run on fewer events and flags a wrong one", () => {
    const wrong = report({
      strategy: "redis",
      events: 1000,
      correct: false,
      verification: { expected: 1000, present: 990, correct: 990, duplicates: 0, problems: [] }
    })
    const lines = BenchReport.formatTable([table, rescan, wrong], 1000).split("\n")
    expect(lines).toHaveLength(4)
    expect(new Set(lines.map((l) => l.length)).size).toBe(1)
    expect(lines[0]).toMatch(/^strategy\s+events\s+users\s+correct/)
    expect(lines[1]).toMatch(/^table\s+1000\s+100\s+ok 1000\/1000/)
    expect(lines[2]).toMatch(/^rescan\*\s+200\s/)
    expect(lines[3]).toContain("FAIL 990/1000")
  })

  it("says in the summary that rescan is compared per event", () => {
    const summary = BenchReport.formatSummary([table, rescan, redis], 1000)
    expect(summary).toContain("* rescan ran 200 of 1000 events (--rescan-events): compare it per event")
    expect(summary).toContain("rescan/table: 1000x per event")
    expect(BenchReport.formatSummary([table], 1000)).not.toContain("per event (")
  })

  it("formats milliseconds and ratios with about three significant digits", () => {
    expect([1234.5, 81.23, 0.81234, 0.0055].map(BenchReport.formatMs)).toEqual(["1235", "81.2", "0.812", "0.0055"])
    expect([812.4, 12.34, 1.5].map(BenchReport.formatRatio)).toEqual(["812x", "12.3x", "1.50x"])
    expect(BenchReport.progressLine("rescan", 50, 200, 12.6)).toBe("  rescan: 50/200 enriched (13/s)")
  })

  it("draws one chart line per strategy that ran", () => {
    const svg = BenchReport.chart([table, report({ strategy: "table", events: 100, elapsedMs: 12 }), rescan], {
      users: 100,
      brokers: "memory"
    })
    expect(svg.match(/<path class="series"/g)).toHaveLength(2)
    expect(svg).toContain("(log scale)")
  })
})
