/**
 * The in-memory broker's storage: topics made of append-only partition logs, the signal that wakes idle readers,
 * and the compaction view of a compacted topic.
 *
 * The logs are plain mutable arrays on purpose: the broker mutates them only inside synchronous steps (one
 * `Effect.sync` or `Effect.suspend` body), which JavaScript runs to completion and Effect never splits, so each
 * step is atomic without copying a log on every append.
 */
import { Buffer } from "node:buffer"
import { Deferred, Effect } from "effect"
import type { KafkaError } from "../Errors.ts"
import { unknownTopic } from "../Kafka.ts"
import { type ConsumerRecord, defaultMaxMessageBytes, type RecordBatch } from "../Record.ts"

export interface PartitionLog {
  readonly topic: string
  readonly partition: number
  /** Nothing is ever removed, so `records[i].offset === i` and the log end offset is `records.length`. */
  readonly records: Array<ConsumerRecord>
  /** Completed and replaced on every append, so an idle reader waits on one Deferred instead of polling. */
  signal: Deferred.Deferred<void>
  deleted: boolean
}

export interface TopicLog {
  readonly name: string
  readonly compacted: boolean
  /** The topic's `max.message.bytes`: the largest record, as `Record.sizeOf` measures it, that `send` accepts. */
  readonly maxMessageBytes: number
  readonly partitions: ReadonlyArray<PartitionLog>
}

export const makeTopic = (
  name: string,
  partitions: number,
  compacted: boolean,
  maxMessageBytes: number = defaultMaxMessageBytes
): TopicLog => ({
  name,
  compacted,
  maxMessageBytes,
  partitions: Array.from({ length: partitions }, (_, partition) => ({
    topic: name,
    partition,
    records: [],
    signal: Deferred.makeUnsafe<void>(),
    deleted: false
  }))
})

/** Wakes every reader waiting on the log. A waiter holds the Deferred it read, so none can miss a wake-up. */
export const wake = (log: PartitionLog): void => {
  const signal = log.signal
  log.signal = Deferred.makeUnsafe<void>()
  Deferred.doneUnsafe(signal, Effect.void)
}

/** Marks a deleted topic's logs, so that readers holding them stop instead of waiting forever. */
export const drop = (topic: TopicLog): void => {
  for (const log of topic.partitions) {
    log.deleted = true
    wake(log)
  }
}

export const batchOf = (log: PartitionLog, records: ReadonlyArray<ConsumerRecord>): RecordBatch => ({
  topic: log.topic,
  partition: log.partition,
  records,
  highWatermark: log.records.length
})

// Bytes as a string that is 1:1 with them (latin1), without copying, to key a Map.
const keyString = (key: Uint8Array): string =>
  Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1")

/**
 * The records of `[0, end)` that survive compaction: for each key the latest record, tombstones included, at its
 * original offset. Records without a key are kept (a real broker rejects them on compacted topics, see `send`).
 */
export const compactedHead = (log: PartitionLog, end: number): ReadonlyArray<ConsumerRecord> => {
  const latest = new Map<string, number>()
  for (let i = 0; i < end; i++) {
    const key = log.records[i]!.key
    if (key !== null) latest.set(keyString(key), i)
  }
  const survivors: Array<ConsumerRecord> = []
  for (let i = 0; i < end; i++) {
    const record = log.records[i]!
    if (record.key === null || latest.get(keyString(record.key)) === i) survivors.push(record)
  }
  return survivors
}

/** Where a `read` stream is in one partition: first a compacted head (possibly empty), then the live log. */
export interface Cursor {
  head: ReadonlyArray<ConsumerRecord>
  headIndex: number
  position: number
}

type Step =
  | { readonly _tag: "Batch"; readonly batch: RecordBatch }
  | { readonly _tag: "Wait"; readonly signal: Deferred.Deferred<void> }
  | { readonly _tag: "Deleted" }

const deleted: Step = { _tag: "Deleted" }

/** The next batch of a `read` stream, waiting for new records when the cursor is at the log end. */
export const nextBatch = Effect.fnUntraced(function* (
  log: PartitionLog,
  cursor: Cursor,
  maxBatchSize: number
): Effect.fn.Return<RecordBatch, KafkaError> {
  while (true) {
    const step = yield* Effect.sync((): Step => {
      if (log.deleted) return deleted
      if (cursor.headIndex < cursor.head.length) {
        const records = cursor.head.slice(cursor.headIndex, cursor.headIndex + maxBatchSize)
        cursor.headIndex += records.length
        return { _tag: "Batch", batch: batchOf(log, records) }
      }
      if (cursor.position < log.records.length) {
        const records = log.records.slice(cursor.position, cursor.position + maxBatchSize)
        cursor.position += records.length
        return { _tag: "Batch", batch: batchOf(log, records) }
      }
      return { _tag: "Wait", signal: log.signal }
    })
    if (step._tag === "Batch") return step.batch
    if (step._tag === "Deleted") return yield* unknownTopic("read", log.topic)
    yield* Deferred.await(step.signal)
  }
})
