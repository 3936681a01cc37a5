/** Sinks on the in-memory broker and the test clock: rows are written before their offsets are committed. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schedule } from "effect"
import { TestClock } from "effect/testing"
import * as Aggregator from "../src/Aggregator.ts"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import * as DeadLetter from "../src/DeadLetter.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Sink from "../src/Sink.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import * as Window from "../src/Window.ts"
import * as Windows from "../src/Windows.ts"
import { stopOnTestClock } from "./support/runtime.ts"

interface Row {
  readonly offset: number
  readonly partition: number
  readonly value: string
}

const memory = layerWith({ maxBatchSize: 100 })
const events = Topic.make("events", { key: Codec.nullable(Codec.string), value: Codec.string })

const topology = (sink: Sink.Sink<Row>, extra: { readonly startOffsets?: Topology.StartOffsets<never, never> } = {}) =>
  Topology.make({
    name: "to-sink",
    input: events,
    sinks: [sink],
    ...extra,
    process: (records) =>
      Effect.succeed(
        Batch.forEach(records, (r, out) =>
          out.write(sink, { offset: r.record.offset, partition: r.record.partition, value: r.value })
        )
      )
  })

const produce = (values: ReadonlyArray<string>) =>
  Effect.flatMap(Kafka, (kafka) => kafka.send(values.map((v) => ({ topic: "events", key: null, value: bytes(v) }))))

const committed = Effect.flatMap(Kafka, (kafka) =>
  Effect.map(kafka.committedOffsets("to-sink", "events"), (c) => c.reduce((n, x) => n + x.offset, 0))
)

/** Lets `seconds` of test time pass, a second at a time, with the runtime's fibers running in between. */
const pass = Effect.fnUntraced(function* (seconds: number) {
  for (let i = 0; i < seconds; i++) {
    yield* TestClock.adjust("1 second")
    for (let j = 0; j < 50; j++) yield* Effect.yieldNow
  }
})

/** Moves the clock a second at a time until `condition` holds. */
const until = Effect.fnUntraced(function* <E, R>(what: string, condition: Effect.Effect<boolean, E, R>) {
  for (let i = 0; i < 60; i++) {
    if (yield* condition) return
    yield* TestClock.adjust("1 second")
    for (let j = 0; j < 50; j++) yield* Effect.yieldNow
  }
  return yield* Effect.die(new Error(`never: ${what}`))
})

