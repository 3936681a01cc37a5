/**
 * The partition reader's filter, without a broker: what a Fetch response holds for Sluice below the read's end.
 */
import { assert, describe, it } from "@effect/vitest"
import { type FetchedMessage, visible } from "../src/internal/kafkajsPartition.ts"

const record = (offset: number, producerId = "-1", inTransaction = false): FetchedMessage => ({
  offset: String(offset),
  timestamp: "0",
  key: Buffer.from(`k${offset}`),
  value: Buffer.from(`v${offset}`),
  headers: {},
  batchContext: { producerId, inTransaction }
})
const marker = (offset: number, producerId: string, kind: "abort" | "commit"): FetchedMessage => ({
  offset: String(offset),
  timestamp: "0",
  // A control record's key: version 0, type 0 (abort) or 1 (commit).
  key: Buffer.from([0, 0, 0, kind === "abort" ? 0 : 1]),
  value: Buffer.alloc(6),
  isControlRecord: true,
  batchContext: { producerId, inTransaction: true }
})
const offsets = (r: ReturnType<typeof visible>) => r.records.map((m) => Number(m.offset))

describe("kafkajs partition reader", () => {
  it("skips what a compressed batch holds below the fetch offset, and stops at the end", () => {
    const messages = [0, 1, 2, 3, 4, 5].map((o) => record(o))
    const r = visible(messages, 2, 5)
    assert.deepStrictEqual(offsets(r), [2, 3, 4])
    assert.strictEqual(r.last, 4)
    assert.deepStrictEqual(visible(messages, 6, 10), { records: [], last: undefined })
  })

  it("drops control records and aborted transactions, and counts their offsets", () => {
    // p1 aborts 1-2 (marker 3), p2 commits 4 (marker 6) while p1 aborts 5 (marker 7); then plain 8, and p1
    // commits 9 (marker 10).
    const messages = [
      record(0),
      record(1, "p1", true),
      record(2, "p1", true),
      marker(3, "p1", "abort"),
      record(4, "p2", true),
      record(5, "p1", true),
      marker(6, "p2", "commit"),
      marker(7, "p1", "abort"),
      record(8),
      record(9, "p1", true),
      marker(10, "p1", "commit")
    ]
    const aborted = [
      { producerId: "p1", firstOffset: "5" },
      { producerId: "p1", firstOffset: "1" }
    ]
    const r = visible(messages, 0, 11, aborted)
    assert.deepStrictEqual(offsets(r), [0, 4, 8, 9])
    assert.strictEqual(r.last, 10)
    // From inside the first aborted transaction (its first offset below the fetch offset).
    assert.deepStrictEqual(offsets(visible(messages, 2, 11, aborted)), [4, 8, 9])
    // Two aborted transactions that began before the fetch offset are both in force.
    const late = [record(4, "p3", true), marker(5, "p3", "abort"), marker(6, "p1", "abort"), record(7)]
    const both = [
      { producerId: "p1", firstOffset: "1" },
      { producerId: "p3", firstOffset: "2" }
    ]
    assert.deepStrictEqual(offsets(visible(late, 4, 8, both)), [7])
    // A fetch of nothing but a final marker: no records, but the offset is covered.
    assert.deepStrictEqual(visible([marker(9, "p2", "commit")], 9, 10), { records: [], last: 9 })
    // Without the broker's list of aborted transactions, transactional records are committed ones.
    assert.deepStrictEqual(offsets(visible(messages, 0, 11)), [0, 1, 2, 4, 5, 8, 9])
  })
})
