/**
 * `send` on one idempotent kafkajs producer.
 *
 * kafkajs corrupts the sequence numbers of an idempotent producer when `send` calls overlap (OUT_OF_ORDER_SEQUENCE_NUMBER,
 * tulios/kafkajs#598), so a single sender fiber owns the producer. It takes every request waiting in the queue and
 * sends them as one `sendBatch`, which also coalesces concurrent callers into one produce request per broker, then
 * hands each caller the metadata of its own records.
 */

import { Deferred, Effect, Exit, Queue, type Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import { Closed, KafkaError, Rejected } from "../Errors.ts"
import * as Partitioner from "../Partitioner.ts"
import { bytes, type ProducerRecord, type RecordMetadata, tpKey } from "../Record.ts"
import { attempt, backoff, errorType } from "./kafkajsErrors.ts"

export interface ProducerOptions {
  /** How long `send` retries retryable failures before it fails. */
  readonly sendRetryMs: number
  /** Upper bound for the payload of one `sendBatch`; the broker rejects record batches over `message.max.bytes`. */
  readonly maxBatchBytes: number
  readonly allowAutoTopicCreation: boolean
  /** The topics that exist; used to notice that a topic this producer wrote to was deleted. */
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
}

interface Request {
  readonly records: ReadonlyArray<ProducerRecord>
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

const estimateBytes = (record: ProducerRecord): number => {
  let size = 64 + (record.key?.byteLength ?? 0) + (record.value?.byteLength ?? 0)
  if (record.headers !== undefined) for (const k in record.headers) size += k.length + record.headers[k]!.byteLength + 8
  return size
}

export const make = Effect.fnUntraced(function* (
  kafka: KafkaJS.Kafka,
  options: ProducerOptions
): Effect.fn.Return<
  (records: ReadonlyArray<ProducerRecord>) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>,
  KafkaError,
  Scope.Scope
> {
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
  let producer = kafka.producer(config)
  let connected = false
  const disconnect = (p: KafkaJS.Producer) => Effect.promise(() => p.disconnect().catch(() => undefined))
  const connect = Effect.suspend(() =>
    connected
      ? Effect.void
      : attempt("connect", () => producer.connect()).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              connected = true
            })
          )
        )
  )
  yield* Effect.acquireRelease(connect.pipe(Effect.onError(() => disconnect(producer))), () =>
    Effect.suspend(() => disconnect(producer))
  )

  // kafkajs keeps refreshing the metadata of every topic it ever produced to, and once one of them is deleted every
  // refresh fails with UNKNOWN_TOPIC_OR_PARTITION, for sends to any topic. A fresh producer forgets the topic.
  const sentTopics = new Set<string>()
  const dropDeletedTopics = Effect.gen(function* () {
    const existing = new Set(yield* options.listTopics)
    const gone = [...sentTopics].filter((topic) => !existing.has(topic))
    if (gone.length === 0) return
    for (const topic of gone) sentTopics.delete(topic)
    yield* Effect.logInfo(`replacing the kafkajs producer: topics it produced to were deleted (${gone.join(", ")})`)
    const old = producer
    producer = kafka.producer(config)
    connected = false
    yield* disconnect(old)
    yield* connect
  })

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
    return connect.pipe(
      Effect.andThen(attempt("send", () => producer.sendBatch({ topicMessages, acks: -1 }))),
      Effect.tapError((e) =>
        errorType(e.cause) === "UNKNOWN_TOPIC_OR_PARTITION" ? Effect.ignore(dropDeletedTopics) : Effect.void
      ),
      // A topic missing from the metadata right after it was created (or after a deleted topic was dropped above)
      // is worth retrying, within the same bound.
      Effect.retry({ schedule: retrySchedule, while: (e) => e.isRetryable || e.reason._tag === "UnknownTopic" }),
      Effect.tap(() =>
        Effect.sync(() => {
          for (const topic of byTopic.keys()) sentTopics.add(topic)
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

  // Sends the requests in chunks of at most `maxBatchBytes`. A request whose chunk fails is failed as a whole; its
  // later records are not sent (earlier chunks may already be written: the caller's retry may duplicate them).
  const sendAll = Effect.fnUntraced(function* (requests: ReadonlyArray<Request>) {
    let i = 0
    let j = 0
    while (i < requests.length) {
      const entries: Array<Entry> = []
      let size = 0
      while (i < requests.length) {
        const request = requests[i]!
        if (request.records.length === 0) {
          i++
          continue
        }
        const record = request.records[j]!
        const recordSize = estimateBytes(record)
        if (entries.length > 0 && size + recordSize > options.maxBatchBytes) break
        entries.push({ request, index: j, message: toMessage(record) })
        size += recordSize
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
  let closed = false
  const closedError = new KafkaError({ operation: "send", reason: new Closed({ message: "the producer is closed" }) })

  yield* Effect.forkScoped(
    Effect.gen(function* () {
      const requests = yield* Queue.takeAll(queue)
      yield* sendAll(requests).pipe(
        // Interrupted mid-send (the layer is closing): nobody else will complete these callers.
        Effect.onInterrupt(() => Effect.forEach(requests, (r) => Deferred.fail(r.deferred, closedError)))
      )
    }).pipe(Effect.forever)
  )
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      closed = true
      const waiting = yield* Queue.clear(queue)
      yield* Effect.forEach(waiting, (r) => Deferred.fail(r.deferred, closedError), { discard: true })
    })
  )

  return (records: ReadonlyArray<ProducerRecord>) =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(closedError)
      const deferred = Deferred.makeUnsafe<ReadonlyArray<RecordMetadata>, KafkaError>()
      Queue.offerUnsafe(queue, { records, results: new Array<RecordMetadata>(records.length), deferred })
      return Deferred.await(deferred)
    })
})
