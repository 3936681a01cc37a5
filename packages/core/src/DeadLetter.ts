/**
 * Dead-letter records: a record that cannot be decoded, or whose processing fails with a non-retryable error, is
 * written to the dead-letter topic with its original key and value bytes untouched, its original headers, and
 * headers naming the error and where the record came from. Processing then continues; the input offset is
 * committed only once the dead-letter record is acknowledged, so nothing is lost.
 *
 * A dead letter must itself fit its topic: the runtime creates dead-letter topics with room for any record the
 * input accepts plus the error headers, but a topic that already exists may be smaller. A dead letter over its
 * topic's limit has its value cut to fit (then, if that is not enough, the original headers dropped, then the key
 * cut), and says so in `sluice.error.truncated` (what was cut) and `sluice.error.original-size` (the value's size).
 */
import { messageOf, tagOf } from "./Errors.ts"
import { bytes, type ConsumerRecord, type Headers, type ProducerRecord, sizeOf } from "./Record.ts"

export const headers = {
  errorTag: "sluice.error.tag",
  errorMessage: "sluice.error.message",
  errorTime: "sluice.error.time",
  sourceTopic: "sluice.source.topic",
  sourcePartition: "sluice.source.partition",
  sourceOffset: "sluice.source.offset",
  topology: "sluice.topology",
  truncated: "sluice.error.truncated",
  originalSize: "sluice.error.original-size"
} as const

/** Bytes a dead letter adds to its record's headers, at most (the error headers; the message is capped). */
export const headroom = 64 * 1024

/** Error messages longer than this are cut in the header: a dead letter must stay small enough to write. */
const maxMessageLength = 16 * 1024

/** The default dead-letter topic of an input topic. */
export const topicFor = (input: string): string => `${input}.dlq`

/** A record that failed, and why. */
export interface Rejection {
  readonly record: ConsumerRecord
  readonly error: unknown
}

export const toRecord = (
  deadLetterTopic: string,
  topology: string,
  rejection: Rejection,
  now: number,
  maxBytes: number = Number.POSITIVE_INFINITY
): ProducerRecord => {
  const { record, error } = rejection
  const message = messageOf(error)
  const errorHeaders: Record<string, Uint8Array> = {
    [headers.errorTag]: bytes(tagOf(error)),
    [headers.errorMessage]: bytes(
      message.length > maxMessageLength ? `${message.slice(0, maxMessageLength)}…` : message
    ),
    [headers.errorTime]: bytes(new Date(now).toISOString()),
    [headers.sourceTopic]: bytes(record.topic),
    [headers.sourcePartition]: bytes(String(record.partition)),
    [headers.sourceOffset]: bytes(String(record.offset)),
    [headers.topology]: bytes(topology)
  }
  const full: ProducerRecord = {
    topic: deadLetterTopic,
    key: record.key,
    value: record.value,
    headers: { ...record.headers, ...errorHeaders }
  }
  return sizeOf(full) <= maxBytes ? full : truncate(full, record, errorHeaders, maxBytes)
}

/** Cuts what it must, in order (value, original headers, key), until the dead letter fits `maxBytes`. */
const truncate = (
  full: ProducerRecord,
  record: ConsumerRecord,
  errorHeaders: Headers,
  maxBytes: number
): ProducerRecord => {
  const valueSize = record.value?.byteLength ?? 0
  const mark = (cut: string): Headers => ({
    [headers.truncated]: bytes(cut),
    [headers.originalSize]: bytes(String(valueSize))
  })
  const cutTo = (candidate: ProducerRecord, part: "key" | "value"): ProducerRecord => {
    const data = candidate[part]
    if (data === null) return candidate
    const empty = { ...candidate, [part]: new Uint8Array(0) }
    // A length varint takes up to 5 bytes more than for an empty part; step down until it fits.
    let length = Math.max(0, Math.min(data.byteLength, maxBytes - sizeOf(empty)))
    let cut = { ...candidate, [part]: data.subarray(0, length) }
    while (length > 0 && sizeOf(cut) > maxBytes) {
      length--
      cut = { ...candidate, [part]: data.subarray(0, length) }
    }
    return cut
  }
  const withValueCut = cutTo({ ...full, headers: { ...full.headers, ...mark("value") } }, "value")
  if (sizeOf(withValueCut) <= maxBytes) return withValueCut
  const withoutHeaders = cutTo({ ...full, headers: { ...errorHeaders, ...mark("value,headers") } }, "value")
  if (sizeOf(withoutHeaders) <= maxBytes) return withoutHeaders
  return cutTo(
    cutTo({ ...full, value: new Uint8Array(0), headers: { ...errorHeaders, ...mark("value,headers,key") } }, "value"),
    "key"
  )
}
