/**
 * The exactly-once audit on histories written by hand: a clean one passes, and each way of breaking exactly-once
 * (a re-delivered record, a lost one, a zombie's write between its successor's, a count off by one) is named.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Written } from "../src/Counting.ts"
import * as CountingAudit from "../src/CountingAudit.ts"

// Partition 0: a, b, a; partition 1: c.
const inputs: ReadonlyArray<CountingAudit.Input> = [
  { partition: 0, offset: 0, key: "a" },
  { partition: 0, offset: 1, key: "b" },
  { partition: 0, offset: 2, key: "a" },
  { partition: 1, offset: 0, key: "c" }
]

const out = (partition: number, at: number, key: string, count: number, offset: number, worker = "w"): Written => ({
  key,
  count,
  worker,
  task: partition,
  offset,
  partition,
  at,
  timestamp: at
})

const clean = [out(0, 0, "a", 1, 0), out(0, 1, "b", 1, 1), out(0, 2, "a", 2, 2), out(1, 0, "c", 1, 0)]

describe("CountingAudit", () => {
  it("a clean history is exactly once, in any read order", () => {
    const a = CountingAudit.audit(inputs, [...clean].reverse())
    assert.isTrue(CountingAudit.isExactlyOnce(a), CountingAudit.describe(a))
    assert.strictEqual(a.outputs, 4)
    assert.strictEqual(a.inputs, 4)
  })

  it("a record processed again after a crash: a duplicate, out of order, and a count over the truth", () => {
    // The owner after the crash restored a count that already had offset 2 in it, and processed offset 2 again.
    const a = CountingAudit.audit(inputs, [...clean.slice(0, 3), out(0, 3, "a", 3, 2), clean[3]!])
    assert.isFalse(CountingAudit.isExactlyOnce(a))
    assert.strictEqual(a.duplicates, 1)
    assert.strictEqual(a.duplicated, 1)
    assert.strictEqual(a.outOfOrder, 1)
    assert.strictEqual(a.wrongCounts, 1)
    assert.strictEqual(a.missing, 0)
  })

  it("a record without an output is missing, and the key's next count skips", () => {
    const a = CountingAudit.audit(inputs, [clean[1]!, clean[2]!, clean[3]!])
    assert.strictEqual(a.missing, 1)
    assert.strictEqual(a.gaps, 1, "a's first output is 2")
    assert.include(CountingAudit.describe(a), "input 0@0 has no output")
  })

  it("a zombie's committed write between its successor's outputs repeats input offsets", () => {
    const zombie = out(0, 2, "a", 2, 2, "zombie")
    const successor = [out(0, 3, "a", 2, 2, "next")]
    const a = CountingAudit.audit(inputs, [clean[0]!, clean[1]!, zombie, ...successor, clean[3]!])
    assert.strictEqual(a.duplicates, 1)
    assert.strictEqual(a.outOfOrder, 1)
    assert.strictEqual(a.gaps, 1, "a's count repeats 2")
  })

  it("an output for an input never written is unknown", () => {
    const a = CountingAudit.audit(inputs, [...clean, out(1, 1, "c", 2, 5)])
    assert.strictEqual(a.unknown, 1)
    assert.isFalse(CountingAudit.isExactlyOnce(a))
  })

  it("inputsOf pairs the records produced with where they were written", () => {
    const encoder = new TextEncoder()
    const sent = [{ key: encoder.encode("a") }, { key: encoder.encode("b") }]
    assert.deepStrictEqual(
      CountingAudit.inputsOf(sent, [
        { partition: 1, offset: 7 },
        { partition: 0, offset: 3 }
      ]),
      [
        { partition: 1, offset: 7, key: "a" },
        { partition: 0, offset: 3, key: "b" }
      ]
    )
  })
})
