/**
 * `send` on one idempotent kafkajs producer.
 *
 * kafkajs corrupts the sequence numbers of an idempotent producer when `send` calls overlap (OUT_OF_ORDER_SEQUENCE_NUMBER,
 * tulios/kafkajs#598), so a single sender fiber owns the producer. It takes every request waiting in the queue and
 * sends them as one `sendBatch` per chunk, which also coalesces concurrent callers into one produce request per
 * broker, then hands each caller the metadata of its own records.
 *
 * Before a request is queued, every record is checked against its topic's `max.message.bytes` (`Kafka.oversized`),
 * so an oversized record fails the call with nothing sent. kafkajs puts all records of one partition of a
 * `sendBatch` into one record batch, which the broker measures against the same limit; chunks therefore also keep
 * the records of each topic under its limit.
 *
 * The sender is supervised: a defect while processing some requests fails those callers with it and the sender goes
 * on; if the sender ever ends other than by the layer closing, every waiting and later `send` fails with `Closed`.
 */

import { Cause, Deferred, Effect, Exit, type Fiber, Queue, type Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import { Closed, KafkaError, messageOf, Transient } from "../Errors.ts"
import { unknownTopic } from "../Kafka.ts"
import { defaultMaxMessageBytes, type ProducerRecord, type RecordMetadata } from "../Record.ts"
import { makeClient } from "./kafkajsClient.ts"
import { attempt, backoff } from "./kafkajsErrors.ts"
import {
  checkedLimits,
  type Limits,
  makeChunk,
  makePartitioning,
  metadataOf,
  type Outgoing,
  refusedAsTooLarge,
  toMessage,
  topicMessagesOf
} from "./kafkajsProduce.ts"

/** What the producer needs of a kafkajs producer (a narrow type, so tests can stand in for kafkajs). */
export type ProducerClient = Pick<KafkaJS.Producer, "connect" | "disconnect" | "sendBatch">

export interface ProducerOptions extends Limits {
  /** How long `send` retries retryable failures before it fails. */
  readonly sendRetryMs: number
  /** Upper bound for the payload of one `sendBatch` (a single larger record still goes alone). */
  readonly maxBatchBytes: number
  /** How long closing waits for the kafkajs producer to disconnect. */
  readonly closeTimeoutMs: number
  /** The topics that exist; used to notice that a topic this producer wrote to was deleted. */
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
}

export interface Producer {
  /** Connects the kafkajs producer; a no-op once connected. */
  readonly connect: Effect.Effect<void, KafkaError>
  readonly send: (records: ReadonlyArray<ProducerRecord>) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
  /** The sender fiber, exposed so that tests can check its supervision. */
  readonly sender: Fiber.Fiber<never>
}

interface Request {
  readonly records: ReadonlyArray<ProducerRecord>
  /** The limit of each topic of `records`. */
  readonly limits: ReadonlyMap<string, number>
  readonly results: Array<RecordMetadata>
  readonly deferred: Deferred.Deferred<ReadonlyArray<RecordMetadata>, KafkaError>
}

interface Entry extends Outgoing {
  readonly request: Request
  readonly index: number
}

const describeCause = (cause: Cause.Cause<unknown>): string =>
  Cause.hasInterruptsOnly(cause) ? "it was interrupted" : messageOf(Cause.squash(cause))

export const make = Effect.fnUntraced(function* (
  createProducer: (config: KafkaJS.ProducerConfig) => ProducerClient,
  options: ProducerOptions
): Effect.fn.Return<Producer, never, Scope.Scope> {
  const partitioning = makePartitioning()
  const config: KafkaJS.ProducerConfig = {
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: partitioning.createPartitioner,
    allowAutoTopicCreation: options.allowAutoTopicCreation,
    // A few quick retries inside kafkajs keep the per-broker progress of one sendBatch; longer outages are retried
    // by `retrySchedule` below, where they are visible and bounded.
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 }
  }
  const producer = yield* makeClient("producer", () => createProducer(config), options.closeTimeoutMs)

  // kafkajs keeps refreshing the metadata of every topic it ever produced to, and once one of them is deleted every
  // refresh fails with UNKNOWN_TOPIC_OR_PARTITION, for sends to any topic. A fresh producer forgets the topic.
  const sentTopics = new Set<string>()
  const recoverUnknownTopic = Effect.fnUntraced(function* (error: KafkaError, topics: ReadonlyArray<string>) {
    const existing = new Set(yield* options.listTopics)
    const gone = [...sentTopics].filter((topic) => !existing.has(topic))
    if (gone.length > 0) {
      for (const topic of gone) sentTopics.delete(topic)
      yield* Effect.logInfo(`replacing the kafkajs producer: topics it produced to were deleted (${gone.join(", ")})`)
      yield* producer.replace
    }
    const missing = topics.filter((topic) => !existing.has(topic))
    for (const topic of missing) options.forgetLimit(topic)
    if (missing.length > 0 && !options.allowAutoTopicCreation) return yield* unknownTopic("send", missing[0]!)
    // Every topic exists (or is being created): the producer was stale, or the metadata had not caught up yet.
    return yield* new KafkaError({
      operation: "send",
      reason: new Transient({ message: `the producer's metadata was stale: ${error.reason.message}`, cause: error })
    })
  })

  const retrySchedule = backoff(options.sendRetryMs)
  const sendChunk = (entries: ReadonlyArray<Entry>) => {
    const topicMessages = topicMessagesOf(entries)
    const topics = topicMessages.map((t) => t.topic)
    return producer.connect.pipe(
      Effect.andThen(
        Effect.suspend(() =>
          attempt(
            "send",
            () => producer.current().sendBatch({ topicMessages, acks: -1 }),
            topics.length === 1 ? topics[0] : undefined
          )
        )
      ),
      Effect.catch((error) =>
        error.reason._tag === "UnknownTopic"
          ? recoverUnknownTopic(error, topics)
          : error.reason._tag === "MessageTooLarge"
            ? Effect.fail(refusedAsTooLarge("send", error, topics, options))
            : Effect.fail(error)
      ),
      Effect.retry({ schedule: retrySchedule, while: (e) => e.isRetryable }),
      // A failed sendBatch leaves kafkajs' sequence numbers wrong: it rolls back those of every partition of the
      // request, also of those the broker appended to (kafkajs/src/producer/sendMessages.js). Re-sending the same
      // records (the retries above) is right with them, the broker drops what it already has; other records would be
      // taken for those duplicates and dropped while acknowledged. A fresh producer id starts the sequences over.
      Effect.tapError(() => producer.replace.pipe(Effect.ignore)),
      Effect.tap(() =>
        Effect.sync(() => {
          for (const topic of topics) sentTopics.add(topic)
        })
      ),
      Effect.flatMap((metadata) => metadataOf("send", entries, metadata, partitioning)),
      Effect.tap((metadata) =>
        Effect.sync(() => {
          entries.forEach((entry, i) => {
            entry.request.results[entry.index] = metadata[i]!
          })
        })
      )
    )
  }

  // Sends the requests in chunks of at most `maxBatchBytes`, in which the records of each topic stay under the
  // topic's limit. A request whose chunk fails is failed as a whole; its later records are not sent (earlier chunks
  // may already be written: the caller's retry may duplicate them).
  const sendAll = Effect.fnUntraced(function* (requests: ReadonlyArray<Request>) {
    let i = 0
    let j = 0
    while (i < requests.length) {
      const entries: Array<Entry> = []
      const chunk = makeChunk(options.maxBatchBytes)
      while (i < requests.length) {
        const request = requests[i]!
        if (request.records.length === 0) {
          i++
          continue
        }
        const record = request.records[j]!
        if (!chunk.tryAdd(record, request.limits.get(record.topic) ?? defaultMaxMessageBytes)) break
        entries.push({ request, index: j, topic: record.topic, message: toMessage(record) })
        if (++j === request.records.length) {
          i++
          j = 0
        }
      }
      if (entries.length === 0) break
      const exit = yield* Effect.exit(sendChunk(entries))
      if (Exit.isSuccess(exit)) {
        for (const entry of entries) {
          if (entry.index === entry.request.records.length - 1) {
            yield* Deferred.succeed(entry.request.deferred, entry.request.results)
          }
        }
      } else {
        for (const entry of entries) yield* Deferred.failCause(entry.request.deferred, exit.cause)
        if (j > 0) {
          i++
          j = 0
        }
      }
    }
    for (const request of requests) {
      if (request.records.length === 0) yield* Deferred.succeed(request.deferred, [])
    }
  })

  const queue = yield* Queue.unbounded<Request>()
  let closing = false
  // Set once the sender has ended: every later `send` fails with it.
  let stopped: KafkaError | undefined
  let inFlight: ReadonlyArray<Request> = []
  const failAll = (requests: Iterable<Request>, error: KafkaError) =>
    Effect.forEach(requests, (r) => Deferred.fail(r.deferred, error), { discard: true })

  const step = Effect.gen(function* () {
    const requests = yield* Queue.takeAll(queue)
    inFlight = requests
    yield* sendAll(requests).pipe(
      // A defect (a bug, a record kafkajs cannot take) fails the callers of these requests with it, and only them.
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.logError("the kafkajs producer failed a send with a defect", cause).pipe(
              Effect.andThen(Effect.forEach(requests, (r) => Deferred.failCause(r.deferred, cause), { discard: true }))
            )
      )
    )
    inFlight = []
  })

  const stop = (exit: Exit.Exit<never>) =>
    Effect.gen(function* () {
      const error = closing
        ? new KafkaError({ operation: "send", reason: new Closed({ message: "the producer is closed" }) })
        : new KafkaError({
            operation: "send",
            reason: new Closed({
              message: `the producer's sender stopped (${Exit.isFailure(exit) ? describeCause(exit.cause) : "it ended"}); no record can be sent`,
              ...(Exit.isFailure(exit) ? { cause: Cause.squash(exit.cause) } : {})
            })
          })
      // First, so that no send queues behind the requests failed below.
      stopped = error
      if (!closing && Exit.isFailure(exit)) {
        yield* Effect.logError("the kafkajs producer's sender stopped; every send fails from now on", exit.cause)
      }
      const waiting = [...inFlight, ...(yield* Queue.clear(queue))]
      inFlight = []
      yield* failAll(waiting, error)
    })

  const sender = yield* Effect.forkScoped(Effect.forever(step).pipe(Effect.onExit(stop)))
  // Runs before the sender is interrupted (finalizers run in reverse order), so its end counts as closing.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closing = true
    })
  )

  const send = (records: ReadonlyArray<ProducerRecord>) =>
    Effect.suspend(() => {
      if (stopped !== undefined) return Effect.fail(stopped)
      if (records.length === 0) return Effect.succeed([])
      return Effect.flatMap(checkedLimits("send", records, options), (limits) => {
        if (stopped !== undefined) return Effect.fail(stopped)
        const deferred = Deferred.makeUnsafe<ReadonlyArray<RecordMetadata>, KafkaError>()
        Queue.offerUnsafe(queue, { records, limits, results: new Array<RecordMetadata>(records.length), deferred })
        return Deferred.await(deferred)
      })
    })

  return { connect: producer.connect, send, sender }
})
