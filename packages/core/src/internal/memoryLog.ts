/**
 * The in-memory broker's storage: topics made of append-only partition logs, transactions as the logs see them
 * (open, committed and aborted records, markers, the last stable offset), the signal that wakes idle readers, and
 * what a read_committed reader gets from a log, including the compaction view of a compacted topic.
 *
 * The logs are plain mutable arrays on purpose: the broker mutates them only inside synchronous steps (one
 * `Effect.sync` or `Effect.suspend` body), which JavaScript runs to completion and Effect never splits, so each
 * step is atomic without copying a log on every append.
 */
import { Buffer } from "node:buffer"
import { Deferred, Effect } from "effect"
import type { KafkaError } from "../Errors.ts"
import { unknownTopic } from "../Kafka.ts"
import {
  type ConsumerRecord,
  defaultMaxMessageBytes,
  type Headers,
  type ProducerRecord,
  type RecordBatch,
  type RecordMetadata
} from "../Record.ts"

/** A transaction's outcome so far. One object is shared by all its entries, so ending it is one assignment. */
export interface Txn {
  state: "open" | "committed" | "aborted"
}

/** What a transactional entry of a log is: a record of that transaction, or a commit or abort marker. */
type TxnEntry = Txn | "marker"

export interface PartitionLog {
  readonly topic: string
  readonly partition: number
  /**
   * Every entry, markers included: nothing is ever removed, so `records[i].offset === i` and the log end offset is
   * `records.length`.
   */
  readonly records: Array<ConsumerRecord>
  /**
   * The offsets transactions wrote (their records and markers). Empty for a log no transaction wrote to, which keeps
   * the plain path a slice; readers look offsets up here only when it is not.
   */
  readonly transactional: Map<number, TxnEntry>
  /** The transactions open on this partition with their first offset, oldest first: the first one is the LSO. */
  readonly open: Array<{ readonly txn: Txn; readonly first: number }>
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
    transactional: new Map(),
    open: [],
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

const noHeaders: Headers = Object.freeze({})

/**
 * Appends `records[i]` to `targets[i]`, as records of `txn` when given (which opens it on every partition it
 * writes first), and wakes the logs. Returns each record's metadata and the logs written, in first-write order.
 */
export const append = (
  records: ReadonlyArray<ProducerRecord>,
  targets: ReadonlyArray<PartitionLog>,
  now: number,
  txn?: Txn
): { readonly metadata: ReadonlyArray<RecordMetadata>; readonly logs: ReadonlySet<PartitionLog> } => {
  const metadata: Array<RecordMetadata> = new Array(records.length)
  const logs = new Set<PartitionLog>()
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    const log = targets[i]!
    const offset = log.records.length
    log.records.push({
      topic: log.topic,
      partition: log.partition,
      offset,
      timestamp: r.timestamp ?? now,
      key: r.key,
      value: r.value,
      headers: r.headers ?? noHeaders
    })
    if (txn !== undefined) {
      log.transactional.set(offset, txn)
      if (!logs.has(log)) log.open.push({ txn, first: offset })
    }
    metadata[i] = { topic: log.topic, partition: log.partition, offset }
    logs.add(log)
  }
  for (const log of logs) wake(log)
  return { metadata, logs }
}

// A control record's key: version 0, then the type (0 abort, 1 commit), as Kafka writes it.
const abortKey = new Uint8Array([0, 0, 0, 0])
const commitKey = new Uint8Array([0, 0, 0, 1])

/**
 * Ends an open transaction on the logs it wrote: its records become committed or aborted, and each log gets a
 * marker (a control record that takes an offset and is never delivered), which moves the LSO and wakes readers.
 */
export const end = (txn: Txn, logs: Iterable<PartitionLog>, outcome: "committed" | "aborted", now: number): void => {
  txn.state = outcome
  for (const log of logs) {
    const at = log.open.findIndex((o) => o.txn === txn)
    if (at >= 0) log.open.splice(at, 1)
    const offset = log.records.length
    log.records.push({
      topic: log.topic,
      partition: log.partition,
      offset,
      timestamp: now,
      key: outcome === "committed" ? commitKey : abortKey,
      value: null,
      headers: noHeaders
    })
    log.transactional.set(offset, "marker")
    wake(log)
  }
}

/**
 * The last stable offset: the first offset of the oldest open transaction, or the log end. read_committed readers
 * get nothing at or past it, plain records included.
 */
export const stableEnd = (log: PartitionLog): number =>
  log.open.length === 0 ? log.records.length : log.open[0]!.first

/** Whether a read_committed reader gets the entry at `offset` (below the LSO): a plain or committed record. */
const delivered = (log: PartitionLog, offset: number): boolean => {
  const entry = log.transactional.get(offset)
  return entry === undefined || (entry !== "marker" && entry.state === "committed")
}

/** The records of `[from, to)` (with `to` at most the LSO) that a read_committed reader gets. */
const visible = (log: PartitionLog, from: number, to: number): ReadonlyArray<ConsumerRecord> => {
  if (log.transactional.size === 0) return log.records.slice(from, to)
  const records: Array<ConsumerRecord> = []
  for (let i = from; i < to; i++) if (delivered(log, i)) records.push(log.records[i]!)
  return records
}

