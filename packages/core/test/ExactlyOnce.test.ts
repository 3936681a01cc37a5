/**
 * Exactly-once on the in-memory broker and the test clock: a task's outputs, changelog and input offsets are
 * committed in one transaction, aborted transactions leave nothing visible, a fenced task is retired while the
 * worker goes on, and tasks can start from positions kept outside Kafka.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as Codec from "../src/Codec.ts"
import * as Delivery from "../src/Delivery.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import { settle, stopOnTestClock, wordCount } from "./support/runtime.ts"

const out = Topic.make("out", { key: Codec.nullable(Codec.string), value: Codec.string })
const memory = layerWith({ maxBatchSize: 100 })
const eos: Runner.RunOptions = {
  guarantee: "exactly_once",
  commitInterval: "100 millis",
  commitEveryRecords: 1_000_000
}

/** The outputs a read_committed reader sees: `<task>:<key>=<count>`. */
const outputs = Effect.gen(function* () {
  const broker = yield* MemoryBroker
  return (yield* broker.records("out")).map((r) => text(r.value ?? new Uint8Array()))
})

const topology = wordCount({ topic: out, line: (task, key, n) => `${task}:${key}=${n}` })

const words = (list: ReadonlyArray<string>, partition?: number) =>
  Effect.flatMap(Kafka, (kafka) =>
    kafka.send(
      list.map((w) => ({
        topic: "words",
        key: bytes(w),
        value: null,
        ...(partition === undefined ? {} : { partition })
      }))
    )
  )

const committed = Effect.flatMap(Kafka, (kafka) =>
  Effect.map(kafka.committedOffsets("wc", "words"), (c) => c.reduce((n, x) => n + x.offset, 0))
)

/** Every key's counts in output order are 1, 2, 3, ...: no record counted twice, none skipped. */
const assertExactlyOnce = (lines: ReadonlyArray<string>, truth: ReadonlyMap<string, number>) => {
  const last = new Map<string, number>()
  for (const line of lines) {
    const [, pair] = line.split(":")
    const [key, n] = pair!.split("=")
    const previous = last.get(key!) ?? 0
    assert.strictEqual(Number(n), previous + 1, `${key} counted ${n} after ${previous}: ${lines.join(" ")}`)
    last.set(key!, Number(n))
  }
  assert.deepStrictEqual(new Map([...last].sort()), new Map([...truth].sort()))
}

/** Moves the test clock on in commit intervals until `condition` holds (the commit is due only after processing). */
const untilCommitted = Effect.fnUntraced(function* <E, R>(what: string, condition: Effect.Effect<boolean, E, R>) {
  for (let i = 0; i < 50; i++) {
    if (yield* condition) return
    yield* TestClock.adjust("100 millis")
    for (let j = 0; j < 50; j++) yield* Effect.yieldNow
  }
  return yield* Effect.die(new Error(`never: ${what}`))
})

const tally = (list: ReadonlyArray<string>) => {
  const truth = new Map<string, number>()
  for (const w of list) truth.set(w, (truth.get(w) ?? 0) + 1)
  return truth
}

