/**
 * The kafkajs producer's own logic without a broker: a stand-in for kafkajs' producer records each `sendBatch`, so
 * chunking against topic limits, the pre-check, broker-side "too large" answers and the supervision of the sender
 * fiber can be checked exactly.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import { KafkaError, UnknownTopic } from "../src/Errors.ts"
import * as Producer from "../src/internal/kafkajsProducer.ts"
import { bytes, defaultMaxMessageBytes, type ProducerRecord } from "../src/Record.ts"
import { fakeBroker, protocolError } from "./support/kafkajsFake.ts"
import { recordOfSize } from "./support/recordOfSize.ts"

// An oracle written from the protocol, independent of Record.sizeOf, which is what it checks.
const varint = (n: number): number => {
  let v = n >= 0 ? n * 2 : -n * 2 - 1
  let size = 1
  while (v >= 128) {
    v = Math.floor(v / 128)
    size++
  }
  return size
}
const length = (b: Buffer | string | null | undefined) =>
  b === null || b === undefined ? -1 : typeof b === "string" ? Buffer.byteLength(b) : b.byteLength

/** The exact size of the v2 record batch kafkajs builds from these messages of one partition (produce v3+). */
const batchSize = (messages: ReadonlyArray<KafkaJS.Message>): number => {
  const timestamps = messages.flatMap((m) => (m.timestamp === undefined ? [] : [Number(m.timestamp)]))
  const first = timestamps.length === 0 ? 0 : Math.min(...timestamps)
  let size = 61
  messages.forEach((m, i) => {
    const key = length(m.key)
    const value = length(m.value)
    let body = 1 + varint(m.timestamp === undefined ? 0 : Number(m.timestamp) - first) + varint(i)
    body += varint(key) + Math.max(0, key) + varint(value) + Math.max(0, value)
    const headers = Object.entries(m.headers ?? {})
    body += varint(headers.length)
    for (const [name, h] of headers) {
      const n = Buffer.byteLength(name)
      const v = Array.isArray(h) ? 0 : length(h)
      body += varint(n) + n + varint(v) + Math.max(0, v)
    }
    size += varint(body) + body
  })
  return size
}

interface Fake {
  readonly batches: Array<KafkaJS.ProducerBatch>
  /** Per sendBatch call, per topic and partition: the size of the record batch kafkajs would build. */
  readonly batchSizes: Array<Map<string, number>>
  readonly createProducer: (config: KafkaJS.ProducerConfig) => Producer.ProducerClient
}

/** A stand-in for kafkajs' producer: partitions like kafkajs (through the given partitioner) and acknowledges. */
const fake = (
  partitions: number,
  answer?: (batch: KafkaJS.ProducerBatch) => Promise<Array<KafkaJS.RecordMetadata>> | undefined
): Fake => {
  const batches: Array<KafkaJS.ProducerBatch> = []
  const batchSizes: Array<Map<string, number>> = []
  return {
    batches,
    batchSizes,
    createProducer: (config) => {
      const broker = fakeBroker(config, partitions)
      return {
        connect: async () => {},
        disconnect: async () => {},
        sendBatch: async (batch) => {
          batches.push(batch)
          const byPartition = broker.partition(batch)
          batchSizes.push(new Map([...byPartition].map(([key, { messages }]) => [key, batchSize(messages)])))
          return answer?.(batch) ?? broker.acknowledge(byPartition)
        }
      }
    }
  }
}

const limits: Record<string, number> = { small: 20_000, tiny: 300 }
const forgotten: Array<string> = []

const make = (f: Fake, existing: ReadonlyArray<string> = ["small", "tiny", "big"]) =>
  Producer.make(f.createProducer, {
    sendRetryMs: 2000,
    maxBatchBytes: 512 * 1024,
    allowAutoTopicCreation: false,
    closeTimeoutMs: 1000,
    listTopics: Effect.succeed(existing),
    maxRecordBytes: (topic) =>
      existing.includes(topic)
        ? Effect.succeed(limits[topic] ?? defaultMaxMessageBytes)
        : Effect.fail(
            new KafkaError({
              operation: "maxRecordBytes",
              reason: new UnknownTopic({ message: `topic ${topic} does not exist`, topic })
            })
          ),
    forgetLimit: (topic) => {
      forgotten.push(topic)
    }
  })

