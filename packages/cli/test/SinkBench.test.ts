/** The pure parts of `sluice bench sinks`: the plan, the medians, the cost of exactly-once, the goal. */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as SinkBench from "../src/SinkBench.ts"

const target = (name: string): SinkBench.Target => ({
  name,
  modes: ["at_least_once", "exactly_once"],
  run: () => Effect.die("not run")
})

const result = (mode: SinkBench.Mode, batchSize: number, rowsPerSec: number, round = 0): SinkBench.Result => ({
  round,
  target: "postgres",
  mode,
  batchSize,
  rows: 1_000,
  elapsedMs: 1_000,
  rowsPerSec,
  verified: "ok",
  correct: true
})

describe("SinkBench", () => {
  it("plan: rounds of every batch size, both modes of a batch size in a row, taking turns; batch size 1 writes fewer rows", () => {
    const runs = SinkBench.plan([target("postgres")], {
      batchSizes: [1, 1_000],
      rows: 50_000,
      rowsAtOne: 2_000,
      rounds: 2
    })
    assert.deepStrictEqual(
      runs.map((r) => `${r.round}:${r.batchSize}:${r.mode}:${r.rows}`),
      [
        "0:1:at_least_once:2000",
        "0:1:exactly_once:2000",
        "0:1000:at_least_once:50000",
        "0:1000:exactly_once:50000",
        "1:1:exactly_once:2000",
        "1:1:at_least_once:2000",
        "1:1000:exactly_once:50000",
        "1:1000:at_least_once:50000"
      ]
    )
  })

  it("summarise: the median and range per target, mode and batch size; one wrong run makes the group wrong", () => {
    const summaries = SinkBench.summarise([
      result("at_least_once", 1_000, 30_000, 0),
      result("at_least_once", 1_000, 10_000, 1),
      result("at_least_once", 1_000, 20_000, 2),
      { ...result("exactly_once", 1_000, 15_000), correct: false, verified: "999 rows" }
    ])
    assert.deepStrictEqual(
      summaries.map((s) => [s.mode, s.runs, s.medianRowsPerSec, s.minRowsPerSec, s.maxRowsPerSec, s.correct]),
      [
        ["at_least_once", 3, 20_000, 10_000, 30_000, true],
        ["exactly_once", 1, 15_000, 15_000, 15_000, false]
      ]
    )
    assert.deepStrictEqual(SinkBench.costOfExactlyOnce(summaries), [
      "postgres batch 1,000: exactly-once 15,000 rows/s vs at-least-once 20,000 (75%)"
    ])
  })

  it("goal: judged on the best median with batching; batch size 1 does not count", () => {
    const summaries = SinkBench.summarise([result("at_least_once", 1, 90_000), result("at_least_once", 100, 40_000)])
    assert.include(SinkBench.goal(summaries, "postgres", 50_000), "NOT met (best median 40,000 rows/s")
    assert.include(
      SinkBench.goal(SinkBench.summarise([result("exactly_once", 10_000, 60_000)]), "postgres", 50_000),
      "met (best median 60,000"
    )
    assert.isUndefined(SinkBench.goal(summaries, "clickhouse", 50_000))
  })
})
