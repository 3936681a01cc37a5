/**
 * Some of kafkajs 2.2.4's internals replaced, before kafkajs loads, by versions that give the same result (the same
 * groups, the same bytes, the same decoded messages) with a fraction of the work and garbage. In the issue #13
 * profile of a click-enrichment run the producer's were the largest costs on the main thread after GC:
 *
 * - `src/producer/groupMessagesPerPartition.js` groups the messages of each topic of a `sendBatch` by partition
 *   with a `reduce` that copies the partition's array for every message it adds: quadratic in the messages one send
 *   has for one partition (a task whose outputs are keyed like its input sends thousands to one partition). The
 *   version here calls the partitioner once per message, in order, and keeps each partition's messages in order.
 * - `src/protocol/recordBatch/record/v0/index.js` encodes each record through a fresh `Encoder` (a zeroed 512-byte
 *   buffer), a `Buffer` per varint and `Long` arithmetic for the timestamp delta. The version here writes the same
 *   bytes (Kafka's record format v2: length, attributes, timestamp delta, offset delta, key, value, headers) into one
 *   buffer of the record's exact size.
 * - `src/protocol/recordBatch/crc32C/index.js`, the CRC-32C of every record batch, goes through its table one byte at
 *   a time (5–8% of a run once the two above were gone). The version here reads 8 bytes a step (slicing-by-8, the
 *   same polynomial and result).
 * - `src/protocol/requests/produce/v3/request.js` (v3 to v7) and `src/protocol/request.js` build a produce request
 *   through six nested `Encoder`s, each growing by doubling from 512 bytes and copying the one inside it: for a
 *   512 KiB request, ~7 MB of short-lived buffers outside the V8 heap, which the GC lets pile up. The versions here
 *   size the request first and write it into one buffer (a compressed request still goes through kafkajs' own).
 *
 * And on the consumer side, `src/protocol/recordBatch/record/v0/decoder.js` decodes every fetched record's
 * timestamp and offset delta with `Long` arithmetic (BigInt-backed objects), ~900 bytes of garbage per record: a
 * million-record table load allocated 3 GB, and its peak RSS came from that garbage. The version here reads the
 * varints as numbers and adds them to the batch's first offset and timestamp (read once per batch) while those are
 * exact, and computes with 64-bit BigInts, as kafkajs' Long does, otherwise.
 *
 * kafkajs takes both with `require` when the modules that use them load (`sendMessages.js` when kafkajs loads, the
 * produce request at the first produce), so this module replaces their exports in Node's require cache first: every
 * Sluice module that imports kafkajs as a value imports this one before it. `installed` says whether that worked
 * (false if something loaded kafkajs' producer earlier; sends are then correct, only slower).
 */
import { createRequire } from "node:module"
import type * as KafkaJS from "kafkajs"

interface GroupArguments {
  readonly topic: string
  readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
  readonly messages: ReadonlyArray<KafkaJS.Message>
  readonly partitioner: (args: {
    readonly topic: string
    readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
    readonly message: KafkaJS.Message
  }) => number
}

/** The messages of one topic per partition, as kafkajs' `sendMessages` expects them. */
export const groupMessagesPerPartition = ({
  topic,
  partitionMetadata,
  messages,
  partitioner
}: GroupArguments): Record<number, Array<KafkaJS.Message>> => {
  const result: Record<number, Array<KafkaJS.Message>> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition]
    if (current === undefined) result[partition] = [message]
    else current.push(message)
  }
  return result
}

/** What kafkajs' produce request passes to the record encoder: a message with its deltas in the batch. */
export interface RecordArguments {
  readonly offsetDelta?: number
  readonly timestampDelta?: number
  readonly key?: Buffer | string | null | undefined
  readonly value?: Buffer | string | null | undefined
  readonly headers?: KafkaJS.IHeaders | undefined
}

/**
 * An encoded record, as kafkajs' record batch encoder reads one (`Encoder.writeEncoderArray` takes `buffer` of
 * anything whose `buf` is a Buffer).
 */
export interface EncodedRecord {
  readonly buf: Buffer
  readonly buffer: Buffer
  readonly offset: number
  readonly size: () => number
}

