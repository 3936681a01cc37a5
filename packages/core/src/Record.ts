/**
 * Records as they cross the Kafka boundary: bytes in, bytes out. Nothing here depends on a client library, so the
 * kafkajs layer and the in-memory broker both speak these types.
 *
 * Offsets are JavaScript numbers: Kafka offsets are int64, but a partition would need 2^53 records before a number
 * loses precision, and plain numbers keep the offset arithmetic of the hot path cheap.
 */

/**
 * Record headers: names to raw bytes, kept byte-exact end to end (Kafka header values are bytes, not text). A name
 * that occurs more than once in a fetched record keeps its last value, like the Java client's `lastHeader`.
 */
export type Headers = Readonly<Record<string, Uint8Array>>

/** A record fetched from a partition. */
export interface ConsumerRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers: Headers
}

/** The records of one partition fetched together, in offset order. */
export interface RecordBatch {
  readonly topic: string
  readonly partition: number
  readonly records: ReadonlyArray<ConsumerRecord>
  /** The partition's high-water mark when the batch was fetched (the offset the next produced record gets). */
  readonly highWatermark: number
  /**
   * The offset of the last entry the fetch covered, when it differs from the last record's: transaction markers
   * and aborted records take offsets but are never delivered, so a reader that wants to know it reached the end of a
   * partition must look at this. `records` may then be empty.
   */
  readonly lastOffset?: number | undefined
}

/** A record to produce. Without `partition`, the murmur2 partitioner picks one from the key. */
export interface ProducerRecord {
  readonly topic: string
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly headers?: Headers | undefined
  readonly partition?: number | undefined
  readonly timestamp?: number | undefined
}

/** Where an acknowledged record was written. */
export interface RecordMetadata {
  readonly topic: string
  readonly partition: number
  readonly offset: number
}

export interface TopicPartition {
  readonly topic: string
  readonly partition: number
}

/** A committed (or to-be-committed) position: the offset of the next record to read. */
export interface TopicPartitionOffset extends TopicPartition {
  readonly offset: number
}

export const tpKey = (topic: string, partition: number): string => `${topic}:${partition}`

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder("utf-8", { fatal: false })
const fromUtf8Strict = new TextDecoder("utf-8", { fatal: true })

export const bytes = (s: string): Uint8Array => utf8.encode(s)
/** Text for display and logs: invalid UTF-8 becomes U+FFFD. Codecs use `textStrict`. */
export const text = (b: Uint8Array): string => fromUtf8.decode(b)
/** The UTF-8 text of `b`, or `undefined` when `b` is not valid UTF-8 (never replaces bytes). */
export const textStrict = (b: Uint8Array): string | undefined => {
  try {
    return fromUtf8Strict.decode(b)
  } catch {
    return undefined
  }
}

/** Headers from text values (UTF-8 encoded). */
export const textHeaders = (values: Readonly<Record<string, string>>): Headers => {
  const out: Record<string, Uint8Array> = {}
  for (const name in values) out[name] = utf8.encode(values[name]!)
  return out
}

/** A header's value as text (invalid UTF-8 replaced, for display), or `undefined` when absent. */
export const header = (headers: Headers, name: string): string | undefined => {
  const value = headers[name]
  return value === undefined ? undefined : fromUtf8.decode(value)
}