describe("Sink", () => {
  it.effect("an offset is committed only after the rows it caused are written", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "events", partitions: 2 }])
      const collector = Sink.collector<Row>({ batchSize: 1_000 })
      collector.hold()
      yield* produce(["a", "b", "c", "d"])
      const fiber = yield* Effect.forkChild(Runner.run(topology(collector.sink)))
      yield* until(
        "a write waiting",
        Effect.sync(() => collector.held() > 0)
      )
      // Processed, and the commit interval passes, but the rows are not written: nothing is committed.
      yield* pass(5)
      assert.strictEqual(yield* committed, 0)
      assert.strictEqual(collector.rows().length, 0)
      collector.release()
      yield* until(
        "committed",
        Effect.map(committed, (n) => n === 4)
      )
      assert.sameMembers(
        collector.rows().map((r) => r.value),
        ["a", "b", "c", "d"]
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a row refused for good dead-letters its input record with the reason; the others are written", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "events", partitions: 1 }])
      const collector = Sink.collector<Row>({
        refuse: (row) =>
          row.value.length > 3 ? `value too long for type character varying(3): ${row.value}` : undefined
      })
      yield* produce(["ok", "toolong", "yes", "fine"])
      const fiber = yield* Effect.forkChild(Runner.run(topology(collector.sink)))
      yield* until(
        "committed",
        Effect.map(committed, (n) => n === 4)
      )
      assert.deepStrictEqual(
        collector.rows().map((r) => r.value),
        ["ok", "yes"]
      )
      const letters = yield* broker.records("events.dlq")
      assert.deepStrictEqual(
        letters.map((r) => text(r.value ?? new Uint8Array())),
        ["toolong", "fine"]
      )
      const message = text(letters[0]!.headers[DeadLetter.headers.errorMessage]!)
      assert.include(message, "value too long")
      assert.strictEqual(text(letters[0]!.headers[DeadLetter.headers.sourceOffset]!), "1")
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a retryable failure is retried; an outage past the retry bound stops the worker, nothing committed", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "events", partitions: 1 }])
      const collector = Sink.collector<Row>({
        retry: Schedule.spaced("1 second").pipe(Schedule.upTo({ duration: "5 seconds" }))
      })
      collector.failWrites(3, true)
      yield* produce(["a", "b"])
      const fiber = yield* Effect.forkChild(Runner.run(topology(collector.sink)))
      yield* until(
        "written after 3 failures",
        Effect.map(committed, (n) => n === 2)
      )
      assert.deepStrictEqual(
        collector.rows().map((r) => r.value),
        ["a", "b"]
      )
      collector.failWrites(100, true)
      yield* produce(["c"])
      yield* until(
        "the worker stopped",
        Effect.sync(() => fiber.pollUnsafe() !== undefined)
      )
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "SinkError")
      assert.strictEqual(yield* committed, 2, "nothing committed past what was written")
    }).pipe(Effect.provide(memory))
  )

  it.effect("with offsets in the sink, tasks start from the sink's positions", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "events", partitions: 2 }])
      const collector = Sink.collector<Row>({ offsets: true })
      const positioned = topology(collector.sink, {
        startOffsets: (_task, partitions) => Effect.orDie(collector.sink.readOffsets(partitions))
      })
      yield* produce(["a", "b", "c", "d", "e", "f"])
      const first = yield* Effect.forkChild(Runner.run(positioned))
      yield* until(
        "six rows",
        Effect.sync(() => collector.rows().length === 6)
      )
      yield* stopOnTestClock(first)
      const stored = [...collector.offsets().values()].reduce((a, b) => a + b, 0)
      assert.strictEqual(stored, 6, "the sink stored the end offsets with the rows")
      // The group's commits are gone (a new group): the tasks still start where the sink says.
      yield* produce(["g", "h"])
      const second = yield* Effect.forkChild(Runner.run(positioned, { groupId: "fresh-group" }))
      yield* until(
        "eight rows",
        Effect.sync(() => collector.rows().length === 8)
      )
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        for (let j = 0; j < 50; j++) yield* Effect.yieldNow
      }
      assert.deepStrictEqual(
        collector
          .rows()
          .map((r) => r.value)
          .slice(6)
          .sort(),
        ["g", "h"]
      )
      assert.strictEqual(collector.rows().length, 8, "nothing written twice")
      yield* stopOnTestClock(second)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a window's final row is written before the changelog that forgets the window", () => {
    const collector = Sink.collector<{ readonly key: string; readonly start: number; readonly n: number }>({})
    return Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "events", partitions: 1 }])
      // A row with no input record behind it cannot be made again by re-processing once the store says the window
      // is closed: the changelog must wait for the row.
      const windows = Windows.aggregate({
        name: "w",
        windows: Window.tumbling("60 seconds"),
        key: Codec.string,
        aggregator: Aggregator.count,
        result: (out, key, window, n) => out.write(collector.sink, { key, start: window.start, n })
      })
      const timed = Topology.make({
        name: "to-sink",
        input: events,
        sinks: [collector.sink],
        stores: windows.stores,
        process: (records, ctx) =>
          Effect.sync(() => {
            const w = windows.open(ctx)
            const r = Batch.forEach(records, (rec, out) => w.add(out, rec.record, "k", rec.value, Number(rec.value)))
            return Batch.concat([r, w.close()])
          })
      })
      collector.hold()
      yield* produce(["1000", "61000"])
      const fiber = yield* Effect.forkChild(Runner.run(timed))
      yield* until(
        "the final row waiting in the sink",
        Effect.sync(() => collector.held() > 0)
      )
      yield* pass(3)
      assert.lengthOf(yield* broker.records("to-sink-w-changelog"), 0, "no changelog record before the row is written")
      collector.release()
      yield* until(
        "committed",
        Effect.map(committed, (n) => n === 2)
      )
      assert.deepStrictEqual(collector.rows(), [{ key: "k", start: 0, n: 1 }])
      assert.isAbove((yield* broker.records("to-sink-w-changelog")).length, 0)
      yield* stopOnTestClock(fiber)
    }).pipe(
      // A failed assertion must not leave the stop waiting on the held write.
      Effect.ensuring(Effect.sync(() => collector.release())),
      Effect.provide(memory)
    )
  })
})
