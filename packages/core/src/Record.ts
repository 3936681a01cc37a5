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

/** Kafka's default `message.max.bytes` (and so a topic's `max.message.bytes` unless set): 1 MiB + 12 bytes. */
export const defaultMaxMessageBytes = 1_048_588

const varintSize = (n: number): number => {
  // Zigzag-encoded, as Kafka's record fields are.
  let v = n >= 0 ? n * 2 : -n * 2 - 1
  let size = 1
  while (v >= 128) {
    v = Math.floor(v / 128)
    size++
  }
  return size
}

const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c < 0xdc00) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

/** Bytes of a record batch's header (v2, magic 2), before its records. */
const batchOverhead = 61

/**
 * The size of `record` alone in an uncompressed v2 record batch: what the broker compares with `max.message.bytes`
 * (the batch header, then the record with its varint lengths, key, value and headers).
 */
export const sizeOf = (record: Pick<ProducerRecord, "key" | "value" | "headers">): number => {
  const keyLength = record.key?.byteLength ?? -1
  const valueLength = record.value?.byteLength ?? -1
  // attributes (1), timestamp delta 0 (1), offset delta 0 (1)
  let body = 3 + varintSize(keyLength) + Math.max(0, keyLength) + varintSize(valueLength) + Math.max(0, valueLength)
  let count = 0
  if (record.headers !== undefined) {
    for (const name in record.headers) {
      const nameLength = utf8Length(name)
      const valueBytes = record.headers[name]!.byteLength
      body += varintSize(nameLength) + nameLength + varintSize(valueBytes) + valueBytes
      count++
    }
  }
  body += varintSize(count)
  return batchOverhead + varintSize(body) + body
}

const fromUtf8 = new TextDecoder("utf-8", { fatal: false })
const fromUtf8Strict = new TextDecoder("utf-8", { fatal: true })

/**
 * The UTF-8 bytes of `s`. A Node Buffer (a Uint8Array): for short text Node takes it from a shared pool instead of
 * allocating a backing store per call as TextEncoder does, and the kafkajs layer passes it on without wrapping.
 */
export const bytes = (s: string): Uint8Array => Buffer.from(s, "utf8")
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
  for (const name in values) out[name] = bytes(values[name]!)
  return out
}

/** A header's value as text (invalid UTF-8 replaced, for display), or `undefined` when absent. */
export const header = (headers: Headers, name: string): string | undefined => {
  const value = headers[name]
  return value === undefined ? undefined : fromUtf8.decode(value)
}
