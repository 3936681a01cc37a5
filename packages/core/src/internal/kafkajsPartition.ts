/**
 * `readPartition` on kafkajs: one partition from an offset to the end it had when the read started, outside any
 * consumer group (a changelog restore).
 *
 * kafkajs has no `assign()`: its consumers only read through a group, which costs a join per read (and, on a
 * default broker, `group.initial.rebalance.delay.ms` = 3 s) and delivers every partition of the topic. So the
 * read talks to the partition's leader itself, with Fetch requests on a kafkajs Cluster of its own: taken from a
 * consumer that is never run (kafkajs hands a consumer's Cluster only to assigner factories), and closed with the
 * stream. Its own connections also keep a restore from queueing behind a group consumer's long poll.
 *
 * The end is the partition's last stable offset (read_committed: the high-water mark unless a transaction is open)
 * when the read starts. Offsets below it that carry no record for Sluice (transaction markers, aborted records,
 * records compaction removed) are covered by `lastOffset`, so the last batch always reaches `end - 1`.
 */
import { Effect, Option, Stream } from "effect"
import type * as KafkaJS from "kafkajs"
import { KafkaError, Rejected, Transient } from "../Errors.ts"
import { type ReadPartitionOptions, unknownTopic } from "../Kafka.ts"
import type { RecordBatch } from "../Record.ts"
import { disconnectWithin } from "./kafkajsClient.ts"
import { attempt, backoff, errorType } from "./kafkajsErrors.ts"
import { type DecodedMessage, toRecords } from "./kafkajsRecords.ts"

/**
 * A fetched message as kafkajs' Fetch decoder returns it (src/protocol/recordBatch/record/v0/decoder.js and
 * recordBatch/v0/decoder.js); its .d.ts types the whole response as `any`. Messages in the old MessageSet format
 * have neither field: they are never transactional.
 */
export interface FetchedMessage extends DecodedMessage {
  readonly isControlRecord?: boolean
  readonly batchContext?: { readonly producerId: string; readonly inTransaction: boolean }
}

/** One partition of a Fetch response as kafkajs decodes it (src/protocol/requests/fetch/v11/response.js). */
interface FetchedPartition {
  readonly highWatermark: string
  readonly abortedTransactions?: ReadonlyArray<{ readonly producerId: string; readonly firstOffset: string }>
  readonly messages: ReadonlyArray<FetchedMessage>
}

interface FetchResponse {
  readonly responses: ReadonlyArray<{ readonly partitions: ReadonlyArray<FetchedPartition> }>
}

const abortMarkerKey = Buffer.from([0, 0, 0, 0])

/**
 * What a fetch from `fetchOffset` holds for Sluice below `end`: its records (no control records, nothing of an
 * aborted transaction, nothing below `fetchOffset`, which a compressed batch may start before), and the offset of
 * the last entry of any kind below `end` (`undefined`: none).
 *
 * Aborted data is found as the Java client finds it: an aborted transaction of a producer starts at the
 * `firstOffset` the broker lists, and ends at that producer's abort marker.
 */
export const visible = (
  messages: ReadonlyArray<FetchedMessage>,
  fetchOffset: number,
  end: number,
  abortedTransactions: ReadonlyArray<{ readonly producerId: string; readonly firstOffset: string }> = []
): { readonly records: ReadonlyArray<FetchedMessage>; readonly last: number | undefined } => {
  const pending = [...abortedTransactions].sort((a, b) => Number(a.firstOffset) - Number(b.firstOffset))
  const aborting = new Set<string>()
  const records: Array<FetchedMessage> = []
  let last: number | undefined
  for (const m of messages) {
    const offset = Number(m.offset)
    if (offset < fetchOffset) continue
    if (offset >= end) break
    last = offset
    while (pending.length > 0 && offset >= Number(pending[0]!.firstOffset)) aborting.add(pending.shift()!.producerId)
    const producerId = m.batchContext?.producerId
    if (m.isControlRecord === true) {
      if (producerId !== undefined && m.key !== null && abortMarkerKey.equals(m.key)) aborting.delete(producerId)
      continue
    }
    if (producerId !== undefined && m.batchContext?.inTransaction === true && aborting.has(producerId)) continue
    records.push(m)
  }
  return { records, last }
}

// Only read by kafkajs once a consumer joins a group, which the reader's never does.
const unusedAssigner: KafkaJS.Assigner = {
  name: "SluicePartitionReader",
  version: 0,
  protocol: () => ({ name: "SluicePartitionReader", metadata: Buffer.alloc(0) }),
  assign: async () => []
}

/** A Cluster of its own, from a consumer that is never run; read_committed, and never creates a topic. */
const clusterOf = (kafka: KafkaJS.Kafka) =>
  Effect.suspend(() => {
    let cluster: KafkaJS.Cluster | undefined
    kafka.consumer({
      groupId: "sluice-partition-reader",
      allowAutoTopicCreation: false,
      // The Cluster's ListOffsets then answer the last stable offset, where the read ends (its Fetches say so
      // themselves).
      readUncommitted: false,
      partitionAssigners: [
        (config) => {
          cluster = config.cluster
          return unusedAssigner
        }
      ]
    })
    return cluster === undefined
      ? Effect.die(new Error("kafkajs did not hand the consumer's Cluster to its assigner factory"))
      : Effect.succeed(cluster)
  })

