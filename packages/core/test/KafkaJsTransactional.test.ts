/**
 * The kafkajs transactional producer's own logic without a broker: a stand-in for kafkajs' producer logs every call,
 * so the order of a transaction (records, then offsets, then commit), the abort after any failure or interruption,
 * the serialisation of calls, and what a fencing or a stuck kafkajs state machine does to later calls can be checked
 * exactly.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import { KafkaError, UnknownTopic } from "../src/Errors.ts"
import { toReason } from "../src/internal/kafkajsErrors.ts"
import * as Transactional from "../src/internal/kafkajsTransactional.ts"
import { bytes, defaultMaxMessageBytes, type ProducerRecord } from "../src/Record.ts"
import { fakeBroker, nonRetriableError, protocolError } from "./support/kafkajsFake.ts"
import { recordOfSize } from "./support/recordOfSize.ts"

type Step = "sendBatch" | "sendOffsets" | "commit" | "abort"

interface Fake {
  /** Every call, in order: connect, begin, sendBatch, sendOffsets, commit, abort, disconnect. */
  readonly log: Array<string>
  readonly configs: Array<KafkaJS.ProducerConfig>
  readonly offsets: Array<KafkaJS.Offsets & { consumerGroupId: string }>
  readonly createProducer: (config: KafkaJS.ProducerConfig) => Transactional.TransactionalClient
}

/**
 * A kafkajs transactional producer: like kafkajs, it refuses a second transaction while one is open and an abort
 * after commit was called. `fail` may make a step of the n-th transaction (counting those opening does) fail.
 */
const fake = (fail?: (step: Step, n: number) => Promise<never> | undefined): Fake => {
  const log: Array<string> = []
  const configs: Array<KafkaJS.ProducerConfig> = []
  const offsets: Array<KafkaJS.Offsets & { consumerGroupId: string }> = []
  // Counts over every kafkajs producer made (a replaced one, too).
  let n = -1
  return {
    log,
    configs,
    offsets,
    createProducer: (config) => {
      configs.push(config)
      const broker = fakeBroker(config, 2)
      let open = false
      return {
        connect: async () => {
          log.push("connect")
        },
        disconnect: async () => {
          log.push("disconnect")
        },
        transaction: async () => {
          if (open) throw nonRetriableError("There is already an ongoing transaction for this producer.")
          open = true
          const txn = ++n
          let ended = false
          const step = async <A>(name: Step, f: () => A): Promise<A> => {
            log.push(name)
            if (ended) throw nonRetriableError("Cannot continue to use transaction once ended")
            if (name === "commit" || name === "abort") ended = true
            const failed = fail?.(name, txn)
            if (name === "abort" || (name === "commit" && failed === undefined)) open = false
            if (failed !== undefined) return failed
            return f()
          }
          log.push("begin")
          return {
            sendBatch: (batch) => step("sendBatch", () => broker.acknowledge(broker.partition(batch))),
            sendOffsets: (o) =>
              step("sendOffsets", () => {
                offsets.push(o)
              }),
            commit: () => step("commit", () => undefined),
            abort: () => step("abort", () => undefined)
          }
        }
      }
    }
  }
}

const limits: Record<string, number> = { small: 20_000 }

const open = (f: Fake) =>
  Transactional.make(f.createProducer, {
    maxBatchBytes: 512 * 1024,
    closeTimeoutMs: 1000,
    transactionTimeoutMs: 10_000,
    allowAutoTopicCreation: false,
    maxRecordBytes: (topic) =>
      topic === "nope"
        ? Effect.fail(
            new KafkaError({
              operation: "maxRecordBytes",
              reason: new UnknownTopic({ message: `topic ${topic} does not exist`, topic })
            })
          )
        : Effect.succeed(limits[topic] ?? defaultMaxMessageBytes),
    forgetLimit: () => {}
  })("tx-1")

const record = (topic: string, i: number, size = 100): ProducerRecord =>
  recordOfSize({ topic, key: bytes(`key-${i}`) }, size)

const offsets = { groupId: "g", offsets: [{ topic: "in", partition: 3, offset: 42 }] }

/** The log after opening: connect, then an empty transaction that only initialises the producer id. */
const opened = ["connect", "begin", "abort"]

