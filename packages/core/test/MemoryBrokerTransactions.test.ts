/**
 * The in-memory broker's transactions, read_committed reads and seeks, against the semantics of `Kafka.ts`:
 * atomic visibility of records and offsets, aborts, the last stable offset, fencing, markers, `GroupConsumer.seek`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
import { type GroupConsumer, Kafka } from "../src/Kafka.ts"
import * as MemoryBroker from "../src/MemoryBroker.ts"
import * as Reader from "../src/Reader.ts"
import type { RecordBatch, TopicPartition } from "../src/Record.ts"
import { keyText, member, record, takeRecords, untilHeld, valueText } from "./support/memoryBroker.ts"

/** The Kafka service and the broker, with these topics created (one partition each). */
const setup = Effect.fnUntraced(function* (...topics: ReadonlyArray<string>) {
  const kafka = yield* Kafka
  const broker = yield* MemoryBroker.MemoryBroker
  yield* kafka.createTopics(topics.map((name) => ({ name, partitions: 1 })))
  return { kafka, broker }
})

/** The values `Reader.readToEnd` gets: a bounded read, so it must find the end. */
const valuesToEnd = (topic: string) =>
  Effect.map(Stream.runCollect(Reader.readToEnd(topic)), (chunks) => chunks.flat().map(valueText))

/** Lets forked fibers (fetchers, readers) run until they wait. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** The values of what a queue of batches holds now, without waiting. */
const queued = (batches: Queue.Queue<RecordBatch>) =>
  Effect.map(Queue.clear(batches), (all) => all.flatMap((b) => b.records.map(valueText)))

/** A `read` of the topics from earliest, its batches queued. */
const reading = Effect.fnUntraced(function* (topics: ReadonlyArray<string>) {
  const kafka = yield* Kafka
  const batches = yield* Queue.unbounded<RecordBatch>()
  yield* kafka.read({ topics }).pipe(
    Stream.runForEach((batch) => Queue.offer(batches, batch)),
    Effect.forkScoped
  )
  return batches
})

const readPartition = (topic: string, from = 0) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    return yield* Stream.runCollect(kafka.readPartition({ topic, partition: 0, from }))
  })

type Shape = [values: Array<string | null>, lastOffset: number | undefined]

/** A batch as [values, lastOffset]. */
const shape = (batch: RecordBatch): Shape => [batch.records.map(valueText), batch.lastOffset]

