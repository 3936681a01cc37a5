/** Binary search over sorted strings (store keys as binary strings, the sets of `Aggregator.distinctCount`). */

/** The first index in `sorted` whose value is `>= x`: where `x` is, or would be inserted. */
export const lowerBound = (sorted: ReadonlyArray<string>, x: string): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (sorted[mid]! < x) lo = mid + 1
    else hi = mid
  }
  return lo
}
