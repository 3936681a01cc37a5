/**
 * The in-memory broker against the semantics of `Kafka.ts`: partitioning, consumer groups and rebalances,
 * pause/resume, compacted reads, record limits, fault injection (failed and held sends), unknown topics.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { type GroupConsumer, Kafka } from "../src/Kafka.ts"
import * as MemoryBroker from "../src/MemoryBroker.ts"
import { partitionForKey } from "../src/Partitioner.ts"
import {
  bytes,
  type ConsumerRecord,
  defaultMaxMessageBytes,
  type RecordBatch,
  sizeOf,
  type TopicPartition,
  text
} from "../src/Record.ts"
import { keyText, member, record, takeRecords, untilHeld, valueText } from "./support/memoryBroker.ts"
import { recordOfSize } from "./support/recordOfSize.ts"

const coordinates = (records: ReadonlyArray<ConsumerRecord>) => records.map((r) => `${r.partition}@${r.offset}`)
const partitions = (assignment: ReadonlyArray<TopicPartition>) => assignment.map((tp) => tp.partition).sort()

/** Takes assignments until one has `n` partitions. */
const assignmentOf = Effect.fnUntraced(function* (assignments: Queue.Queue<ReadonlyArray<TopicPartition>>, n: number) {
  while (true) {
    const assignment = yield* Queue.take(assignments)
    if (assignment.length === n) return assignment
  }
})

/** Commits the position after the last of these records, per partition. */
const commitAll = (consumer: GroupConsumer, records: ReadonlyArray<ConsumerRecord>) => {
  const next = new Map<string, { topic: string; partition: number; offset: number }>()
  for (const r of records)
    next.set(`${r.topic}:${r.partition}`, { topic: r.topic, partition: r.partition, offset: r.offset + 1 })
  return consumer.commit([...next.values()])
}