describe("exactly-once", () => {
  it.effect("outputs, changelog and offsets become visible together, when the transaction commits", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "words", partitions: 2 }])
      const list = ["a", "b", "a", "c", "a", "b", "d", "a"]
      yield* words(list)
      const processed = { n: 0 }
      const counted = Topology.tapBatches(topology, (records) =>
        Effect.sync(() => {
          processed.n += records.length
        })
      )
      const fiber = yield* Effect.forkChild(Runner.run(counted, eos))
      yield* settle(
        "every record processed",
        Effect.sync(() => processed.n === list.length)
      )
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow
      // Processed, but the transaction is not due yet: nothing is visible, nothing committed.
      assert.deepStrictEqual(yield* outputs, [])
      assert.deepStrictEqual(yield* broker.records("wc-counts-changelog"), [])
      assert.strictEqual(yield* committed, 0)
      yield* TestClock.adjust("100 millis")
      yield* settle(
        "8 outputs",
        Effect.map(outputs, (o) => o.length === 8)
      )
      assert.strictEqual(yield* committed, list.length)
      assert.isAtLeast((yield* broker.records("wc-counts-changelog")).length, 4)
      assertExactlyOnce(yield* outputs, tally(list))
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a worker that dies mid-transaction leaves nothing visible; its restart processes every record once", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "words", partitions: 1 }])
      const first = ["a", "b", "a"]
      yield* words(first)
      const fiber = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* untilCommitted(
        "the first transaction",
        Effect.map(outputs, (o) => o.length === 3)
      )
      // The next records are processed into an open transaction; the processor then dies on "boom".
      const processed = { n: 0 }
      const dying = Topology.tapBatches(topology, (records) =>
        records.some((r) => r.key !== null && text(r.key) === "boom")
          ? Effect.die(new Error("processor defect"))
          : Effect.sync(() => {
              processed.n += records.length
            })
      )
      yield* stopOnTestClock(fiber)
      const second = ["b", "c", "a"]
      yield* words(second)
      const crashing = yield* Effect.forkChild(Runner.run(dying, { ...eos, commitInterval: "10 seconds" }))
      yield* settle(
        "the second batch processed (its outputs in the open transaction)",
        Effect.sync(() => processed.n === second.length)
      )
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow
      yield* words(["boom"])
      const exit = yield* Fiber.await(crashing)
      assert.isTrue(exit._tag === "Failure", "the defect stops the worker")
      // Nothing of the open transaction is visible, and no offset past the first transaction is committed.
      assert.strictEqual((yield* outputs).length, 3)
      assert.strictEqual(yield* committed, 3)

      const restarted = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* untilCommitted(
        "every record once",
        Effect.map(outputs, (o) => o.length === 7)
      )
      assertExactlyOnce(yield* outputs, tally([...first, ...second, "boom"]))
      yield* stopOnTestClock(restarted)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a failed transaction is aborted and run again: every output once", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "words", partitions: 2 }])
      const list = ["a", "b", "c", "a", "b", "a"]
      yield* words(list)
      yield* broker.failSends(2, true)
      const fiber = yield* Effect.forkChild(Runner.run(topology, eos))
      for (let i = 0; i < 20 && (yield* outputs).length < list.length; i++) {
        yield* TestClock.adjust("1 second")
        for (let j = 0; j < 50; j++) yield* Effect.yieldNow
      }
      assertExactlyOnce(yield* outputs, tally(list))
      assert.strictEqual(yield* committed, list.length)
      // The failed attempts were written and aborted: a read_uncommitted reader would have seen duplicates.
      const states = (yield* broker.appended("out")).map((r) => r.state)
      assert.isAtLeast(states.filter((s) => s === "aborted").length, 1)
      assert.strictEqual(states.filter((s) => s === "committed").length, list.length)
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a fenced task is retired, the worker goes on; given back, it restarts from its last commit", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "words", partitions: 2 }])
      yield* words(["a", "a"], 0)
      yield* words(["b", "b"], 1)
      const fiber = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* untilCommitted(
        "4 outputs",
        Effect.map(outputs, (o) => o.length === 4)
      )
      // Another producer takes task 0's transactional id: task 0's producer is fenced.
      const zombieKiller = yield* Effect.forkChild(
        Effect.scoped(Effect.andThen(kafka.transactional(Delivery.transactionalId("wc", 0)), Effect.never))
      )
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow
      yield* words(["a"], 0)
      yield* words(["b"], 1)
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("100 millis")
        for (let j = 0; j < 50; j++) yield* Effect.yieldNow
      }
      // Task 1 goes on; task 0's transaction was fenced, so its output never became visible.
      const afterFence = yield* outputs
      assert.include(afterFence, "1:b=3")
      assert.notInclude(afterFence, "0:a=3")
      assert.isUndefined(fiber.pollUnsafe(), "the worker is still running")
      yield* words(["b"], 1)
      yield* untilCommitted(
        "task 1 still processes",
        Effect.map(outputs, (o) => o.includes("1:b=4"))
      )
      yield* Fiber.interrupt(zombieKiller)

      // A rebalance (a member joins, then leaves) gives task 0 back: it restores its state and goes on from its
      // last commit, so "a" is counted once.
      const other = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* settle(
        "two members",
        Effect.map(broker.members("wc"), (m) => m.length === 2 && m.every((x) => x.assignment.length === 1))
      )
      yield* stopOnTestClock(other)
      yield* untilCommitted(
        "task 0 back",
        Effect.map(outputs, (o) => o.includes("0:a=3"))
      )
      assertExactlyOnce(yield* outputs, tally(["a", "a", "a", "b", "b", "b", "b"]))
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("tasks start from the positions the topology keeps outside Kafka", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "words", partitions: 2 }])
      yield* words(["a", "b", "c", "d"], 0)
      yield* words(["e", "f", "g"], 1)
      const asked: Array<number> = []
      const positioned = wordCount(
        { topic: out, line: (task, key, n) => `${task}:${key}=${n}` },
        {
          startOffsets: (task, partitions) =>
            Effect.sync(() => {
              asked.push(task)
              // Task 0 resumes at offset 2 (as if 0 and 1 were written elsewhere); task 1 has no stored position.
              return task === 0 ? partitions.map((tp) => ({ ...tp, offset: 2 })) : []
            })
        }
      )
      for (const options of [{}, eos]) {
        const fiber = yield* Effect.forkChild(Runner.run(positioned, options))
        for (let i = 0; i < 5; i++) {
          yield* TestClock.adjust("100 millis")
          for (let j = 0; j < 50; j++) yield* Effect.yieldNow
        }
        yield* stopOnTestClock(fiber)
      }
      const lines = yield* outputs
      assert.sameMembers(asked, [0, 1, 0, 1])
      // Task 0 never saw "a" or "b"; everything else once per run, in the first run.
      assert.deepStrictEqual(
        lines.filter((l) => l.startsWith("0:")).sort(),
        ["0:c=1", "0:d=1", "0:c=2", "0:d=2"].sort()
      )
      assert.deepStrictEqual(lines.filter((l) => l.startsWith("1:")).sort(), ["1:e=1", "1:f=1", "1:g=1"])
    }).pipe(Effect.provide(memory))
  )
})
