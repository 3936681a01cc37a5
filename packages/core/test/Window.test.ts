/** Window assignment, close and lateness rules, and aggregators: golden cases at the exact boundaries. */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as Aggregator from "../src/Aggregator.ts"
import * as Window from "../src/Window.ts"

const w = (start: number, end: number): Window.Window => ({ start, end })

describe("Window", () => {
  it("tumbling: a window holds [start, end); end belongs to the next one", () => {
    const minute = Window.tumbling("60 seconds")
    assert.deepStrictEqual(Window.assign(minute, 0), [w(0, 60_000)])
    assert.deepStrictEqual(Window.assign(minute, 59_999), [w(0, 60_000)])
    assert.deepStrictEqual(Window.assign(minute, 60_000), [w(60_000, 120_000)])
    assert.deepStrictEqual(Window.assign(minute, 1_700_000_000_123), [w(1_699_999_980_000, 1_700_000_040_000)])
  })

  it("hopping: windows start at multiples of advance, also when size is not a multiple of it", () => {
    const hop = Window.hopping("10 millis", "3 millis")
    // Near 0 no window starts before 0.
    assert.deepStrictEqual(Window.assign(hop, 0), [w(0, 10)])
    assert.deepStrictEqual(Window.assign(hop, 2), [w(0, 10)])
    assert.deepStrictEqual(Window.assign(hop, 3), [w(0, 10), w(3, 13)])
    assert.deepStrictEqual(Window.assign(hop, 9), [w(0, 10), w(3, 13), w(6, 16), w(9, 19)])
    assert.deepStrictEqual(Window.assign(hop, 10), [w(3, 13), w(6, 16), w(9, 19)])
    // Far from 0: the starts in (t - size, t] that are multiples of 3.
    assert.deepStrictEqual(Window.assign(hop, 1_000_000), [
      w(999_993, 1_000_003),
      w(999_996, 1_000_006),
      w(999_999, 1_000_009)
    ])
    assert.deepStrictEqual(Window.assign(hop, 1_000_002), [
      w(999_993, 1_000_003),
      w(999_996, 1_000_006),
      w(999_999, 1_000_009),
      w(1_000_002, 1_000_012)
    ])
    // Against brute force, for every timestamp of a range.
    for (let t = 0; t < 200; t++) {
      const expected: Array<Window.Window> = []
      for (let start = 0; start <= t; start += 3) if (start + 10 > t) expected.push(w(start, start + 10))
      assert.deepStrictEqual(Window.assign(hop, t), expected, `t = ${t}`)
    }
    assert.deepStrictEqual(Window.assign(Window.hopping("10 millis", "5 millis"), 5), [w(0, 10), w(5, 15)])
  })

  it("refuses windows that make no sense", () => {
    assert.throws(() => Window.hopping("10 millis", "11 millis"), /exceeds its size/)
    assert.throws(() => Window.tumbling(0), /at least 1/)
    assert.throws(() => Window.session("0.5 millis"), /whole number/)
    assert.throws(() => Window.graceMillis(-1), /at least 0/)
  })

  it("sliding: the window of a record ends at it, inclusive, and starts at 0 at the earliest", () => {
    const sliding = Window.sliding("10 millis")
    assert.deepStrictEqual(Window.slidingWindow(sliding, 25), w(16, 26))
    assert.deepStrictEqual(Window.slidingWindow(sliding, 9), w(0, 10))
    assert.deepStrictEqual(Window.slidingWindow(sliding, 3), w(0, 4))
  })

  it("session: a record within gap of two sessions merges them", () => {
    const gap5 = Window.session("5 millis")
    // Records at 0..2 and at 10..11; 7 is 5 after 2 and 3 before 10.
    const merged = Window.sessionMerge(gap5, [w(10, 12), w(0, 3)], 7)
    assert.deepStrictEqual(merged, { session: w(0, 12), merged: [w(0, 3), w(10, 12)] })
    // Inside a session, or extending it at either end.
    assert.deepStrictEqual(Window.sessionMerge(gap5, [w(0, 3)], 1), { session: w(0, 3), merged: [w(0, 3)] })
    assert.deepStrictEqual(Window.sessionMerge(gap5, [w(10, 12)], 5), { session: w(5, 12), merged: [w(10, 12)] })
  })

  it("session: exactly gap after the last record joins, one more starts a new session", () => {
    const gap5 = Window.session("5 millis")
    assert.deepStrictEqual(Window.sessionMerge(gap5, [w(0, 3)], 7), { session: w(0, 8), merged: [w(0, 3)] })
    assert.deepStrictEqual(Window.sessionMerge(gap5, [w(0, 3)], 8), { session: w(8, 9), merged: [] })
    // And before the first record.
    assert.isTrue(Window.joins(gap5, w(10, 12), 5))
    assert.isFalse(Window.joins(gap5, w(10, 12), 4))
  })

  it("close: fixed and sliding windows at end + grace, sessions at (end - 1) + gap + grace + 1", () => {
    const tumbling = Window.tumbling("10 millis")
    assert.strictEqual(Window.closesAt(tumbling, w(0, 10), 5), 15)
    assert.isFalse(Window.isClosed(tumbling, w(0, 10), 5, 14))
    assert.isTrue(Window.isClosed(tumbling, w(0, 10), 5, 15))
    assert.isTrue(Window.isClosed(tumbling, w(0, 10), 0, 10))
    assert.isFalse(Window.isClosed(tumbling, w(0, 10), 0, 9))

    const sliding = Window.sliding("10 millis")
    assert.strictEqual(Window.closesAt(sliding, Window.slidingWindow(sliding, 9), 5), 15)

    const session = Window.session("5 millis")
    assert.strictEqual(Window.closesAt(session, w(0, 3), 2), 10)
    assert.isFalse(Window.isClosed(session, w(0, 3), 2, 9))
    assert.isTrue(Window.isClosed(session, w(0, 3), 2, 10))
    // At 9, a record at 7 is not late (7 + 1 + 2 > 9) and joins (7 <= 2 + 5); at 10 none that joins is in time.
    assert.isFalse(Window.isLate(7, 2, 9))
    assert.isTrue(Window.joins(session, w(0, 3), 7))
    assert.isTrue(Window.isLate(7, 2, 10))
  })

  it("late: a sliding or session record when t + 1 + grace <= stream time", () => {
    assert.isFalse(Window.isLate(9, 5, 14))
    assert.isTrue(Window.isLate(9, 5, 15))
    assert.isFalse(Window.isLate(9, 0, 9))
    assert.isTrue(Window.isLate(9, 0, 10))
  })

  it("late: a hopping record misses its closed windows and counts in the open ones", () => {
    const hop = Window.hopping("10 millis", "3 millis")
    assert.deepStrictEqual(Window.split(hop, 9, 0, 13), {
      open: [w(6, 16), w(9, 19)],
      missed: [w(0, 10), w(3, 13)]
    })
    assert.deepStrictEqual(Window.split(hop, 9, 0, 12), { open: [w(3, 13), w(6, 16), w(9, 19)], missed: [w(0, 10)] })
    assert.deepStrictEqual(Window.split(hop, 9, 1, 10), {
      open: [w(0, 10), w(3, 13), w(6, 16), w(9, 19)],
      missed: []
    })
    assert.strictEqual(Window.format(w(3, 13)), "3-13")
  })
})

