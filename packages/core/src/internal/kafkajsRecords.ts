/**
 * kafkajs' decoded messages as Sluice records: the one conversion that group consumption, `read` and
 * `readPartition` share.
 */
import type * as KafkaJS from "kafkajs"
import type { ConsumerRecord, Headers, RecordBatch } from "../Record.ts"

const noHeaders: Headers = {}

const toHeaders = (headers: KafkaJS.IHeaders | undefined): Headers => {
  if (headers === undefined) return noHeaders
  let out: Record<string, Uint8Array> | undefined
  for (const name in headers) {
    const raw = headers[name]
    // A repeated header arrives as an array; like the Java client's `lastHeader`, the last one wins.
    const value = Array.isArray(raw) ? raw[raw.length - 1] : raw
    if (value === undefined) continue
    out ??= {}
    // kafkajs decodes header values as Buffers (bytes); they stay bytes, never a round trip through text.
    out[name] = typeof value === "string" ? Buffer.from(value, "utf8") : value
  }
  return out ?? noHeaders
}

/** The fields of a kafkajs message that a record is made of (offsets and timestamps arrive as strings). */
export interface DecodedMessage {
  readonly offset: string
  readonly timestamp: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers?: KafkaJS.IHeaders | undefined
}

export const toRecords = (
  topic: string,
  partition: number,
  messages: ReadonlyArray<DecodedMessage>
): Array<ConsumerRecord> => {
  const records = new Array<ConsumerRecord>(messages.length)
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!
    records[i] = {
      topic,
      partition,
      offset: Number(m.offset),
      timestamp: Number(m.timestamp),
      key: m.key,
      value: m.value,
      headers: toHeaders(m.headers)
    }
  }
  return records
}

export const toRecordBatch = (batch: KafkaJS.Batch): RecordBatch => {
  const { topic, partition } = batch
  const records = toRecords(topic, partition, batch.messages)
  const lastOffset = Number(batch.lastOffset())
  const lastRecord = records[records.length - 1]?.offset
  return {
    topic,
    partition,
    records,
    highWatermark: Number(batch.highWatermark),
    ...(lastRecord === lastOffset ? {} : { lastOffset })
  }
}
