/**
 * Sluice's own Kafka service: produce, consume in a group, read whole topics, administer topics.
 *
 * Everything in Sluice depends on this interface and never on a client library's types, so a topology runs
 * unchanged on the kafkajs layer (`KafkaJs.layer`) and on the in-memory broker (`MemoryBroker.layer`), and another
 * client can become a third layer later.
 */
import { Config, Context, type Effect, type Scope, type Stream } from "effect"
import type { KafkaError } from "./Errors.ts"
import type { ProducerRecord, RecordBatch, RecordMetadata, TopicPartition, TopicPartitionOffset } from "./Record.ts"

export interface TopicSpec {
  readonly name: string
  readonly partitions: number
  readonly replicationFactor?: number
  /** Topic configs, e.g. `{ "cleanup.policy": "compact" }`. */
  readonly config?: Readonly<Record<string, string>>
}

export interface TopicDescription {
  readonly name: string
  readonly partitions: number
}

/** The earliest and the next offset (high-water mark) of a partition: offsets in `[low, high)`; compaction may leave gaps. */
export interface PartitionOffsets {
  readonly partition: number
  readonly low: number
  readonly high: number
}

export interface ConsumeOptions {
  readonly groupId: string
  readonly topics: ReadonlyArray<string>
  /** Where a partition without a committed offset starts. Default: the earliest offset. */
  readonly fromBeginning?: boolean
  /** How long the group waits for a silent member before it moves its partitions. Default 10 s. */
  readonly sessionTimeoutMs?: number
  /** How long a fetch waits for data on an idle partition. Default 100 ms. */
  readonly maxWaitMs?: number
}

export interface ConsumeHandlers {
  /**
   * Receives each fetched batch. Batches of one partition arrive in order, one at a time; partitions arrive
   * concurrently. The returned Effect may suspend to push back on the fetcher; it must not fail.
   */
  readonly onBatch: (batch: RecordBatch) => Effect.Effect<void>
  /**
   * Called with the whole new assignment after every (re)join of the group, before batches of the new generation
   * are delivered. Partitions missing from it were revoked.
   */
  readonly onAssignment: (assignment: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
}

/** A member of a consumer group. Offsets are only ever committed explicitly (no auto-commit). */
export interface GroupConsumer {
  readonly commit: (offsets: ReadonlyArray<TopicPartitionOffset>) => Effect.Effect<void, KafkaError>
  readonly pause: (partitions: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
  readonly resume: (partitions: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
  /** Stops fetching for good; waits for in-flight `onBatch` calls. Commits keep working until the scope closes. */
  readonly stop: Effect.Effect<void>
  /** Fails when the member is out of its group for good (the client crashed and will not rejoin); never succeeds. */
  readonly failed: Effect.Effect<never, KafkaError>
}

export interface ReadOptions {
  readonly topics: ReadonlyArray<string>
  /** Default `earliest`. */
  readonly from?: "earliest" | "latest"
  readonly maxWaitMs?: number
}

export interface KafkaShape {
  /**
   * Produces records and succeeds once every one of them is acknowledged by all in-sync replicas (acks=all) by an
   * idempotent producer; retryable broker errors are retried with capped exponential backoff first. A record over
   * its topic's `maxRecordBytes` fails the whole call before anything is sent, with a `MessageTooLarge` reason whose
   * `records` lists the offending indices.
   */
  readonly send: (records: ReadonlyArray<ProducerRecord>) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
  /**
   * Joins `groupId` and delivers batches to `handlers` until `stop` or the scope closes (which leaves the group).
   * Returns before the first assignment: handlers may wait for `consume` to have returned. A member may still commit
   * revoked partitions while its `onAssignment` runs; on Kafka the new owner may already have started, so such a
   * commit can cause duplicates there (never loss).
   */
  readonly consume: (
    options: ConsumeOptions,
    handlers: ConsumeHandlers
  ) => Effect.Effect<GroupConsumer, KafkaError, Scope.Scope>
  /**
   * Reads every partition of the topics outside any consumer group, committing nothing: global tables and scans.
   * The stream does not end by itself; see `Reader.readToEnd` for a bounded read.
   */
  readonly read: (options: ReadOptions) => Stream.Stream<RecordBatch, KafkaError>
  /**
   * The largest record, as `Record.sizeOf` measures it, that the topic accepts: its `max.message.bytes` (which
   * defaults to the broker's `message.max.bytes`), read once per topic and cached.
   */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
  /** Creates topics; topics that already exist are left as they are. */
  readonly createTopics: (topics: ReadonlyArray<TopicSpec>) => Effect.Effect<void, KafkaError>
  readonly deleteTopics: (names: ReadonlyArray<string>) => Effect.Effect<void, KafkaError>
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
  /** Fails with a non-retryable KafkaError (reason "unknown topic ...") when the topic does not exist. */
  readonly describeTopic: (name: string) => Effect.Effect<TopicDescription, KafkaError>
  readonly offsets: (topic: string) => Effect.Effect<ReadonlyArray<PartitionOffsets>, KafkaError>
  /** The group's committed offsets for a topic's partitions; a partition without a commit is left out. */
  readonly committedOffsets: (
    groupId: string,
    topic: string
  ) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, KafkaError>
}

export class Kafka extends Context.Service<Kafka, KafkaShape>()("@sluice/core/Kafka") {}

/** Where the real broker is: `SLUICE_BROKERS` (comma-separated `host:port`), default `127.0.0.1:9092`. */
export const brokersConfig = Config.String("SLUICE_BROKERS").pipe(
  Config.withDefault("127.0.0.1:9092"),
  Config.map((s) =>
    s
      .split(",")
      .map((b) => b.trim())
      .filter((b) => b.length > 0)
  )
)