describe("kafkajs transactional producer", () => {
  it.effect("opening initialises the producer id (an empty transaction) and closing disconnects", () =>
    Effect.gen(function* () {
      const f = fake()
      const scope = yield* Scope.make()
      const producer = yield* open(f).pipe(Scope.provide(scope))
      assert.strictEqual(producer.transactionalId, "tx-1")
      assert.deepStrictEqual(f.log, opened)
      const config = f.configs[0]!
      assert.deepStrictEqual(
        [config.transactionalId, config.idempotent, config.maxInFlightRequests, config.transactionTimeout],
        ["tx-1", true, 1, 10_000]
      )
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(f.log, [...opened, "disconnect"])
    })
  )

  it.effect("a transaction sends the records in chunks, then the offsets, then commits; metadata in order", () =>
    Effect.gen(function* () {
      const f = fake()
      const producer = yield* open(f)
      // 100 records of 1000 bytes for a topic with a 20,000-byte limit: several chunks, each under the limit.
      const records = Array.from({ length: 100 }, (_, i) => record(i % 2 === 0 ? "small" : "out", i, 1000))
      const metadata = yield* producer.transaction(records, {
        groupId: "g",
        offsets: [
          { topic: "in", partition: 0, offset: 7 },
          { topic: "in", partition: 1, offset: 9 },
          { topic: "other", partition: 0, offset: 1 }
        ]
      })
      const log = f.log.slice(opened.length)
      assert.strictEqual(log[0], "begin")
      assert.isAtLeast(log.filter((s) => s === "sendBatch").length, 3)
      assert.deepStrictEqual(log.slice(-2), ["sendOffsets", "commit"])
      assert.deepStrictEqual(f.offsets, [
        {
          consumerGroupId: "g",
          topics: [
            {
              topic: "in",
              partitions: [
                { partition: 0, offset: "7" },
                { partition: 1, offset: "9" }
              ]
            },
            { topic: "other", partitions: [{ partition: 0, offset: "1" }] }
          ]
        }
      ])
      assert.deepStrictEqual(
        metadata.map((m) => m.topic),
        records.map((r) => r.topic)
      )
      // Offsets per partition follow the order of the records.
      const seen = new Map<string, number>()
      for (const m of metadata) {
        const key = `${m.topic}:${m.partition}`
        assert.strictEqual(m.offset, seen.get(key) ?? 0)
        seen.set(key, m.offset + 1)
      }
    }).pipe(Effect.scoped)
  )

  it.effect("a retryable failure aborts, fails Transient with operation transaction, and the next one works", () =>
    Effect.gen(function* () {
      const f = fake((step, n) =>
        step === "sendOffsets" && n === 1 ? Promise.reject(protocolError("CONCURRENT_TRANSACTIONS", true)) : undefined
      )
      const producer = yield* open(f)
      const error = yield* producer.transaction([record("out", 0)], offsets).pipe(Effect.flip)
      assert.strictEqual(error.operation, "transaction")
      assert.strictEqual(error.reason._tag, "Transient")
      assert.isTrue(error.isRetryable)
      assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch", "sendOffsets", "abort"])
      const [m] = yield* producer.transaction([record("out", 1)], offsets)
      assert.strictEqual(m?.topic, "out")
      assert.deepStrictEqual(f.log.slice(-2), ["sendOffsets", "commit"])
    }).pipe(Effect.scoped)
  )

  it.effect("after a failed produce the kafkajs producer is replaced: a new epoch resets its sequence numbers", () =>
    Effect.gen(function* () {
      const f = fake((step, n) =>
        step === "sendBatch" && n === 1 ? Promise.reject(protocolError("NOT_LEADER_FOR_PARTITION", true)) : undefined
      )
      const producer = yield* open(f)
      const error = yield* producer.transaction([record("out", 0)]).pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "Transient")
      assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch", "abort", "disconnect", ...opened])
      assert.strictEqual(f.configs.length, 2)
      assert.strictEqual(f.configs[1]?.transactionalId, "tx-1")
      yield* producer.transaction([record("out", 1)])
      assert.strictEqual(f.log.at(-1), "commit")
    }).pipe(Effect.scoped)
  )

  for (const type of ["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "INVALID_PRODUCER_ID_MAPPING"]) {
    it.effect(`${type}: the transaction is aborted and fails Fenced; later calls fail Fenced at once`, () =>
      Effect.gen(function* () {
        const f = fake((step) => (step === "sendBatch" ? Promise.reject(protocolError(type, false)) : undefined))
        const producer = yield* open(f)
        const error = yield* producer.transaction([record("out", 0)]).pipe(Effect.flip)
        assert.strictEqual(error.reason._tag, "Fenced")
        assert.isFalse(error.isRetryable)
        assert.include(error.reason.message, type)
        assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch", "abort"])
        const calls = f.log.length
        const later = yield* producer.transaction([record("out", 1)], offsets).pipe(Effect.flip)
        assert.strictEqual(later.reason._tag, "Fenced")
        assert.strictEqual(f.log.length, calls, "kafkajs is not called again")
      }).pipe(Effect.scoped)
    )
  }

  it.effect("a fenced commit cannot be aborted (kafkajs refuses): Fenced, now and later", () =>
    Effect.gen(function* () {
      const f = fake((step) =>
        step === "commit" ? Promise.reject(protocolError("INVALID_PRODUCER_EPOCH", false)) : undefined
      )
      const producer = yield* open(f)
      const error = yield* producer.transaction([record("out", 0)]).pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "Fenced")
      assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch", "commit"])
      assert.strictEqual((yield* producer.transaction([record("out", 1)]).pipe(Effect.flip)).reason._tag, "Fenced")
    }).pipe(Effect.scoped)
  )

  it.effect("a failed abort or commit without fencing leaves the producer Closed: its outcome is unknown", () =>
    Effect.gen(function* () {
      const timeout = () =>
        Promise.reject(Object.assign(new Error("Request timed out"), { name: "KafkaJSRequestTimeoutError" }))
      const aborting = fake((step, n) =>
        n === 1 && (step === "sendBatch" || step === "abort") ? timeout() : undefined
      )
      const a = yield* open(aborting)
      const failed = yield* a.transaction([record("out", 0)]).pipe(Effect.flip)
      assert.strictEqual(failed.reason._tag, "Closed")
      assert.isFalse(failed.isRetryable)
      assert.include(failed.reason.message, "so did the abort")
      assert.strictEqual((yield* a.transaction([record("out", 1)]).pipe(Effect.flip)).reason._tag, "Closed")

      const committing = fake((step, n) => (n === 1 && step === "commit" ? timeout() : undefined))
      const c = yield* open(committing)
      const unknown = yield* c.transaction([record("out", 0)]).pipe(Effect.flip)
      assert.strictEqual(unknown.reason._tag, "Closed")
      assert.include(unknown.reason.message, "outcome is unknown")
      assert.notInclude(committing.log.slice(opened.length), "abort")
    }).pipe(Effect.scoped)
  )

  it.effect("kafkajs' state errors come out as Fenced", () =>
    Effect.sync(() => {
      for (const message of [
        'Transaction state exception: Cannot call "beginTransaction" in state "ABORTING"',
        "Cannot continue to use transaction once ended"
      ]) {
        assert.strictEqual(toReason(nonRetriableError(message))._tag, "Fenced")
      }
      assert.strictEqual(toReason(nonRetriableError("Invalid topic"))._tag, "Rejected")
    })
  )

  it.effect("an oversized record fails MessageTooLarge before any transaction begins", () =>
    Effect.gen(function* () {
      const f = fake()
      const producer = yield* open(f)
      const error = yield* producer
        .transaction([record("small", 0), record("small", 1, 20_001)], offsets)
        .pipe(Effect.flip)
      assert.strictEqual(error.operation, "transaction")
      assert.strictEqual(error.reason._tag, "MessageTooLarge")
      assert.deepStrictEqual(error.reason._tag === "MessageTooLarge" ? error.reason.records : undefined, [1])
      assert.deepStrictEqual(f.log, opened)
      const missing = yield* producer.transaction([record("nope", 0)]).pipe(Effect.flip)
      assert.strictEqual(missing.reason._tag, "UnknownTopic")
      assert.deepStrictEqual(f.log, opened)
    }).pipe(Effect.scoped)
  )

  it.effect("an interrupted transaction is aborted once its call in flight has settled", () =>
    Effect.gen(function* () {
      let release: (() => void) | undefined
      const f = fake((step, n) =>
        step === "sendBatch" && n === 1
          ? new Promise<never>((_, reject) => {
              release = () => reject(protocolError("NOT_LEADER_FOR_PARTITION", true))
            })
          : undefined
      )
      const producer = yield* open(f)
      const fiber = yield* Effect.forkChild(producer.transaction([record("out", 0)], offsets))
      while (release === undefined) yield* Effect.yieldNow
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch"], "no abort while the send is in flight")
      release()
      yield* Fiber.join(interrupting)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fiber)))
      assert.deepStrictEqual(f.log.slice(opened.length), ["begin", "sendBatch", "abort", "disconnect", ...opened])
      yield* producer.transaction([record("out", 1)])
      assert.strictEqual(f.log.at(-1), "commit")
    }).pipe(Effect.scoped)
  )

  it.effect("overlapping calls are serialised: kafkajs never sees two transactions at once", () =>
    Effect.gen(function* () {
      const f = fake()
      const producer = yield* open(f)
      const results = yield* Effect.all(
        Array.from({ length: 5 }, (_, i) => producer.transaction([record("out", i)], offsets)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.length, 5)
      const log = f.log.slice(opened.length)
      assert.deepStrictEqual(
        log,
        Array.from({ length: 5 }, () => ["begin", "sendBatch", "sendOffsets", "commit"]).flat()
      )
    }).pipe(Effect.scoped)
  )

  it.effect("an empty transaction touches nothing", () =>
    Effect.gen(function* () {
      const f = fake()
      const producer = yield* open(f)
      assert.deepStrictEqual(yield* producer.transaction([]), [])
      assert.deepStrictEqual(f.log, opened)
    }).pipe(Effect.scoped)
  )
})
