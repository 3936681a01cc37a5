/**
 * Sluice's version of kafkajs 2.2.4's record decoder (`recordBatch/record/v0/decoder.js`, installed by
 * kafkajsPatch.ts): the same message for every fetched record, without kafkajs' `Long` arithmetic (tested against
 * kafkajs' own decoder in KafkaJsPatch.test.ts).
 */

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