const int32Min = -(2 ** 31)
const int32Max = 2 ** 31 - 1

const isInt32 = (n: number) => Number.isInteger(n) && n >= int32Min && n <= int32Max

/** Zigzag (Kafka's varint sign encoding) of an int32, as an unsigned 32-bit number. */
const zigzag32 = (n: number) => ((n << 1) ^ (n >> 31)) >>> 0

const uvarintSize = (v: number): number => {
  let size = 1
  while (v >= 0x80) {
    v >>>= 7
    size++
  }
  return size
}

const writeUVarInt = (buf: Buffer, at: number, v: number): number => {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80
    v >>>= 7
  }
  buf[at++] = v
  return at
}

/** A varlong's bytes (zigzag, 7 bits a byte), for a timestamp delta outside the int32 range. */
const varLongBytes = (n: number): Array<number> => {
  let v = BigInt.asUintN(64, (BigInt(n) << 1n) ^ (BigInt(n) >> 63n))
  const out: Array<number> = []
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return out
}

type Bytes = Buffer | string | null | undefined

/** Bytes of a key, value or header value: `-1` for null (kafkajs writes any other value as text). */
const lengthOf = (b: Bytes): number =>
  b === null || b === undefined ? -1 : Buffer.isBuffer(b) ? b.length : Buffer.byteLength(String(b), "utf8")

const writeBytes = (buf: Buffer, at: number, b: Bytes, length: number): number => {
  at = writeUVarInt(buf, at, zigzag32(length))
  if (length <= 0 || b === null || b === undefined) return at
  if (Buffer.isBuffer(b)) b.copy(buf, at)
  else buf.write(String(b), at, length, "utf8")
  return at + length
}

const varIntBytesSize = (length: number) => uvarintSize(zigzag32(length)) + Math.max(0, length)

/** kafkajs' record encoder (`recordBatch/record/v0`), byte for byte, into one buffer of the record's size. */
export const encodeRecord = ({
  offsetDelta = 0,
  timestampDelta = 0,
  key,
  value,
  headers
}: RecordArguments): EncodedRecord => {
  // kafkajs' produce request gives integers (milliseconds); anything else is read as its integer part.
  const delta = Number.isFinite(timestampDelta) ? Math.trunc(timestampDelta) : 0
  const deltaLong = isInt32(delta) ? undefined : varLongBytes(delta)
  const keyLength = lengthOf(key)
  const valueLength = lengthOf(value)
  const names = headers === undefined ? [] : Object.keys(headers)
  let headerCount = 0
  let headersSize = 0
  if (headers !== undefined) {
    for (const name of names) {
      const entry = headers[name]
      const nameLength = Buffer.byteLength(name, "utf8")
      for (const v of Array.isArray(entry) ? entry : [entry]) {
        headerCount++
        headersSize += varIntBytesSize(nameLength) + varIntBytesSize(lengthOf(v))
      }
    }
  }
  const body =
    1 +
    (deltaLong === undefined ? uvarintSize(zigzag32(delta)) : deltaLong.length) +
    uvarintSize(zigzag32(offsetDelta)) +
    varIntBytesSize(keyLength) +
    varIntBytesSize(valueLength) +
    uvarintSize(zigzag32(headerCount)) +
    headersSize
  const size = uvarintSize(zigzag32(body)) + body
  const buf = Buffer.allocUnsafe(size)
  let at = writeUVarInt(buf, 0, zigzag32(body))
  buf[at++] = 0 // attributes: none used at the record level
  if (deltaLong === undefined) at = writeUVarInt(buf, at, zigzag32(delta))
  else for (const b of deltaLong) buf[at++] = b
  at = writeUVarInt(buf, at, zigzag32(offsetDelta))
  at = writeBytes(buf, at, key, keyLength)
  at = writeBytes(buf, at, value, valueLength)
  at = writeUVarInt(buf, at, zigzag32(headerCount))
  if (headers !== undefined) {
    for (const name of names) {
      const entry = headers[name]
      const nameLength = Buffer.byteLength(name, "utf8")
      for (const v of Array.isArray(entry) ? entry : [entry]) {
        at = writeBytes(buf, at, name, nameLength)
        at = writeBytes(buf, at, v, lengthOf(v))
      }
    }
  }
  return { buf, buffer: buf, offset: size, size: () => size }
}

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup tables for slicing-by-8: `tables[k][b]`. */
const crcTables = (() => {
  const t = new Int32Array(8 * 256)
  for (let b = 0; b < 256; b++) {
    let c = b
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[b] = c
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) t[k * 256 + b] = (t[(k - 1) * 256 + b]! >>> 8) ^ t[t[(k - 1) * 256 + b]! & 0xff]!
  }
  return t
})()