const valued = (topic: string, size: number, i: number, timestamp?: number): ProducerRecord =>
  recordOfSize({ topic, key: bytes(`key-${i}`), ...(timestamp === undefined ? {} : { timestamp }) }, size)

describe("kafkajs producer", () => {
  it.effect("chunks keep the record batch of every partition under its topic's limit", () =>
    Effect.gen(function* () {
      // One partition: all of a topic's records in a request go into one record batch.
      const f = fake(1)
      const producer = yield* make(f)
      // Spread timestamps make the timestamp deltas long varints, the worst case for the estimate; 1008-byte records
      // fill a 20,000-byte batch within a few bytes of its limit when the deltas are left out.
      const small = Array.from({ length: 200 }, (_, i) => valued("small", 1008, i, 1_700_000_000_000 + i * 86_400_000))
      const big = Array.from({ length: 200 }, (_, i) => valued("big", 1000, i))
      const metadata = yield* producer.send([...small, ...big])
      assert.strictEqual(metadata.length, 400)
      assert.strictEqual(new Set(metadata.map((m) => `${m.topic}:${m.partition}@${m.offset}`)).size, 400)
      for (const sizes of f.batchSizes) {
        for (const [key, size] of sizes) {
          const limit = key.startsWith("small:") ? 20_000 : defaultMaxMessageBytes
          assert.isAtMost(size, limit, `the batch for ${key}`)
        }
      }
      // Not needlessly small: the 200 KB for the default-limit topic fit one produce request.
      const bigCalls = f.batches.filter((b) => b.topicMessages?.some((t) => t.topic === "big")).length
      assert.strictEqual(bigCalls, 1)
      assert.isAtLeast(f.batches.length, 10, "200 KB for a 20 KB topic take at least ten requests")
    }).pipe(Effect.scoped)
  )

  it.effect("the pre-check fails a send with an oversized record before anything is sent", () =>
    Effect.gen(function* () {
      const f = fake(1)
      const producer = yield* make(f)
      const error = yield* producer
        .send([valued("tiny", 100, 0), valued("tiny", 301, 1), valued("big", 100, 2), valued("tiny", 400, 3)])
        .pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "MessageTooLarge")
      if (error.reason._tag !== "MessageTooLarge") return
      assert.deepStrictEqual(error.reason.records, [1, 3])
      assert.deepStrictEqual([error.reason.topic, error.reason.size, error.reason.limit], ["tiny", 301, 300])
      assert.strictEqual(f.batches.length, 0)
      const missing = yield* producer.send([valued("nope", 100, 0)]).pipe(Effect.flip)
      assert.strictEqual(missing.reason.message, "topic nope does not exist")
      assert.strictEqual(f.batches.length, 0)
    }).pipe(Effect.scoped)
  )

  it.effect("a broker-side MESSAGE_TOO_LARGE comes back as MessageTooLarge for its topic, never retried", () =>
    Effect.gen(function* () {
      const f = fake(1, () => Promise.reject(protocolError("MESSAGE_TOO_LARGE", false)))
      const producer = yield* make(f)
      forgotten.length = 0
      const error = yield* producer.send([valued("small", 100, 0)]).pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "MessageTooLarge")
      assert.strictEqual(error.reason._tag === "MessageTooLarge" ? error.reason.topic : undefined, "small")
      assert.isFalse(error.isRetryable)
      assert.strictEqual(f.batches.length, 1, "not retried")
      assert.deepStrictEqual(forgotten, ["small"], "the cached limit is read again next time")

      const both = yield* producer.send([valued("small", 100, 1), valued("big", 100, 2)]).pipe(Effect.flip)
      assert.strictEqual(both.reason._tag, "MessageTooLarge")
      assert.isUndefined(both.reason._tag === "MessageTooLarge" ? both.reason.topic : "unset")
    }).pipe(Effect.scoped)
  )

  it.effect("a send to a topic deleted since the pre-check fails with UnknownTopic naming it", () =>
    Effect.gen(function* () {
      let deleted = false
      const f = fake(1, () => (deleted ? Promise.reject(protocolError("UNKNOWN_TOPIC_OR_PARTITION", true)) : undefined))
      const producer = yield* Producer.make(f.createProducer, {
        sendRetryMs: 2000,
        maxBatchBytes: 512 * 1024,
        allowAutoTopicCreation: false,
        closeTimeoutMs: 1000,
        listTopics: Effect.sync(() => (deleted ? [] : ["small"])),
        maxRecordBytes: () => Effect.succeed(20_000),
        forgetLimit: () => {}
      })
      yield* producer.send([valued("small", 100, 0)])
      deleted = true
      const error = yield* producer.send([valued("small", 100, 1)]).pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "UnknownTopic")
      assert.strictEqual(error.reason.message, "topic small does not exist")
    }).pipe(Effect.scoped)
  )

  it.effect("a defect while sending fails the callers being served with it, and the sender goes on", () =>
    Effect.gen(function* () {
      const f = fake(1)
      const producer = yield* make(f)
      // kafkajs gets Buffers made from a plain Uint8Array key's `buffer`: reading it throws, a defect inside the
      // sender.
      const key = new Uint8Array(bytes("boom"))
      Object.defineProperty(key, "buffer", {
        get() {
          throw new Error("this key cannot be read")
        }
      })
      const exit = yield* Effect.exit(producer.send([{ topic: "big", key, value: null }]))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause), "the caller dies with the defect")
      assert.include(Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "", "this key cannot be read")
      const [ok] = yield* producer.send([valued("big", 100, 0)])
      assert.strictEqual(ok?.offset, 0, "later sends still work")
    }).pipe(Effect.scoped)
  )

  it.effect("if the sender fiber ends while the layer is open, waiting and later sends fail with Closed", () =>
    Effect.gen(function* () {
      const f = fake(1, () => new Promise<Array<KafkaJS.RecordMetadata>>(() => {}))
      const producer = yield* make(f)
      const inFlight = yield* Effect.forkChild(producer.send([valued("big", 100, 0)]))
      while (f.batches.length === 0) yield* Effect.yieldNow
      const queued = yield* Effect.forkChild(producer.send([valued("big", 100, 1)]))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(producer.sender)
      for (const fiber of [inFlight, queued]) {
        const error = yield* Fiber.join(fiber).pipe(Effect.flip)
        assert.strictEqual(error.reason._tag, "Closed")
        assert.include(error.reason.message, "interrupted")
      }
      const later = yield* producer.send([valued("big", 100, 2)]).pipe(Effect.flip)
      assert.strictEqual(later.reason._tag, "Closed")
      assert.include(later.reason.message, "sender stopped")
    }).pipe(Effect.scoped)
  )

  it.effect("closing fails the sends still waiting with Closed: the producer is closed", () =>
    Effect.gen(function* () {
      const f = fake(1, () => new Promise<Array<KafkaJS.RecordMetadata>>(() => {}))
      const scope = yield* Scope.make()
      const producer = yield* make(f).pipe(Scope.provide(scope))
      const waiting = yield* Effect.forkChild(producer.send([valued("big", 100, 0)]))
      while (f.batches.length === 0) yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      for (const error of [
        yield* Fiber.join(waiting).pipe(Effect.flip),
        yield* producer.send([valued("big", 100, 1)]).pipe(Effect.flip)
      ]) {
        assert.strictEqual(error.reason._tag, "Closed")
        assert.strictEqual(error.reason.message, "the producer is closed")
      }
    })
  )
})
