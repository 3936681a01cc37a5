/**
 * The kafkajs layer's consumer groups on the real broker: Sluice's task assignor (co-partitioned, balanced, sticky)
 * and the JoinGroup barrier (`onRevoke` before every rejoin, so a partition never has two owners at work), with
 * members that are `Kafka.consume` calls in one process.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Queue, Scope } from "effect"
import { type GroupConsumer, Kafka, type KafkaShape } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes, type RecordBatch, type TopicPartition } from "../src/Record.ts"
import { brokers, connectRetry, unique } from "./brokers.ts"

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
        assert.isAtLeast(handoffs, 4, "2 → 3 moves two tasks, 3 → 2 moves two back")
        assert.isAtLeast(revokes.length, 2)
        yield* Effect.logInfo(
          `handoff: ${handled.length} batches, ${handoffs} handoffs, revokes ${revokes.map((r) => `${r.member}:${r.end - r.start}ms`).join(" ")}`
        )
      })
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