describe("MemoryBroker transactions", () => {
  it.effect("a committed transaction's records and offsets become visible together, to every reader", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("in", "out")
      yield* kafka.send([record("in", null, "i0"), record("in", null, "i1")])
      const downstream = yield* member("reader", ["out"])
      const read = yield* reading(["out"])
      const producer = yield* kafka.transactional("app-0")
      const committed = yield* Effect.forkChild(broker.awaitCommitted("app", "in"))

      yield* broker.holdSends
      const txn = yield* Effect.forkChild(
        producer.transaction([record("out", null, "a"), record("out", null, "b")], {
          groupId: "app",
          offsets: [{ topic: "in", partition: 0, offset: 2 }]
        })
      )
      yield* untilHeld(broker, 1)
      yield* settle
      // Open: in the log, invisible to every read_committed reader, offsets not committed.
      assert.deepStrictEqual(
        (yield* broker.appended("out")).map((r) => [valueText(r), r.state]),
        [
          ["a", "open"],
          ["b", "open"]
        ]
      )
      assert.deepStrictEqual(yield* broker.records("out"), [])
      assert.deepStrictEqual(yield* broker.lastStableOffsets("out"), [{ topic: "out", partition: 0, offset: 0 }])
      assert.deepStrictEqual(yield* kafka.offsets("out"), [{ partition: 0, low: 0, high: 2 }], "high is the log end")
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [])
      assert.deepStrictEqual(yield* readPartition("out"), [])
      assert.deepStrictEqual(yield* queued(downstream.batches), [])
      assert.deepStrictEqual(yield* queued(read), [])
      assert.isUndefined(committed.pollUnsafe())

      yield* broker.releaseSends
      const metadata = yield* Fiber.join(txn)
      assert.deepStrictEqual(
        metadata.map((m) => m.offset),
        [0, 1]
      )
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["a", "b"])
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [{ topic: "in", partition: 0, offset: 2 }])
      yield* Fiber.join(committed)
      // The commit marker at offset 2 is covered, never delivered.
      const expected: Shape = [["a", "b"], 2]
      assert.deepStrictEqual(shape(yield* Queue.take(downstream.batches)), expected, "group consumer")
      assert.deepStrictEqual(shape(yield* Queue.take(read)), expected, "read")
      const restored = yield* readPartition("out")
      assert.deepStrictEqual(restored.map(shape), [expected], "readPartition")
      assert.strictEqual(restored[0]?.highWatermark, 3)
      // Committing after the last record it got, the downstream group has read everything.
      yield* downstream.consumer.commit([{ topic: "out", partition: 0, offset: 2 }])
      yield* broker.awaitCommitted("reader", "out")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("a failed transaction is aborted: nothing visible, no offsets; a new one commits the same content", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("in", "out")
      const downstream = yield* member("reader", ["out"])
      const producer = yield* kafka.transactional("app-0")
      const content = [record("out", null, "x")]
      const offsets = { groupId: "app", offsets: [{ topic: "in", partition: 0, offset: 1 }] }

      yield* broker.failSends(1, true)
      const error = yield* producer.transaction(content, offsets).pipe(Effect.flip)
      assert.strictEqual(error.operation, "transaction")
      assert.isTrue(error.isRetryable)
      yield* settle
      assert.deepStrictEqual(
        (yield* broker.appended("out")).map((r) => [valueText(r), r.offset, r.state]),
        [["x", 0, "aborted"]]
      )
      assert.deepStrictEqual(yield* broker.records("out"), [])
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [])
      assert.deepStrictEqual(yield* broker.lastStableOffsets("out"), [{ topic: "out", partition: 0, offset: 2 }])
      assert.deepStrictEqual(yield* queued(downstream.batches), [])
      assert.deepStrictEqual((yield* readPartition("out")).map(shape), [[[], 1]], "the abort marker at 1 is covered")

      const [retried] = yield* producer.transaction(content, offsets)
      assert.strictEqual(retried?.offset, 2, "the aborted record and its marker took offsets 0 and 1")
      assert.deepStrictEqual(
        (yield* takeRecords(downstream.batches, 1)).map((r) => [valueText(r), r.offset]),
        [["x", 2]]
      )
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [{ topic: "in", partition: 0, offset: 1 }])
      assert.deepStrictEqual(yield* valuesToEnd("out"), ["x"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("an open transaction holds read_committed readers at its first offset, later plain records too", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("out", "slow")
      yield* kafka.send([record("out", null, "before")])
      const downstream = yield* member("reader", ["out"])
      const read = yield* reading(["out"])
      assert.deepStrictEqual((yield* takeRecords(downstream.batches, 1)).map(valueText), ["before"])
      assert.deepStrictEqual((yield* takeRecords(read, 1)).map(valueText), ["before"])
      const producer = yield* kafka.transactional("app-0")

      // Held by its record for `slow`; the plain send to `out` is not held.
      yield* broker.holdSendsTo(["slow"])
      const txn = yield* Effect.forkChild(producer.transaction([record("out", null, "t"), record("slow", null, "s")]))
      yield* untilHeld(broker, 1)
      const [plain] = yield* kafka.send([record("out", null, "after")])
      assert.strictEqual(plain?.offset, 2)
      yield* settle
      assert.deepStrictEqual(yield* broker.lastStableOffsets("out"), [{ topic: "out", partition: 0, offset: 1 }])
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["before"])
      assert.deepStrictEqual(yield* queued(downstream.batches), [], "the group consumer waits at the LSO")
      assert.deepStrictEqual(yield* queued(read), [], "read waits at the LSO")
      assert.deepStrictEqual((yield* readPartition("out")).map(shape), [[["before"], undefined]])

      // The commit wakes the readers waiting at the LSO.
      yield* broker.releaseSends
      yield* Fiber.join(txn)
      const expected: Shape = [["t", "after"], 3]
      assert.deepStrictEqual(shape(yield* Queue.take(downstream.batches)), expected)
      assert.deepStrictEqual(shape(yield* Queue.take(read)), expected)
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["before", "t", "after"])
      assert.deepStrictEqual((yield* broker.records("slow")).map(valueText), ["s"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("interrupting a held transaction aborts it, and closing a producer makes its later calls fail Closed", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("out")
      const scope = yield* Scope.make()
      const producer = yield* kafka.transactional("app-0").pipe(Scope.provide(scope))
      yield* broker.holdSends
      const txn = yield* Effect.forkChild(producer.transaction([record("out", null, "a")]))
      yield* untilHeld(broker, 1)
      yield* kafka.send([record("out", null, "plain")]).pipe(Effect.forkChild)
      yield* untilHeld(broker, 2)
      yield* Fiber.interrupt(txn)
      yield* broker.releaseSends
      yield* settle
      assert.deepStrictEqual(
        (yield* broker.appended("out")).map((r) => [valueText(r), r.state]),
        [
          ["a", "aborted"],
          ["plain", "plain"]
        ]
      )
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["plain"])

      yield* Scope.close(scope, Exit.void)
      const closed = yield* producer.transaction([record("out", null, "b")]).pipe(Effect.flip)
      assert.strictEqual(closed.reason._tag, "Closed")
      assert.strictEqual((yield* broker.appended("out")).length, 2, "a closed producer appends nothing")
      // The id is free again: a new producer for it works.
      const next = yield* kafka.transactional("app-0")
      yield* next.transaction([record("out", null, "c")])
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["plain", "c"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("a newer producer with the same transactional id fences the older one and aborts its transaction", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("in", "out")
      const offsets = (offset: number) => ({ groupId: "app", offsets: [{ topic: "in", partition: 0, offset }] })
      const old = yield* kafka.transactional("task-0")
      const other = yield* kafka.transactional("task-1")
      yield* broker.holdSends
      const oldTxn = yield* Effect.forkChild(old.transaction([record("out", null, "zombie")], offsets(5)))
      yield* untilHeld(broker, 1)
      const otherTxn = yield* Effect.forkChild(other.transaction([record("out", null, "other")]))
      yield* untilHeld(broker, 2)

      const newer = yield* kafka.transactional("task-0")
      // Fencing aborts the held transaction at once.
      assert.deepStrictEqual(
        (yield* broker.appended("out")).map((r) => [valueText(r), r.state]),
        [
          ["zombie", "aborted"],
          ["other", "open"]
        ]
      )
      yield* broker.releaseSends
      const fenced = yield* Fiber.join(oldTxn).pipe(Effect.flip)
      assert.strictEqual(fenced.operation, "transaction")
      assert.strictEqual(fenced.reason._tag, "Fenced")
      assert.include(fenced.reason.message, "taken over by a newer producer")
      assert.isFalse(fenced.isRetryable)
      yield* Fiber.join(otherTxn)
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [], "the fenced offsets were not committed")

      // Every later call of the fenced producer fails, appending nothing; callers can match the reason.
      const later = yield* old.transaction([record("out", null, "zombie-2")]).pipe(
        Effect.as("committed"),
        Effect.catchTag("KafkaError", (e) => (e.reason._tag === "Fenced" ? Effect.succeed("fenced") : Effect.fail(e)))
      )
      assert.strictEqual(later, "fenced")
      yield* newer.transaction([record("out", null, "new")], offsets(1))
      assert.deepStrictEqual(yield* kafka.committedOffsets("app", "in"), [{ topic: "in", partition: 0, offset: 1 }])
      assert.deepStrictEqual((yield* broker.records("out")).map(valueText), ["other", "new"])
      assert.deepStrictEqual(
        (yield* broker.appended("out")).map((r) => [valueText(r), r.offset, r.state]),
        [
          ["zombie", 0, "aborted"],
          ["other", 1, "committed"],
          ["new", 4, "committed"]
        ],
        "the abort marker took 2, other's commit marker 3"
      )
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("markers take offsets, and reads of a log that ends in markers cover them with lastOffset", () =>
    Effect.gen(function* () {
      const { kafka, broker } = yield* setup("out")
      const producer = yield* kafka.transactional("app-0")
      const offsetsOf = Effect.fnUntraced(function* (
        effect: Effect.Effect<ReadonlyArray<{ offset: number }>, unknown>
      ) {
        return (yield* effect).map((m) => m.offset)
      })
      assert.deepStrictEqual(
        yield* offsetsOf(producer.transaction([record("out", null, "a"), record("out", null, "b")])),
        [0, 1]
      )
      assert.deepStrictEqual(yield* offsetsOf(kafka.send([record("out", null, "c")])), [3], "the marker took 2")
      assert.deepStrictEqual(yield* offsetsOf(producer.transaction([record("out", null, "d")])), [4])
      yield* broker.failSends(1, false)
      yield* producer.transaction([record("out", null, "aborted")]).pipe(Effect.flip)
      // a0 b1 marker2 c3 d4 marker5 aborted6 marker7
      assert.deepStrictEqual(yield* kafka.offsets("out"), [{ partition: 0, low: 0, high: 8 }])

      // Batches of at most 3 offsets: the last two cover only the marker and the aborted record.
      const batches = yield* Stream.runCollect(kafka.readPartition({ topic: "out", partition: 0, from: 0 }))
      assert.deepStrictEqual(batches.map(shape), [
        [["a", "b"], 2],
        [["c", "d"], 5],
        [[], 7]
      ])
      assert.isTrue(batches.every((b) => b.highWatermark === 8))
      assert.deepStrictEqual((yield* readPartition("out", 5)).map(shape), [[[], 7]])
      // Bounded reads stop at the end, though no record sits at its last offset.
      assert.deepStrictEqual(yield* valuesToEnd("out"), ["a", "b", "c", "d"])
    }).pipe(Effect.provide(MemoryBroker.layerWith({ maxBatchSize: 3 })))
  )

  it.effect("a compacted read keeps the latest committed record of each key and covers the markers", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([{ name: "profiles", partitions: 1, config: { "cleanup.policy": "compact" } }])
      const producer = yield* kafka.transactional("app-0")
      yield* producer.transaction([record("profiles", "k1", "a"), record("profiles", "k1", "b")])
      yield* broker.failSends(1, false)
      yield* producer.transaction([record("profiles", "k1", "aborted")]).pipe(Effect.flip)
      const read = yield* reading(["profiles"])
      const head = yield* Queue.take(read)
      assert.deepStrictEqual(
        head.records.map((r) => [keyText(r), valueText(r), r.offset]),
        [["k1", "b", 1]]
      )
      assert.strictEqual(head.lastOffset, 4, "the head covers everything below the LSO")
      assert.deepStrictEqual(yield* valuesToEnd("profiles"), ["b"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )
})

describe("MemoryBroker seek", () => {
  /**
   * A member of group `g` on topic `t` whose `onBatch` queues each batch, then waits for a permit (the test paces
   * its deliveries), and whose `onAssignment` runs `onAssigned` with its own consumer.
   */
  const pacedMember = Effect.fnUntraced(function* (
    onAssigned: (consumer: GroupConsumer, assignment: ReadonlyArray<TopicPartition>) => Effect.Effect<void> = () =>
      Effect.void
  ) {
    const kafka = yield* Kafka
    const batches = yield* Queue.unbounded<RecordBatch>()
    const permits = yield* Queue.unbounded<void>()
    // consume returns before the first assignment, so onAssignment can wait for its result.
    const self = yield* Deferred.make<GroupConsumer>()
    const consumer = yield* kafka.consume(
      { groupId: "g", topics: ["t"] },
      {
        onBatch: (batch) => Queue.offer(batches, batch).pipe(Effect.andThen(Queue.take(permits))),
        onAssignment: (assignment) => Effect.flatMap(Deferred.await(self), (c) => onAssigned(c, assignment))
      }
    )
    yield* Deferred.succeed(self, consumer)
    const next = Effect.map(Queue.take(batches), (b) => b.records.map((r) => r.offset))
    return { consumer, next, permit: Queue.offer(permits, undefined) }
  })

  const tenRecords = Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: "t", partitions: 1 }])
    yield* kafka.send(Array.from({ length: 10 }, (_, i) => record("t", null, `v${i}`)))
  })

  it.effect("seek moves a member's position forward and back; the batch in flight at the seek moves nothing", () =>
    Effect.gen(function* () {
      yield* tenRecords
      const { consumer, next, permit } = yield* pacedMember()
      const seek = (offset: number) => consumer.seek([{ topic: "t", partition: 0, offset }])

      assert.deepStrictEqual(yield* next, [0, 1, 2])
      // While [0, 2] is in flight: forward. The batch that would have followed it, [3, 5], never comes.
      yield* seek(7)
      yield* permit
      assert.deepStrictEqual(yield* next, [7, 8, 9])
      yield* seek(1)
      yield* permit
      assert.deepStrictEqual(yield* next, [1, 2, 3])
      yield* permit
      assert.deepStrictEqual(yield* next, [4, 5, 6])
      yield* permit
      assert.deepStrictEqual(yield* next, [7, 8, 9])
      yield* permit
      yield* settle
      // Idle at the end: a seek back wakes the fetcher. Partitions not assigned are ignored.
      yield* consumer.seek([
        { topic: "t", partition: 0, offset: 8 },
        { topic: "other", partition: 0, offset: 0 }
      ])
      assert.deepStrictEqual(yield* next, [8, 9])
    }).pipe(Effect.provide(MemoryBroker.layerWith({ maxBatchSize: 3 })))
  )

  it.effect("a seek from onAssignment sets where the partition's first batch starts, over the committed offset", () =>
    Effect.gen(function* () {
      yield* tenRecords
      const { next } = yield* pacedMember((consumer, assignment) =>
        Effect.andThen(
          consumer.commit(assignment.map((tp) => ({ ...tp, offset: 2 }))),
          consumer.seek(assignment.map((tp) => ({ ...tp, offset: 6 })))
        ).pipe(Effect.orDie)
      )
      assert.deepStrictEqual(yield* next, [6, 7, 8])
    }).pipe(Effect.provide(MemoryBroker.layerWith({ maxBatchSize: 3 })))
  )
})
