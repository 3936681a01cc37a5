/**
 * An in-memory Kafka: the `Kafka` service without a broker, as Kafka Streams' TopologyTestDriver is for Java. The
 * same topology runs unchanged on it and on the kafkajs layer; unit tests and `sluice demo` use it, and the extra
 * `MemoryBroker` service lets tests look inside and inject faults.
 *
 * Where it knowingly differs from a real broker:
 * - A send is atomic: a bad record (unknown partition, no key on a compacted topic, over the topic's
 *   `max.message.bytes` as `Record.sizeOf` measures it) fails the call, nothing is appended. Topics are
 *   auto-created on first send with `defaultPartitions` and the default `max.message.bytes`
 *   (auto.create.topics.enable); `consume`, `read` and the admin calls fail for a topic that does not exist.
 * - Compaction is modelled at read time: `read` from `earliest` on a topic created with `cleanup.policy=compact`
 *   first delivers, per partition, only the latest record of each key (tombstones included, at their original
 *   offsets) among the records present when the read starts, then every record appended afterwards. Group
 *   consumers always see the whole log, as they do in the active segment of a real broker. `offsets().low` stays 0.
 * - Members never time out (`sessionTimeoutMs` is ignored): a member is alive until its scope closes. `maxWaitMs`
 *   is ignored too, because `send` wakes waiting fetchers directly.
 * - Groups use Sluice's task assignor (co-partitioned, sticky: `Assignor.ts`) and eager rebalances that run every
 *   owner's `onRevoke` before anything is reassigned (see `internal/memoryGroup.ts`). `consume` returns before
 *   the first assignment. A rebalance waits for in-flight `onBatch` calls however long they take (no
 *   max.poll.interval). Creating or deleting a subscribed topic rebalances the group. Committed offsets of a
 *   deleted topic are dropped with it.
 * - A commit must come from the partition's current owner (the broker itself only checks the generation). There is
 *   one exception: during a rebalance's `onAssignment` calls, a member may still commit the partitions it just lost.
 * - Records share the byte arrays they were produced with: treat keys and values as read-only.
 */
import { Clock, Context, Deferred, Effect, Layer, Stream } from "effect"
import { KafkaError, Rejected, Unavailable } from "./Errors.ts"
import * as Group from "./internal/memoryGroup.ts"
import * as Log from "./internal/memoryLog.ts"
import {
  Kafka,
  type KafkaShape,
  oversized,
  type ReadOptions,
  type ReadPartitionOptions,
  type TopicSpec,
  unknownTopic
} from "./Kafka.ts"
import * as Partitioner from "./Partitioner.ts"
import {
  type ConsumerRecord,
  defaultMaxMessageBytes,
  type Headers,
  type ProducerRecord,
  type RecordBatch,
  type RecordMetadata,
  type TopicPartitionOffset,
  tpKey
} from "./Record.ts"

export type { MemberInfo } from "./internal/memoryGroup.ts"

export interface MemoryBrokerShape {
  /** Every record of a topic, partition after partition, each in offset order; empty for an unknown topic. */
  readonly records: (topic: string) => Effect.Effect<ReadonlyArray<ConsumerRecord>>
  /** The next `n` calls of `send` fail with a KafkaError with this `retryable` flag, appending nothing. */
  readonly failSends: (n: number, retryable: boolean) => Effect.Effect<void>
  /**
   * From now on every `send` suspends before appending anything, unacknowledged, until `releaseSends`: a broker
   * that stopped answering. A send whose records are over their topic's limit still fails at once (that check is the
   * client's).
   */
  readonly holdSends: Effect.Effect<void>
  /**
   * Like `holdSends`, but only for sends with a record for one of `topics` (a slow output topic); other sends go on.
   * `releaseSends` ends it.
   */
  readonly holdSendsTo: (topics: ReadonlyArray<string>) => Effect.Effect<void>
  /** Lets the held sends through, in the order they were called, and every later one. */
  readonly releaseSends: Effect.Effect<void>
  /** How many `send` calls are waiting (held, or released and not yet appended). */
  readonly heldSends: Effect.Effect<number>
  /** The group's current members in join order, with their assignments. */
  readonly members: (groupId: string) => Effect.Effect<ReadonlyArray<Group.MemberInfo>>
  /** Waits until the group has committed every partition of `topic` up to the partition's current end. */
  readonly awaitCommitted: (groupId: string, topic: string) => Effect.Effect<void>
}