/** The CRC-32C of `buffer`, as an unsigned 32-bit number (what kafkajs' `crc32C/index.js` returns). */
export const crc32c = (buffer: Uint8Array): number => {
  const t = crcTables
  let crc = -1
  let i = 0
  const end8 = buffer.length - (buffer.length % 8)
  for (; i < end8; i += 8) {
    const lo = crc ^ (buffer[i]! | (buffer[i + 1]! << 8) | (buffer[i + 2]! << 16) | (buffer[i + 3]! << 24))
    crc =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + buffer[i + 4]!]! ^
      t[2 * 256 + buffer[i + 5]!]! ^
      t[256 + buffer[i + 6]!]! ^
      t[buffer[i + 7]!]!
  }
  for (; i < buffer.length; i++) crc = t[(crc ^ buffer[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ -1) >>> 0
}

/** The fields of a record batch that kafkajs' record decoder reads (strings: kafkajs' int64s as decimal text). */
export interface BatchContext {
  readonly firstOffset?: string
  readonly firstTimestamp?: string
  readonly maxTimestamp?: string
  readonly magicByte?: number
  readonly isControlBatch?: boolean
  readonly timestampType?: number
}

/** kafkajs' `Decoder`, as far as the record decoder uses it: the record's bytes and where reading starts. */
export interface RecordDecoder {
  readonly buffer: Buffer
  offset: number
}

/** Header values as kafkajs decodes them: bytes, `null` for a null value, an array for a repeated name. */
export type DecodedHeaders = Record<string, unknown>

export interface DecodedRecord {
  readonly magicByte: number | undefined
  readonly attributes: number
  readonly timestamp: string | undefined
  readonly offset: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: DecodedHeaders
  readonly isControlRecord: boolean
  readonly batchContext: BatchContext
}

const logAppendTime = 1

// The batch whose first offset and timestamp were read last: every record of a batch shares its context object.
let lastContext: BatchContext | undefined
let firstOffsetOfLast = Number.NaN
let firstTimestampOfLast = Number.NaN

// The record being decoded and where reading is: shared by the helpers below, so that decoding a record creates
// no closures.
const noBytes: Buffer = Buffer.alloc(0)
let buf: Buffer = noBytes
let at = 0

/** kafkajs' readVarInt, to the bit (zigzag-decoded). */
const readVarInt = (): number => {
  let b: number
  let result = 0
  let shift = 0
  do {
    b = buf[at++]!
    result += (b & 0x7f) << shift
    shift += 7
  } while (b >= 0x80)
  return (result >>> 1) ^ -(result & 1)
}

const readBytes = (): Buffer | null => {
  const length = readVarInt()
  if (length === -1) return null
  const bytes = buf.subarray(at, at + length)
  at += length
  return bytes
}

/** kafkajs' record decoder (`recordBatch/record/v0/decoder.js`) without `Long`: the same message. */
export const decodeRecord = (decoder: RecordDecoder, batchContext: BatchContext = {}): DecodedRecord => {
  if (batchContext !== lastContext) {
    lastContext = batchContext
    firstOffsetOfLast = Number(batchContext.firstOffset)
    firstTimestampOfLast = Number(batchContext.firstTimestamp)
  }
  const firstOffset = firstOffsetOfLast
  const firstTimestamp = firstTimestampOfLast
  buf = decoder.buffer
  const start = decoder.offset
  at = start
  const attributes = buf.readInt8(at++)
  // The timestamp delta is a varlong; up to 7 bytes (49 bits) it is exact as a number.
  let zigzag = 0
  let scale = 1
  let b: number
  let bytes = 0
  do {
    b = buf[at++]!
    zigzag += (b & 0x7f) * scale
    scale *= 128
    bytes++
  } while (b >= 0x80 && bytes < 7)
  const timestampDelta = zigzag % 2 === 0 ? zigzag / 2 : -(zigzag + 1) / 2
  const offsetValue = b < 0x80 ? firstOffset + readVarInt() : Number.NaN
  const timestampValue = firstTimestamp + timestampDelta
  let offset: string
  let timestampText: string
  if (Number.isSafeInteger(offsetValue) && Number.isSafeInteger(timestampValue)) {
    offset = String(offsetValue)
    timestampText = String(timestampValue)
  } else {
    // Exactly as kafkajs' Long (BigInt inside): a 64-bit zigzag varlong, sums that do not wrap.
    at = start + 1
    let long = 0n
    let shift = 0n
    do {
      b = buf[at++]!
      long += BigInt(b & 0x7f) << shift
      shift += 7n
    } while (b >= 0x80)
    long = BigInt.asUintN(64, long)
    const delta = BigInt.asIntN(64, (long >> 1n) ^ -(long & 1n))
    timestampText = (BigInt(batchContext.firstTimestamp ?? 0) + delta).toString()
    offset = (BigInt(batchContext.firstOffset ?? 0) + BigInt(readVarInt())).toString()
  }
  const timestamp =
    batchContext.timestampType === logAppendTime && batchContext.maxTimestamp
      ? batchContext.maxTimestamp
      : timestampText
  const key = readBytes()
  const value = readBytes()
  // As kafkajs builds them: a plain object, a repeated name collects its values in an array (and, as there, a
  // name that is also an Object.prototype property starts from that property's value).
  const headers: DecodedHeaders = {}
  const headerCount = readVarInt()
  for (let i = 0; i < headerCount; i++) {
    const nameLength = readVarInt()
    const name = nameLength === -1 ? "null" : buf.toString("utf8", at, at + nameLength)
    if (nameLength > 0) at += nameLength
    const headerValue = readBytes()
    const previous = headers[name]
    const next =
      previous === undefined
        ? headerValue
        : Array.isArray(previous)
          ? [...previous, headerValue]
          : [previous, headerValue]
    // Defined, not assigned: a header named __proto__ is a header, as in kafkajs' object spread.
    Object.defineProperty(headers, name, { value: next, writable: true, enumerable: true, configurable: true })
  }
  decoder.offset = at
  // Not kept past this record: it is a view into a whole fetch response.
  buf = noBytes
  return {
    magicByte: batchContext.magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: batchContext.isControlBatch ?? false,
    batchContext
  }
}

/** A kafkajs `Encoder` as far as kafkajs' callers read one: its bytes (`buffer`, `buf`) and their length. */
export interface Encoded {
  readonly buf: Buffer
  readonly buffer: Buffer
  readonly offset: number
  readonly size: () => number
}

const encoded = (buf: Buffer): Encoded => ({ buf, buffer: buf, offset: buf.length, size: () => buf.length })

const stringSize = (s: string | null | undefined) => 2 + (s === null || s === undefined ? 0 : Buffer.byteLength(s))

/** kafkajs' `writeString`: int16 length (-1 for null) and the UTF-8 bytes. */
const writeString = (buf: Buffer, at: number, s: string | null | undefined): number => {
  if (s === null || s === undefined) return buf.writeInt16BE(-1, at)
  const length = Buffer.byteLength(s)
  at = buf.writeInt16BE(length, at)
  buf.write(s, at, length, "utf8")
  return at + length
}

/** What kafkajs' `protocol/request.js` gets: the connection's ids and the request, whose `encode` gives its body. */
export interface RequestArguments {
  readonly correlationId: number
  readonly clientId: string | null
  readonly request: {
    readonly apiKey: number
    readonly apiVersion: number
    readonly encode: () => Promise<{ readonly buffer: Buffer }> | { readonly buffer: Buffer }
  }
}

/** kafkajs' request framing (size, api key and version, correlation id, client id, body) in one buffer. */
export const frameRequest = async ({ correlationId, clientId, request }: RequestArguments): Promise<Encoded> => {
  const body = (await request.encode()).buffer
  const headerSize = 2 + 2 + 4 + stringSize(clientId)
  const buf = Buffer.allocUnsafe(4 + headerSize + body.length)
  let at = buf.writeInt32BE(headerSize + body.length, 0)
  at = buf.writeInt16BE(request.apiKey, at)
  at = buf.writeInt16BE(request.apiVersion, at)
  at = buf.writeInt32BE(correlationId, at)
  at = writeString(buf, at, clientId)
  body.copy(buf, at)
  return encoded(buf)
}

/** What kafkajs' producer passes to the produce request (v3; v4 to v7 reuse it). */
export interface ProduceArguments {
  readonly acks: number
  readonly timeout: number
  readonly transactionalId?: string | null | undefined
  /** A kafkajs Long (or anything whose decimal text is the id). */
  readonly producerId?: { readonly toString: () => string } | undefined
  readonly producerEpoch?: number | undefined
  readonly compression?: number | undefined
  readonly topicData: ReadonlyArray<{
    readonly topic: string
    readonly partitions: ReadonlyArray<{
      readonly partition: number
      readonly firstSequence?: number | undefined
      readonly messages: ReadonlyArray<KafkaJS.Message>
    }>
  }>
}

/** A record batch's header before its records: base offset to record count (v2, magic 2). */
const recordBatchHeaderBytes = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4

/** One partition's record batch, laid out as kafkajs' `RecordBatch` writes it (no compression). */
const partitionBatch = (
  messages: ReadonlyArray<KafkaJS.Message>,
  firstSequence: number,
  producerId: bigint,
  producerEpoch: number,
  transactional: boolean
) => {
  const dateNow = Date.now()
  // As kafkajs: the messages' own timestamps sorted as text, else now.
  const given: Array<string> = []
  for (const m of messages) if (m.timestamp !== undefined && m.timestamp !== null) given.push(m.timestamp)
  given.sort()
  const firstTimestamp = given.length === 0 ? dateNow : given[0]!
  const maxTimestamp = given.length === 0 ? dateNow : given[given.length - 1]!
  const records = new Array<Encoded>(messages.length)
  let recordBytes = 0
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!
    records[i] = encodeRecord({
      key: m.key,
      value: m.value,
      headers: m.headers,
      offsetDelta: i,
      timestampDelta: Number(m.timestamp || dateNow) - Number(firstTimestamp)
    })
    recordBytes += records[i]!.buffer.length
  }
  const size = recordBatchHeaderBytes + recordBytes
  return {
    size,
    write: (buf: Buffer, start: number): number => {
      let at = buf.writeBigInt64BE(0n, start) // base offset
      at = buf.writeInt32BE(size - 12, at) // batch length: from the leader epoch on
      at = buf.writeInt32BE(0, at) // partition leader epoch
      at = buf.writeInt8(2, at) // magic
      const crcAt = at
      at += 4
      const bodyStart = at
      at = buf.writeInt16BE(transactional ? 16 : 0, at) // attributes: no compression, create time
      at = buf.writeInt32BE(records.length - 1, at) // last offset delta
      at = buf.writeBigInt64BE(BigInt(firstTimestamp), at)
      at = buf.writeBigInt64BE(BigInt(maxTimestamp), at)
      at = buf.writeBigInt64BE(producerId, at)
      at = buf.writeInt16BE(producerEpoch, at)
      at = buf.writeInt32BE(firstSequence, at)
      at = buf.writeInt32BE(records.length, at)
      for (const r of records) {
        r.buffer.copy(buf, at)
        at += r.buffer.length
      }
      buf.writeUInt32BE(crc32c(buf.subarray(bodyStart, at)), crcAt)
      return at
    }
  }
}