const fold = <I, A, O>(agg: Aggregator.Aggregator<I, A, O>, inputs: ReadonlyArray<I>): A =>
  inputs.reduce(agg.add, agg.initial())

/** Adding one by one equals merging the accumulators of every split in two, and the accumulator round-trips. */
const lawful = <I, A, O>(agg: Aggregator.Aggregator<I, A, O>, inputs: ReadonlyArray<I>): O => {
  const whole = agg.result(fold(agg, inputs))
  for (let i = 0; i <= inputs.length; i++) {
    const merged = agg.merge(fold(agg, inputs.slice(0, i)), fold(agg, inputs.slice(i)))
    assert.deepStrictEqual(agg.result(merged), whole, `split at ${i}`)
  }
  const acc = fold(agg, inputs)
  const encoded = agg.codec.encode(acc)
  assert.isTrue(Result.isSuccess(encoded))
  if (Result.isSuccess(encoded)) assert.deepStrictEqual(agg.codec.decode(encoded.success), Result.succeed(acc))
  return whole
}

describe("Aggregator", () => {
  const xs = [3, -1, 7, 7]

  it("count, sum, min, max, mean", () => {
    assert.strictEqual(lawful(Aggregator.count, xs), 4)
    assert.strictEqual(lawful(Aggregator.sum, xs), 16)
    assert.strictEqual(lawful(Aggregator.min, xs), -1)
    assert.strictEqual(lawful(Aggregator.max, xs), 7)
    assert.strictEqual(lawful(Aggregator.mean, xs), 4)
  })

  it("of no input: min, max and mean are null, count and sum 0", () => {
    assert.isNull(lawful(Aggregator.min, []))
    assert.isNull(lawful(Aggregator.max, []))
    assert.isNull(lawful(Aggregator.mean, []))
    assert.strictEqual(lawful(Aggregator.count, []), 0)
    assert.strictEqual(lawful(Aggregator.sum, []), 0)
  })

  it("distinctCount is exact, and its accumulator is the sorted set", () => {
    assert.strictEqual(lawful(Aggregator.distinctCount, ["b", "a", "b", "c", "a"]), 3)
    assert.deepStrictEqual(fold(Aggregator.distinctCount, ["b", "a", "b", "c"]), ["a", "b", "c"])
    assert.deepStrictEqual(Aggregator.distinctCount.merge(["a", "c"], ["b", "c", "d"]), ["a", "b", "c", "d"])
    assert.deepStrictEqual(Aggregator.distinctCount.merge([], ["x"]), ["x"])
  })

  it("struct: several aggregators over one input, a result per field, one compact accumulator", () => {
    const stats = Aggregator.struct({
      min: Aggregator.min,
      max: Aggregator.max,
      mean: Aggregator.mean,
      count: Aggregator.count
    })
    assert.deepStrictEqual(lawful(stats, xs), { min: -1, max: 7, mean: 4, count: 4 })
    assert.deepStrictEqual(stats.result(stats.initial()), { min: null, max: null, mean: null, count: 0 })
    const encoded = stats.codec.encode(fold(stats, xs))
    assert.isTrue(Result.isSuccess(encoded))
    if (Result.isSuccess(encoded) && encoded.success !== null) {
      // Four length-prefixed fields of big-endian doubles: -1, 7, [16, 4], 4.
      assert.strictEqual(encoded.success.length, 4 * 4 + 8 + 8 + 16 + 8)
      assert.isTrue(Result.isFailure(stats.codec.decode(encoded.success.subarray(0, 10))))
    }
  })

  it("the numeric accumulators are big-endian doubles, checked on the way in and out", () => {
    const sum = Aggregator.sum.codec.encode(-2.5)
    assert.deepStrictEqual(sum, Result.succeed(Uint8Array.of(0xc0, 0x04, 0, 0, 0, 0, 0, 0)))
    assert.deepStrictEqual(
      Aggregator.mean.codec.decode(Result.getOrThrow(Aggregator.mean.codec.encode([3, 2]))),
      Result.succeed([3, 2])
    )
    // A sum that overflowed is refused when it is written (the record is rejected), never stored.
    assert.isTrue(Result.isFailure(Aggregator.sum.codec.encode(Number.POSITIVE_INFINITY)))
    assert.isTrue(Result.isFailure(Aggregator.mean.codec.encode([Number.NaN, 1])))
    assert.isTrue(Result.isFailure(Aggregator.count.codec.encode(1.5)))
    assert.deepStrictEqual(Aggregator.min.codec.encode(null), Result.succeed(null))
    assert.deepStrictEqual(Aggregator.max.codec.decode(null), Result.succeed(null))
    // Bytes of another length, or a stored non-finite number, are not an accumulator.
    assert.isTrue(Result.isFailure(Aggregator.sum.codec.decode(Uint8Array.of(1, 2, 3))))
    assert.isTrue(Result.isFailure(Aggregator.sum.codec.decode(new TextEncoder().encode("12"))))
    assert.isTrue(Result.isFailure(Aggregator.sum.codec.decode(Uint8Array.of(0x7f, 0xf0, 0, 0, 0, 0, 0, 0))))
  })

  it("mapInput feeds an aggregator with a function of the input", () => {
    const sensors = Aggregator.mapInput(Aggregator.distinctCount, (r: { readonly sensor: string }) => r.sensor)
    assert.strictEqual(lawful(sensors, [{ sensor: "a" }, { sensor: "b" }, { sensor: "a" }]), 2)
    const doubled = Aggregator.mapInput((n: number) => n * 2)(Aggregator.sum)
    assert.strictEqual(lawful(doubled, [1, 2]), 6)
  })
})
