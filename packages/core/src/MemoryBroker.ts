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
 *   offsets) among the committed records below the LSO when the read starts, then every record appended afterwards. Group
 *   consumers always see the whole log, as they do in the active segment of a real broker. `offsets().low` stays 0.
 * - Members never time out (`sessionTimeoutMs` is ignored): a member is alive until its scope closes. `maxWaitMs`
 *   is ignored too, because appends and transaction markers wake waiting fetchers directly.
 * - Groups use Sluice's task assignor (co-partitioned, sticky: `Assignor.ts`) and eager rebalances that run every
 *   owner's `onRevoke` before anything is reassigned (see `internal/memoryGroup.ts`). `consume` returns before
 *   the first assignment. A rebalance waits for in-flight `onBatch` calls however long they take (no
 *   max.poll.interval). Creating or deleting a subscribed topic rebalances the group. Committed offsets of a
 *   deleted topic are dropped with it.
 * - A commit must come from the partition's current owner (the broker itself only checks the generation). There is
 *   one exception: during a rebalance's `onAssignment` calls, a member may still commit the partitions it just lost.
 * - Transactions (`transactional`) model producer epochs and fencing: opening a producer for a transactional id
 *   fences the previous one, aborting its open transaction; a fenced producer's calls fail with reason `Fenced`, a
 *   closed one's with `Closed`. A transaction appends its records at once when it begins, as an open transaction,
 *   and ends in one step: on commit the group's offsets are written (no ownership or generation check, as Kafka's
 *   TxnOffsetCommit before KIP-447) and a commit marker is appended to each partition it wrote; on abort an abort
 *   marker. Markers are control records: they take an offset (so `offsets().high` and `highWatermark`, the log
 *   end, count them) and are never delivered. Transaction timeouts are not modelled: a transaction stays open until
 *   its call ends, its producer closes (which aborts it) or is fenced. `failSends` aborts a transaction after its
 *   records were appended; `holdSends` holds it open, before its commit.
 * - Every reader is read_committed: group consumers, `read` and `readPartition` get only records below a
 *   partition's last stable offset (the first offset of its oldest open transaction, else the log end: records
 *   after an open transaction wait, plain ones too) and never markers or aborted records. A batch carries
 *   `lastOffset` when it covered offsets after its last record; `read` and `readPartition` deliver such a batch
 *   even with no record in it, group consumers get no batch for a range without records, as with kafkajs.
 *   `readPartition` reads up to the LSO it had when it started; `read` from `latest` starts at the LSO.
 * - `seek` moves a member's fetch position of a partition it owns: the next batch starts there, and a batch the
 *   fetcher took before is not delivered. A seek from `onAssignment` sets where the new generation starts; an
 *   eager rebalance forgets earlier seeks. A position past the end waits for the log to get there (no
 *   auto.offset.reset).
 * - Records share the byte arrays they were produced with: treat keys and values as read-only.
 */
import { Clock, Context, Deferred, Effect, Layer, Stream } from "effect"
import { KafkaError, Rejected, Unavailable } from "./Errors.ts"
import * as Group from "./internal/memoryGroup.ts"
import * as Log from "./internal/memoryLog.ts"
import * as Txn from "./internal/memoryTxn.ts"
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
  type ProducerRecord,
  type RecordBatch,
  type TopicPartitionOffset,
  tpKey
} from "./Record.ts"

export type { MemberInfo } from "./internal/memoryGroup.ts"
export type { AppendedRecord } from "./internal/memoryLog.ts"

export interface MemoryBrokerShape {
  /**
   * Every record of a topic that a read_committed reader gets now, partition after partition, each in offset order:
   * plain and committed records below the partition's last stable offset (no markers, nothing aborted or open).
   * Empty for an unknown topic.
   */
  readonly records: (topic: string) => Effect.Effect<ReadonlyArray<ConsumerRecord>>
  /**
   * Every data record ever appended to a topic, in the same order, with its `state`: `plain` (no transaction),
   * `open`, `committed` or `aborted`. Markers are left out (they only take offsets). Empty for an unknown topic.
   */
  readonly appended: (topic: string) => Effect.Effect<ReadonlyArray<Log.AppendedRecord>>
  /** Each partition's last stable offset: the first offset of its oldest open transaction, or its log end. */
  readonly lastStableOffsets: (topic: string) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>>
  /**
   * The next `n` calls of `send` or `transaction` fail with a KafkaError with this `retryable` flag. A send appends
   * nothing; a transaction is aborted (its records, already appended, become aborted; its offsets are not committed).
   */
  readonly failSends: (n: number, retryable: boolean) => Effect.Effect<void>
  /**
   * From now on every `send` suspends before appending anything, unacknowledged, until `releaseSends`: a broker
   * that stopped answering. A send whose records are over their topic's limit still fails at once (that check is the
   * client's). A `transaction` suspends after appending its records as an open transaction, before its commit.
   */
  readonly holdSends: Effect.Effect<void>
  /**
   * Like `holdSends`, but only for sends with a record for one of `topics` (a slow output topic); other sends go on.
   * `releaseSends` ends it.
   */
  readonly holdSendsTo: (topics: ReadonlyArray<string>) => Effect.Effect<void>
  /** Lets the held sends through, in the order they were called, and every later one. */
  readonly releaseSends: Effect.Effect<void>
  /** How many `send` and `transaction` calls are waiting (held, or released and not yet through). */
  readonly heldSends: Effect.Effect<number>
  /** The group's current members in join order, with their assignments. */
  readonly members: (groupId: string) => Effect.Effect<ReadonlyArray<Group.MemberInfo>>
  /**
   * Waits until the group has committed every partition of `topic` up to the partition's current end, less its
   * trailing markers and aborted records (a consumer commits the offset after the last record it got).
   */
  readonly awaitCommitted: (groupId: string, topic: string) => Effect.Effect<void>
}