/**
 * kafkajs' produce request v3 (`requests/produce/v3/request.js`), encoded in one buffer; with compression, kafkajs'
 * own (`original`).
 */
export const makeProduceRequest =
  (original: unknown) =>
  (args: ProduceArguments): unknown => {
    if ((args.compression ?? 0) !== 0 && typeof original === "function")
      return Reflect.apply(original, undefined, [args])
    const { acks, timeout, topicData } = args
    const transactionalId = args.transactionalId ?? null
    return {
      apiKey: 0,
      apiVersion: 3,
      apiName: "Produce",
      expectResponse: () => acks !== 0,
      encode: async (): Promise<Encoded> => {
        const producerId = BigInt((args.producerId ?? "-1").toString())
        const producerEpoch = args.producerEpoch ?? 0
        const topics = topicData.map(({ topic, partitions }) => ({
          topic,
          partitions: partitions.map(({ partition, messages, firstSequence }) => ({
            partition,
            batch: partitionBatch(messages, firstSequence ?? 0, producerId, producerEpoch, Boolean(transactionalId))
          }))
        }))
        let size = stringSize(transactionalId) + 2 + 4 + 4
        for (const t of topics) {
          size += stringSize(t.topic) + 4
          for (const p of t.partitions) size += 4 + 4 + p.batch.size
        }
        const buf = Buffer.allocUnsafe(size)
        let at = writeString(buf, 0, transactionalId)
        at = buf.writeInt16BE(acks, at)
        at = buf.writeInt32BE(timeout, at)
        at = buf.writeInt32BE(topics.length, at)
        for (const t of topics) {
          at = writeString(buf, at, t.topic)
          at = buf.writeInt32BE(t.partitions.length, at)
          for (const p of t.partitions) {
            at = buf.writeInt32BE(p.partition, at)
            at = buf.writeInt32BE(p.batch.size, at)
            at = p.batch.write(buf, at)
          }
        }
        return encoded(buf)
      }
    }
  }

