/**
 * What both kafkajs producers share, the idempotent `send` (kafkajsProducer.ts) and transactions
 * (kafkajsTransactional.ts): records as kafkajs messages, the Java-compatible partitioner, the size pre-check against
 * each topic's `max.message.bytes`, chunks that keep each topic's record batch under that limit, the metadata of
 * each record from kafkajs' answer, and what a broker's "too large" means.
 */
import { Effect } from "effect"
import type * as KafkaJS from "kafkajs"
import { KafkaError, MessageTooLarge, Rejected } from "../Errors.ts"
import { oversized } from "../Kafka.ts"
import * as Partitioner from "../Partitioner.ts"
import { bytes, defaultMaxMessageBytes, type ProducerRecord, type RecordMetadata, sizeOf } from "../Record.ts"

// Codecs already give Buffers (Record.bytes); other bytes are wrapped, never copied.
const toBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength))

export const toMessage = (record: ProducerRecord): KafkaJS.Message => {
  const message: KafkaJS.Message = {
    key: record.key === null ? null : toBuffer(record.key),
    value: record.value === null ? null : toBuffer(record.value)
  }
  if (record.partition !== undefined) message.partition = record.partition
  if (record.headers !== undefined) {
    const headers: KafkaJS.IHeaders = {}
    for (const name in record.headers) headers[name] = toBuffer(record.headers[name]!)
    message.headers = headers
  }
  if (record.timestamp !== undefined) message.timestamp = String(record.timestamp)
  return message
}

/** A producer's partitioner, and the partition it chose for each message it was asked about. */
export interface Partitioning {
  readonly createPartitioner: KafkaJS.ICustomPartitioner
  readonly partitionOf: (message: KafkaJS.Message) => number | undefined
}

export const makePartitioning = (): Partitioning => {
  // kafkajs calls the partitioner again on each of its own retries, and Sluice's re-send the same message objects: a
  // retried record must land where its first attempt went, or the broker's idempotence check would match a
  // different record against the sequence number. The choice is kept on the message (Sluice's own object, made by
  // `toMessage`), which kafkajs reads as an explicit partition from then on.
  const pick = Partitioner.make()
  return {
    createPartitioner:
      () =>
      ({ partitionMetadata, message }) => {
        if (message.partition !== undefined) return message.partition
        const key = message.key === undefined || message.key === null ? null : message.key
        const partition = pick(typeof key === "string" ? bytes(key) : key, partitionMetadata.length)
        message.partition = partition
        return partition
      },
    partitionOf: (message) => message.partition
  }
}

/** Where a producer learns each topic's limit. */
export interface Limits {
  readonly allowAutoTopicCreation: boolean
  /** A topic's limit for one record batch (`max.message.bytes`); fails with UnknownTopic for a missing topic. */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
  /** Forgets a topic's cached limit, after the broker refused a batch it let through. */
  readonly forgetLimit: (topic: string) => void
}

/**
 * The limit of every topic of `records`, each looked up once, after the pre-check (`Kafka.oversized`): a call with a
 * record over its topic's limit fails here, before anything is sent. With auto-creation, a topic that does not exist
 * yet will get the broker's default.
 */
export const checkedLimits = (
  operation: string,
  records: ReadonlyArray<ProducerRecord>,
  limits: Limits
): Effect.Effect<ReadonlyMap<string, number>, KafkaError> => {
  const topics = new Set<string>()
  let last: string | undefined
  for (const r of records) {
    if (r.topic === last) continue
    last = r.topic
    topics.add(last)
  }
  return Effect.forEach(topics, (topic) =>
    limits.maxRecordBytes(topic).pipe(
      Effect.catchIf(
        (e) => limits.allowAutoTopicCreation && e.reason._tag === "UnknownTopic",
        () => Effect.succeed(defaultMaxMessageBytes)
      ),
      Effect.map((limit) => [topic, limit] as const)
    )
  ).pipe(
    Effect.flatMap((entries) => {
      const byTopic = new Map(entries)
      const error = oversized(records, (topic) => byTopic.get(topic) ?? defaultMaxMessageBytes, operation)
      return error === undefined ? Effect.succeed(byTopic) : Effect.fail(error)
    })
  )
}

/** The record batch header that `Record.sizeOf` counts once per record. */
const batchHeaderBytes = 61
/**
 * What a record adds to a batch it shares beyond what `sizeOf` counts for it alone: its offset and timestamp deltas
 * are no longer 0 (at most 5 and 10 bytes as varints instead of 1 each), which may lengthen its length varint by 1.
 */