export class MemoryBroker extends Context.Service<MemoryBroker, MemoryBrokerShape>()("@sluice/core/MemoryBroker") {}

export interface Options {
  /** Partitions of a topic auto-created by `send`. Default 1. */
  readonly defaultPartitions?: number
  /** Most records in one delivered batch. Default 500. */
  readonly maxBatchSize?: number
}

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

  const sendError = (operation: string, message: string, retryable = false) =>
    new KafkaError({
      operation,
      reason: retryable ? new Unavailable({ message }) : new Rejected({ message })
    })

  // Every record's partition is resolved before any is appended, so a bad record fails the whole call.
  const targetsOf = (operation: string, records: ReadonlyArray<ProducerRecord>, created: Array<string>) => {
    const targets: Array<Log.PartitionLog> = []
    for (const r of records) {
      let topic = topics.get(r.topic)
      if (topic === undefined) {
        topic = Log.makeTopic(r.topic, defaultPartitions, false)
        topics.set(r.topic, topic)
        created.push(r.topic)
      }
      if (topic.compacted && r.key === null)
        return sendError(operation, `a record without a key cannot go to compacted topic ${r.topic}`)
      const count = topic.partitions.length
      const partition = r.partition ?? partitioner(r.key, count)
      const log = Number.isInteger(partition) ? topic.partitions[partition] : undefined
      if (log === undefined) {
        return sendError(operation, `partition ${partition} out of range for topic ${r.topic} (${count} partitions)`)
      }
      targets.push(log)
    }
    return targets
  }

  const resolve = (operation: string, records: ReadonlyArray<ProducerRecord>) => {
    const created: Array<string> = []
    const targets = targetsOf(operation, records, created)
    return { targets, changed: Group.topicsChanged(env, created) }
  }

  const fault = (operation: string) => {
    if (faults.remaining === 0) return undefined
    faults.remaining--
    return sendError(operation, "injected failure (MemoryBroker.failSends)", faults.retryable)
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
        const injected = fault("send")
        if (injected !== undefined) return Effect.fail(injected)
        const { targets, changed } = resolve("send", records)
        if (targets instanceof KafkaError) return Effect.andThen(changed, Effect.fail(targets))
        return Effect.as(changed, Log.append(records, targets, now).metadata)
      })
    )

  const transactional = Txn.make({
    topics,
    limitOf,
    resolve,
    fault,
    throughGate,
    commitOffsets: (groupId, offsets) => Group.commitOffsets(Group.getGroup(env, groupId), offsets)
  })

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
            const cursor = Log.cursor(log, fromLatest ? "latest" : topic.compacted ? "compacted" : "earliest")
            streams.push(Stream.fromEffectRepeat(Log.nextBatch(log, cursor, maxBatchSize)))
          }
        }
        return Effect.succeed(
          streams.length === 0 ? Stream.never : Stream.mergeAll(streams, { concurrency: "unbounded" })
        )
      })
    )

  // The whole log from `from` (group consumers and restores see every record, as in the active segment), in
  // batches, up to the LSO it had when the read started. Entries below it are settled, so the batches can be made now.
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
        const end = Log.stableEnd(log)
        const batches: Array<RecordBatch> = []
        for (let at = Math.max(0, options.from); at < end; at += maxBatchSize) {
          batches.push(Log.batchOver(log, at, Math.min(end, at + maxBatchSize)))
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
    transactional,
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
    groupOffsets: (groupId) =>
      Effect.sync(() => [...topics.keys()].sort().flatMap((topic) => committed(groupId, topic))),
    committedOffsets: (groupId, topic) =>
      Effect.map(topicOf("committedOffsets", topic), () => committed(groupId, topic))
  }

  const caughtUp = (group: Group.Group, topic: string): boolean =>
    (topics.get(topic)?.partitions ?? []).every(
      (log) => (group.committed.get(tpKey(topic, log.partition)) ?? 0) >= Log.settledEnd(log)
    )

  const broker: MemoryBrokerShape = {
    records: (topic) => Effect.sync(() => (topics.get(topic)?.partitions ?? []).flatMap(Log.committedRecords)),
    appended: (topic) => Effect.sync(() => (topics.get(topic)?.partitions ?? []).flatMap(Log.appendedRecords)),
    lastStableOffsets: (topic) =>
      Effect.sync(() =>
        (topics.get(topic)?.partitions ?? []).map((log) => ({
          topic,
          partition: log.partition,
          offset: Log.stableEnd(log)
        }))
      ),
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