describe("MemoryBroker", () => {
  it.effect("keyed records land on murmur2's partition, in order, with sequential offsets", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([{ name: "t", partitions: 4 }])
      const keys = Array.from({ length: 200 }, (_, i) => `user-${i % 17}`)
      const sent = keys.map((k, i) => record("t", k, `v${i}`))
      const metadata = yield* kafka.send(sent)

      assert.strictEqual(metadata.length, sent.length)
      const all = yield* broker.records("t")
      for (let p = 0; p < 4; p++) {
        const expected = sent
          .filter((r) => partitionForKey(r.key ?? new Uint8Array(), 4) === p)
          .map((r) => text(r.value!))
        const log = all.filter((r) => r.partition === p)
        assert.deepStrictEqual(log.map(valueText), expected)
        assert.deepStrictEqual(
          log.map((r) => r.offset),
          expected.map((_, i) => i)
        )
      }
      metadata.forEach((m, i) => {
        assert.strictEqual(m.partition, partitionForKey(sent[i]!.key!, 4))
        const stored = all.find((r) => r.partition === m.partition && r.offset === m.offset)
        assert.strictEqual(stored && valueText(stored), `v${i}`)
      })
      assert.deepStrictEqual(yield* kafka.offsets("t"), [
        ...[0, 1, 2, 3].map((p) => ({ partition: p, low: 0, high: all.filter((r) => r.partition === p).length }))
      ])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("timestamps come from the Clock unless given; an explicit partition is honoured or rejected", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* TestClock.adjust("5 seconds")
      yield* kafka.send([record("auto", "k", "a"), { ...record("auto", "k", "b"), timestamp: 42 }])
      assert.deepStrictEqual(
        (yield* broker.records("auto")).map((r) => r.timestamp),
        [5000, 42]
      )
      assert.deepStrictEqual(yield* kafka.describeTopic("auto"), { name: "auto", partitions: 1 })

      yield* kafka.createTopics([{ name: "t", partitions: 3 }])
      const [meta] = yield* kafka.send([record("t", "k", "v", 2)])
      assert.strictEqual(meta?.partition, 2)
      const error = yield* kafka.send([record("t", "k", "ok", 0), record("t", "k", "v", 3)]).pipe(Effect.flip)
      assert.strictEqual(error.isRetryable, false)
      assert.include(error.reason.message, "partition 3 out of range")
      assert.strictEqual((yield* broker.records("t")).length, 1, "a rejected send appends nothing")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("every call about a topic that does not exist fails with UnknownTopic naming it", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const failures = [
        ["describeTopic", yield* kafka.describeTopic("nope").pipe(Effect.flip)],
        ["offsets", yield* kafka.offsets("nope").pipe(Effect.flip)],
        ["committedOffsets", yield* kafka.committedOffsets("g", "nope").pipe(Effect.flip)],
        ["maxRecordBytes", yield* kafka.maxRecordBytes("nope").pipe(Effect.flip)],
        ["read", yield* kafka.read({ topics: ["nope"] }).pipe(Stream.runDrain, Effect.flip)],
        [
          "subscribe",
          yield* kafka
            .consume(
              { groupId: "g", topics: ["nope"] },
              { onBatch: () => Effect.void, onAssignment: () => Effect.void }
            )
            .pipe(Effect.scoped, Effect.flip)
        ]
      ] as const
      for (const [operation, error] of failures) {
        assert.strictEqual(error._tag, "KafkaError")
        assert.strictEqual(error.operation, operation)
        assert.strictEqual(error.reason._tag, "UnknownTopic")
        assert.strictEqual(error.reason.message, "topic nope does not exist")
        assert.strictEqual(error.reason._tag === "UnknownTopic" ? error.reason.topic : undefined, "nope")
        assert.isFalse(error.isRetryable)
      }
      yield* kafka.createTopics([{ name: "a", partitions: 2 }])
      yield* kafka.createTopics([
        { name: "a", partitions: 5 },
        { name: "b", partitions: 1 }
      ])
      assert.deepStrictEqual(yield* kafka.listTopics, ["a", "b"])
      assert.strictEqual((yield* kafka.describeTopic("a")).partitions, 2, "createTopics leaves existing topics alone")
      yield* kafka.deleteTopics(["a"])
      assert.deepStrictEqual(yield* kafka.listTopics, ["b"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("a group member gets every record exactly once; a restarted member resumes from the commit", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 3 }])
      yield* kafka.send(Array.from({ length: 1000 }, (_, i) => record("t", `k${i % 50}`, `v${i}`)))

      const first = yield* Scope.make()
      const a = yield* member("g", ["t"]).pipe(Scope.provide(first))
      const received = yield* takeRecords(a.batches, 1000)
      yield* Effect.sleep("20 millis")
      assert.strictEqual(yield* Queue.size(a.batches), 0, "no record is delivered twice")
      assert.strictEqual(new Set(coordinates(received)).size, 1000)
      assert.strictEqual(received.length, 1000)
      yield* commitAll(a.consumer, received)
      yield* Scope.close(first, Exit.void)

      yield* kafka.send(Array.from({ length: 30 }, (_, i) => record("t", `k${i}`, `late${i}`)))
      const b = yield* member("g", ["t"])
      const resumed = yield* takeRecords(b.batches, 30)
      assert.deepStrictEqual(resumed.map(valueText).sort(), Array.from({ length: 30 }, (_, i) => `late${i}`).sort())
      assert.isTrue(resumed.every((r) => r.offset >= received.filter((x) => x.partition === r.partition).length))
      assert.deepStrictEqual(
        (yield* kafka.committedOffsets("g", "t")).map((o) => o.offset),
        [0, 1, 2].map((p) => received.filter((r) => r.partition === p).length)
      )
    }).pipe(Effect.provide(MemoryBroker.layerWith({ maxBatchSize: 64 })))
  )

  it.live("two members split the partitions; when one leaves, the other takes all from the commits", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([{ name: "t", partitions: 4 }])
      const scopeA = yield* Scope.make()
      const a = yield* member("g", ["t"]).pipe(Scope.provide(scopeA))
      const b = yield* member("g", ["t"])
      const assignedA = yield* assignmentOf(a.assignments, 2)
      const assignedB = yield* assignmentOf(b.assignments, 2)
      assert.deepStrictEqual([...partitions(assignedA), ...partitions(assignedB)].sort(), [0, 1, 2, 3])
      assert.deepStrictEqual(
        (yield* broker.members("g")).map((m) => partitions(m.assignment)),
        [partitions(assignedA), partitions(assignedB)]
      )

      yield* kafka.send([0, 1, 2, 3].flatMap((p) => [0, 1, 2].map((i) => record("t", null, `p${p}-${i}`, p))))
      const gotA = yield* takeRecords(a.batches, 6)
      const gotB = yield* takeRecords(b.batches, 6)
      assert.deepStrictEqual([...new Set(gotA.map((r) => r.partition))].sort(), partitions(assignedA))
      assert.deepStrictEqual([...new Set(gotB.map((r) => r.partition))].sort(), partitions(assignedB))
      yield* commitAll(a.consumer, gotA)
      yield* commitAll(b.consumer, gotB)

      yield* Scope.close(scopeA, Exit.void)
      const takeover = yield* assignmentOf(b.assignments, 4)
      assert.deepStrictEqual(partitions(takeover), [0, 1, 2, 3])
      assert.strictEqual((yield* broker.members("g")).length, 1)
      const error = yield* commitAll(a.consumer, gotA).pipe(Effect.flip)
      assert.isFalse(error.isRetryable, "a member that left cannot commit")

      yield* kafka.send(partitions(assignedA).map((p) => record("t", null, `after-${p}`, p)))
      const moved = yield* takeRecords(b.batches, 2)
      assert.deepStrictEqual(
        moved.map(valueText).sort(),
        partitions(assignedA).map((p) => `after-${p}`)
      )
      assert.isTrue(
        moved.every((r) => r.offset === 3),
        "continues from the committed offsets"
      )
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("a rebalance waits for in-flight batches; onAssignment runs before the new generation's batches", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 2 }])
      const events: Array<string> = []
      const release = yield* Deferred.make<void>()
      const entered = yield* Deferred.make<void>()
      const join = (name: string, onBatch: Effect.Effect<void>) =>
        kafka.consume(
          { groupId: "g", topics: ["t"] },
          {
            onAssignment: (assignment) =>
              Effect.gen(function* () {
                events.push(`assign ${name} ${partitions(assignment).join(",")}`)
                yield* Effect.sleep("10 millis")
                events.push(`assigned ${name}`)
              }),
            onBatch: (batch) =>
              Effect.gen(function* () {
                events.push(`batch ${name} ${batch.partition}`)
                yield* onBatch
                events.push(`done ${name} ${batch.partition}`)
              })
          }
        )
      yield* join("a", Effect.andThen(Deferred.succeed(entered, undefined), Deferred.await(release)))
      yield* kafka.send([record("t", null, "x", 0)])
      yield* Deferred.await(entered)
      yield* join("b", Effect.void)
      yield* Effect.sleep("30 millis")
      assert.notInclude(events.join("|"), "assign b", "the rebalance waits for a's in-flight batch")

      yield* Deferred.succeed(release, undefined)
      yield* kafka.send([record("t", null, "y", 1)])
      while (!events.some((e) => e.startsWith("batch b"))) yield* Effect.sleep("5 millis")
      // Every event compared must have happened: the ones before "batch b 1" have, if the order is right.
      const at = (e: string) => {
        assert.include(events, e)
        return events.indexOf(e)
      }
      assert.isBelow(at("done a 0"), at("assign b 1"))
      assert.isBelow(at("assigned b"), at("batch b 1"), "b's batches wait for its onAssignment")
      assert.isBelow(events.lastIndexOf("assigned a"), at("batch b 1"), "and for every member's")
      assert.include(events, "assign a 0")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("a member commits its revoked partitions in onAssignment; the new owner starts from there", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 2 }])
      yield* kafka.send([0, 1].flatMap((p) => [0, 1, 2].map((i) => record("t", null, `p${p}-${i}`, p))))
      // Processed but not yet committed, like a runner's completed offsets between two commits.
      const progress = new Map<number, number>()
      const revokeCommit = yield* Deferred.make<Exit.Exit<void, unknown>>()
      let owned: ReadonlyArray<number> = []
      const consumerA = yield* Deferred.make<GroupConsumer>()
      yield* Deferred.succeed(
        consumerA,
        yield* kafka.consume(
          { groupId: "g", topics: ["t"] },
          {
            onBatch: (batch) =>
              Effect.sync(() => {
                for (const r of batch.records) progress.set(r.partition, r.offset + 1)
              }),
            onAssignment: (assignment) =>
              Effect.gen(function* () {
                const now = partitions(assignment)
                const revoked = owned.filter((p) => !now.includes(p))
                owned = now
                if (revoked.length === 0) return
                const consumer = yield* Deferred.await(consumerA)
                const offsets = revoked.map((p) => ({ topic: "t", partition: p, offset: progress.get(p) ?? 0 }))
                yield* Deferred.succeed(revokeCommit, yield* Effect.exit(consumer.commit(offsets)))
              })
          }
        )
      )
      while (progress.get(0) !== 3 || progress.get(1) !== 3) yield* Effect.sleep("2 millis")

      const b = yield* member("g", ["t"])
      const moved = partitions(yield* assignmentOf(b.assignments, 1))
      assert.isTrue(Exit.isSuccess(yield* Deferred.await(revokeCommit)), "a revoked partition is committable then")
      yield* kafka.send([record("t", null, "new", moved[0])])
      const [first] = yield* takeRecords(b.batches, 1)
      assert.strictEqual(first && valueText(first), "new", "nothing committed is delivered again")
      const late = yield* (yield* Deferred.await(consumerA))
        .commit([{ topic: "t", partition: moved[0]!, offset: 3 }])
        .pipe(Effect.flip)
      assert.include(late.reason.message, "not assigned", "after the handoff it is not")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("stop called inside onBatch does not wait for itself", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 2 }])
      const consumer = yield* Deferred.make<GroupConsumer>()
      const stopped = yield* Deferred.make<void>()
      yield* Deferred.succeed(
        consumer,
        yield* kafka.consume(
          { groupId: "g", topics: ["t"] },
          {
            onAssignment: () => Effect.void,
            onBatch: () =>
              Deferred.await(consumer).pipe(
                Effect.flatMap((c) => c.stop),
                Effect.andThen(Deferred.succeed(stopped, undefined))
              )
          }
        )
      )
      yield* kafka.send([record("t", null, "a", 0), record("t", null, "b", 1)])
      yield* Deferred.await(stopped)
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("commit fails for a partition the member does not own", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 2 }])
      const a = yield* member("g", ["t"])
      const b = yield* member("g", ["t"])
      const mine = yield* assignmentOf(a.assignments, 1)
      yield* assignmentOf(b.assignments, 1)
      const other = 1 - mine[0]!.partition
      yield* a.consumer.commit([{ topic: "t", partition: mine[0]!.partition, offset: 0 }])
      const error = yield* a.consumer.commit([{ topic: "t", partition: other, offset: 0 }]).pipe(Effect.flip)
      assert.isFalse(error.isRetryable)
      assert.include(error.reason.message, "not assigned")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("pause stops a partition's delivery, resume continues it", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 2 }])
      const a = yield* member("g", ["t"])
      yield* assignmentOf(a.assignments, 2)
      yield* a.consumer.pause([{ topic: "t", partition: 0 }])
      yield* kafka.send([record("t", null, "held", 0), record("t", null, "flows", 1)])
      const [flowing] = yield* takeRecords(a.batches, 1)
      assert.strictEqual(flowing && valueText(flowing), "flows")
      yield* Effect.sleep("30 millis")
      assert.strictEqual(yield* Queue.size(a.batches), 0, "the paused partition delivers nothing")

      yield* a.consumer.resume([{ topic: "t", partition: 0 }])
      const [held] = yield* takeRecords(a.batches, 1)
      assert.strictEqual(held && valueText(held), "held")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("stop waits for the in-flight batch, delivers nothing more, and commits still work", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "t", partitions: 1 }])
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      let finished = 0
      let delivered = 0
      const consumer = yield* kafka.consume(
        { groupId: "g", topics: ["t"] },
        {
          onAssignment: () => Effect.void,
          onBatch: () =>
            Effect.gen(function* () {
              delivered++
              yield* Deferred.succeed(entered, undefined)
              yield* Deferred.await(release)
              finished++
            })
        }
      )
      yield* kafka.send([record("t", null, "a")])
      yield* Deferred.await(entered)
      const stopping = yield* Effect.forkChild(consumer.stop)
      yield* Effect.sleep("20 millis")
      assert.isUndefined(stopping.pollUnsafe(), "stop waits for the in-flight onBatch")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(stopping)
      assert.strictEqual(finished, 1)

      yield* kafka.send([record("t", null, "b")])
      yield* Effect.sleep("20 millis")
      assert.strictEqual(delivered, 1)
      yield* consumer.commit([{ topic: "t", partition: 0, offset: 1 }])
      assert.deepStrictEqual(yield* kafka.committedOffsets("g", "t"), [{ topic: "t", partition: 0, offset: 1 }])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live("a member whose topic is deleted loses its partitions and gets them back once it is created again", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([{ name: "later", partitions: 1 }])
      const a = yield* member("g", ["later"])
      assert.deepStrictEqual(partitions(yield* assignmentOf(a.assignments, 1)), [0])
      yield* kafka.deleteTopics(["later"])
      assert.deepStrictEqual(yield* assignmentOf(a.assignments, 0), [])
      yield* kafka.send([record("later", "k", "v")])
      assert.deepStrictEqual(partitions(yield* assignmentOf(a.assignments, 1)), [0])
      const [got] = yield* takeRecords(a.batches, 1)
      assert.strictEqual(got && valueText(got), "v")
      yield* commitAll(a.consumer, got ? [got] : [])
      yield* broker.awaitCommitted("g", "later")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.live(
    "read from earliest on a compacted topic gives the latest value per key, tombstones included, then tails",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: "profiles", partitions: 1, config: { "cleanup.policy": "compact" } }])
        yield* kafka.send([
          record("profiles", "k1", "a"),
          record("profiles", "k2", "b"),
          record("profiles", "k1", "c"),
          record("profiles", "k2", null),
          record("profiles", "k3", "d")
        ])
        const batches = yield* Queue.unbounded<RecordBatch>()
        yield* kafka.read({ topics: ["profiles"] }).pipe(
          Stream.runForEach((batch) => Queue.offer(batches, batch)),
          Effect.forkScoped
        )
        const head = yield* takeRecords(batches, 3)
        assert.deepStrictEqual(
          head.map((r) => [keyText(r), valueText(r), r.offset]),
          [
            ["k1", "c", 2],
            ["k2", null, 3],
            ["k3", "d", 4]
          ]
        )

        yield* kafka.send([record("profiles", "k1", "e"), record("profiles", "k1", "f")])
        const tail = yield* takeRecords(batches, 2)
        assert.deepStrictEqual(
          tail.map((r) => [valueText(r), r.offset]),
          [
            ["e", 5],
            ["f", 6]
          ]
        )

        const latest = yield* Queue.unbounded<RecordBatch>()
        yield* kafka.read({ topics: ["profiles"], from: "latest" }).pipe(
          Stream.runForEach((batch) => Queue.offer(latest, batch)),
          Effect.forkScoped
        )
        yield* Effect.sleep("10 millis")
        yield* kafka.send([record("profiles", "k9", "g")])
        assert.deepStrictEqual((yield* takeRecords(latest, 1)).map(valueText), ["g"], "from latest: new records only")

        const keyless = yield* kafka.send([record("profiles", null, "x")]).pipe(Effect.flip)
        assert.include(keyless.reason.message, "without a key")
      }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("failSends makes the next sends fail with the requested KafkaError", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* broker.failSends(2, true)
      for (let i = 0; i < 2; i++) {
        const error = yield* kafka.send([record("t", "k", `lost${i}`)]).pipe(Effect.flip)
        assert.strictEqual(error._tag, "KafkaError")
        assert.isTrue(error.isRetryable)
        assert.strictEqual(error.operation, "send")
      }
      yield* kafka.send([record("t", "k", "kept")])
      yield* broker.failSends(1, false)
      assert.isFalse((yield* kafka.send([record("t", "k", "lost")]).pipe(Effect.flip)).isRetryable)
      assert.deepStrictEqual((yield* broker.records("t")).map(valueText), ["kept"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("topics carry max.message.bytes: from createTopics, else the default, also when auto-created", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([
        { name: "small", partitions: 1, config: { "max.message.bytes": "20000" } },
        { name: "plain", partitions: 1 }
      ])
      yield* kafka.send([record("auto", "k", "v")])
      assert.strictEqual(yield* kafka.maxRecordBytes("small"), 20_000)
      assert.strictEqual(yield* kafka.maxRecordBytes("plain"), defaultMaxMessageBytes)
      assert.strictEqual(yield* kafka.maxRecordBytes("auto"), defaultMaxMessageBytes)
      const invalid = yield* kafka
        .createTopics([{ name: "bad", partitions: 1, config: { "max.message.bytes": "lots" } }])
        .pipe(Effect.flip)
      assert.strictEqual(invalid.reason._tag, "Rejected")
      assert.include(invalid.reason.message, "max.message.bytes")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("a send with a record over its topic's limit fails whole, naming every offending record", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      const limit = 20_000
      yield* kafka.createTopics([{ name: "small", partitions: 2, config: { "max.message.bytes": String(limit) } }])
      const sized = (size: number) =>
        recordOfSize({ topic: "small", key: bytes("k"), headers: { trace: new Uint8Array([0xff, 0xfe, 0x00]) } }, size)
      assert.strictEqual(sizeOf(sized(limit)), limit)
      assert.strictEqual(sizeOf(sized(limit + 1)), limit + 1)

      const [ok] = yield* kafka.send([sized(limit)])
      assert.strictEqual(ok?.offset, 0, "a record of exactly the limit is accepted")

      const error = yield* kafka
        .send([record("small", "a", "fine"), sized(limit + 1), record("other", "b", "fine"), sized(limit + 5)])
        .pipe(Effect.flip)
      assert.strictEqual(error.operation, "send")
      assert.isFalse(error.isRetryable)
      const reason = error.reason
      assert.strictEqual(reason._tag, "MessageTooLarge")
      if (reason._tag !== "MessageTooLarge") return
      assert.deepStrictEqual(reason.records, [1, 3])
      assert.strictEqual(reason.topic, "small")
      assert.strictEqual(reason.size, limit + 1)
      assert.strictEqual(reason.limit, limit)
      assert.include(reason.message, "small")
      assert.include(reason.message, String(limit + 1))
      assert.include(reason.message, String(limit))
      assert.strictEqual((yield* broker.records("small")).length, 1, "nothing of the failed send is appended")
      assert.notInclude(yield* kafka.listTopics, "other", "nor is a topic auto-created for it")

      // An auto-created topic gets the default limit.
      const big = yield* kafka
        .send([{ topic: "new", key: null, value: new Uint8Array(defaultMaxMessageBytes) }])
        .pipe(Effect.flip)
      assert.strictEqual(big.reason._tag, "MessageTooLarge")
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("holdSendsTo holds only the sends that write to those topics", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([
        { name: "slow", partitions: 1 },
        { name: "fast", partitions: 1 }
      ])
      yield* broker.holdSendsTo(["slow"])
      const held = yield* Effect.forkChild(kafka.send([record("fast", null, "f1"), record("slow", null, "s1")]))
      yield* kafka.send([record("fast", null, "f2")])
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow
      assert.strictEqual(yield* broker.heldSends, 1)
      assert.deepStrictEqual((yield* broker.records("fast")).map(valueText), ["f2"])
      assert.strictEqual((yield* broker.records("slow")).length, 0)
      yield* broker.releaseSends
      yield* Fiber.join(held)
      assert.deepStrictEqual((yield* broker.records("fast")).map(valueText), ["f2", "f1"])
      assert.deepStrictEqual((yield* broker.records("slow")).map(valueText), ["s1"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )

  it.effect("holdSends keeps sends waiting, unacknowledged, until releaseSends lets them through in order", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker.MemoryBroker
      yield* kafka.createTopics([{ name: "t", partitions: 1, config: { "max.message.bytes": "100" } }])
      yield* broker.holdSends
      const acked: Array<string> = []
      const sendOne = (value: string) =>
        kafka.send([record("t", null, value)]).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              acked.push(value)
            })
          )
        )
      const fibers = []
      for (const value of ["a", "b", "c"]) {
        fibers.push(yield* Effect.forkChild(sendOne(value)))
        yield* Effect.yieldNow
      }
      const dropped = yield* Effect.forkChild(sendOne("dropped"))
      yield* untilHeld(broker, 4)
      yield* Fiber.interrupt(dropped)
      yield* untilHeld(broker, 3)
      assert.deepStrictEqual(yield* broker.records("t"), [], "nothing is appended while held")
      assert.deepStrictEqual(acked, [], "nothing is acknowledged while held")

      // The size check is the client's: it fails at once, held or not.
      const tooLarge = yield* kafka.send([record("t", null, "x".repeat(100))]).pipe(Effect.flip)
      assert.strictEqual(tooLarge.reason._tag, "MessageTooLarge")
      assert.strictEqual(yield* broker.heldSends, 3)

      yield* broker.releaseSends
      // Sent after the release but before the held ones ran: still after them.
      const late = yield* Effect.forkChild(sendOne("d"))
      const offsets = []
      for (const fiber of [...fibers, late]) offsets.push((yield* Fiber.join(fiber))[0]?.offset)
      assert.deepStrictEqual(offsets, [0, 1, 2, 3])
      assert.sameMembers(acked, ["a", "b", "c", "d"])
      assert.deepStrictEqual((yield* broker.records("t")).map(valueText), ["a", "b", "c", "d"])
      assert.strictEqual(yield* broker.heldSends, 0)

      // Held again: from now on, until released.
      yield* broker.holdSends
      const again = yield* Effect.forkChild(sendOne("e"))
      yield* untilHeld(broker, 1)
      assert.strictEqual((yield* broker.records("t")).length, 4)
      yield* broker.releaseSends
      yield* Fiber.join(again)
      assert.deepStrictEqual((yield* broker.records("t")).map(valueText), ["a", "b", "c", "d", "e"])
    }).pipe(Effect.provide(MemoryBroker.layer))
  )
})