export class MemoryBroker extends Context.Service<MemoryBroker, MemoryBrokerShape>()("@sluice/core/MemoryBroker") {}

export interface Options {
  /** Partitions of a topic auto-created by `send`. Default 1. */
  readonly defaultPartitions?: number
  /** Most records in one delivered batch. Default 500. */
  readonly maxBatchSize?: number
}

const noHeaders: Headers = Object.freeze({})

const positiveInt = (name: string, value: number): Effect.Effect<number> =>
  Number.isInteger(value) && value >= 1
    ? Effect.succeed(value)
    : Effect.die(new Error(`MemoryBroker: ${name} must be a positive integer, got ${value}`))

const make = Effect.fnUntraced(function* (options: Options) {
  const defaultPartitions = yield* positiveInt("defaultPartitions", options.defaultPartitions ?? 1)
  const maxBatchSize = yield* positiveInt("maxBatchSize", options.maxBatchSize ?? 500)
  const topics = new Map<string, Log.TopicLog>()
  const env: Group.Env = { topics, groups: new Map(), scope: yield* Effect.scope, maxBatchSize }
  const partitioner = Partitioner.make()
  const faults = { remaining: 0, retryable: false }
  // Sends wait here, in call order, while `holding` and until those before them have appended.
  const gate: {
    holding: boolean
    /** When set, only sends with a record for one of these topics are held. */
    topics: ReadonlySet<string> | undefined
    readonly waiting: Array<Deferred.Deferred<void>>
  } = { holding: false, topics: undefined, waiting: [] }
  const gated = (records: ReadonlyArray<ProducerRecord>) =>
    gate.topics === undefined || records.some((r) => gate.topics!.has(r.topic))

  const sendError = (message: string, retryable = false) =>
    new KafkaError({
      operation: "send",
      reason: retryable ? new Unavailable({ message }) : new Rejected({ message })
    })

  // Every record's partition is resolved before any is appended, so a bad record fails the whole call.
  const resolve = (records: ReadonlyArray<ProducerRecord>, created: Array<string>) => {
    const targets: Array<Log.PartitionLog> = []
    for (const r of records) {
      let topic = topics.get(r.topic)
      if (topic === undefined) {
        topic = Log.makeTopic(r.topic, defaultPartitions, false)
        topics.set(r.topic, topic)
        created.push(r.topic)
      }
      if (topic.compacted && r.key === null)
        return sendError(`a record without a key cannot go to compacted topic ${r.topic}`)
      const count = topic.partitions.length
      const partition = r.partition ?? partitioner(r.key, count)
      const log = Number.isInteger(partition) ? topic.partitions[partition] : undefined
      if (log === undefined) {
        return sendError(`partition ${partition} out of range for topic ${r.topic} (${count} partitions)`)
      }
      targets.push(log)
    }
    return targets
  }

  // A held send leaving (appended, failed or interrupted) lets the next one go unless sends are held again.
  const leaveGate = (turn: Deferred.Deferred<void>) =>
    Effect.sync(() => {
      const at = gate.waiting.indexOf(turn)
      if (at >= 0) gate.waiting.splice(at, 1)
      const next = gate.waiting[0]
      if (at === 0 && !gate.holding && next !== undefined) Deferred.doneUnsafe(next, Effect.void)
    })

  const throughGate = <A, E>(
    records: ReadonlyArray<ProducerRecord>,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      if ((!gate.holding && gate.waiting.length === 0) || !gated(records)) return effect
      const turn = Deferred.makeUnsafe<void>()
      gate.waiting.push(turn)
      return Deferred.await(turn).pipe(Effect.andThen(effect), Effect.ensuring(leaveGate(turn)))
    })

  const limitOf = (topic: string) => topics.get(topic)?.maxMessageBytes ?? defaultMaxMessageBytes

  const send = (records: ReadonlyArray<ProducerRecord>) =>
    Effect.suspend(() => {
      // Before anything else, as the kafkajs layer's client-side check is.
      const tooLarge = oversized(records, limitOf)
      return tooLarge === undefined ? throughGate(records, append(records)) : Effect.fail(tooLarge)
    })

  const append = (records: ReadonlyArray<ProducerRecord>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.suspend(() => {
        if (faults.remaining > 0) {
          faults.remaining--
          return Effect.fail(sendError("injected failure (MemoryBroker.failSends)", faults.retryable))
        }
        const created: Array<string> = []
        const targets = resolve(records, created)
        const changed = Group.topicsChanged(env, created)
        if (targets instanceof KafkaError) return Effect.andThen(changed, Effect.fail(targets))
        const metadata: Array<RecordMetadata> = new Array(records.length)
        const touched = new Set<Log.PartitionLog>()
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
          metadata[i] = { topic: log.topic, partition: log.partition, offset }
          touched.add(log)
        }
        for (const log of touched) Log.wake(log)
        return Effect.as(changed, metadata)
      })
    )

  const read = (options: ReadOptions): Stream.Stream<RecordBatch, KafkaError> =>
    Stream.unwrap(
      // Suspended so that each run of the stream starts from the logs as they are then.
      Effect.suspend(() => {
        const streams: Array<Stream.Stream<RecordBatch, KafkaError>> = []
        const fromLatest = options.from === "latest"
        for (const name of options.topics) {
          const topic = topics.get(name)
          if (topic === undefined) return Effect.fail(unknownTopic("read", name))
          for (const log of topic.partitions) {
            const end = log.records.length
            const compact = topic.compacted && !fromLatest
            const cursor: Log.Cursor = {
              head: compact ? Log.compactedHead(log, end) : [],
              headIndex: 0,
              position: compact || fromLatest ? end : 0
            }
            streams.push(Stream.fromEffectRepeat(Log.nextBatch(log, cursor, maxBatchSize)))
          }
        }
        return Effect.succeed(
          streams.length === 0 ? Stream.never : Stream.mergeAll(streams, { concurrency: "unbounded" })
        )
      })
    )

  // The whole log from `from` (group consumers and restores see every record, as in the active segment), in
  // batches, up to the end it had when the read started.
  const readPartition = (options: ReadPartitionOptions): Stream.Stream<RecordBatch, KafkaError> =>
    Stream.unwrap(
      Effect.suspend(() => {
        const log = topics.get(options.topic)?.partitions[options.partition]
        if (log === undefined) {
          return Effect.fail(
            topics.has(options.topic)
              ? adminError("readPartition", `partition ${options.partition} out of range for topic ${options.topic}`)
              : unknownTopic("readPartition", options.topic)
          )
        }
        const end = log.records.length
        const batches: Array<RecordBatch> = []
        for (let at = Math.max(0, options.from); at < end; at += maxBatchSize) {
          batches.push(Log.batchOf(log, log.records.slice(at, Math.min(end, at + maxBatchSize))))
        }
        return Effect.succeed(Stream.fromIterable(batches))
      })
    )

  const adminError = (operation: string, message: string) =>
    new KafkaError({ operation, reason: new Rejected({ message }) })

  const createTopics = (specs: ReadonlyArray<TopicSpec>) =>
    Effect.suspend(() => {
      const limits: Array<number> = []
      for (const spec of specs) {
        if (!Number.isInteger(spec.partitions) || spec.partitions < 1) {
          return Effect.fail(adminError("createTopics", `invalid partition count ${spec.partitions} for ${spec.name}`))
        }
        const limit = spec.config?.["max.message.bytes"]
        const bytes = limit === undefined ? defaultMaxMessageBytes : /^[0-9]+$/.test(limit) ? Number(limit) : Number.NaN
        if (!Number.isSafeInteger(bytes) || bytes < 1) {
          return Effect.fail(adminError("createTopics", `invalid max.message.bytes ${limit} for ${spec.name}`))
        }
        limits.push(bytes)
      }
      const created: Array<string> = []
      specs.forEach((spec, i) => {
        if (topics.has(spec.name)) return
        const policy = spec.config?.["cleanup.policy"] ?? "delete"
        const compacted = policy.split(",").includes("compact")
        topics.set(spec.name, Log.makeTopic(spec.name, spec.partitions, compacted, limits[i]))
        created.push(spec.name)
      })
      return Group.topicsChanged(env, created)
    })

  // Unknown names are skipped, so deleting is idempotent like creating.
  const deleteTopics = (names: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const deleted: Array<string> = []
      for (const name of names) {
        const topic = topics.get(name)
        if (topic === undefined) continue
        Log.drop(topic)
        topics.delete(name)
        deleted.push(name)
        for (const group of env.groups.values()) {
          for (const log of topic.partitions) group.committed.delete(tpKey(name, log.partition))
        }
      }
      return Group.topicsChanged(env, deleted)
    })

  const topicOf = (operation: string, name: string) =>
    Effect.suspend(() => {
      const topic = topics.get(name)
      return topic === undefined ? Effect.fail(unknownTopic(operation, name)) : Effect.succeed(topic)
    })

  const committed = (groupId: string, topic: string): ReadonlyArray<TopicPartitionOffset> => {
    const group = env.groups.get(groupId)
    const partitions = topics.get(topic)?.partitions ?? []
    const result: Array<TopicPartitionOffset> = []
    if (group === undefined) return result
    for (const { partition } of partitions) {
      const offset = group.committed.get(tpKey(topic, partition))
      if (offset !== undefined) result.push({ topic, partition, offset })
    }
    return result
  }

  const kafka: KafkaShape = {
    send,
    transactional: () => Effect.die(new Error("MemoryBroker: transactions are not implemented yet")),
    consume: (options, handlers) =>
      Effect.suspend(() => {
        const missing = options.topics.find((name) => !topics.has(name))
        return missing === undefined
          ? Group.consume(env, options, handlers)
          : Effect.fail(unknownTopic("subscribe", missing))
      }),
    read,
    readPartition,
    maxRecordBytes: (name) => Effect.map(topicOf("maxRecordBytes", name), (t) => t.maxMessageBytes),
    createTopics,
    deleteTopics,
    listTopics: Effect.sync(() => [...topics.keys()].sort()),
    describeTopic: (name) =>
      Effect.map(topicOf("describeTopic", name), (t) => ({ name: t.name, partitions: t.partitions.length })),
    offsets: (name) =>
      Effect.map(topicOf("offsets", name), (t) =>
        t.partitions.map((log) => ({ partition: log.partition, low: 0, high: log.records.length }))
      ),
    describeGroup: (groupId) =>
      Effect.sync(() => {
        const group = env.groups.get(groupId)
        return group === undefined
          ? []
          : Group.membersOf(group).map((m) => ({
              memberId: m.memberId,
              clientId: "sluice",
              host: "in-process",
              assignment: m.assignment
            }))
      }),
    committedOffsets: (groupId, topic) =>
      Effect.map(topicOf("committedOffsets", topic), () => committed(groupId, topic))
  }

  const caughtUp = (group: Group.Group, topic: string): boolean =>
    (topics.get(topic)?.partitions ?? []).every(
      (log) => (group.committed.get(tpKey(topic, log.partition)) ?? 0) >= log.records.length
    )

  const broker: MemoryBrokerShape = {
    records: (topic) => Effect.sync(() => (topics.get(topic)?.partitions ?? []).flatMap((log) => log.records)),
    failSends: (n, retryable) =>
      Effect.sync(() => {
        faults.remaining = n
        faults.retryable = retryable
      }),
    holdSends: Effect.sync(() => {
      gate.holding = true
      gate.topics = undefined
    }),
    holdSendsTo: (topics) =>
      Effect.sync(() => {
        gate.holding = true
        gate.topics = new Set(topics)
      }),
    releaseSends: Effect.sync(() => {
      gate.holding = false
      gate.topics = undefined
      const next = gate.waiting[0]
      if (next !== undefined) Deferred.doneUnsafe(next, Effect.void)
    }),
    heldSends: Effect.sync(() => gate.waiting.length),
    members: (groupId) =>
      Effect.sync(() => {
        const group = env.groups.get(groupId)
        return group === undefined ? [] : Group.membersOf(group)
      }),
    awaitCommitted: Effect.fnUntraced(function* (groupId, topic) {
      const group = Group.getGroup(env, groupId)
      while (true) {
        // Read before checking: a commit in between completes this very signal.
        const signal = group.commitSignal
        if (caughtUp(group, topic)) return
        yield* Deferred.await(signal)
      }
    })
  }

  return Context.make(Kafka, kafka).pipe(Context.add(MemoryBroker, MemoryBroker.of(broker)))
})

/** A fresh in-memory broker with these options; everything it runs stops when the layer's scope closes. */
export const layerWith = (options: Options = {}): Layer.Layer<Kafka | MemoryBroker> =>
  Layer.effectContext(make(options))

/** A fresh in-memory broker: auto-created topics get 1 partition, batches hold up to 500 records. */
export const layer: Layer.Layer<Kafka | MemoryBroker> = layerWith()
