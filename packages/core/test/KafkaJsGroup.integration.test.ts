/**
 * The kafkajs layer's consumer groups on the real broker: Sluice's task assignor (co-partitioned, balanced, sticky)
 * and the JoinGroup barrier (`onRevoke` before every rejoin, so a partition never has two owners at work), with
 * members that are `Kafka.consume` calls in one process; and `readPartition`, the group-less read that restores
 * a task's stores.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
// Only for a transactional producer; Sluice's own code never sees kafkajs types.
import { Kafka as KafkaJsClient, logLevel } from "kafkajs"
import { type GroupConsumer, Kafka, type KafkaShape } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes, type RecordBatch, type TopicPartition, text } from "../src/Record.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"

/** Polls `check` every 50 ms until it holds, failing with `what` after `ms`. */
const eventually = (what: string, ms: number, check: () => boolean) =>
  Effect.gen(function* () {
    while (!check()) yield* Effect.sleep("50 millis")
  }).pipe(
    Effect.timeoutOrElse({ duration: Duration.millis(ms), orElse: () => Effect.die(new Error(`timed out: ${what}`)) })
  )

const tpKey = (tp: TopicPartition) => `${tp.topic}:${tp.partition}`

/** The task numbers of an assignment, checking that each is held on every one of `topics`. */
const tasksOf = (assignment: ReadonlyArray<TopicPartition>, topics: ReadonlyArray<string>) => {
  const tasks = [...new Set(assignment.map((tp) => tp.partition))].sort((a, b) => a - b)
  for (const t of tasks) {
    assert.deepStrictEqual(
      assignment
        .filter((tp) => tp.partition === t)
        .map((tp) => tp.topic)
        .sort(),
      [...topics].sort(),
      `task ${t} is partition ${t} of every input`
    )
  }
  assert.strictEqual(assignment.length, tasks.length * topics.length)
  return tasks
}

/** The latest assignment of each member, and a check that the live ones share every partition exactly once. */
const makeAssignments = (topics: ReadonlyArray<string>, partitions: number) => {
  const latest = new Map<string, ReadonlyArray<TopicPartition>>()
  const settled = (members: ReadonlyArray<string>) => {
    const seen = new Set<string>()
    for (const m of members) {
      const assignment = latest.get(m)
      if (assignment === undefined || assignment.length === 0) return false
      for (const tp of assignment) {
        if (seen.has(tpKey(tp))) return false
        seen.add(tpKey(tp))
      }
    }
    return seen.size === topics.length * partitions
  }
  return { latest, settled }
}

const moved = (
  before: ReadonlyMap<string, ReadonlyArray<number>>,
  after: ReadonlyMap<string, ReadonlyArray<number>>
) => {
  let n = 0
  for (const [member, tasks] of after) for (const t of tasks) if (!(before.get(member) ?? []).includes(t)) n++
  return n
}