const batchOf = (log: PartitionLog, records: ReadonlyArray<ConsumerRecord>): RecordBatch => ({
  topic: log.topic,
  partition: log.partition,
  records,
  highWatermark: log.records.length
})

/** A batch of these records that covered the log up to `to`: `lastOffset` says so when its last record is before. */
const covering = (log: PartitionLog, records: ReadonlyArray<ConsumerRecord>, to: number): RecordBatch =>
  records[records.length - 1]?.offset === to - 1
    ? batchOf(log, records)
    : { ...batchOf(log, records), lastOffset: to - 1 }

/** The batch a read_committed fetch of `[from, to)` returns (`to` at most the LSO); its records may be empty. */
export const batchOver = (log: PartitionLog, from: number, to: number): RecordBatch =>
  covering(log, visible(log, from, to), to)

/** Every record a read_committed reader gets from the log now: plain and committed records below the LSO. */
export const committedRecords = (log: PartitionLog): ReadonlyArray<ConsumerRecord> => visible(log, 0, stableEnd(log))

/** A data record with what became of it: `plain` when no transaction wrote it. */
export interface AppendedRecord extends ConsumerRecord {
  readonly state: "plain" | Txn["state"]
}

/** Every data record of the log (markers left out), with its state. */
export const appendedRecords = (log: PartitionLog): ReadonlyArray<AppendedRecord> => {
  const appended: Array<AppendedRecord> = []
  for (const record of log.records) {
    const entry = log.transactional.get(record.offset)
    if (entry !== "marker") appended.push({ ...record, state: entry === undefined ? "plain" : entry.state })
  }
  return appended
}

/**
 * The log end without its trailing markers and aborted records: a consumer that committed the offset after the
 * last record it could get has committed up to here. Scans only that tail.
 */
export const settledEnd = (log: PartitionLog): number => {
  let at = log.records.length
  if (log.transactional.size === 0) return at
  while (at > 0) {
    const entry = log.transactional.get(at - 1)
    if (entry !== "marker" && entry?.state !== "aborted") break
    at--
  }
  return at
}

// Bytes as a string that is 1:1 with them (latin1), without copying, to key a Map.
const keyString = (key: Uint8Array): string =>
  Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1")

/**
 * The records of `[0, end)` (`end` at most the LSO) that survive compaction, among those a read_committed reader
 * gets: for each key the latest record, tombstones included, at its original offset. Records without a key are
 * kept (a real broker rejects them on compacted topics, see `send`).
 */
const compactedHead = (log: PartitionLog, end: number): ReadonlyArray<ConsumerRecord> => {
  const records = visible(log, 0, end)
  const latest = new Map<string, number>()
  for (const record of records) if (record.key !== null) latest.set(keyString(record.key), record.offset)
  return records.filter((record) => record.key === null || latest.get(keyString(record.key)) === record.offset)
}

/** Where a `read` stream is in one partition: first a compacted head (possibly empty), then the live log. */
export interface Cursor {
  head: ReadonlyArray<ConsumerRecord>
  headIndex: number
  /** Whether the head still has a batch to deliver: its last one covers every offset below `position`. */
  headPending: boolean
  position: number
}

/**
 * A `read` stream's start in one partition: from the LSO (`latest`), from 0, or on a compacted topic from the
 * compacted view of everything below the LSO, then on from there.
 */
export const cursor = (log: PartitionLog, from: "earliest" | "latest" | "compacted"): Cursor => {
  const end = stableEnd(log)
  return from === "compacted"
    ? { head: compactedHead(log, end), headIndex: 0, headPending: end > 0, position: end }
    : { head: [], headIndex: 0, headPending: false, position: from === "latest" ? end : 0 }
}

type Step =
  | { readonly _tag: "Batch"; readonly batch: RecordBatch }
  | { readonly _tag: "Wait"; readonly signal: Deferred.Deferred<void> }
  | { readonly _tag: "Deleted" }

const deleted: Step = { _tag: "Deleted" }

/**
 * The next batch of a `read` stream, waiting while the cursor is at the LSO. A batch may hold no record but a
 * `lastOffset` (it covered only markers or aborted records), so that a reader knows how far it got.
 */
export const nextBatch = Effect.fnUntraced(function* (
  log: PartitionLog,
  cursor: Cursor,
  maxBatchSize: number
): Effect.fn.Return<RecordBatch, KafkaError> {
  while (true) {
    const step = yield* Effect.sync((): Step => {
      if (log.deleted) return deleted
      if (cursor.headPending) {
        const records = cursor.head.slice(cursor.headIndex, cursor.headIndex + maxBatchSize)
        cursor.headIndex += records.length
        if (cursor.headIndex < cursor.head.length) return { _tag: "Batch", batch: batchOf(log, records) }
        cursor.headPending = false
        return { _tag: "Batch", batch: covering(log, records, cursor.position) }
      }
      const end = stableEnd(log)
      if (cursor.position < end) {
        const to = Math.min(end, cursor.position + maxBatchSize)
        const batch = batchOver(log, cursor.position, to)
        cursor.position = to
        return { _tag: "Batch", batch }
      }
      return { _tag: "Wait", signal: log.signal }
    })
    if (step._tag === "Batch") return step.batch
    if (step._tag === "Deleted") return yield* unknownTopic("read", log.topic)
    yield* Deferred.await(step.signal)
  }
})
