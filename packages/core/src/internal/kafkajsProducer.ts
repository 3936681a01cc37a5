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
import { Closed, KafkaError, MessageTooLarge, messageOf, Rejected, Transient } from "../Errors.ts"
import { oversized, unknownTopic } from "../Kafka.ts"
import * as Partitioner from "../Partitioner.ts"
import { bytes, defaultMaxMessageBytes, type ProducerRecord, type RecordMetadata, sizeOf, tpKey } from "../Record.ts"
import { makeClient } from "./kafkajsClient.ts"
import { attempt, backoff } from "./kafkajsErrors.ts"

/** What the producer needs of a kafkajs producer (a narrow type, so tests can stand in for kafkajs). */
export type ProducerClient = Pick<KafkaJS.Producer, "connect" | "disconnect" | "sendBatch">

export interface ProducerOptions {
  /** How long `send` retries retryable failures before it fails. */
  readonly sendRetryMs: number
  /** Upper bound for the payload of one `sendBatch` (a single larger record still goes alone). */
  readonly maxBatchBytes: number
  readonly allowAutoTopicCreation: boolean
  /** How long closing waits for the kafkajs producer to disconnect. */
  readonly closeTimeoutMs: number
  /** The topics that exist; used to notice that a topic this producer wrote to was deleted. */
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
  /** A topic's limit for one record batch (`max.message.bytes`); fails with UnknownTopic for a missing topic. */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
  /** Forgets a topic's cached limit, after the broker refused a batch it let through. */
  readonly forgetLimit: (topic: string) => void
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

interface Entry {
  readonly request: Request
  readonly index: number
  readonly message: KafkaJS.Message
}

const toBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)

const toMessage = (record: ProducerRecord): KafkaJS.Message => {
  const message: KafkaJS.Message = {
    key: record.key === null ? null : toBuffer(record.key),
    value: record.value === null ? null : toBuffer(record.value)
  }
  if (record.partition !== undefined) message.partition = record.partition
  if (record.headers !== undefined) {
    const headers: KafkaJS.IHeaders = {}
    for (const name in record.headers) headers[name] = toBuffer(record.headers[name]!)
    message.headers = headers
  }
  if (record.timestamp !== undefined) message.timestamp = String(record.timestamp)
  return message
}

/** The record batch header that `Record.sizeOf` counts once per record. */
const batchHeaderBytes = 61
/**
 * What a record adds to a batch it shares beyond what `sizeOf` counts for it alone: its offset and timestamp deltas
 * are no longer 0 (at most 5 and 10 bytes as varints instead of 1 each), which may lengthen its length varint by 1.
 */
const sharedBatchSlack = 14

const describeCause = (cause: Cause.Cause<unknown>): string =>
  Cause.hasInterruptsOnly(cause) ? "it was interrupted" : messageOf(Cause.squash(cause))

