/** Tasks on the in-memory broker: several inputs in timestamp order, timers on the test clock, stores that follow their task. */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import { KafkaError, Timeout } from "../src/Errors.ts"
import { firstStepRecords } from "../src/internal/task.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Store from "../src/Store.ts"
import * as Task from "../src/Task.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import { settle, stopOnTestClock, wordCount } from "./support/runtime.ts"

const out = Topic.make("out", { key: Codec.nullable(Codec.string), value: Codec.string })
const memory = layerWith({ maxBatchSize: 100 })

const outputs = Effect.gen(function* () {
  const broker = yield* MemoryBroker
  return (yield* broker.records("out")).map((r) => text(r.value ?? new Uint8Array()))
})

describe("Task", () => {
  it.effect("a two-input task processes its buffered records in timestamp order", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([
        { name: "clicks", partitions: 1 },
        { name: "views", partitions: 1 }
      ])
      // Interleaved timestamps, each input in order; all there before the task starts.
      yield* kafka.send([1, 4, 5, 9].map((t) => ({ topic: "clicks", key: null, value: bytes(`c${t}`), timestamp: t })))
      yield* kafka.send([2, 3, 6, 7].map((t) => ({ topic: "views", key: null, value: bytes(`v${t}`), timestamp: t })))
      const echo = (topic: string) =>
        Topology.input(Topic.raw(topic), (records, ctx) =>
          Effect.succeed(
            Batch.forEach(records, (r, o) =>
              o.emit(out, null, `${text(r.value ?? new Uint8Array())}@${ctx.input}<=${ctx.streamTime}`)
            )
          )
        )
      const topology = Topology.make({ name: "align", inputs: [echo("clicks"), echo("views")] })
      const fiber = yield* Effect.forkChild(Runner.run(topology))
      yield* settle(
        "8 outputs",
        Effect.map(outputs, (o) => o.length === 8)
      )
      assert.deepStrictEqual(
        (yield* outputs).map((o) => o.split("@")[0]),
        ["c1", "v2", "v3", "c4", "c5", "v6", "v7", "c9"]
      )
      // The context names the input, and stream time is the largest timestamp seen so far.
      assert.include(yield* outputs, "v3@views<=3")
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("an input with nothing buffered holds the other back for at most taskIdle", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([
        { name: "a", partitions: 1 },
        { name: "b", partitions: 1 }
      ])
      const echo = (topic: string) =>
        Topology.input(Topic.raw(topic), (records) =>
          Effect.succeed(Batch.forEach(records, (r, o) => o.emit(out, null, text(r.value ?? new Uint8Array()))))
        )
      const fiber = yield* Effect.forkChild(
        Runner.run(Topology.make({ name: "idle", inputs: [echo("a"), echo("b")] }), { taskIdle: "500 millis" })
      )
      yield* settle(
        "the group assigned the task",
        Effect.map(outputs, () => true)
      )
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow
      // "b" has never been fetched from, so it has not caught up: "a" waits for it.
      yield* kafka.send([{ topic: "a", key: null, value: bytes("a1"), timestamp: 10 }])
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(yield* outputs, [])
      yield* TestClock.adjust("600 millis")
      yield* settle(
        "a1 once the idle time passed",
        Effect.map(outputs, (o) => o.length === 1)
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a step takes at most maxStepRecords, and a task over maxHeldRecords pauses and resumes", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "many", partitions: 1 }])
      const values = Array.from({ length: 250 }, (_, i) => `m${i}`)
      yield* kafka.send(values.map((v) => ({ topic: "many", key: null, value: bytes(v) })))
      const steps: Array<number> = []
      const topology = Topology.make({
        name: "steps",
        inputs: [
          Topology.input(Topic.raw("many"), (records) =>
            Effect.sync(() => {
              steps.push(records.length)
              return Batch.forEach(records, (r, o) => o.emit(out, null, text(r.value ?? new Uint8Array())))
            })
          )
        ]
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { maxStepRecords: 40, maxHeldRecords: 60 }))
      yield* settle(
        "250 outputs",
        Effect.map(outputs, (o) => o.length === 250)
      )
      assert.deepStrictEqual(yield* outputs, values)
      assert.isTrue(
        steps.every((n) => n <= 40),
        `steps of at most 40 records: ${steps.join(",")}`
      )
      assert.strictEqual(
        steps.reduce((a, b) => a + b, 0),
        250
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect(
    "a task's first steps are small and double up to maxStepRecords (a backlog's first outputs go out soon)",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: "backlog", partitions: 1 }])
        const values = Array.from({ length: 4_000 }, (_, i) => `b${i}`)
        yield* kafka.send(values.map((v) => ({ topic: "backlog", key: null, value: bytes(v) })))
        const steps: Array<number> = []
        const topology = Topology.make({
          name: "slow-start",
          inputs: [
            Topology.input(Topic.raw("backlog"), (records) =>
              Effect.sync(() => {
                steps.push(records.length)
                return Batch.forEach(records, (r, o) => o.emit(out, null, text(r.value ?? new Uint8Array())))
              })
            )
          ]
        })
        const fiber = yield* Effect.forkChild(Runner.run(topology, { maxStepRecords: 1_000 }))
        yield* settle(
          "4,000 outputs",
          Effect.map(outputs, (o) => o.length === 4_000)
        )
        assert.deepStrictEqual(yield* outputs, values)
        const bounds = steps.map((_, i) => Math.min(1_000, firstStepRecords * 2 ** i))
        assert.isTrue(
          steps.every((n, i) => n <= bounds[i]!),
          `step i takes at most min(1000, ${firstStepRecords} * 2^i) records: ${steps.join(",")}`
        )
        assert.strictEqual(Math.max(...steps), 1_000, `the steps grow to maxStepRecords: ${steps.join(",")}`)
        yield* stopOnTestClock(fiber)
      }).pipe(Effect.provide(layerWith({ maxBatchSize: 5_000 })))
  )

  it.effect("a wall-clock timer ticks on the test clock, between steps, and its outputs are written", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "in", partitions: 2 }])
      let ticks = 0
      const topology = Topology.make({
        name: "clock",
        input: Topic.raw("in"),
        process: () => Effect.succeed(Batch.empty),
        timers: [
          Task.wallClock("every-10s", "10 seconds", (ctx) =>
            Effect.sync(() => {
              ticks++
              return Batch.emitting((o) => o.emit(out, null, `tick task ${ctx.task}`))
            })
          )
        ]
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology))
      yield* settle(
        "two tasks",
        Effect.map(kafka.committedOffsets("clock", "in"), () => true)
      )
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow
      yield* TestClock.adjust("9 seconds")
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow
      assert.strictEqual(ticks, 0, "not before its first interval")
      yield* TestClock.adjust("1 second")
      yield* settle(
        "a tick per task",
        Effect.map(outputs, (o) => o.length === 2)
      )
      yield* TestClock.adjust("10 seconds")
      yield* settle(
        "a second tick per task",
        Effect.map(outputs, (o) => o.length === 4)
      )
      assert.deepStrictEqual([...new Set(yield* outputs)].sort(), ["tick task 0", "tick task 1"])
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a stream-time timer fires as stream time passes its interval, and ctx.schedule fires once", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "in", partitions: 1 }])
      const topology = Topology.make({
        name: "stream",
        input: Topic.raw("in"),
        process: (records, ctx) =>
          Effect.sync(() => {
            for (const r of records) {
              if (text(r.value ?? new Uint8Array()) === "schedule") ctx.schedule("once", { streamTime: 250 })
            }
            return Batch.empty
          }),
        timers: [
          Task.streamTime("minute", "100 millis", (ctx) =>
            Effect.sync(() => Batch.emitting((o) => o.emit(out, null, `minute@${ctx.streamTime}`)))
          ),
          Task.streamTime("once", undefined, (ctx) =>
            Effect.sync(() => Batch.emitting((o) => o.emit(out, null, `once@${ctx.streamTime}`)))
          )
        ]
      })
      const send = (value: string, timestamp: number) =>
        kafka.send([{ topic: "in", key: null, value: bytes(value), timestamp }])
      const fiber = yield* Effect.forkChild(Runner.run(topology))
      yield* send("schedule", 10)
      yield* settle(
        "the first firing",
        Effect.map(outputs, (o) => o.length === 1)
      )
      yield* send("x", 60)
      yield* send("x", 109)
      for (let i = 0; i < 300; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(yield* outputs, ["minute@10"], "stream time has not moved 100 ms past the last firing")
      yield* send("x", 110)
      yield* settle(
        "the second firing",
        Effect.map(outputs, (o) => o.length === 2)
      )
      yield* send("x", 300)
      yield* settle(
        "the one-shot and the third",
        Effect.map(outputs, (o) => o.length === 4)
      )
      assert.deepStrictEqual((yield* outputs).sort(), ["minute@10", "minute@110", "minute@300", "once@300"])
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a store follows its task: a restarted worker restores it from the changelog", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "words", partitions: 2 }])
      const topology = wordCount({ topic: out, line: (_, key, n) => `${key}=${n}` })
      const words = (list: ReadonlyArray<string>) =>
        kafka.send(list.map((w) => ({ topic: "words", key: bytes(w), value: null })))
      yield* words(["a", "b", "a", "c", "a"])
      const first = yield* Effect.forkChild(Runner.run(topology))
      yield* settle(
        "5 outputs",
        Effect.map(outputs, (o) => o.length === 5)
      )
      yield* TestClock.adjust("1 second")
      yield* settle(
        "committed",
        Effect.map(kafka.committedOffsets("wc", "words"), (c) => c.reduce((n, x) => n + x.offset, 0) === 5)
      )
      yield* stopOnTestClock(first)
      // The changelog holds the counts, partitioned like the input.
      const changelog = yield* (yield* MemoryBroker).records("wc-counts-changelog")
      assert.isAtLeast(changelog.length, 3)

      const second = yield* Effect.forkChild(Runner.run(topology))
      yield* words(["a", "b"])
      yield* settle(
        "7 outputs",
        Effect.map(outputs, (o) => o.length === 7)
      )
      assert.deepStrictEqual((yield* outputs).slice(5).sort(), ["a=4", "b=2"])
      yield* stopOnTestClock(second)
    }).pipe(Effect.provide(memory))
  )

  it.effect(
    "a store's writes are held until the commit: a key goes to the changelog once, and no offset before it",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const broker = yield* MemoryBroker
        yield* kafka.createTopics([{ name: "words", partitions: 1 }])
        const committed = Effect.map(kafka.committedOffsets("wc", "words"), (c) => c.reduce((n, x) => n + x.offset, 0))
        const changelog = broker.records("wc-counts-changelog").pipe(Effect.orElseSucceed(() => []))
        // Periodic commits at 2 s, 4 s, ...; writes are held for half that, 1 s.
        const fiber = yield* Effect.forkChild(
          Runner.run(wordCount({ topic: out, line: (_, key, n) => `${key}=${n}` }), {
            commitInterval: "2 seconds",
            commitEveryRecords: 1_000,
            maxStepRecords: 2
          })
        )
        yield* settle(
          "the group assigned the task",
          Effect.map(outputs, () => true)
        )
        yield* TestClock.adjust("1600 millis")
        // Six steps of two words each: three keys, each written by every step.
        const words = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b", "c"]
        yield* kafka.send(words.map((w) => ({ topic: "words", key: bytes(w), value: null })))
        yield* settle(
          "12 outputs",
          Effect.map(outputs, (o) => o.length === 12)
        )
        assert.lengthOf(yield* changelog, 0)
        // The commit at 2 s comes while the writes are held: it must not carry the offsets of their records.
        yield* TestClock.adjust("400 millis")
        for (let i = 0; i < 200; i++) yield* Effect.yieldNow
        assert.strictEqual(yield* committed, 0)
        // Held since 1.6 s, sent at 2.6 s: one record per key, the last count; committed at 4 s.
        yield* TestClock.adjust("600 millis")
        yield* settle(
          "the changelog",
          Effect.map(changelog, (c) => c.length > 0)
        )
        assert.deepStrictEqual(
          (yield* changelog).map((r) => `${text(r.key!)}=${text(r.value!)}`),
          ["a=4", "b=4", "c=4"]
        )
        yield* TestClock.adjust("1400 millis")
        yield* settle(
          "12 committed",
          Effect.map(committed, (n) => n === 12)
        )
        yield* stopOnTestClock(fiber)
      }).pipe(Effect.provide(memory))
  )

  it.effect("a step retried after a retryable failure starts again from its savepoint: no write counts twice", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "words", partitions: 1 }])
      const counts = Store.make("counts", { key: Codec.string, value: Codec.json(Schema.Int) })
      let attempts = 0
      const topology = Topology.make({
        name: "retried",
        input: Topic.make("words", { key: Codec.string, value: Codec.raw }),
        stores: [counts],
        process: (records, ctx) =>
          Effect.gen(function* () {
            const store = ctx.store(counts)
            const result = Batch.forEach(records, (r, o) => {
              const n = (store.get(r.key) ?? 0) + 1
              store.put(r.key, n)
              o.emit(out, r.key, `${r.key}=${n}`)
            })
            // The first attempt fails after its writes, as a lookup that times out after the state was updated.
            if (attempts++ === 0)
              return yield* new KafkaError({ operation: "lookup", reason: new Timeout({ message: "timed out" }) })
            return result
          })
      })
      yield* kafka.send(["a", "b", "a"].map((w) => ({ topic: "words", key: bytes(w), value: null })))
      const fiber = yield* Effect.forkChild(Runner.run(topology))
      yield* settle(
        "the first attempt",
        Effect.sync(() => attempts === 1)
      )
      // The retry waits on the retry schedule: moved along on the test clock.
      yield* TestClock.adjust("1 second")
      yield* settle(
        "3 outputs",
        Effect.map(outputs, (o) => o.length === 3)
      )
      assert.strictEqual(attempts, 2)
      assert.deepStrictEqual(yield* outputs, ["a=1", "b=1", "a=2"])
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a task that moves to a new member takes its state with it, and its old owner finishes first", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "words", partitions: 4 }])
      const worker = (id: string) => wordCount({ topic: out, line: (task, key, n) => `${id}:${task}:${key}=${n}` })
      const keys = ["a", "b", "c", "d", "e", "f", "g", "h"]
      const words = (rounds: number) =>
        kafka.send(
          Array.from({ length: rounds * keys.length }, (_, i) => ({
            topic: "words",
            key: bytes(keys[i % keys.length]!),
            value: null
          }))
        )
      yield* words(3)
      const a = yield* Effect.forkChild(Runner.run(worker("A")))
      yield* settle(
        "A's 24 outputs",
        Effect.map(outputs, (o) => o.length === 24)
      )
      const b = yield* Effect.forkChild(Runner.run(worker("B")))
      yield* settle(
        "a rebalance to two members",
        Effect.map(broker.members("wc"), (m) => m.length === 2 && m.every((x) => x.assignment.length === 2))
      )
      yield* words(2)
      yield* settle(
        "40 outputs",
        Effect.map(outputs, (o) => o.length === 40)
      )
      const all = yield* outputs
      // Each task's outputs, in order: one owner after the other, never back and forth.
      for (let task = 0; task < 4; task++) {
        const owners = all.filter((o) => o.split(":")[1] === String(task)).map((o) => o.split(":")[0])
        const changes = owners.filter((w, i) => i > 0 && w !== owners[i - 1]).length
        assert.isAtMost(changes, 1, `task ${task}: ${owners.join(",")}`)
      }
      assert.isTrue(
        all.some((o) => o.startsWith("B:")),
        "B took over tasks"
      )
      // Every key was counted 5 times, whoever counted the last ones: the moved stores were restored.
      const last = new Map<string, string>()
      for (const o of all) last.set(o.split(":")[2]!.split("=")[0]!, o.split("=")[1]!)
      assert.deepStrictEqual(Object.fromEntries(last), Object.fromEntries(keys.map((k) => [k, "5"])))
      yield* stopOnTestClock(b)
      yield* stopOnTestClock(a)
    }).pipe(Effect.provide(memory))
  )

  it.effect("inputs with different partition counts are refused at startup, naming the topics and counts", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([
        { name: "six", partitions: 6 },
        { name: "four", partitions: 4 }
      ])
      const none = (topic: string) => Topology.input(Topic.raw(topic), () => Effect.succeed(Batch.empty))
      const exit = yield* Effect.exit(Runner.run(Topology.make({ name: "join", inputs: [none("six"), none("four")] })))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.include(Cause.pretty(exit.cause), "inputs are not co-partitioned: six has 6, four has 4 partitions")
      }
    }).pipe(Effect.provide(memory))
  )
})
