/**
 * Sluice's own Kafka service: produce, consume in a group, read whole topics, administer topics.
 *
 * Everything in Sluice depends on this interface and never on a client library's types, so a topology runs
 * unchanged on the kafkajs layer (`KafkaJs.layer`) and on the in-memory broker (`MemoryBroker.layer`), and another
 * client can become a third layer later. The rules both layers must agree on live here too: which broker addresses
 * are valid (`parseBrokers`), the pre-check of `send` (`oversized`), and the error for a missing topic
 * (`unknownTopic`).
 */
import { Config, Context, Effect, Result, Schema, SchemaIssue, type Scope, type Stream } from "effect"
import { KafkaError, MessageTooLarge, UnknownTopic } from "./Errors.ts"
import { parseHostPort } from "./internal/address.ts"
import {
  type ProducerRecord,
  type RecordBatch,
  type RecordMetadata,
  sizeOf,
  type TopicPartition,
  type TopicPartitionOffset
} from "./Record.ts"

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
  /**
   * Called before the member rejoins its group for a new generation, when a rebalance starts (not when it leaves:
   * the runner drains before it closes the consumer; a stopped member holds a rebalance until its scope closes).
   * The member does not send its JoinGroup until this completes, and the group gives no partition to a new
   * owner before every old owner has rejoined, so what this does for its partitions (finish in-flight work, make it
   * durable, commit) happens before any other member starts on them. No batch is delivered while it runs; commits
   * work and heartbeats go on. It must complete within the rebalance timeout (a member that takes longer is dropped
   * from the group: what it had not committed is re-delivered).
   */
  readonly onRevoke?: Effect.Effect<void> | undefined
}

/** A member of a consumer group, as the group coordinator describes it. */
export interface GroupMember {
  readonly memberId: string
  readonly clientId: string
  readonly host: string
  readonly assignment: ReadonlyArray<TopicPartition>
}

/** A read of one partition, outside any consumer group. */
export interface ReadPartitionOptions {
  readonly topic: string
  readonly partition: number
  /** The first offset to read (a compacted or truncated log may start later). */
  readonly from: number
}

