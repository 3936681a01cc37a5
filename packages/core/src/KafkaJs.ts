/**
 * The kafkajs implementation of Sluice's `Kafka` service: the layer that talks to a real broker.
 *
 * One idempotent producer and one admin client live as long as the layer; every `transactional` gets its own
 * transactional kafkajs producer for its scope (`internal/kafkajsTransactional.ts`), every `consume` and `read` its
 * own kafkajs consumer, and every `readPartition` its own connections to the partition's leader (no group). Every
 * reader is read_committed. Group members assign with Sluice's task assignor and run `onRevoke` before every JoinGroup
 * (`internal/kafkajsAssigner.ts`, `internal/kafkajsBarrier.ts`), so every member of a group must be a Sluice
 * worker. No kafkajs type leaves this module and `internal/kafkajs*`; every kafkajs failure
 * becomes a `KafkaError`, and kafkajs' log goes to Effect's logger, summarised (`internal/kafkajsLog.ts`).
 *
 * Starting waits for the broker: the layer retries connecting with capped exponential backoff (one Warn line per
 * attempt) until it succeeds, `connectRetry.maxDurationMs` passes, or it is interrupted, just as a running worker
 * waits out a broker that went away. Closing never waits more than about `closeTimeoutMs` per client.
 */

// First, before kafkajs loads (kafkajsPatch.ts).
import "./internal/kafkajsPatch.ts"
import { type Config, type Context, Effect, Layer, Result, Scope } from "effect"
import * as KafkaJS from "kafkajs"
import { ConfigInvalid, type KafkaError } from "./Errors.ts"
import * as Admin from "./internal/kafkajsAdmin.ts"
import { connectWithRetry, disconnectWithin } from "./internal/kafkajsClient.ts"
import * as Consumer from "./internal/kafkajsConsumer.ts"
import type { ConsumerSettings } from "./internal/kafkajsConsumerBase.ts"
import { attempt } from "./internal/kafkajsErrors.ts"
import { logCreator, toKafkaJsLevel } from "./internal/kafkajsLog.ts"
import * as Partition from "./internal/kafkajsPartition.ts"
import * as Producer from "./internal/kafkajsProducer.ts"
import * as Reader from "./internal/kafkajsRead.ts"
import * as Transactional from "./internal/kafkajsTransactional.ts"
import { brokersConfig, Kafka, parseBrokers } from "./Kafka.ts"

