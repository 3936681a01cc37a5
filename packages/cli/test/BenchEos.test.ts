/**
 * `sluice bench eos` (src/BenchEos.ts, src/BenchEosReport.ts): the cost against the goal from medians, the table,
 * and a whole run on the in-memory broker as a process, whose JSON lines must cover both guarantees and phases,
 * each audited.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Predicate } from "effect"
import * as BenchEosReport from "../src/BenchEosReport.ts"

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))

const result = (overrides: Partial<BenchEosReport.RunResult>): BenchEosReport.RunResult => ({
  round: 1,
  guarantee: "at_least_once",
  phase: "throughput",
  state: "store",
  events: 1_000,
  keys: 10,
  partitions: 6,
  commitIntervalMs: 1_000,
  rate: null,
  elapsedMs: 100,
  visibleWindowMs: 90,
  eventsPerSec: 10_000,
  p50Ms: null,
  p99Ms: null,
  maxMs: null,
  duplicates: 0,
  missing: 0,
  exactlyOnce: true,
  correct: true,
  load1: 1,
  ...overrides
})

describe("bench eos's report", () => {
  it("the cost is the median exactly-once throughput over the median at-least-once one", () => {
    const s = BenchEosReport.summarize([
      result({ round: 1, eventsPerSec: 10_000 }),
      result({ round: 1, guarantee: "exactly_once", eventsPerSec: 9_500 }),
      result({ round: 1, phase: "latency", rate: 500, p99Ms: 40 }),
      result({ round: 1, guarantee: "exactly_once", phase: "latency", rate: 500, p99Ms: 300 }),
      result({ round: 2, eventsPerSec: 12_000 }),
      result({ round: 2, guarantee: "exactly_once", eventsPerSec: 8_000 }),
      result({ round: 3, eventsPerSec: 11_000 }),
      result({ round: 3, guarantee: "exactly_once", eventsPerSec: 9_000 })
    ])
    assert.deepStrictEqual(s, {
      summary: true,
      rounds: 3,
      alosEventsPerSec: 11_000,
      eosEventsPerSec: 9_000,
      cost: 0.818,
      goal: 0.9,
      met: false,
      alosP99Ms: 40,
      eosP99Ms: 300
    })
  })

  it("at most 10% slower meets the goal; no summary without both throughput runs", () => {
    const met = BenchEosReport.summarize([
      result({ eventsPerSec: 10_000 }),
      result({ guarantee: "exactly_once", eventsPerSec: 9_000 })
    ])
    assert.strictEqual(met?.met, true)
    assert.strictEqual(met?.eosP99Ms, null, "no latency run")
    assert.isUndefined(BenchEosReport.summarize([result({})]))
  })

  it("the median of an even count is the lower middle one", () => {
    assert.strictEqual(BenchEosReport.median([4, 1, 3, 2]), 2)
    assert.strictEqual(BenchEosReport.median([]), null)
  })

  it("the table shows every run, latency only where measured, and whether the goal is met", () => {
    const text = BenchEosReport.formatSummary([
      result({ eventsPerSec: 10_000 }),
      result({ guarantee: "exactly_once", eventsPerSec: 8_000, duplicates: 2, exactlyOnce: false, correct: false })
    ])
    assert.include(text, "= 0.8 (20% slower); goal at most 10% slower: NOT met")
    assert.include(text, "WRONG")
    assert.match(text, /at_least_once\s+throughput\s+1000\s+1000\s+100\s+10000\s+-\s+-\s+0/)
  })
})

/** A JSON line's field, as a number, or NaN. */
const numberOf = (line: unknown, field: string): number =>
  Predicate.hasProperty(line, field) && typeof line[field] === "number" ? line[field] : Number.NaN

describe("bench eos on the in-memory broker", () => {
  it("--json prints one audited line per guarantee and phase, then the cost", () => {
    const run = spawnSync(
      `${repoRoot}node_modules/.bin/node`,
      [
        "--conditions=@sluice/source",
        `${repoRoot}packages/cli/src/bin.ts`,
        "bench",
        "eos",
        "--brokers",
        "memory",
        "--events",
        "2000",
        "--latency-events",
        "300",
        "--rate",
        "1000",
        "--json"
      ],
      { encoding: "utf8", timeout: 60_000 }
    )
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stderr, "bench eos: round 1, exactly_once throughput: producing 2000 records")
    const lines: Array<unknown> = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line))
    assert.lengthOf(lines, 5)
    const runs = lines.slice(0, 4)
    assert.deepStrictEqual(
      runs.map((r) =>
        Predicate.hasProperty(r, "guarantee") && Predicate.hasProperty(r, "phase") ? `${r.guarantee} ${r.phase}` : ""
      ),
      ["at_least_once throughput", "at_least_once latency", "exactly_once throughput", "exactly_once latency"]
    )
    for (const r of runs) {
      assert.isTrue(Predicate.hasProperty(r, "correct") && r.correct === true, JSON.stringify(r))
      assert.isTrue(Predicate.hasProperty(r, "exactlyOnce") && r.exactlyOnce === true, JSON.stringify(r))
      assert.strictEqual(numberOf(r, "duplicates"), 0)
      assert.isAbove(numberOf(r, "eventsPerSec"), 0)
    }
    assert.isAbove(numberOf(runs[3], "p99Ms"), 0, "the latency runs measure latency")
    const summary = lines[4]
    assert.isTrue(Predicate.hasProperty(summary, "summary") && summary.summary === true)
    assert.isAbove(numberOf(summary, "cost"), 0)
  })
})