layer(KafkaJs.layer({ brokers, clientId: "sluice-kafkajs-group-test", connectRetry }), {
  excludeTestServices: true,
  timeout: "120 seconds"
})("KafkaJs groups (real broker)", (it) => {
  it.effect("3 inputs × 6 partitions over 1, 2, 3 and 2 members: co-partitioned, balanced, sticky", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topics = ["a", "b", "c"].map((t) => unique(`sluice-kafkajs-tasks-${t}`))
      const groupId = unique("sluice-kafkajs-tasks")
      yield* kafka.createTopics(topics.map((name) => ({ name, partitions: 6 })))
      const { latest, settled } = makeAssignments(topics, 6)
      const join = (member: string) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          yield* kafka
            .consume(
              { groupId, topics, sessionTimeoutMs: 6000 },
              {
                onBatch: () => Effect.void,
                onAssignment: (assignment) =>
                  Effect.sync(() => {
                    latest.set(member, assignment)
                  })
              }
            )
            .pipe(Scope.provide(scope))
          return scope
        })
      const plan = (members: ReadonlyArray<string>) =>
        new Map(members.map((m) => [m, tasksOf(latest.get(m) ?? [], topics)]))

      const a = yield* join("a")
      yield* eventually("one member holds everything", 30_000, () => settled(["a"]))
      assert.deepStrictEqual(plan(["a"]).get("a"), [0, 1, 2, 3, 4, 5])

      const b = yield* join("b")
      yield* eventually("two members share the tasks", 30_000, () => settled(["a", "b"]))
      const two = plan(["a", "b"])
      assert.deepStrictEqual(
        [...two.values()].map((t) => t.length),
        [3, 3]
      )
      assert.strictEqual(moved(new Map([["a", [0, 1, 2, 3, 4, 5]]]), two), 3, "b takes 3 tasks, a keeps 3")

      const c = yield* join("c")
      yield* eventually("three members share the tasks", 30_000, () => settled(["a", "b", "c"]))
      const three = plan(["a", "b", "c"])
      assert.deepStrictEqual(
        [...three.values()].map((t) => t.length),
        [2, 2, 2]
      )
      assert.strictEqual(moved(two, three), 2, "the new member takes one task from each, nothing else moves")

      yield* Scope.close(c, Exit.void)
      yield* eventually("two members again", 30_000, () => settled(["a", "b"]))
      const back = plan(["a", "b"])
      assert.deepStrictEqual(
        [...back.values()].map((t) => t.length),
        [3, 3]
      )
      assert.strictEqual(moved(three, back), 2, "only the departed member's tasks move")
      for (const m of ["a", "b"]) {
        for (const t of three.get(m)!) assert.include(back.get(m)!, t, `${m} keeps task ${t}`)
      }
      yield* Effect.logInfo(
        `assignments: 1 → ${JSON.stringify(Object.fromEntries(two))} → ${JSON.stringify(Object.fromEntries(three))} → ${JSON.stringify(Object.fromEntries(back))}`
      )
      yield* Scope.close(b, Exit.void)
      yield* Scope.close(a, Exit.void)
    })
  )

  it.effect("inputs with different partition counts fail the member with a KafkaError naming topics and counts", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const six = unique("sluice-kafkajs-six")
      const three = unique("sluice-kafkajs-three")
      yield* kafka.createTopics([
        { name: six, partitions: 6 },
        { name: three, partitions: 3 }
      ])
      const consumer = yield* kafka.consume(
        { groupId: unique("sluice-kafkajs-mismatch"), topics: [six, three], sessionTimeoutMs: 6000 },
        { onBatch: () => Effect.void, onAssignment: () => Effect.void }
      )
      const error = yield* consumer.failed.pipe(Effect.flip, Effect.timeout("30 seconds"))
      assert.strictEqual(error.reason._tag, "Rejected")
      assert.isFalse(error.isRetryable)
      assert.include(error.message, "not co-partitioned")
      assert.include(error.message, `${six} has 6`)
      assert.include(error.message, `${three} has 3`)
    }).pipe(Effect.scoped)
  )

  it.effect(
    "one owner at a time: with records flowing, a partition's old owner finishes (onRevoke) before its new owner starts",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-handoff")
        const groupId = unique("sluice-kafkajs-handoff")
        const partitions = 6
        yield* kafka.createTopics([{ name: topic, partitions }])
        const handled: Array<{ member: string; partition: number; start: number; end: number; records: number }> = []
        const revokes: Array<{ member: string; start: number; end: number }> = []

        // Records keep flowing to every partition for the whole test.
        const producing = yield* Effect.forkChild(
          Effect.forever(
            kafka
              .send(
                Array.from({ length: 60 }, (_, i) => ({
                  topic,
                  partition: i % partitions,
                  key: null,
                  value: bytes(`v${i}`)
                }))
              )
              .pipe(Effect.andThen(Effect.sleep("20 millis")))
          )
        )

        const members = new Map<string, { scope: Scope.Closeable; stop: Effect.Effect<void> }>()
        const join = (member: string) => member_(kafka, groupId, topic, partitions, member, handled, revokes)
        for (const m of ["a", "b"]) members.set(m, yield* join(m))
        yield* eventually("both members work", 60_000, () =>
          ["a", "b"].every((m) => handled.some((h) => h.member === m))
        )
        yield* Effect.sleep("2 seconds")
        members.set("c", yield* join("c"))
        yield* eventually("the new member works", 60_000, () => handled.some((h) => h.member === "c"))
        yield* Effect.sleep("3 seconds")
        // And back to two: the departing member drains and commits before it leaves, as the runner does.
        yield* members.get("c")!.stop
        yield* Effect.sleep("4 seconds")
        yield* Fiber.interrupt(producing)
        for (const m of ["a", "b"]) yield* members.get(m)!.stop

        // For each partition: the batches in order of their start, and every change of owner.
        let handoffs = 0
        for (let p = 0; p < partitions; p++) {
          const mine = handled.filter((h) => h.partition === p).sort((x, y) => x.start - y.start)
          for (let i = 1; i < mine.length; i++) {
            const next = mine[i]!
            const before = mine.slice(0, i).filter((h) => h.member !== next.member)
            if (before.length === 0 || mine[i - 1]!.member === next.member) continue
            handoffs++
            const old = mine[i - 1]!
            const lastEnd = Math.max(...before.map((h) => h.end))
            assert.isAtMost(
              lastEnd,
              next.start,
              `partition ${p}: ${next.member} started at ${next.start}, while ${old.member} handled it until ${lastEnd}`
            )
            // The old owner's revoke (its drain and commit) ended before the new owner started.
            const revoke = revokes
              .filter((r) => r.member === old.member && r.end >= old.end)
              .sort((x, y) => x.end - y.end)
              .at(0)
            if (revoke !== undefined) {
              assert.isAtMost(
                revoke.end,
                next.start,
                `partition ${p}: ${old.member}'s onRevoke ended after ${next.member} started`
              )
            }
          }
        }
        const owners = Array.from({ length: partitions }, (_, p) =>
          handled
            .filter((h) => h.partition === p)
            .sort((x, y) => x.start - y.start)
            .map((h) => h.member)
            .filter((m, i, all) => i === 0 || all[i - 1] !== m)
            .join(">")
        )
        assert.isAtLeast(handoffs, 4, "2 → 3 moves two tasks, 3 → 2 moves two back")
        assert.isAtLeast(revokes.length, 2)
        yield* Effect.logInfo(
          `handoff: ${handled.length} batches, ${handoffs} handoffs (owners per partition: ${owners.join(" ")}), revokes ${revokes.map((r) => `${r.member}:${r.end - r.start}ms`).join(" ")}`
        )
      })
  )

  it.effect(
    "a revoke longer than the session timeout: the member heartbeats, stays in its group, commits at the end, and its partitions wait for it",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-slow-revoke")
        const groupId = unique("sluice-kafkajs-slow-revoke")
        yield* kafka.createTopics([{ name: topic, partitions: 4 }])
        yield* kafka.send(
          Array.from({ length: 40 }, (_, i) => ({ topic, partition: i % 4, key: null, value: bytes(`${i}`) }))
        )
        const sessionTimeoutMs = 6000
        const next = new Map<number, number>()
        const ready = yield* Deferred.make<GroupConsumer>()
        let revoked: { start: number; end: number; committed: string } | undefined
        const first = yield* Scope.make()
        const a = yield* kafka
          .consume(
            { groupId, topics: [topic], sessionTimeoutMs },
            {
              onBatch: (batch) =>
                Effect.sync(() => {
                  next.set(batch.partition, batch.records.at(-1)!.offset + 1)
                }),
              onAssignment: () => Effect.void,
              // Longer than the session: without heartbeats the group would drop the member meanwhile.
              onRevoke: Effect.gen(function* () {
                const start = Date.now()
                yield* Effect.sleep(Duration.millis(sessionTimeoutMs + 3000))
                const consumer = yield* Deferred.await(ready)
                const exit = yield* Effect.exit(
                  consumer.commit([...next].map(([partition, offset]) => ({ topic, partition, offset })))
                )
                revoked ??= {
                  start,
                  end: Date.now(),
                  committed: Exit.isSuccess(exit) ? "ok" : String(exit.cause)
                }
              })
            }
          )
          .pipe(Scope.provide(first))
        yield* Deferred.succeed(ready, a)
        yield* eventually("the first member has read everything", 30_000, () => next.size === 4)

        let secondAssigned: { at: number; partitions: number } | undefined
        yield* kafka.consume(
          { groupId, topics: [topic], sessionTimeoutMs },
          {
            onBatch: () => Effect.void,
            onAssignment: (assignment) =>
              Effect.sync(() => {
                if (assignment.length > 0) secondAssigned ??= { at: Date.now(), partitions: assignment.length }
              })
          }
        )
        yield* eventually("the second member gets its share", 60_000, () => secondAssigned !== undefined)
        assert.isDefined(revoked, "the second member got partitions while the first was still revoking them")
        assert.strictEqual(revoked!.committed, "ok", "the commit at the end of the long revoke is accepted")
        assert.isAtLeast(revoked!.end - revoked!.start, sessionTimeoutMs + 3000)
        assert.isAbove(secondAssigned!.at, revoked!.end, "nobody got a partition before the revoke ended")
        assert.strictEqual(secondAssigned!.partitions, 2, "the first member stayed in the group and kept half")
        const committed = yield* kafka.committedOffsets(groupId, topic)
        assert.deepStrictEqual(
          committed.map((c) => c.offset),
          [10, 10, 10, 10]
        )
        yield* Scope.close(first, Exit.void)
      }).pipe(Effect.scoped)
  )

  it.effect(
    "seek after the assignment: a batch fetched before it is not delivered; a seek back re-delivers, one forward skips",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-seek")
        const groupId = unique("sluice-kafkajs-seek")
        yield* kafka.createTopics([{ name: topic, partitions: 1 }])
        const produce = (from: number, to: number) =>
          kafka.send(
            Array.from({ length: to - from }, (_, i) => ({
              topic,
              partition: 0,
              key: null,
              value: bytes(`v${from + i}`)
            }))
          )
        const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)
        yield* produce(0, 10)
        const delivered: Array<number> = []
        const assigned = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const tp = { topic, partition: 0 }
        const consumer = yield* kafka.consume(
          { groupId, topics: [topic], sessionTimeoutMs: 6000 },
          {
            onBatch: (batch) =>
              Effect.sync(() => {
                for (const r of batch.records) delivered.push(r.offset)
              }),
            // Holds the generation's first batch back, as a task does while it restores its stores.
            onAssignment: (assignment) =>
              assignment.length === 0
                ? Effect.void
                : Deferred.succeed(assigned, undefined).pipe(Effect.andThen(Deferred.await(release)))
          }
        )
        yield* Deferred.await(assigned)
        // Meanwhile kafkajs fetches the partition from offset 0; that batch waits for the assignment to be handled.
        yield* Effect.sleep("1 second")
        yield* consumer.seek([{ ...tp, offset: 6 }])
        yield* Deferred.succeed(release, undefined)
        yield* eventually("delivered up to offset 9", 30_000, () => delivered.includes(9))
        assert.deepStrictEqual(delivered, range(6, 10), "the batch fetched from 0 before the seek is dropped")

        delivered.length = 0
        yield* consumer.seek([{ ...tp, offset: 2 }])
        yield* eventually("re-delivered up to offset 9", 30_000, () => delivered.includes(9))
        assert.deepStrictEqual(delivered, range(2, 10))

        // Forwards, past records the member has not fetched yet: paused while they are produced.
        yield* consumer.pause([tp])
        yield* produce(10, 20)
        delivered.length = 0
        yield* consumer.seek([{ ...tp, offset: 15 }])
        yield* consumer.resume([tp])
        yield* eventually("delivered up to offset 19", 30_000, () => delivered.includes(19))
        assert.deepStrictEqual(delivered, range(15, 20))
      }).pipe(Effect.scoped)
  )
})

