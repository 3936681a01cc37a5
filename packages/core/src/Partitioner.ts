/**
 * Keyed partitioning compatible with the Java client (and librdkafka's `murmur2_random`): a key lands on
 * `toPositive(murmur2(keyBytes)) % numPartitions`, so Sluice, Kafka Streams and Java producers agree on where a key
 * lives. That matters for co-partitioned joins and for tables keyed like their input topic.
 */

/** Kafka's `Utils.murmur2`: 32-bit murmur2 with seed 0x9747b28c, as a signed 32-bit integer. */
export const murmur2 = (data: Uint8Array): number => {
  const length = data.length
  const m = 0x5bd1e995
  const r = 24
  let h = (0x9747b28c ^ length) | 0
  const length4 = length >>> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k =
      (data[i4]! & 0xff) |
      ((data[i4 + 1]! & 0xff) << 8) |
      ((data[i4 + 2]! & 0xff) << 16) |
      ((data[i4 + 3]! & 0xff) << 24)
    k = Math.imul(k, m)
    k ^= k >>> r
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }
  const tail = length4 * 4
  // Java's switch falls through from 3 to 1; the same as nested conditions on the tail length.
  const rest = length % 4
  if (rest >= 3) h ^= (data[tail + 2]! & 0xff) << 16
  if (rest >= 2) h ^= (data[tail + 1]! & 0xff) << 8
  if (rest >= 1) {
    h ^= data[tail]! & 0xff
    h = Math.imul(h, m)
  }
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h | 0
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which differs for negative values). */
export const toPositive = (n: number): number => n & 0x7fffffff

/** The partition of a keyed record among `numPartitions`, as the Java client's default partitioner picks it. */
export const partitionForKey = (key: Uint8Array, numPartitions: number): number =>
  toPositive(murmur2(key)) % numPartitions

/**
 * A partitioner for records with and without keys: keyed records use murmur2; records without a key are spread
 * round-robin (the Java client uses a sticky partitioner there; any spread is correct since no key must stay put).
 */
export const make = (): ((key: Uint8Array | null, numPartitions: number) => number) => {
  let next = 0
  return (key, numPartitions) => {
    if (key !== null) return partitionForKey(key, numPartitions)
    next = (next + 1) % numPartitions
    return next
  }
}