export const make = Effect.fnUntraced(function* (
  createProducer: (config: KafkaJS.ProducerConfig) => ProducerClient,
  options: ProducerOptions
): Effect.fn.Return<Producer, never, Scope.Scope> {
  // The partition chosen for each message object. kafkajs calls the partitioner again on each of its own retries,
  // and ours re-send the same objects: a retried record must land where its first attempt went, or the broker's
  // idempotence check would match a different record against the sequence number.
  const chosen = new WeakMap<KafkaJS.Message, number>()
  const pick = Partitioner.make()
  const createPartitioner: KafkaJS.ICustomPartitioner =
    () =>
    ({ partitionMetadata, message }) => {
      const known = chosen.get(message)
      if (known !== undefined) return known
      const key = message.key === undefined || message.key === null ? null : message.key
      const partition = message.partition ?? pick(typeof key === "string" ? bytes(key) : key, partitionMetadata.length)
      chosen.set(message, partition)
      return partition
    }

  const config: KafkaJS.ProducerConfig = {
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner,
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

  // The broker measured a batch against a limit the pre-check did not know (the topic's config changed, or a
  // broker-wide limit is lower): never retried, and the cached limits are read again next time.
  const tooLarge = (error: KafkaError, topics: ReadonlyArray<string>) => {
    for (const topic of topics) options.forgetLimit(topic)
    return new KafkaError({
      operation: "send",
      reason: new MessageTooLarge({
        message: `the broker refused records for topic ${topics.join(", ")} as too large: ${error.reason.message}`,
        cause: error,
        ...(topics.length === 1 ? { topic: topics[0]! } : {})
      })
    })
  }

  const retrySchedule = backoff(options.sendRetryMs)
  const sendChunk = (entries: ReadonlyArray<Entry>) => {
    const byTopic = new Map<string, Array<KafkaJS.Message>>()
    for (const entry of entries) {
      const topic = entry.request.records[entry.index]!.topic
      const messages = byTopic.get(topic)
      if (messages === undefined) byTopic.set(topic, [entry.message])
      else messages.push(entry.message)
    }
    // One entry per topic: kafkajs keeps only the last entry of a topic that appears twice.
    const topicMessages = Array.from(byTopic, ([topic, messages]) => ({ topic, messages }))
    const topics = [...byTopic.keys()]
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
            ? Effect.fail(tooLarge(error, topics))
            : Effect.fail(error)
      ),
      Effect.retry({ schedule: retrySchedule, while: (e) => e.isRetryable }),
      Effect.tap(() =>
        Effect.sync(() => {
          for (const topic of topics) sentTopics.add(topic)
        })
      ),
      Effect.flatMap((metadata) => assignOffsets(entries, metadata))
    )
  }

  // kafkajs answers with the base offset per partition; records of a partition were appended in the order sent.
  const assignOffsets = (entries: ReadonlyArray<Entry>, metadata: ReadonlyArray<KafkaJS.RecordMetadata>) =>
    Effect.suspend(() => {
      const next = new Map<string, number>()
      for (const m of metadata) {
        const base = m.baseOffset ?? m.offset
        if (base !== undefined) next.set(tpKey(m.topicName, m.partition), Number(base))
      }
      for (const entry of entries) {
        const topic = entry.request.records[entry.index]!.topic
        const partition = chosen.get(entry.message)
        const key = partition === undefined ? undefined : tpKey(topic, partition)
        const offset = key === undefined ? undefined : next.get(key)
        if (partition === undefined || key === undefined || offset === undefined) {
          return Effect.fail(
            new KafkaError({
              operation: "send",
              reason: new Rejected({ message: `no offset in the produce response for a record of ${topic}` })
            })
          )
        }
        next.set(key, offset + 1)
        entry.request.results[entry.index] = { topic, partition, offset }
      }
      return Effect.void
    })

  // Sends the requests in chunks of at most `maxBatchBytes`, in which the records of each topic stay under the
  // topic's limit. A request whose chunk fails is failed as a whole; its later records are not sent (earlier chunks
  // may already be written: the caller's retry may duplicate them).
  const sendAll = Effect.fnUntraced(function* (requests: ReadonlyArray<Request>) {
    let i = 0
    let j = 0
    while (i < requests.length) {
      const entries: Array<Entry> = []
      const topicBytes = new Map<string, number>()
      let size = 0
      while (i < requests.length) {
        const request = requests[i]!
        if (request.records.length === 0) {
          i++
          continue
        }
        const record = request.records[j]!
        const recordSize = sizeOf(record)
        const shared = recordSize - batchHeaderBytes + sharedBatchSlack
        const inTopic = topicBytes.get(record.topic)
        const limit = request.limits.get(record.topic) ?? defaultMaxMessageBytes
        if (entries.length > 0 && size + recordSize > options.maxBatchBytes) break
        // The first record of a topic always fits: the pre-check saw to it.
        if (inTopic !== undefined && inTopic + shared > limit) break
        entries.push({ request, index: j, message: toMessage(record) })
        size += recordSize
        topicBytes.set(record.topic, (inTopic ?? batchHeaderBytes) + shared)
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

  // The limit of every topic of `records`, each looked up once. With auto-creation, a topic that does not exist yet
  // will get the broker's default.
  const limitsOf = (records: ReadonlyArray<ProducerRecord>) => {
    const topics = new Set<string>()
    for (const r of records) topics.add(r.topic)
    return Effect.forEach(topics, (topic) =>
      options.maxRecordBytes(topic).pipe(
        Effect.catchIf(
          (e) => options.allowAutoTopicCreation && e.reason._tag === "UnknownTopic",
          () => Effect.succeed(defaultMaxMessageBytes)
        ),
        Effect.map((limit) => [topic, limit] as const)
      )
    ).pipe(Effect.map((entries) => new Map(entries)))
  }

  const send = (records: ReadonlyArray<ProducerRecord>) =>
    Effect.suspend(() => {
      if (stopped !== undefined) return Effect.fail(stopped)
      if (records.length === 0) return Effect.succeed([])
      return Effect.flatMap(limitsOf(records), (limits) => {
        const error = oversized(records, (topic) => limits.get(topic) ?? defaultMaxMessageBytes)
        if (error !== undefined) return Effect.fail(error)
        if (stopped !== undefined) return Effect.fail(stopped)
        const deferred = Deferred.makeUnsafe<ReadonlyArray<RecordMetadata>, KafkaError>()
        Queue.offerUnsafe(queue, { records, limits, results: new Array<RecordMetadata>(records.length), deferred })
        return Deferred.await(deferred)
      })
    })

  return { connect: producer.connect, send, sender }
})