/**
 * A member that works like the runner's tasks: `onBatch` hands the batch to the partition's worker (a mailbox of
 * 4) and returns; the worker takes 100 ms per batch and commits it. `onRevoke` waits until every worker is idle and
 * commits; `stop` stops fetching, waits the same way, then leaves.
 */
const member_ = (
  kafka: KafkaShape,
  groupId: string,
  topic: string,
  partitions: number,
  member: string,
  handled: Array<{ member: string; partition: number; start: number; end: number; records: number }>,
  revokes: Array<{ member: string; start: number; end: number }>
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const ready = yield* Deferred.make<GroupConsumer>()
    const mailboxes = yield* Effect.forEach(Array.from({ length: partitions }), () => Queue.bounded<RecordBatch>(4))
    let busy = 0
    const idle = Effect.gen(function* () {
      while (busy > 0 || mailboxes.some((q) => Queue.sizeUnsafe(q) > 0)) yield* Effect.sleep("5 millis")
    })
    for (const mailbox of mailboxes) {
      yield* Effect.forkIn(
        Effect.forever(
          Effect.gen(function* () {
            const batch = yield* Queue.take(mailbox)
            busy++
            const start = Date.now()
            yield* Effect.sleep("100 millis")
            handled.push({ member, partition: batch.partition, start, end: Date.now(), records: batch.records.length })
            const consumer = yield* Deferred.await(ready)
            yield* consumer
              .commit([{ topic, partition: batch.partition, offset: batch.records.at(-1)!.offset + 1 }])
              .pipe(Effect.ignore)
            busy--
          })
        ),
        scope
      )
    }
    const consumer = yield* kafka
      .consume(
        { groupId, topics: [topic], sessionTimeoutMs: 6000 },
        {
          onBatch: (batch) => Queue.offer(mailboxes[batch.partition]!, batch).pipe(Effect.asVoid),
          onAssignment: () => Effect.void,
          onRevoke: Effect.gen(function* () {
            const start = Date.now()
            yield* idle
            revokes.push({ member, start, end: Date.now() })
          })
        }
      )
      .pipe(Scope.provide(scope))
    yield* Deferred.succeed(ready, consumer)
    return {
      scope,
      stop: Effect.gen(function* () {
        yield* consumer.stop
        yield* idle
        yield* Scope.close(scope, Exit.void)
      })
    }
  })

