/**
 * `sluice bench windows` (src/BenchWindows.ts, BenchWindowsReport.ts, BenchWindowsLoop.ts): the truth and the check
 * every output goes through, the loop's windows and commits, the report's arithmetic and targets, and a whole run on
 * the in-memory broker as a process, whose three contenders must all come out verified.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import type { WindowAggregate } from "@sluice/processors/Sensors"
import { Schema } from "effect"
import * as Loop from "../src/BenchWindowsLoop.ts"
import * as Report from "../src/BenchWindowsReport.ts"

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))

const minute = 60_000
const t0 = 1_700_000_040_000 // a window start: 28,333,334 minutes

const aggregate = (overrides: Partial<WindowAggregate>): WindowAggregate => ({
  sensor_id: "s1",
  window_start: t0,
  window_end: t0 + minute,
  count: 2,
  min_temperature: 20,
  max_temperature: 30,
  mean_temperature: 25,
  ...overrides
})

const result = (overrides: Partial<Report.Result>): Report.Result => ({
  contender: "at_least_once",
  label: Report.labels.at_least_once,
  events: 1_000,
  sensors: 10,
  partitions: 3,
  stepMs: 10,
  graceMs: 10_000,
  windows: 100,
  outputRecords: 100,
  verified: "100/100 windows exact",
  correct: true,
  elapsedMs: 10,
  eventsPerSec: 100_000,
  cpuMs: 10,
  cpuPercent: 100,
  cpuUsPerEvent: 10,
  vsLoop: 0.8,
  loadStart: [12, 11, 10],
  loadEnd: [12, 11, 10],
  ...overrides
})

describe("the truth", () => {
  it("closes a window once its partition's stream time reaches its end plus the grace, per partition", () => {
    const truth = Report.truth(minute, 10_000)
    truth.add(0, "s1", t0 + 1_000, 20)
    truth.add(0, "s1", t0 + 2_000, 30)
    truth.add(1, "s2", t0 + 5_000, 10)
    // Partition 0 reaches the close of s1's window; partition 1 stays just short of s2's.
    truth.add(0, "s3", t0 + minute + 10_000, 1)
    truth.add(1, "s4", t0 + minute + 9_999, 1)
    const closed = truth.closed()
    assert.deepStrictEqual([...closed.keys()], [Report.windowKey("s1", t0)])
    assert.deepStrictEqual(closed.get(Report.windowKey("s1", t0)), aggregate({}))
    // A reading for a window already closed by its partition's stream time is late and counts nowhere.
    truth.add(0, "s1", t0 + 3_000, 99)
    assert.strictEqual(truth.late(), 1)
    assert.strictEqual(truth.closed().get(Report.windowKey("s1", t0))?.count, 2)
  })

  it("spreads the readings over about 20 windows by default, at least 1 ms apart", () => {
    assert.strictEqual(Report.defaultStepMs(1_000_000, minute), 1)
    assert.strictEqual(Report.defaultStepMs(20_000, minute), 60)
    assert.strictEqual(Report.defaultStepMs(100_000_000, minute), 1)
  })
})

describe("checking an output", () => {
  const expected = new Map([
    [Report.windowKey("s1", t0), aggregate({})],
    [Report.windowKey("s2", t0), aggregate({ sensor_id: "s2" })]
  ])
  const outputOf = (windows: ReadonlyArray<WindowAggregate | undefined>) =>
    windows.reduce((acc, w) => Report.collect(acc, w), Report.collected())

  it("is correct when every window is there with its aggregate, means equal up to rounding", () => {
    const v = Report.verify(
      expected,
      outputOf([aggregate({ sensor_id: "s2" }), aggregate({ mean_temperature: 25 + 1e-12 })]),
      false
    )
    assert.isTrue(v.correct)
    assert.strictEqual(v.verified, "2/2 windows exact")
  })

  it("names what is missing, wrong, unexpected or undecodable", () => {
    const v = Report.verify(
      expected,
      outputOf([aggregate({ max_temperature: 31 }), aggregate({ sensor_id: "s9" }), undefined]),
      true
    )
    assert.isFalse(v.correct)
    assert.strictEqual(v.verified, "0/2 windows exact (1 missing, 1 wrong, 1 unexpected, 1 undecodable)")
    assert.include(v.examples.join("\n"), "missing s2@")
    assert.include(v.examples.join("\n"), "wrong s1@")
  })

  it("allows an identical duplicate under at-least-once only, and never a conflicting one", () => {
    const twice = outputOf([aggregate({}), aggregate({}), aggregate({ sensor_id: "s2" })])
    assert.isTrue(Report.verify(expected, twice, true).correct)
    assert.isFalse(Report.verify(expected, twice, false).correct)
    const conflicting = outputOf([aggregate({}), aggregate({ count: 3 }), aggregate({ sensor_id: "s2" })])
    assert.isFalse(Report.verify(expected, conflicting, true).correct)
  })
})

describe("the loop's windows", () => {
  it("parses what a plain loop checks, and nothing else", () => {
    assert.deepStrictEqual(Loop.parse('{"sensor_id":"s1","temperature":21.5,"humidity":40,"timestamp":1700000040.5}'), {
      sensor: "s1",
      temperature: 21.5,
      eventMs: 1_700_000_040_500
    })
    assert.isUndefined(Loop.parse('{"sensor_id":"s1","temperature":"hot","timestamp":1700000040}'))
    assert.isUndefined(Loop.parse("{not json"))
    assert.isUndefined(Loop.parse('{"sensor_id":"s1","temperature":1,"timestamp":5}'))
  })

  it("emits a window once the partition's stream time passes its end plus the grace, and commits no further than its first record", () => {
    const windows = Loop.partitionWindows(minute, 10_000)
    assert.isTrue(windows.add(0, { sensor: "s1", temperature: 20, eventMs: t0 + 1_000 }))
    assert.isTrue(windows.add(1, { sensor: "s1", temperature: 30, eventMs: t0 + 2_000 }))
    assert.isTrue(windows.add(2, { sensor: "s2", temperature: 5, eventMs: t0 + minute + 9_999 }))
    assert.deepStrictEqual(windows.due(), [])
    assert.strictEqual(windows.commitAt(3), 0, "the open window's records are only in memory")
    assert.isTrue(windows.add(3, { sensor: "s2", temperature: 7, eventMs: t0 + minute + 10_000 }))
    assert.deepStrictEqual(windows.due(), [aggregate({})])
    assert.strictEqual(windows.commitAt(4), 2)
    assert.isFalse(windows.add(4, { sensor: "s1", temperature: 1, eventMs: t0 + 3_000 }), "late")
  })
})

describe("the report", () => {
  it("rates, CPU per event and the ratio to the loop", () => {
    const loop = result({ contender: "loop", eventsPerSec: 50_000, vsLoop: null })
    assert.deepStrictEqual(Report.measured({ events: 1_000, elapsedMs: 40, cpuMs: 30, loop }), {
      elapsedMs: 40,
      eventsPerSec: 25_000,
      cpuMs: 30,
      cpuPercent: 75,
      cpuUsPerEvent: 30,
      vsLoop: 0.5
    })
    assert.strictEqual(Report.measured({ events: 5, elapsedMs: 0, cpuMs: 0, loop: undefined }).vsLoop, null)
  })

  it("says whether each target was met; a wrong result meets none", () => {
    const lines = Report.targets([
      result({ contender: "loop", label: Report.labels.loop, vsLoop: null }),
      result({ eventsPerSec: 100_000, vsLoop: 0.8 }),
      result({ contender: "exactly_once", label: Report.labels.exactly_once, vsLoop: 0.79 })
    ])
    assert.deepStrictEqual(lines, [
      "target: at-least-once >= 100,000 events/s: 100,000 (met)",
      "target: sluice at-least-once within 20% of the loop: 0.8x its events/s (met)",
      "target: sluice exactly-once within 20% of the loop: 0.79x its events/s (not met)"
    ])
    assert.include(Report.targets([result({ correct: false })])[0]!, "(not met)")
    assert.include(Report.summary([result({ correct: false, verified: "99/100 windows exact" })]), "WRONG")
  })
})

describe("sluice bench windows --brokers memory --json", () => {
  it("prints one verified JSON line per contender, the loop first, the others with their ratio to it", () => {
    const run = spawnSync(
      `${repoRoot}node_modules/.bin/node`,
      [
        "--conditions=@sluice/source",
        `${repoRoot}packages/cli/src/bin.ts`,
        "bench",
        "windows",
        "--brokers",
        "memory",
        "--events",
        "3000",
        "--sensors",
        "100",
        "--json"
      ],
      { encoding: "utf8", timeout: 60_000 }
    )
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stderr, "bench windows: producing 3000 readings of 100 sensors", "progress goes to stderr")
    const lines = run.stdout
      .trim()
      .split("\n")
      .map((line) => Schema.decodeUnknownSync(Schema.fromJsonString(Report.Result))(line))
    assert.deepStrictEqual(
      lines.map((r) => r.contender),
      ["loop", "at_least_once", "exactly_once"]
    )
    for (const r of lines) {
      assert.isTrue(r.correct, `${r.label}: ${r.verified}`)
      assert.isAbove(r.windows, 100)
      assert.strictEqual(r.outputRecords, r.windows)
      assert.strictEqual(r.verified, `${r.windows}/${r.windows} windows exact`)
      assert.isAbove(r.eventsPerSec, 0)
    }
    assert.isNull(lines[0]!.vsLoop)
    assert.isNumber(lines[1]!.vsLoop)
    assert.isNumber(lines[2]!.vsLoop)
  })
})