const sharedBatchSlack = 14

/**
 * The room left in one `sendBatch`: at most `maxBatchBytes` in all (a single larger record still goes alone), and,
 * because kafkajs puts all records of one partition of a `sendBatch` into one record batch, which the broker measures
 * against the topic's limit, the records of each topic under that limit.
 */
export const makeChunk = (maxBatchBytes: number) => {
  let size = 0
  let count = 0
  const topicBytes = new Map<string, number>()
  return {
    /** Adds the record if it fits (the first one always does), else leaves the chunk as it is. */
    tryAdd: (record: ProducerRecord, limit: number): boolean => {
      const recordSize = sizeOf(record)
      const shared = recordSize - batchHeaderBytes + sharedBatchSlack
      const inTopic = topicBytes.get(record.topic)
      if (count > 0 && size + recordSize > maxBatchBytes) return false
      // The first record of a topic always fits: the pre-check saw to it.
      if (inTopic !== undefined && inTopic + shared > limit) return false
      size += recordSize
      count++
      topicBytes.set(record.topic, (inTopic ?? batchHeaderBytes) + shared)
      return true
    }
  }
}

/** A record on its way: its topic and the message kafkajs gets for it. */
export interface Outgoing {
  readonly topic: string
  readonly message: KafkaJS.Message
}

/** The `topicMessages` of a `sendBatch`, one entry per topic: kafkajs keeps only the last entry of a topic that appears twice. */
export const topicMessagesOf = (outgoing: ReadonlyArray<Outgoing>): Array<KafkaJS.TopicMessages> => {
  const byTopic = new Map<string, Array<KafkaJS.Message>>()
  for (const { topic, message } of outgoing) {
    const messages = byTopic.get(topic)
    if (messages === undefined) byTopic.set(topic, [message])
    else messages.push(message)
  }
  return Array.from(byTopic, ([topic, messages]) => ({ topic, messages }))
}

/**
 * The metadata of each record of one `sendBatch`, in the order given. kafkajs answers with the base offset per
 * partition; the records of a partition were appended in the order sent.
 */
export const metadataOf = (
  operation: string,
  outgoing: ReadonlyArray<Outgoing>,
  response: ReadonlyArray<KafkaJS.RecordMetadata>,
  partitioning: Partitioning
): Effect.Effect<Array<RecordMetadata>, KafkaError> =>
  Effect.suspend(() => {
    // The next offset per topic and partition; records of a send mostly share their topic, so the last topic's
    // partitions are at hand without a lookup.
    const next = new Map<string, Map<number, number>>()
    for (const m of response) {
      const base = m.baseOffset ?? m.offset
      if (base === undefined) continue
      const partitions = next.get(m.topicName) ?? new Map<number, number>()
      next.set(m.topicName, partitions)
      partitions.set(m.partition, Number(base))
    }
    const out = new Array<RecordMetadata>(outgoing.length)
    let lastTopic: string | undefined
    let lastPartitions: Map<number, number> | undefined
    for (let i = 0; i < outgoing.length; i++) {
      const { topic, message } = outgoing[i]!
      if (topic !== lastTopic) {
        lastTopic = topic
        lastPartitions = next.get(topic)
      }
      const partition = partitioning.partitionOf(message)
      const offset = partition === undefined ? undefined : lastPartitions?.get(partition)
      if (partition === undefined || lastPartitions === undefined || offset === undefined) {
        return Effect.fail(
          new KafkaError({
            operation,
            reason: new Rejected({ message: `no offset in the produce response for a record of ${topic}` })
          })
        )
      }
      lastPartitions.set(partition, offset + 1)
      out[i] = { topic, partition, offset }
    }
    return Effect.succeed(out)
  })

/**
 * The broker measured a batch against a limit the pre-check did not know (the topic's config changed, or a
 * broker-wide limit is lower): never retried, and the cached limits are read again next time.
 */
export const refusedAsTooLarge = (
  operation: string,
  error: KafkaError,
  topics: ReadonlyArray<string>,
  limits: Limits
): KafkaError => {
  for (const topic of topics) limits.forgetLimit(topic)
  return new KafkaError({
    operation,
    reason: new MessageTooLarge({
      message: `the broker refused records for topic ${topics.join(", ")} as too large: ${error.reason.message}`,
      cause: error,
      ...(topics.length === 1 ? { topic: topics[0]! } : {})
    })
  })
}
