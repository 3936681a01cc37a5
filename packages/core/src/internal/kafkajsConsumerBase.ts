/**
 * What every kafkajs consumer of the layer shares, the group consumer (kafkajsConsumer.ts) and the reader of whole
 * topics (kafkajsRead.ts): its settings, its config, connecting and subscribing, running its fetch loop, and
 * disconnecting within a bound.
 */
import { Effect } from "effect"
import type * as KafkaJS from "kafkajs"
import type { KafkaError } from "../Errors.ts"
import { unknownTopic } from "../Kafka.ts"
import { disconnectWithin } from "./kafkajsClient.ts"
import { attempt, toKafkaError } from "./kafkajsErrors.ts"

export interface ConsumerSettings {
  readonly partitionsConsumedConcurrently: number
  readonly retry: KafkaJS.RetryOptions
  readonly allowAutoTopicCreation: boolean
  /** How long closing waits for a consumer to disconnect (leave its group). */
  readonly closeTimeoutMs: number
  /** Which of these topics do not exist: names the topic when a subscription fails on a missing one. */
  readonly missingTopics: (topics: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, KafkaError>
}

export const heartbeatIntervalFor = (sessionTimeoutMs: number) => Math.max(100, Math.floor(sessionTimeoutMs / 3))

/** How long the group waits for every member to rejoin in a rebalance before it drops the laggards. */
export const rebalanceTimeoutFor = (sessionTimeoutMs: number) => Math.max(60_000, sessionTimeoutMs)

/**
 * How long the JoinGroup barrier may hold the member's JoinGroup: well inside the rebalance timeout, which started
 * when the rebalance did (up to a heartbeat interval and a batch before this member noticed it).
 */
export const revokeBoundFor = (sessionTimeoutMs: number) =>
  rebalanceTimeoutFor(sessionTimeoutMs) - Math.max(10_000, 2 * heartbeatIntervalFor(sessionTimeoutMs))

/**
 * Starts kafkajs' fetch loop with manual offsets (Sluice resolves and commits itself). `run` resolves only after the
 * first join, so it is not awaited: the caller goes on, and a failure to run is reported through `onFailure`.
 */
export const startRunning = (
  consumer: KafkaJS.Consumer,
  settings: ConsumerSettings,
  eachBatch: (payload: KafkaJS.EachBatchPayload) => Promise<void>,
  onFailure: (reason: string) => void
) =>
  Effect.sync(() => {
    consumer
      .run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: settings.partitionsConsumedConcurrently,
        eachBatch
      })
      .catch((error: unknown) => onFailure(toKafkaError("run", error).reason.message))
  })

export const consumerConfig = (
  groupId: string,
  sessionTimeoutMs: number,
  maxWaitMs: number,
  settings: ConsumerSettings,
  extra: {
    readonly restartOnFailure?: (error: Error) => Promise<boolean>
    readonly partitionAssigners?: ReadonlyArray<KafkaJS.PartitionAssigner>
    /** The most bytes one fetch returns per partition (kafkajs' default: 1 MiB). */
    readonly maxBytesPerPartition?: number
  } = {}
): KafkaJS.ConsumerConfig => ({
  groupId,
  sessionTimeout: sessionTimeoutMs,
  heartbeatInterval: heartbeatIntervalFor(sessionTimeoutMs),
  rebalanceTimeout: rebalanceTimeoutFor(sessionTimeoutMs),
  maxWaitTimeInMs: maxWaitMs,
  // read_committed (kafkajs' default, stated here because Sluice depends on it): records of open or aborted
  // transactions are never delivered, and a fetch stops at the last stable offset.
  readUncommitted: false,
  allowAutoTopicCreation: settings.allowAutoTopicCreation,
  retry:
    extra.restartOnFailure === undefined
      ? settings.retry
      : { ...settings.retry, restartOnFailure: extra.restartOnFailure },
  ...(extra.partitionAssigners === undefined ? {} : { partitionAssigners: [...extra.partitionAssigners] }),
  ...(extra.maxBytesPerPartition === undefined ? {} : { maxBytesPerPartition: extra.maxBytesPerPartition })
})

/**
 * kafkajs' runner only heartbeats between batches. A handler that suspends to push back (a full partition queue)
 * would otherwise be taken for dead after `sessionTimeout`. kafkajs skips a heartbeat asked for sooner than
 * `heartbeatIntervalMs` after the last one, so asking twice as often keeps the gaps near the interval.
 */
export const whileHeartbeating = async <A>(
  promise: Promise<A>,
  heartbeat: () => Promise<void>,
  heartbeatIntervalMs: number
): Promise<A> => {
  const timer = setInterval(
    () => {
      heartbeat().catch(() => undefined)
    },
    Math.max(50, Math.floor(heartbeatIntervalMs / 2))
  )
  try {
    return await promise
  } finally {
    clearInterval(timer)
  }
}

/** Disconnects within the bound; a consumer that cannot leave its group in time is left to the session timeout. */
export const disconnect = (consumer: KafkaJS.Consumer, settings: ConsumerSettings, groupId: string) =>
  disconnectWithin(
    consumer,
    settings.closeTimeoutMs,
    Effect.logWarning(
      `the consumer of group ${groupId} did not leave it within ${settings.closeTimeoutMs} ms; ` +
        "its partitions move to other members after its session timeout"
    )
  )

/** Connects on acquire; on release aborts the handlers still running, then disconnects (leaving the group). */
export const connectScoped = (
  consumer: KafkaJS.Consumer,
  abort: AbortController,
  settings: ConsumerSettings,
  groupId: string
) =>
  Effect.acquireRelease(
    attempt("connect", () => consumer.connect()).pipe(Effect.onError(() => disconnect(consumer, settings, groupId))),
    () =>
      Effect.suspend(() => {
        // The scope is closing: whoever would take what a suspended handler offers is gone, and kafkajs waits for
        // every eachBatch to return before it leaves the group.
        abort.abort()
        return disconnect(consumer, settings, groupId)
      })
  )

/**
 * Subscribes to the topics. kafkajs fails on a missing topic without naming it (and retries it when it is one the
 * consumer already knew); the failure names the first missing topic.
 */
export const subscribe = (
  consumer: KafkaJS.Consumer,
  settings: ConsumerSettings,
  operation: string,
  topics: ReadonlyArray<string>,
  fromBeginning: boolean
) =>
  attempt(operation, () => consumer.subscribe({ topics: [...topics], fromBeginning })).pipe(
    Effect.catchIf(
      (error) => error.reason._tag === "UnknownTopic",
      (error) =>
        settings
          .missingTopics(topics)
          .pipe(
            Effect.flatMap((missing) =>
              Effect.fail(missing.length === 0 ? error : unknownTopic(operation, missing[0]!))
            )
          )
    )
  )