/** A member of a consumer group. Offsets are only ever committed explicitly (no auto-commit). */
export interface GroupConsumer {
  readonly commit: (offsets: ReadonlyArray<TopicPartitionOffset>) => Effect.Effect<void, KafkaError>
  readonly pause: (partitions: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
  readonly resume: (partitions: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
  /**
   * Moves the member's fetch position of assigned partitions: the next batch of each is read from `offset` (a task
   * that starts from positions kept outside Kafka, or from the group's committed offset under exactly-once).
   * Batches fetched before the seek are not delivered afterwards. Partitions not assigned are ignored.
   */
  readonly seek: (offsets: ReadonlyArray<TopicPartitionOffset>) => Effect.Effect<void>
  /** Stops fetching for good; waits for in-flight `onBatch` calls. Commits keep working until the scope closes. */
  readonly stop: Effect.Effect<void>
  /** Fails when the member is out of its group for good (the client crashed and will not rejoin); never succeeds. */
  readonly failed: Effect.Effect<never, KafkaError>
}

/** The consumed offsets a transaction commits for a consumer group (Kafka's `sendOffsetsToTransaction`). */
export interface TransactionOffsets {
  readonly groupId: string
  /** Per input partition, the offset of the next record to consume. */
  readonly offsets: ReadonlyArray<TopicPartitionOffset>
}

/**
 * A producer with a `transactional.id`. Opening one (`KafkaShape.transactional`) fences every earlier producer with
 * the same id: their open transaction is aborted, and every later call of theirs fails with reason `Fenced`.
 */
export interface TransactionalProducer {
  readonly transactionalId: string
  /**
   * One transaction: begin, produce `records` (acks=all; the same size pre-check as `send`), add `offsets` as the
   * group's committed offsets, commit. Succeeds once committed, with each record's metadata in order. On any
   * failure the transaction is aborted: read_committed readers never see its records and the offsets stay as they
   * were, so the same content can be tried again in a new transaction. A producer that was fenced, or whose id
   * expired, fails with reason `Fenced` (not retryable: the task it served belongs to another producer now).
   */
  readonly transaction: (
    records: ReadonlyArray<ProducerRecord>,
    offsets?: TransactionOffsets
  ) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
}

export interface ReadOptions {
  readonly topics: ReadonlyArray<string>
  /** Default `earliest`. */
  readonly from?: "earliest" | "latest"
  readonly maxWaitMs?: number
}

/**
 * The service. Every call about a topic that does not exist (`consume`, `read`, `maxRecordBytes`, `describeTopic`,
 * `offsets`, `committedOffsets`, and `send` unless the layer auto-creates topics) fails at once with `unknownTopic`:
 * reason `UnknownTopic`, message `topic <name> does not exist`, not retryable.
 */
export interface KafkaShape {
  /**
   * Produces records and succeeds once every one of them is acknowledged by all in-sync replicas (acks=all) by an
   * idempotent producer; retryable broker errors are retried with capped exponential backoff first. A record over
   * its topic's `maxRecordBytes` fails the whole call before anything is sent, with a `MessageTooLarge` reason whose
   * `records` lists the offending indices.
   */
  readonly send: (records: ReadonlyArray<ProducerRecord>) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
  /**
   * A transactional producer with this `transactional.id`, open until the scope closes. Opening it fences earlier
   * producers with the same id and aborts their open transaction (so it may wait for that abort).
   */
  readonly transactional: (transactionalId: string) => Effect.Effect<TransactionalProducer, KafkaError, Scope.Scope>
  /**
   * Joins `groupId` and delivers batches to `handlers` until `stop` or the scope closes (which leaves the group).
   * Reads with isolation read_committed: records of open or aborted transactions are never delivered.
   * Returns before the first assignment: handlers may wait for `consume` to have returned. Partitions are assigned
   * as tasks (`Assignor.assignTasks`): a member gets partition i of every topic it subscribes to together, and keeps
   * what it had where the balance allows. `onRevoke` runs before every rejoin, so one partition never has two
   * owners working on it at once.
   */
  readonly consume: (
    options: ConsumeOptions,
    handlers: ConsumeHandlers
  ) => Effect.Effect<GroupConsumer, KafkaError, Scope.Scope>
  /**
   * Reads every partition of the topics outside any consumer group (read_committed), committing nothing: global
   * tables and scans.
   * The stream does not end by itself; see `Reader.readToEnd` for a bounded read.
   */
  readonly read: (options: ReadOptions) => Stream.Stream<RecordBatch, KafkaError>
  /**
   * Reads one partition from `from` to the end it has when the read starts (its high-water mark; under
   * read_committed, the last stable offset), then ends: a changelog restore. Batches carry `lastOffset` where the
   * read covered offsets without records (transaction markers, compaction), so the last batch reaches the end.
   */
  readonly readPartition: (options: ReadPartitionOptions) => Stream.Stream<RecordBatch, KafkaError>
  /**
   * The largest record, as `Record.sizeOf` measures it, that the topic accepts: its `max.message.bytes` (which
   * defaults to the broker's `message.max.bytes`), read once per topic and cached.
   */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
  /** Creates topics; topics that already exist are left as they are. */
  readonly createTopics: (topics: ReadonlyArray<TopicSpec>) => Effect.Effect<void, KafkaError>
  readonly deleteTopics: (names: ReadonlyArray<string>) => Effect.Effect<void, KafkaError>
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
  readonly describeTopic: (name: string) => Effect.Effect<TopicDescription, KafkaError>
  readonly offsets: (topic: string) => Effect.Effect<ReadonlyArray<PartitionOffsets>, KafkaError>
  /** The group's current members and what each is assigned (empty while the group is rebalancing or empty). */
  readonly describeGroup: (groupId: string) => Effect.Effect<ReadonlyArray<GroupMember>, KafkaError>
  /** Every offset the group has committed, for every topic (ordered by topic, then partition). */
  readonly groupOffsets: (groupId: string) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, KafkaError>
  /** The group's committed offsets for a topic's partitions; a partition without a commit is left out. */
  readonly committedOffsets: (
    groupId: string,
    topic: string
  ) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, KafkaError>
}

export class Kafka extends Context.Service<Kafka, KafkaShape>()("@sluice/core/Kafka") {}

/** The failure of an operation on a topic that does not exist, the same on every layer. Not retryable. */
export const unknownTopic = (operation: string, topic: string): KafkaError =>
  new KafkaError({ operation, reason: new UnknownTopic({ message: `topic ${topic} does not exist`, topic }) })

/**
 * The pre-check of `send` and `transaction`, the same on every layer: the KafkaError (reason `MessageTooLarge`) that
 * the whole call (`operation`) fails with when a record's `sizeOf` is over its topic's limit, or `undefined` when
 * every record fits. The reason describes the first offending record and lists the indices of all of them.
 */
export const oversized = (
  records: ReadonlyArray<ProducerRecord>,
  limitOf: (topic: string) => number,
  operation = "send"
): KafkaError | undefined => {
  let offending: Array<number> | undefined
  let first: { readonly topic: string; readonly size: number; readonly limit: number } | undefined
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    const limit = limitOf(record.topic)
    const size = sizeOf(record)
    if (size <= limit) continue
    first ??= { topic: record.topic, size, limit }
    offending ??= []
    offending.push(i)
  }
  if (first === undefined || offending === undefined) return undefined
  const others = offending.length - 1
  const message =
    `record ${offending[0]} is ${first.size} bytes, over the ${first.limit}-byte limit (max.message.bytes) of topic ` +
    `${first.topic}${others === 0 ? "" : `, and ${others} more record${others === 1 ? " is" : "s are"} over their topic's limit`}; nothing was sent`
  return new KafkaError({
    operation,
    reason: new MessageTooLarge({
      message,
      topic: first.topic,
      size: first.size,
      limit: first.limit,
      records: offending
    })
  })
}

const parseBroker = (entry: string): Result.Result<string, string> => {
  const parsed = parseHostPort(entry)
  return parsed !== undefined
    ? Result.succeed(`${parsed.host}:${parsed.port}`)
    : Result.fail(
        `invalid broker address "${entry}": expected host:port with a port from 1 to 65535 ` +
          "(e.g. 127.0.0.1:9092 or [::1]:9092; several separated by commas)"
      )
}

/**
 * Broker addresses from their usual spelling, `host:port,host:port`: a host name, an IPv4 address or an IPv6 address
 * in brackets, and a port from 1 to 65535. Blanks around entries are ignored; the failure names the first bad entry.
 */
export const parseBrokers = (input: string): Result.Result<ReadonlyArray<string>, string> => {
  const entries = input
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
  if (entries.length === 0) return Result.fail(`no broker address in "${input}": expected host:port[,host:port...]`)
  const brokers: Array<string> = []
  for (const entry of entries) {
    const parsed = parseBroker(entry)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    brokers.push(parsed.success)
  }
  return Result.succeed(brokers)
}

/** Where the real broker is: `SLUICE_BROKERS` (comma-separated `host:port`), default `127.0.0.1:9092`. */
export const brokersConfig: Config.Config<ReadonlyArray<string>> = Config.String("SLUICE_BROKERS").pipe(
  Config.withDefault("127.0.0.1:9092"),
  Config.mapEffect((input) =>
    Result.match(parseBrokers(input), {
      onSuccess: (brokers) => Effect.succeed(brokers),
      onFailure: (message) =>
        Effect.fail(
          new Config.ConfigError(
            new Schema.SchemaError(new SchemaIssue.InvalidValue({ message: `SLUICE_BROKERS: ${message}` }, input))
          )
        )
    })
  )
)
