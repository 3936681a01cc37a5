/**
 * Sluice's versions of kafkajs 2.2.4's produce-side encoding (installed by kafkajsPatch.ts): a record in one buffer
 * of its exact size, CRC-32C eight bytes a step, a produce request (v3 to v7, uncompressed) sized first and written
 * into one buffer, and the framing of every request in one buffer. Each gives exactly kafkajs' bytes (tested
 * against kafkajs' own modules in KafkaJsPatch.test.ts).
 */
import type * as KafkaJS from "kafkajs"

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