const requireCjs = createRequire(import.meta.url)
const resolve = (path: string) => requireCjs.resolve(`kafkajs/src/${path}`)
const groupPath = resolve("producer/groupMessagesPerPartition.js")
const recordPath = resolve("protocol/recordBatch/record/v0/index.js")
const crcPath = resolve("protocol/recordBatch/crc32C/index.js")
const recordDecoderPath = resolve("protocol/recordBatch/record/v0/decoder.js")
const producePath = resolve("protocol/requests/produce/v3/request.js")
const requestPath = resolve("protocol/request.js")

/**
 * Makes `path` export `replacement`, unless a module that takes it (`users`) has loaded already, then it would keep
 * the original: true if the replacement is in place.
 */
const replace = (path: string, replacement: unknown, users: ReadonlyArray<string>): boolean => {
  const cached = requireCjs.cache[path]
  if (cached?.exports === replacement) return true
  if (users.some((user) => requireCjs.cache[resolve(user)] !== undefined)) return false
  // Loaded the ordinary way first, so that Node's own bookkeeping of the module stays as it would be.
  requireCjs(path)
  const module = requireCjs.cache[path]
  if (module === undefined) return false
  module.exports = replacement
  return true
}

export const installed =
  replace(groupPath, groupMessagesPerPartition, ["producer/sendMessages.js"]) &&
  replace(recordPath, encodeRecord, ["protocol/requests/produce/v3/request.js"]) &&
  replace(crcPath, crc32c, ["protocol/recordBatch/v0/index.js"]) &&
  replace(recordDecoderPath, decodeRecord, ["protocol/recordBatch/v0/decoder.js"]) &&
  replace(producePath, makeProduceRequest(requireCjs(producePath)), [
    "protocol/requests/produce/index.js",
    "protocol/requests/produce/v4/request.js"
  ]) &&
  replace(requestPath, frameRequest, ["network/connection.js"])

/** What kafkajs' producer uses now (for tests). */
export const active = (): Record<"group" | "record" | "crc" | "recordDecoder" | "request", unknown> => ({
  group: requireCjs(groupPath),
  record: requireCjs(recordPath),
  crc: requireCjs(crcPath),
  recordDecoder: requireCjs(recordDecoderPath),
  request: requireCjs(requestPath)
})