export interface Options {
  /** `host:port` each (see `Kafka.parseBrokers`); an invalid one fails the layer at once with `ConfigInvalid`. */
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
  /**
   * How long building the layer keeps trying to reach the brokers, with backoff from 250 ms doubling to 5 s; then it
   * fails with the last (retryable) KafkaError. Default: no limit, until it connects or is interrupted. `0`: one
   * attempt.
   */
  readonly connectRetry?: { readonly maxDurationMs?: number }
  /** How long closing waits for each kafkajs client (producer, admin, each consumer) to disconnect. Default 1000 ms. */
  readonly closeTimeoutMs?: number
  /** How long `send` retries a retryable failure (capped exponential backoff) before failing. Default 30000 ms. */
  readonly sendRetryMs?: number
  /** Upper bound of the record bytes in one produce request. Default 512 KiB. */
  readonly maxBatchBytes?: number
  /**
   * How long a transaction may stay open before the coordinator aborts it (`transaction.timeout.ms`): how long the
   * open transaction of a producer that died holds back read_committed readers, unless a new producer with its id
   * opens first. At most the broker's `transaction.max.timeout.ms` (default 15 min). Default 60000 ms.
   */
  readonly transactionTimeoutMs?: number
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

const make = Effect.fnUntraced(function* (options: Options) {
  const parsed = parseBrokers(options.brokers.join(","))
  if (Result.isFailure(parsed)) return yield* new ConfigInvalid({ reason: parsed.failure })
  const brokers = parsed.success
  const context: Context.Context<never> = yield* Effect.context<never>()
  const closeTimeoutMs = options.closeTimeoutMs ?? 1000
  const retry: KafkaJS.RetryOptions = {
    retries: options.retry?.retries ?? 5,
    initialRetryTime: options.retry?.initialRetryTimeMs ?? 300,
    maxRetryTime: options.retry?.maxRetryTimeMs ?? 30_000,
    multiplier: 2,
    factor: 0.2
  }
  const allowAutoTopicCreation = options.allowAutoTopicCreation ?? false
  const config: KafkaJS.KafkaConfig = {
    brokers: [...brokers],
    clientId: options.clientId ?? "sluice",
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    // Explicit, so kafkajs' retry defaults do not change under NODE_ENV=test.
    retry,
    logLevel: toKafkaJsLevel(options.logLevel ?? "Error"),
    logCreator: logCreator(context)
  }
  const kafka = new KafkaJS.Kafka(config)

  // The admin and the producer close side by side, so that closing takes one `closeTimeoutMs`, not two.
  const clients = yield* Scope.fork(yield* Effect.scope, "parallel")
  const admin = yield* Admin.make(kafka, { closeTimeoutMs }).pipe(Scope.provide(yield* Scope.fork(clients)))
  const maxBatchBytes = options.maxBatchBytes ?? 512 * 1024
  const producer = yield* Producer.make((producerConfig) => kafka.producer(producerConfig), {
    sendRetryMs: options.sendRetryMs ?? 30_000,
    maxBatchBytes,
    allowAutoTopicCreation,
    closeTimeoutMs,
    listTopics: admin.listTopics,
    maxRecordBytes: admin.maxRecordBytes,
    forgetLimit: admin.forgetLimit
  }).pipe(Scope.provide(yield* Scope.fork(clients)))

  // One quick attempt per round: a throwaway admin without kafkajs' own retries (which a client takes from its
  // Kafka instance), so that the backoff and the log line are Sluice's. Once it gets through, the real clients
  // connect, with kafkajs' retries, for a broker that is up but busy.
  const probing = new KafkaJS.Kafka({ ...config, retry: { ...retry, retries: 0 } })
  const probe = Effect.acquireUseRelease(
    Effect.sync(() => probing.admin()),
    (client) => attempt("connect", () => client.connect()),
    (client) => disconnectWithin(client, closeTimeoutMs, Effect.void)
  )
  yield* connectWithRetry(
    brokers,
    options.connectRetry?.maxDurationMs,
    probe.pipe(Effect.andThen(admin.connect), Effect.andThen(producer.connect))
  )

  const consumerSettings: ConsumerSettings = {
    partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 16,
    retry,
    allowAutoTopicCreation,
    closeTimeoutMs,
    missingTopics: admin.missingTopics
  }

  return Kafka.of({
    send: producer.send,
    transactional: Transactional.make((producerConfig) => kafka.producer(producerConfig), {
      maxBatchBytes,
      closeTimeoutMs,
      transactionTimeoutMs: options.transactionTimeoutMs ?? 60_000,
      allowAutoTopicCreation,
      maxRecordBytes: admin.maxRecordBytes,
      forgetLimit: admin.forgetLimit
    }),
    consume: Consumer.consume(kafka, consumerSettings),
    read: Reader.read(kafka, consumerSettings),
    readPartition: Partition.readPartition(kafka, { closeTimeoutMs, fetchBytes: 8 * 1024 * 1024 }),
    maxRecordBytes: admin.maxRecordBytes,
    createTopics: admin.createTopics,
    deleteTopics: admin.deleteTopics,
    listTopics: admin.listTopics,
    describeTopic: admin.describeTopic,
    offsets: admin.offsets,
    committedOffsets: admin.committedOffsets,
    groupOffsets: admin.groupOffsets,
    describeGroup: admin.describeGroup
  })
})

/**
 * The kafkajs-backed `Kafka` service. Fails with `ConfigInvalid` at once for an invalid broker address, and with a
 * retryable `KafkaError` when the brokers cannot be reached within `connectRetry.maxDurationMs` (by default it keeps
 * trying until interrupted).
 */
export const layer = (options: Options): Layer.Layer<Kafka, KafkaError | ConfigInvalid> =>
  Layer.effect(Kafka, make(options))

/** `layer` with the brokers from `SLUICE_BROKERS` (default `127.0.0.1:9092`), validated like `Kafka.parseBrokers`. */
export const layerConfig: Layer.Layer<Kafka, KafkaError | ConfigInvalid | Config.ConfigError> = Layer.unwrap(
  Effect.map(brokersConfig, (brokers) => layer({ brokers }))
)
