/**
 * The kafkajs implementation of Sluice's `Kafka` service: the layer that talks to a real broker.
 *
 * One idempotent producer and one admin client live as long as the layer; every `consume` and `read` gets its own
 * kafkajs consumer for its scope. No kafkajs type leaves this module and `internal/kafkajs*`; every kafkajs failure
 * becomes a `KafkaError`, and kafkajs' log goes to Effect's logger, summarised (`internal/kafkajsLog.ts`).
 */

import { type Config, type Context, Effect, Layer, Semaphore } from "effect"
import * as KafkaJS from "kafkajs"
import { KafkaError, Transient, UnknownTopic } from "./Errors.ts"
import * as Consumer from "./internal/kafkajsConsumer.ts"
import { attempt, backoff, errorType } from "./internal/kafkajsErrors.ts"
import { logCreator, toKafkaJsLevel } from "./internal/kafkajsLog.ts"
import * as Producer from "./internal/kafkajsProducer.ts"
import * as Reader from "./internal/kafkajsRead.ts"
import { brokersConfig, Kafka, type PartitionOffsets, type TopicSpec } from "./Kafka.ts"
import { defaultMaxMessageBytes } from "./Record.ts"

export interface Options {
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string
  /** TCP connect timeout per attempt. Default 3000 ms. */
  readonly connectionTimeoutMs?: number
  /** Default 30000 ms. */
  readonly requestTimeoutMs?: number
  /**
   * kafkajs' own retries of a request (connect, metadata, join, commit) before a failure reaches Sluice.
   * Default: 5 retries starting at 300 ms, doubling up to 30 s.
   */
  readonly retry?: {
    readonly retries?: number
    readonly initialRetryTimeMs?: number
    readonly maxRetryTimeMs?: number
  }
  /** How long `send` retries a retryable failure (capped exponential backoff) before failing. Default 30000 ms. */
  readonly sendRetryMs?: number
  /** Upper bound of the record bytes in one produce request. Default 512 KiB. */
  readonly maxBatchBytes?: number
  /** Lets a produce or a subscription create a missing topic with broker defaults. Default false. */
  readonly allowAutoTopicCreation?: boolean
  /** Partitions whose batches a consumer processes at the same time. Default 16. */
  readonly partitionsConsumedConcurrently?: number
  /**
   * The least severe kafkajs log entry passed on to Effect's logger (where most of them arrive at Debug, see
   * `internal/kafkajsLog.ts`). Default `"Error"`.
   */
  readonly logLevel?: "None" | "Error" | "Warn" | "Info" | "Debug"
}

const unknownTopic = (name: string) =>
  new KafkaError({
    operation: "describeTopic",
    reason: new UnknownTopic({ message: `unknown topic ${name}`, topic: name })
  })

/** Waits until the broker's metadata lists every partition of the topics with a leader (kafkajs#770). */
const awaitLeaders = (admin: KafkaJS.Admin, names: ReadonlyArray<string>) =>
  attempt("createTopics", () => admin.fetchTopicMetadata({ topics: [...names] })).pipe(
    Effect.flatMap(({ topics }) => {
      const missing = names.filter((name) => {
        const topic = topics.find((t) => t.name === name)
        return topic === undefined || topic.partitions.length === 0 || topic.partitions.some((p) => p.leader < 0)
      })
      return missing.length === 0
        ? Effect.void
        : Effect.fail(
            new KafkaError({
              operation: "createTopics",
              reason: new Transient({ message: `no leader yet for every partition of ${missing.join(", ")}` })
            })
          )
    }),
    Effect.retry({ schedule: backoff(30_000), while: (e) => e.isRetryable })
  )

