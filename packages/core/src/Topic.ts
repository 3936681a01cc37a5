/**
 * A topic as a value: its name and the codecs of its keys and values. Topologies read and write typed records
 * through topics; the runtime decodes and encodes at the boundary.
 */
import { Result } from "effect"
import * as Codec from "./Codec.ts"
import { DecodeError, EncodeError } from "./Errors.ts"
import type { ConsumerRecord, Headers, ProducerRecord } from "./Record.ts"

export interface Topic<K, V> {
  readonly name: string
  readonly key: Codec.Codec<K>
  readonly value: Codec.Codec<V>
}

export const make = <K, V>(name: string, codecs: { readonly key: Codec.Codec<K>; readonly value: Codec.Codec<V> }) =>
  ({ name, key: codecs.key, value: codecs.value }) satisfies Topic<K, V>

/** A topic of raw bytes: records pass through untouched (dead-letter topics, `sluice inspect`). */
export const raw = (name: string): Topic<Uint8Array | null, Uint8Array | null> =>
  make(name, { key: Codec.raw, value: Codec.raw })

/** A consumed record decoded with its topic's codecs; `record` keeps the original bytes and coordinates. */
export interface Decoded<K, V> {
  readonly key: K
  readonly value: V
  readonly record: ConsumerRecord
}

/** Decodes one record; a failure names the topic, partition, offset, the part and the schema issue. */
export const decode = <K, V>(topic: Topic<K, V>, record: ConsumerRecord): Result.Result<Decoded<K, V>, DecodeError> => {
  const key = topic.key.decode(record.key)
  if (Result.isFailure(key)) return Result.fail(decodeError(record, "key", key.failure))
  const value = topic.value.decode(record.value)
  if (Result.isFailure(value)) return Result.fail(decodeError(record, "value", value.failure))
  return Result.succeed({ key: key.success, value: value.success, record })
}

const decodeError = (record: ConsumerRecord, part: "key" | "value", issue: string) =>
  new DecodeError({ topic: record.topic, partition: record.partition, offset: record.offset, part, issue })

/** Encodes a typed record for `topic`. */
export const encode = <K, V>(
  topic: Topic<K, V>,
  key: K,
  value: V,
  options?: { readonly headers?: Headers; readonly partition?: number; readonly timestamp?: number }
): Result.Result<ProducerRecord, EncodeError> => {
  const k = topic.key.encode(key)
  if (Result.isFailure(k)) return Result.fail(new EncodeError({ topic: topic.name, issue: `key: ${k.failure}` }))
  const v = topic.value.encode(value)
  if (Result.isFailure(v)) return Result.fail(new EncodeError({ topic: topic.name, issue: `value: ${v.failure}` }))
  return Result.succeed({
    topic: topic.name,
    key: k.success,
    value: v.success,
    headers: options?.headers,
    partition: options?.partition,
    timestamp: options?.timestamp
  })
}