export interface PartitionReaderSettings {
  readonly closeTimeoutMs: number
  /** Bytes per Fetch request. */
  readonly fetchBytes: number
}

const operation = "readPartition"

type Page = readonly [ReadonlyArray<RecordBatch>, Option.Option<number>]
const page = (batches: ReadonlyArray<RecordBatch>, next: Option.Option<number>): Page => [batches, next]

export const readPartition =
  (kafka: KafkaJS.Kafka, settings: PartitionReaderSettings) =>
  (options: ReadPartitionOptions): Stream.Stream<RecordBatch, KafkaError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const { topic, partition } = options
        const cluster = yield* Effect.acquireRelease(clusterOf(kafka), (c) =>
          disconnectWithin(
            c,
            settings.closeTimeoutMs,
            Effect.logDebug(
              `the partition reader's kafkajs cluster did not disconnect within ${settings.closeTimeoutMs} ms`
            )
          )
        )
        yield* attempt(operation, () => cluster.connect())
        yield* attempt(operation, () => cluster.addTargetTopic(topic), topic).pipe(
          Effect.mapError((error) => (error.reason._tag === "UnknownTopic" ? unknownTopic(operation, topic) : error))
        )
        const count = cluster.findTopicPartitionMetadata(topic).length
        if (count === 0) return yield* unknownTopic(operation, topic)
        if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
          return yield* new KafkaError({
            operation,
            reason: new Rejected({
              message: `partition ${partition} out of range for topic ${topic}, which has ${count} partition${count === 1 ? "" : "s"} (0 to ${count - 1})`
            })
          })
        }

        const listOffset = (fromBeginning: boolean) =>
          attempt(
            operation,
            async () => {
              const [offsets] = await cluster.fetchTopicsOffset([{ topic, partitions: [{ partition }], fromBeginning }])
              return Number(offsets?.partitions.find((p) => p.partition === partition)?.offset ?? Number.NaN)
            },
            topic
          )
        const end = yield* listOffset(false)
        if (!Number.isFinite(end)) {
          return yield* new KafkaError({
            operation,
            reason: new Transient({ message: `no end offset for ${topic}[${partition}]` })
          })
        }

        /** One Fetch from `next` on the partition's leader; `undefined` when `next` is below the log start. */
        const fetchAt = (next: number) =>
          attempt(
            operation,
            async (): Promise<FetchedPartition | undefined> => {
              const nodeId = Object.keys(cluster.findLeaderForPartitions(topic, [partition]))[0]
              if (nodeId === undefined) {
                throw new KafkaError({
                  operation,
                  reason: new Transient({ message: `no leader for ${topic}[${partition}]` })
                })
              }
              const broker = await cluster.findBroker({ nodeId })
              // The .d.ts types the response as `any`; FetchResponse is what kafkajs' decoder returns.
              const response: FetchResponse = await broker
                .fetch({
                  isolationLevel: 1, // read_committed
                  maxWaitTime: 100,
                  minBytes: 1,
                  maxBytes: settings.fetchBytes,
                  topics: [
                    { topic, partitions: [{ partition, fetchOffset: String(next), maxBytes: settings.fetchBytes }] }
                  ]
                })
                .catch((error: unknown) => {
                  if (errorType(error) === "OFFSET_OUT_OF_RANGE") return { responses: [] }
                  throw error
                })
              return response.responses[0]?.partitions[0]
            },
            topic
          ).pipe(
            // A leader that moved: learn where it went, then ask again.
            Effect.tapError((error) =>
              error.isRetryable ? attempt(operation, () => cluster.refreshMetadata()).pipe(Effect.ignore) : Effect.void
            ),
            Effect.retry({ schedule: backoff(30_000), while: (error) => error.isRetryable })
          )

        const step = (next: number) =>
          Effect.gen(function* () {
            const fetched = yield* fetchAt(next)
            if (fetched === undefined) {
              // Below the log start (deleted by retention): the read starts where the log does.
              const start = yield* listOffset(true)
              if (!(start > next)) {
                return yield* new KafkaError({
                  operation,
                  reason: new Rejected({ message: `offset ${next} is out of range for ${topic}[${partition}]` })
                })
              }
              return page([], start < end ? Option.some(start) : Option.none())
            }
            const { records, last } = visible(fetched.messages, next, end, fetched.abortedTransactions)
            // Nothing left below the end (records removed by compaction, or a tail of markers already passed):
            // the read is complete, and says so with the end's last offset.
            const reached = last === undefined ? end - 1 : last + 1 >= end ? end - 1 : last
            const batchRecords = toRecords(topic, partition, records)
            const lastRecord = batchRecords.at(-1)?.offset
            const batch: RecordBatch = {
              topic,
              partition,
              records: batchRecords,
              highWatermark: Number(fetched.highWatermark),
              ...(lastRecord === reached ? {} : { lastOffset: reached })
            }
            return page([batch], reached + 1 < end ? Option.some(reached + 1) : Option.none())
          })

        const from = Math.max(0, options.from)
        if (from >= end) return Stream.empty
        return Stream.paginate(from, step)
      })
    )