const make = Effect.fnUntraced(function* (options: Options) {
  const context: Context.Context<never> = yield* Effect.context<never>()
  const retry: KafkaJS.RetryOptions = {
    retries: options.retry?.retries ?? 5,
    initialRetryTime: options.retry?.initialRetryTimeMs ?? 300,
    maxRetryTime: options.retry?.maxRetryTimeMs ?? 30_000,
    multiplier: 2,
    factor: 0.2
  }
  const allowAutoTopicCreation = options.allowAutoTopicCreation ?? false
  const kafka = new KafkaJS.Kafka({
    brokers: [...options.brokers],
    clientId: options.clientId ?? "sluice",
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    // Explicit, so kafkajs' retry defaults do not change under NODE_ENV=test.
    retry,
    logLevel: toKafkaJsLevel(options.logLevel ?? "Error"),
    logCreator: logCreator(context)
  })

  const admin = kafka.admin()
  const disconnectAdmin = Effect.promise(() => admin.disconnect().catch(() => undefined))
  yield* Effect.acquireRelease(
    attempt("connect", () => admin.connect()).pipe(Effect.onError(() => disconnectAdmin)),
    () => disconnectAdmin
  )

  // kafkajs' admin shares one metadata cache, and a metadata call for some topics replaces it: a concurrent
  // `fetchTopicOffsets` for another topic then finds no partitions (kafkajs#461). Admin calls go one at a time.
  const adminLock = yield* Semaphore.make(1)
  const serially = <A, E>(effect: Effect.Effect<A, E>) => adminLock.withPermits(1)(effect)
  const listTopicsUnlocked = attempt("listTopics", () => admin.listTopics())
  const listTopics = serially(listTopicsUnlocked)
  const send = yield* Producer.make(kafka, {
    sendRetryMs: options.sendRetryMs ?? 30_000,
    maxBatchBytes: options.maxBatchBytes ?? 512 * 1024,
    allowAutoTopicCreation,
    listTopics
  })
  const consumerSettings: Consumer.ConsumerSettings = {
    partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 16,
    retry,
    allowAutoTopicCreation
  }

  const createTopics = (specs: ReadonlyArray<TopicSpec>) =>
    specs.length === 0
      ? Effect.void
      : serially(
          attempt("createTopics", () =>
            admin.createTopics({
              waitForLeaders: true,
              topics: specs.map((spec) => {
                const config: KafkaJS.ITopicConfig = { topic: spec.name, numPartitions: spec.partitions }
                if (spec.replicationFactor !== undefined) config.replicationFactor = spec.replicationFactor
                if (spec.config !== undefined) {
                  config.configEntries = Object.entries(spec.config).map(([name, value]) => ({ name, value }))
                }
                return config
              })
            })
          ).pipe(
            Effect.andThen(
              awaitLeaders(
                admin,
                specs.map((s) => s.name)
              )
            )
          )
        )

  return Kafka.of({
    send,
    consume: Consumer.consume(kafka, consumerSettings),
    read: Reader.read(kafka, consumerSettings),
    // Placeholder until the topic config is read.
    maxRecordBytes: () => Effect.succeed(defaultMaxMessageBytes),
    createTopics,
    deleteTopics: (names) =>
      // Deleting a topic that is already gone succeeds: the caller wanted it gone.
      serially(
        Effect.flatMap(listTopicsUnlocked, (existing) => {
          const present = names.filter((name) => existing.includes(name))
          return present.length === 0
            ? Effect.void
            : attempt("deleteTopics", () => admin.deleteTopics({ topics: present }))
        })
      ),
    listTopics,
    describeTopic: (name) =>
      serially(attempt("describeTopic", () => admin.fetchTopicMetadata({ topics: [name] }))).pipe(
        Effect.mapError((error) =>
          errorType(error.cause) === "UNKNOWN_TOPIC_OR_PARTITION" ? unknownTopic(name) : error
        ),
        Effect.flatMap(({ topics }) => {
          const topic = topics.find((t) => t.name === name)
          return topic === undefined
            ? Effect.fail(unknownTopic(name))
            : Effect.succeed({ name, partitions: topic.partitions.length })
        })
      ),
    offsets: (topic) =>
      serially(attempt("offsets", () => admin.fetchTopicOffsets(topic))).pipe(
        Effect.map((partitions) =>
          partitions
            .map((p): PartitionOffsets => ({ partition: p.partition, low: Number(p.low), high: Number(p.high) }))
            .sort((a, b) => a.partition - b.partition)
        )
      ),
    committedOffsets: (groupId, topic) =>
      serially(attempt("committedOffsets", () => admin.fetchOffsets({ groupId, topics: [topic] }))).pipe(
        Effect.map((topics) =>
          topics.flatMap((t) =>
            t.partitions
              // -1: the group has no commit for this partition.
              .filter((p) => Number(p.offset) >= 0)
              .map((p) => ({ topic: t.topic, partition: p.partition, offset: Number(p.offset) }))
              .sort((a, b) => a.partition - b.partition)
          )
        )
      )
  })
})

/** The kafkajs-backed `Kafka` service. Fails with a (retryable) `KafkaError` when the brokers cannot be reached. */
export const layer = (options: Options): Layer.Layer<Kafka, KafkaError> => Layer.effect(Kafka, make(options))

/** `layer` with the brokers from `SLUICE_BROKERS` (default `127.0.0.1:9092`). */
export const layerConfig: Layer.Layer<Kafka, KafkaError | Config.ConfigError> = Layer.unwrap(
  Effect.map(brokersConfig, (brokers) => layer({ brokers }))
)