/** Every batch of a read of one partition, failing after 60 s. */
const readAll = (kafka: KafkaShape, topic: string, partition: number, from: number) =>
  kafka.readPartition({ topic, partition, from }).pipe(Stream.runCollect, Effect.timeout("60 seconds"))

/** Where the read says it got to: the last batch's lastOffset, else its last record's offset. */
const reached = (batches: ReadonlyArray<RecordBatch>) => {
  const last = batches.at(-1)
  return last === undefined ? undefined : (last.lastOffset ?? last.records.at(-1)?.offset)
}

const offsetsOf = (batches: ReadonlyArray<RecordBatch>) => batches.flatMap((b) => b.records.map((r) => r.offset))

layer(KafkaJs.layer({ brokers, clientId: "sluice-kafkajs-partition-test", connectRetry }), {
  excludeTestServices: true,
  timeout: "180 seconds"
})("KafkaJs readPartition (real broker)", (it) => {
  it.effect("reads one partition from 0, from the middle and from the end, then ends", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-partition")
      yield* kafka.createTopics([{ name: topic, partitions: 3 }])
      yield* kafka.send(
        Array.from({ length: 3000 }, (_, i) => ({ topic, partition: i % 3, key: bytes(`k${i}`), value: bytes(`${i}`) }))
      )
      const all = yield* readAll(kafka, topic, 1, 0)
      assert.isTrue(
        all.every((b) => b.topic === topic && b.partition === 1),
        "only the partition asked for"
      )
      const records = all.flatMap((b) => b.records)
      assert.deepStrictEqual(
        records.map((r) => r.offset),
        Array.from({ length: 1000 }, (_, i) => i)
      )
      assert.deepStrictEqual(
        records.map((r) => Number(text(r.value!))),
        Array.from({ length: 1000 }, (_, i) => 3 * i + 1)
      )
      assert.strictEqual(reached(all), 999)

      const middle = yield* readAll(kafka, topic, 1, 500)
      assert.deepStrictEqual(
        offsetsOf(middle),
        Array.from({ length: 500 }, (_, i) => 500 + i)
      )
      // The end is taken when the read starts: what is produced afterwards is not read.
      const started = yield* kafka.readPartition({ topic, partition: 1, from: 990 }).pipe(
        Stream.tap(() => kafka.send([{ topic, partition: 1, key: null, value: bytes("late") }])),
        Stream.runCollect
      )
      assert.deepStrictEqual(
        offsetsOf(started),
        Array.from({ length: 10 }, (_, i) => 990 + i)
      )
      const end = (yield* kafka.offsets(topic)).find((p) => p.partition === 1)!.high
      assert.deepStrictEqual(yield* readAll(kafka, topic, 1, end), [], "from the end: nothing")
      assert.deepStrictEqual(yield* readAll(kafka, topic, 1, end + 100), [], "past the end: nothing")
      assert.deepStrictEqual(
        yield* readAll(kafka, topic, 2, 0).pipe(
          Effect.map(offsetsOf),
          Effect.map((o) => o.length)
        ),
        1000
      )
    })
  )

  it.effect("a missing topic fails at once with UnknownTopic; a partition out of range says so", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const missing = unique("sluice-kafkajs-missing")
      const started = Date.now()
      const error = yield* readAll(kafka, missing, 0, 0).pipe(Effect.flip)
      assert.strictEqual(error._tag === "KafkaError" ? error.reason._tag : error._tag, "UnknownTopic")
      assert.include(error.message, `topic ${missing} does not exist`)
      assert.isBelow(Date.now() - started, 3000, "no retries for a missing topic")

      const topic = unique("sluice-kafkajs-range")
      yield* kafka.createTopics([{ name: topic, partitions: 3 }])
      for (const partition of [3, -1]) {
        const outOfRange = yield* readAll(kafka, topic, partition, 0).pipe(Effect.flip)
        assert.strictEqual(outOfRange._tag === "KafkaError" ? outOfRange.reason._tag : outOfRange._tag, "Rejected")
        assert.include(outOfRange.message, `partition ${partition} out of range for topic ${topic}`)
        assert.include(outOfRange.message, "3 partitions")
      }
    })
  )

  it.effect("a compacted partition with gaps: every surviving record, and the read reaches the end", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-compacted")
      yield* kafka.createTopics([
        {
          name: topic,
          partitions: 1,
          config: {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
            "min.compaction.lag.ms": "0"
          }
        }
      ])
      // 10 keys written 50 times each; rolling segments keep coming so the cleaner has closed ones to compact.
      let round = 0
      const write = Effect.suspend(() => {
        round++
        return kafka.send(
          Array.from({ length: 10 }, (_, k) => ({ topic, partition: 0, key: bytes(`k${k}`), value: bytes(`${round}`) }))
        )
      })
      for (let i = 0; i < 50; i++) yield* write
      let batches: ReadonlyArray<RecordBatch> = []
      const deadline = Date.now() + 90_000
      while (Date.now() < deadline) {
        yield* Effect.sleep("1 second")
        yield* write
        batches = yield* readAll(kafka, topic, 0, 0)
        const offsets = offsetsOf(batches)
        if (offsets.length < (offsets.at(-1) ?? 0) + 1 - 100) break
      }
      const offsets = offsetsOf(batches)
      const end = (yield* kafka.offsets(topic))[0]!.high
      assert.isBelow(offsets.length, end - 100, "the cleaner left gaps")
      assert.deepStrictEqual(
        offsets,
        [...offsets].sort((a, b) => a - b),
        "in offset order"
      )
      assert.strictEqual(new Set(offsets).size, offsets.length, "no duplicates")
      assert.isAtLeast(reached(batches)!, offsets.at(-1)!, "the read reaches its last record")
      // Every key's latest value as of the read's end is there.
      const latest = new Map<string, string>()
      for (const r of batches.flatMap((b) => b.records)) latest.set(text(r.key!), text(r.value!))
      assert.strictEqual(latest.size, 10)
      // From the middle of a gap: the read starts at the next surviving record.
      const gap = offsets.findIndex((o, i) => i > 0 && o > offsets[i - 1]! + 1)
      if (gap > 0) {
        const inGap = offsets[gap - 1]! + 1
        const fromGap = offsetsOf(yield* readAll(kafka, topic, 0, inGap))
        assert.strictEqual(fromGap[0], offsets[gap])
      }
      yield* Effect.logInfo(`compacted: ${offsets.length} records survive of ${end} offsets`)
    })
  )

  it.effect(
    "transactions: aborted records are skipped, and a partition ending in a commit marker is read to its end",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-txn")
        yield* kafka.createTopics([{ name: topic, partitions: 2 }])
        const client = new KafkaJsClient({
          brokers: [...brokers],
          clientId: "sluice-txn-test",
          logLevel: logLevel.NOTHING
        })
        const producer = client.producer({
          transactionalId: unique("sluice-txn"),
          idempotent: true,
          maxInFlightRequests: 1
        })
        yield* Effect.acquireRelease(
          Effect.promise(() => producer.connect()),
          () => Effect.promise(() => producer.disconnect())
        )
        const transaction = (values: ReadonlyArray<string>, outcome: "commit" | "abort") =>
          Effect.promise(async () => {
            const txn = await producer.transaction()
            await txn.send({ topic, messages: values.map((value) => ({ partition: 0, key: value, value })) })
            await (outcome === "commit" ? txn.commit() : txn.abort())
          })
        yield* transaction(["c1", "c2", "c3"], "commit")
        yield* transaction(["a1", "a2"], "abort")
        yield* transaction(["c4", "c5"], "commit")
        // Offsets: c1 c2 c3 marker a1 a2 marker c4 c5 marker → the end is 10 and the last offset a marker.
        const end = (yield* kafka.offsets(topic)).find((p) => p.partition === 0)!.high
        assert.strictEqual(end, 10)
        const batches = yield* readAll(kafka, topic, 0, 0)
        assert.deepStrictEqual(
          batches.flatMap((b) => b.records.map((r) => text(r.value!))),
          ["c1", "c2", "c3", "c4", "c5"]
        )
        assert.deepStrictEqual(offsetsOf(batches), [0, 1, 2, 7, 8])
        assert.strictEqual(reached(batches), 9, "the last batch covers the final commit marker")
        // From inside the aborted transaction: only what was committed after it.
        assert.deepStrictEqual(offsetsOf(yield* readAll(kafka, topic, 0, 4)), [7, 8])
        // From the final marker: nothing to deliver, and nothing to wait for.
        const fromMarker = yield* readAll(kafka, topic, 0, 9)
        assert.deepStrictEqual(offsetsOf(fromMarker), [])
        assert.strictEqual(reached(fromMarker), 9)
      }).pipe(Effect.scoped)
  )

  it.effect(
    "reading 200,000 records of one partition of a 6-partition topic reads only that partition (timed against a read of the topic)",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-restore")
        const perPartition = 200_000
        yield* kafka.createTopics([{ name: topic, partitions: 6 }])
        const value = bytes("x".repeat(64))
        const producedAt = Date.now()
        for (let p = 0; p < 6; p++) {
          for (let i = 0; i < perPartition; i += 10_000) {
            yield* kafka.send(
              Array.from({ length: 10_000 }, (_, j) => ({ topic, partition: p, key: bytes(`k${i + j}`), value }))
            )
          }
        }
        const produceMs = Date.now() - producedAt

        // The best of two reads, so that a moment of load on the shared broker does not decide the comparison.
        let partitionMs = Number.POSITIVE_INFINITY
        let seen = 0
        for (let round = 0; round < 2; round++) {
          const started = Date.now()
          let records = 0
          seen = 0
          yield* kafka.readPartition({ topic, partition: 3, from: 0 }).pipe(
            Stream.runForEach((batch) =>
              Effect.sync(() => {
                records += batch.records.length
                if (batch.partition === 3) seen++
              })
            )
          )
          partitionMs = Math.min(partitionMs, Date.now() - started)
          assert.strictEqual(records, perPartition)
        }

        // The same records through a read of the whole topic, as a group consumer (or the old fallback) gets them.
        const started = Date.now()
        let topicRecords = 0
        yield* kafka.read({ topics: [topic] }).pipe(
          Stream.takeUntil((batch) => {
            topicRecords += batch.records.length
            return topicRecords >= 6 * perPartition
          }),
          Stream.runDrain
        )
        const topicMs = Date.now() - started
        yield* Effect.logInfo(
          `restore read: ${perPartition} records of one partition in ${partitionMs} ms ` +
            `(${Math.round(perPartition / (partitionMs / 1000))} records/s, ${seen} batches); the whole topic ` +
            `(${6 * perPartition}) in ${topicMs} ms; produced in ${produceMs} ms`
        )
        assert.isBelow(partitionMs, topicMs / 2, "one partition of six reads in well under the time of the topic")
      })
  )
})
