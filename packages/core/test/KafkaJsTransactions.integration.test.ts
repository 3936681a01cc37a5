/**
 * The kafkajs layer's transactional producers on the real broker: a committed transaction makes its records and the
 * group's offsets visible, an aborted one leaves nothing for read_committed readers (a read_uncommitted reader
 * proves its records were written), opening a producer fences the earlier one with its id and aborts its open
 * transaction, and the size pre-check sends nothing. Readers here are plain kafkajs consumers, independent of
 * Sluice's.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Queue, Stream } from "effect"
// Independent readers and a foreign producer with the same id; Sluice's own code never sees kafkajs types.
import { Kafka as KafkaJsClient, logLevel } from "kafkajs"
import type { KafkaError } from "../src/Errors.ts"
import { Kafka, type KafkaShape } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes, type ProducerRecord, type RecordBatch, text } from "../src/Record.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"
import { recordOfSize } from "./support/recordOfSize.ts"
import { alterMaxMessageBytes } from "./support/topicConfig.ts"

const client = new KafkaJsClient({ brokers: [...brokers], clientId: "sluice-txn-test", logLevel: logLevel.NOTHING })

const record = (topic: string, value: string, partition?: number): ProducerRecord => ({
  topic,
  key: bytes(value),
  value: bytes(value),
  ...(partition === undefined ? {} : { partition })
})

/**
 * The values of a topic as an independent kafkajs consumer sees them, from the beginning until it has seen `last`
 * (which a committed transaction wrote after whatever the test looks for, so that nothing earlier in its partition is
 * still on its way), or `last` values.
 */
const valuesUntil = (topic: string, last: string | number, isolation: "read_committed" | "read_uncommitted") =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const consumer = client.consumer({
        groupId: unique("sluice-txn-reader"),
        readUncommitted: isolation === "read_uncommitted",
        maxWaitTimeInMs: 100
      })
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      return consumer
    }),
    (consumer) =>
      Effect.promise(
        () =>
          new Promise<Array<string>>((resolve) => {
            const values: Array<string> = []
            void consumer.run({
              eachMessage: async ({ message }) => {
                const value = message.value?.toString() ?? ""
                values.push(value)
                if (value === last || values.length === last) resolve(values)
              }
            })
          })
      ).pipe(Effect.timeout("30 seconds")),
    (consumer) => Effect.promise(() => consumer.disconnect())
  )

/** The same through Sluice's own readers, `read` and a group member (`consume`), both read_committed. */
const sluiceValuesUntil = (kafka: KafkaShape, topic: string, last: string) =>
  Effect.gen(function* () {
    const values = (batches: Stream.Stream<RecordBatch, KafkaError>) =>
      batches.pipe(
        Stream.flatMap((batch) => Stream.fromIterable(batch.records)),
        Stream.map((r) => text(r.value!)),
        Stream.takeUntil((value) => value === last),
        Stream.runCollect,
        Effect.timeout("30 seconds")
      )
    const read = yield* values(kafka.read({ topics: [topic] }))
    const consumed = yield* Effect.scoped(
      Effect.gen(function* () {
        const queue = yield* Queue.unbounded<RecordBatch>()
        yield* kafka.consume(
          { groupId: unique("sluice-txn-member"), topics: [topic] },
          { onBatch: (batch) => Queue.offer(queue, batch).pipe(Effect.asVoid), onAssignment: () => Effect.void }
        )
        return yield* values(Stream.fromQueue(queue))
      })
    )
    return { read, consumed }
  })

/**
 * Fresh names for an input topic (whose offsets transactions commit), an output topic, a group and a transactional
 * id; the topics created with `partitions` each (the output with `outConfig`), and a producer with the id opened.
 */
const setup = (options: { readonly partitions?: number; readonly outConfig?: Readonly<Record<string, string>> } = {}) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const input = unique("sluice-txn-in")
    const out = unique("sluice-txn-out")
    const groupId = unique("sluice-txn-group")
    const partitions = options.partitions ?? 1
    yield* kafka.createTopics([
      { name: input, partitions },
      { name: out, partitions, ...(options.outConfig === undefined ? {} : { config: options.outConfig }) }
    ])
    const producer = yield* kafka.transactional(unique("sluice-txn-id"))
    return { kafka, input, out, groupId, producer }
  })

const reasonOf = (error: KafkaError) => error.reason._tag

/**
 * After a transaction (of the record "aborted" and the offset 3 of `input`) failed with `reason`: it committed no
 * offset, the producer commits the next one (the record "committed", offset 4), and then read_committed readers,
 * kafkajs' and Sluice's, see only that one, while a read_uncommitted reader shows the aborted record was written.
 */
