/**
 * Dead-letter records: a record that cannot be decoded, or whose processing fails with a non-retryable error, is
 * written to the dead-letter topic with its original key and value bytes untouched, its original headers, and
 * headers naming the error and where the record came from. Processing then continues; the input offset is
 * committed only once the dead-letter record is acknowledged, so nothing is lost.
 */
import { messageOf, tagOf } from "./Errors.ts"
import { bytes, type ConsumerRecord, type ProducerRecord } from "./Record.ts"

export const headers = {
  errorTag: "sluice.error.tag",
  errorMessage: "sluice.error.message",
  errorTime: "sluice.error.time",
  sourceTopic: "sluice.source.topic",
  sourcePartition: "sluice.source.partition",
  sourceOffset: "sluice.source.offset",
  topology: "sluice.topology"
} as const

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
  now: number
): ProducerRecord => {
  const { record, error } = rejection
  return {
    topic: deadLetterTopic,
    key: record.key,
    value: record.value,
    headers: {
      ...record.headers,
      [headers.errorTag]: bytes(tagOf(error)),
      [headers.errorMessage]: bytes(messageOf(error)),
      [headers.errorTime]: bytes(new Date(now).toISOString()),
      [headers.sourceTopic]: bytes(record.topic),
      [headers.sourcePartition]: bytes(String(record.partition)),
      [headers.sourceOffset]: bytes(String(record.offset)),
      [headers.topology]: bytes(topology)
    }
  }
}