const abortedThenGoesOn = (
  { kafka, input, out, groupId, producer }: Effect.Success<ReturnType<typeof setup>>,
  error: KafkaError,
  reason: string
) =>
  Effect.gen(function* () {
    assert.strictEqual(error.operation, "transaction")
    assert.strictEqual(reasonOf(error), reason)
    assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, input), [], "no offset committed")
    yield* producer.transaction([record(out, "committed")], {
      groupId,
      offsets: [{ topic: input, partition: 0, offset: 4 }]
    })
    assert.deepStrictEqual(yield* valuesUntil(out, "committed", "read_committed"), ["committed"])
    assert.deepStrictEqual(yield* sluiceValuesUntil(kafka, out, "committed"), {
      read: ["committed"],
      consumed: ["committed"]
    })
    assert.deepStrictEqual(
      yield* valuesUntil(out, "committed", "read_uncommitted"),
      ["aborted", "committed"],
      "the aborted record was written, then aborted"
    )
    assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, input), [{ topic: input, partition: 0, offset: 4 }])
  })

layer(KafkaJs.layer({ brokers, clientId: "sluice-kafkajs-txn-test", connectRetry, transactionTimeoutMs: 10_000 }), {
  excludeTestServices: true,
  timeout: "120 seconds"
})("KafkaJs transactions (real broker)", (it) => {
  it.effect("a committed transaction: its records and the group's offsets are visible to read_committed readers", () =>
    Effect.gen(function* () {
      const { kafka, input, out, groupId, producer } = yield* setup({ partitions: 2 })
      assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, input), [])
      const records = [record(out, "r1", 0), record(out, "r2", 1), record(out, "r3", 0), record(out, "last", 1)]
      const metadata = yield* producer.transaction(records, {
        groupId,
        offsets: [
          { topic: input, partition: 0, offset: 5 },
          { topic: input, partition: 1, offset: 7 }
        ]
      })
      assert.deepStrictEqual(metadata, [
        { topic: out, partition: 0, offset: 0 },
        { topic: out, partition: 1, offset: 0 },
        { topic: out, partition: 0, offset: 1 },
        { topic: out, partition: 1, offset: 1 }
      ])
      // Two partitions: the four values in any order.
      const seen = yield* valuesUntil(out, 4, "read_committed")
      assert.deepStrictEqual([...seen].sort(), ["last", "r1", "r2", "r3"])
      const committed = yield* kafka.committedOffsets(groupId, input)
      assert.deepStrictEqual(
        [...committed].sort((a, b) => a.partition - b.partition),
        [
          { topic: input, partition: 0, offset: 5 },
          { topic: input, partition: 1, offset: 7 }
        ]
      )
    })
  )

  it.effect(
    "a transaction the broker refuses after some records were written is aborted: nothing visible, no offset, " +
      "and the producer goes on",
    () =>
      Effect.gen(function* () {
        const context = yield* setup()
        const { kafka, input, out, groupId, producer } = context
        const small = unique("sluice-txn-small")
        yield* kafka.createTopics([{ name: small, partitions: 1 }])
        // The layer caches the default limit for `small`, which is then lowered behind its back: the pre-check lets
        // the large record through and the broker refuses it, after the record for `out` in the same request.
        assert.isAbove(yield* kafka.maxRecordBytes(small), 100_000)
        yield* alterMaxMessageBytes(small, 2000)
        const error = yield* producer
          .transaction([record(out, "aborted"), recordOfSize({ topic: small, key: null }, 5000)], {
            groupId,
            offsets: [{ topic: input, partition: 0, offset: 3 }]
          })
          .pipe(Effect.flip)
        yield* abortedThenGoesOn(context, error, "MessageTooLarge")
      })
  )

  it.effect(
    "a transaction whose offsets cannot be committed (their topic is gone) is aborted after its records were sent",
    () =>
      Effect.gen(function* () {
        const context = yield* setup()
        const { input, out, groupId, producer } = context
        // The broker refuses offsets of a topic it does not know (an input deleted under a running task); kafkajs
        // retries that for about 8 s before it gives up.
        const error = yield* producer
          .transaction([record(out, "aborted")], {
            groupId,
            offsets: [
              { topic: input, partition: 0, offset: 3 },
              { topic: unique("sluice-txn-deleted"), partition: 0, offset: 3 }
            ]
          })
          .pipe(Effect.flip)
        yield* abortedThenGoesOn(context, error, "UnknownTopic")
      })
  )

  it.effect("opening a producer with the same id fences the earlier one: its next transaction fails Fenced", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const out = unique("sluice-txn-out")
      yield* kafka.createTopics([{ name: out, partitions: 1 }])
      const id = unique("sluice-txn-id")
      const a = yield* kafka.transactional(id)
      yield* a.transaction([record(out, "a1")])
      const b = yield* kafka.transactional(id)

      // What the runtime does: match the reason, and retire the task.
      const retired = yield* a.transaction([record(out, "zombie")]).pipe(
        Effect.as("still writing"),
        Effect.catchTag("KafkaError", (e) => (e.reason._tag === "Fenced" ? Effect.succeed("retired") : Effect.fail(e)))
      )
      assert.strictEqual(retired, "retired")
      const started = Date.now()
      const again = yield* a.transaction([record(out, "zombie")]).pipe(Effect.flip)
      assert.strictEqual(reasonOf(again), "Fenced")
      assert.isFalse(again.isRetryable)
      assert.isBelow(Date.now() - started, 1000, "a fenced producer fails at once")

      yield* b.transaction([record(out, "b1")])
      assert.deepStrictEqual(yield* valuesUntil(out, "b1", "read_committed"), ["a1", "b1"])
    })
  )

  it.effect("opening a producer aborts the open transaction of the earlier one with its id", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const out = unique("sluice-txn-out")
      yield* kafka.createTopics([{ name: out, partitions: 1 }])
      const id = unique("sluice-txn-id")
      // The earlier producer, a plain kafkajs one, leaves a transaction open with records in it.
      const zombie = client.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 })
      yield* Effect.acquireRelease(
        Effect.promise(() => zombie.connect()),
        () => Effect.promise(() => zombie.disconnect())
      )
      const open = yield* Effect.promise(async () => {
        const txn = await zombie.transaction()
        await txn.send({ topic: out, acks: -1, messages: [{ value: "open-1" }, { value: "open-2" }] })
        return txn
      })

      const started = Date.now()
      const b = yield* kafka.transactional(id)
      const openMs = Date.now() - started
      assert.isBelow(openMs, 10_000, "aborted by the new producer, not by the transaction timeout")
      const commit = yield* Effect.tryPromise(() => open.commit()).pipe(Effect.flip)
      assert.include(String(commit.cause), "epoch", "the zombie cannot commit any more")

      yield* b.transaction([record(out, "b1")])
      assert.deepStrictEqual(yield* valuesUntil(out, "b1", "read_committed"), ["b1"])
      assert.deepStrictEqual(yield* valuesUntil(out, "b1", "read_uncommitted"), ["open-1", "open-2", "b1"])
      yield* Effect.logInfo(`opening a producer over an open transaction took ${openMs} ms`)
    })
  )

  it.effect("an oversized record fails the transaction with MessageTooLarge before anything is sent", () =>
    Effect.gen(function* () {
      const { kafka, input, out, groupId, producer } = yield* setup({ outConfig: { "max.message.bytes": "20000" } })
      const error = yield* producer
        .transaction([record(out, "fits"), recordOfSize({ topic: out, key: null }, 20_001)], {
          groupId,
          offsets: [{ topic: input, partition: 0, offset: 1 }]
        })
        .pipe(Effect.flip)
      assert.strictEqual(error.operation, "transaction")
      assert.strictEqual(error.reason._tag, "MessageTooLarge")
      assert.deepStrictEqual(error.reason._tag === "MessageTooLarge" ? error.reason.records : undefined, [1])
      const [partition] = yield* kafka.offsets(out)
      assert.strictEqual(partition?.high, 0, "nothing was written, not even a transaction marker")
      assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, input), [])
      yield* producer.transaction([record(out, "after")])
    })
  )

  it.effect("back-to-back small transactions: each commits (latency logged)", () =>
    Effect.gen(function* () {
      const { kafka, input, out, groupId, producer } = yield* setup()
      const n = 50
      const times: Array<number> = []
      for (let i = 0; i < n; i++) {
        const started = performance.now()
        yield* producer.transaction([record(out, `v${i}`)], {
          groupId,
          offsets: [{ topic: input, partition: 0, offset: i + 1 }]
        })
        times.push(performance.now() - started)
      }
      const sorted = [...times].sort((x, y) => x - y)
      const at = (q: number) => sorted[Math.min(n - 1, Math.floor(q * n))]!.toFixed(1)
      yield* Effect.logInfo(
        `${n} transactions of 1 record + 1 offset: median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`
      )
      assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, input), [{ topic: input, partition: 0, offset: n }])
      // Each record and its commit marker.
      assert.strictEqual((yield* kafka.offsets(out))[0]?.high, 2 * n)
    })
  )
})
