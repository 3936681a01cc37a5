/** The runner's failure and shutdown paths, on the in-memory broker. */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Metric, Schema } from "effect"
import { SqlError } from "effect/sql"
import { TestClock } from "effect/testing"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import * as DeadLetter from "../src/DeadLetter.ts"
import { KafkaError, Unavailable } from "../src/Errors.ts"
import * as Health from "../src/Health.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker, layer as memoryBroker } from "../src/MemoryBroker.ts"
import * as Metrics from "../src/Metrics.ts"
import { bytes, header, sizeOf, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import { captureLogs } from "./support/captureLogs.ts"
import { settle } from "./support/runtime.ts"

const input = Topic.raw("in")
const output = Topic.raw("out")

const setup = Effect.gen(function* () {
  const kafka = yield* Kafka
  yield* kafka.createTopics([{ name: "in", partitions: 1 }])
  yield* kafka.send([1, 2, 3].map((i) => ({ topic: "in", key: bytes(`k${i}`), value: bytes(`v${i}`) })))
})

describe("Runner", () => {
  it.effect("a defect in a processor fails the worker instead of stalling its partition", () =>
    Effect.gen(function* () {
      yield* setup
      const topology = Topology.make({
        name: "defect",
        input,
        process: () =>
          Effect.sync((): Batch.BatchResult => {
            throw new RangeError("bug in the topology")
          })
      })
      const exit = yield* Runner.run(topology).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isTrue(Cause.hasDies(exit.cause), `expected the defect, got ${Cause.pretty(exit.cause)}`)
      }
    }).pipe(Effect.provide(memoryBroker))
  )

  // Live clock on purpose: the bound is on the wall-clock time the stop takes.
  it.live("shutdown stays within its bound while a partition is stuck retrying an outage", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "in", partitions: 1 }])
      yield* kafka.send(Array.from({ length: 20 }, (_, i) => ({ topic: "in", key: null, value: bytes(`v${i}`) })))
      const topology = Topology.make({
        name: "stuck",
        input,
        outputs: [{ name: "out", partitions: 1 }],
        process: () =>
          Effect.fail(new KafkaError({ operation: "send", reason: new Unavailable({ message: "broker unavailable" }) }))
      })
      // One record per batch and a mailbox of one: the fetcher ends up parked in `offer` behind the stuck actor.
      const fiber = yield* Effect.forkChild(Runner.run(topology, { shutdownTimeout: "1 second", mailboxCapacity: 1 }))
      yield* Effect.sleep("300 millis")
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      const took = Date.now() - started
      assert.isBelow(took, 2_500, `shutdown took ${took} ms`)
      // The stuck batch was abandoned, not committed: all 20 records are re-delivered to the next owner.
      assert.deepStrictEqual(yield* kafka.committedOffsets("stuck", "in"), [])
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 1 })))
  )

  it.effect("records are processed once per partition in a clean run, with outputs in order", () =>
    Effect.gen(function* () {
      yield* setup
      const topology = Topology.make({
        name: "copy",
        input,
        outputs: [{ name: "out", partitions: 1 }],
        process: (records) => Effect.succeed(Batch.forEach(records, (r, out) => out.emit(output, r.key, r.value)))
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { commitEveryRecords: 1 }))
      const broker = yield* MemoryBroker
      yield* broker.awaitCommitted("copy", "in")
      yield* Fiber.interrupt(fiber)
      const out = yield* broker.records("out")
      assert.deepStrictEqual(
        out.map((r) => new TextDecoder().decode(r.value ?? new Uint8Array())),
        ["v1", "v2", "v3"]
      )
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("an output over its topic's limit dead-letters its input record, and the other records go on", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "in", partitions: 1 }])
      // "big" is a small input whose output is 1.1 MB, over the 1,048,588-byte default limit of "out".
      const values = ["a", "big", "b", "c"]
      yield* kafka.send(values.map((v) => ({ topic: "in", key: bytes(v), value: bytes(v) })))
      const topology = Topology.make({
        name: "enlarge",
        input,
        outputs: [{ name: "out", partitions: 1 }],
        process: (records) =>
          Effect.succeed(
            Batch.forEach(records, (r, out) => {
              const v = text(r.value ?? new Uint8Array())
              out.emit(output, r.key, v === "big" ? new Uint8Array(1_100_000) : bytes(`${v}!`))
              out.emit(output, r.key, bytes(`${v} again`))
            })
          )
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { commitEveryRecords: 1 }))
      yield* broker.awaitCommitted("enlarge", "in")
      yield* Fiber.interrupt(fiber)
      const out = (yield* broker.records("out")).map((r) => text(r.value ?? new Uint8Array()))
      // "big" is dead-lettered as a whole: neither of its outputs is written.
      assert.deepStrictEqual(out, ["a!", "a again", "b!", "b again", "c!", "c again"])
      const dlq = yield* broker.records("in.dlq")
      assert.strictEqual(dlq.length, 1)
      const dl = dlq[0]!
      assert.strictEqual(text(dl.value ?? new Uint8Array()), "big", "the original input bytes")
      assert.strictEqual(header(dl.headers, DeadLetter.headers.errorTag), "MessageTooLarge")
      assert.include(header(dl.headers, DeadLetter.headers.errorMessage), "over the topic's limit of 1048588 bytes")
      assert.include(header(dl.headers, DeadLetter.headers.errorMessage), "out")
      assert.strictEqual(header(dl.headers, DeadLetter.headers.sourceOffset), "1")
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a dead letter over its topic's limit is truncated to fit, and later records are processed", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([
        { name: "events", partitions: 1 },
        // Made before the runner starts, with the default limit: the runner leaves it as it is.
        { name: "events.dlq", partitions: 1 }
      ])
      const junk = new Uint8Array(1_048_450).fill(0x7b)
      yield* kafka.send([
        { topic: "events", key: null, value: junk },
        ...[1, 2, 3].map((n) => ({ topic: "events", key: null, value: bytes(JSON.stringify({ n })) }))
      ])
      const events = Topic.make("events", { key: Codec.raw, value: Codec.json(Schema.Struct({ n: Schema.Int })) })
      const topology = Topology.make({
        name: "json",
        input: events,
        outputs: [{ name: "out", partitions: 1 }],
        process: (records) =>
          Effect.succeed(Batch.forEach(records, (r, out) => out.emit(output, null, bytes(String(r.value.n)))))
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { commitEveryRecords: 1 }))
      yield* broker.awaitCommitted("json", "events")
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(
        (yield* broker.records("out")).map((r) => text(r.value ?? new Uint8Array())),
        ["1", "2", "3"]
      )
      const [dl, ...more] = yield* broker.records("events.dlq")
      assert.strictEqual(more.length, 0)
      assert.isDefined(dl)
      if (dl === undefined) return
      assert.isAtMost(sizeOf(dl), 1_048_588)
      assert.strictEqual(header(dl.headers, DeadLetter.headers.errorTag), "DecodeError")
      assert.strictEqual(header(dl.headers, DeadLetter.headers.truncated), "value")
      assert.strictEqual(header(dl.headers, DeadLetter.headers.originalSize), String(junk.byteLength))
      assert.deepStrictEqual(dl.value, junk.subarray(0, dl.value?.byteLength ?? 0))
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a defect in lifecycle.onAssigned fails the worker instead of stalling the partition", () =>
    Effect.gen(function* () {
      yield* setup
      const topology = Topology.make({
        name: "bad-hook",
        input,
        process: () => Effect.succeed(Batch.empty),
        lifecycle: { onAssigned: () => Effect.die(new Error("restore failed")) }
      })
      const exit = yield* Runner.run(topology).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause), "the worker ends with the defect")
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a part that dies (a table loader) ends the worker with its cause", () =>
    Effect.gen(function* () {
      yield* setup
      const health = yield* Health.Health
      const topology = Topology.make({ name: "copy", input, process: () => Effect.succeed(Batch.empty) })
      const fiber = yield* Effect.forkChild(Runner.run(topology))
      const part = yield* health.register("table profiles", Effect.succeed({ live: true, ready: true }))
      yield* part.die("the profile topic was deleted")
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.include(Cause.pretty(exit.cause), "table profiles died: the profile topic was deleted")
      }
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(memoryBroker, Health.layer)))
  )

  it.effect("a partition stuck on one batch beyond stuckAfter makes the worker not live", () =>
    Effect.gen(function* () {
      yield* setup
      const health = yield* Health.Health
      const topology = Topology.make({ name: "slow", input, process: () => Effect.never })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { stuckAfter: "30 seconds" }))
      yield* TestClock.adjust("1 second")
      const before = yield* health.report
      assert.isTrue(before.live, JSON.stringify(before))
      assert.isTrue(before.ready, JSON.stringify(before))
      yield* TestClock.adjust("31 seconds")
      const after = yield* health.report
      assert.isFalse(after.live)
      assert.match(after.checks[0]?.detail ?? "", /stuck on one step: in:0 for 3\d s/)
      // The stop is bounded by timeouts on the test clock: move it along until the runner has stopped.
      const stop = yield* Effect.forkChild(Fiber.interrupt(fiber))
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(stop)
    }).pipe(Effect.provide(Layer.mergeAll(memoryBroker, Health.layer)))
  )

  it.effect(
    "dead letters are counted apart from outputs, once acknowledged; a revoked partition's lag is dropped",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const broker = yield* MemoryBroker
        yield* kafka.createTopics([{ name: "counted", partitions: 1 }])
        yield* kafka.send(["ok", "bad", "ok"].map((v) => ({ topic: "counted", key: null, value: bytes(v) })))
        const topology = Topology.make({
          name: "count",
          input: Topic.raw("counted"),
          outputs: [{ name: "counted.out", partitions: 1 }],
          process: (records) =>
            Effect.succeed(
              Batch.forEach(records, (r, out) => {
                if (text(r.value ?? new Uint8Array()) === "bad") out.reject({ _tag: "Bad", message: "bad" })
                else out.emit(Topic.raw("counted.out"), null, r.value)
              })
            )
        })
        const fiber = yield* Effect.forkChild(Runner.run(topology, { commitEveryRecords: 1 }))
        yield* broker.awaitCommitted("count", "counted")
        const counter = (metric: Metric.Metric<number, Metric.CounterState<number>>, topic: string) =>
          Effect.map(Metric.value(Metric.withAttributes(metric, { topic })), (s) => Number(s.count))
        assert.strictEqual(yield* counter(Metrics.recordsOut, "counted.out"), 2)
        assert.strictEqual(yield* counter(Metrics.recordsOut, "counted.dlq"), 0, "a dead letter is not an output")
        assert.strictEqual(yield* counter(Metrics.recordsDeadLettered, "counted"), 1)
        const lagSeries = Effect.map(Metric.snapshot, (all) =>
          all.filter((m) => m.id === Metrics.consumerLag.id && m.attributes?.topic === "counted")
        )
        // The commit (after every record here) comes before the step's metrics: let the step end.
        yield* settle(
          "the partition's lag series",
          Effect.map(lagSeries, (l) => l.length === 1)
        )
        yield* Fiber.interrupt(fiber)
        assert.strictEqual((yield* lagSeries).length, 0, "the lag of a partition no longer owned is dropped")
      }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a defect in the periodic commit ends the worker instead of leaving it running without commits", () =>
    Effect.gen(function* () {
      yield* setup
      const kafka = yield* Kafka
      // The broker's consumer, except that committing hits a bug.
      const broken = Kafka.of({
        ...kafka,
        consume: (options, handlers) =>
          Effect.map(kafka.consume(options, handlers), (consumer) => ({
            ...consumer,
            commit: () => Effect.die(new Error("bug in commit"))
          }))
      })
      const topology = Topology.make({ name: "copy", input, process: () => Effect.succeed(Batch.empty) })
      const fiber = yield* Effect.forkChild(Runner.run(topology).pipe(Effect.provideService(Kafka, broken)))
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause), "the worker ends with the defect")
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a member assigned no partition of its input says so", () =>
    Effect.gen(function* () {
      yield* setup
      const logs = captureLogs()
      const topology = Topology.make({ name: "copy", input, process: () => Effect.succeed(Batch.empty) })
      const broker = yield* MemoryBroker
      yield* Effect.forkChild(Runner.run(topology))
      yield* Effect.forkChild(Runner.run(topology).pipe(Effect.provide(logs.layer)))
      let members = 0
      for (let i = 0; i < 1_000 && members < 2; i++) {
        yield* Effect.yieldNow
        members = (yield* broker.members("copy")).filter((m) => m.generation > 1).length
      }
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow
      const warning = logs.lines.find((l) => l.level === "Warn" && l.message.includes("assigned no partition"))
      assert.isDefined(warning, JSON.stringify(logs.lines))
      assert.include(warning?.message, "of in (1 partition(s)) in group copy")
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("a processor failing with a retryable SqlError is retried, not dead-lettered", () =>
    Effect.gen(function* () {
      yield* setup
      const broker = yield* MemoryBroker
      let failures = 0
      const topology = Topology.make({
        name: "sql",
        input,
        outputs: [{ name: "out", partitions: 1 }],
        process: (records) =>
          Effect.suspend(() =>
            failures++ < 3
              ? Effect.fail(
                  new SqlError.SqlError({ reason: new SqlError.ConnectionError({ cause: new Error("ECONNREFUSED") }) })
                )
              : Effect.succeed(Batch.forEach(records, (r, out) => out.emit(output, r.key, r.value)))
          )
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology, { commitEveryRecords: 1 }))
      // The retries back off on the test clock: move it along until the records are committed.
      const clock = yield* Effect.forkChild(
        Effect.forever(Effect.andThen(TestClock.adjust("100 millis"), Effect.yieldNow))
      )
      yield* broker.awaitCommitted("sql", "in")
      yield* Fiber.interrupt(clock)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(failures, 4)
      assert.strictEqual((yield* broker.records("out")).length, 3)
      assert.strictEqual((yield* broker.records("in.dlq")).length, 0, "a connection error is not the record's fault")
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect(
    "while sends are held, no committed offset passes the last acknowledged input; released, every output arrives",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const broker = yield* MemoryBroker
        yield* kafka.createTopics([{ name: "in", partitions: 1 }])
        const produce = (from: number) =>
          kafka.send(Array.from({ length: 5 }, (_, i) => ({ topic: "in", key: null, value: bytes(`v${from + i}`) })))
        const committed = Effect.map(kafka.committedOffsets("copy", "in"), (cs) => cs[0]?.offset ?? 0)
        const outputs = Effect.map(broker.records("out"), (out) => out.length)
        /** Lets the runner's fibers run until `condition` holds (no time passes). */
        const settle = Effect.fnUntraced(function* <E>(what: string, condition: Effect.Effect<boolean, E>) {
          for (let i = 0; i < 2_000; i++) {
            if (yield* condition) return
            yield* Effect.yieldNow
          }
          return yield* Effect.die(new Error(`never: ${what}`))
        })
        const topology = Topology.make({
          name: "copy",
          input,
          outputs: [{ name: "out", partitions: 1 }],
          process: (records) => Effect.succeed(Batch.forEach(records, (r, out) => out.emit(output, r.key, r.value)))
        })
        yield* produce(0)
        const fiber = yield* Effect.forkChild(Runner.run(topology, { commitInterval: "1 second" }))
        yield* settle(
          "the first 5 outputs",
          Effect.map(outputs, (n) => n === 5)
        )
        yield* TestClock.adjust("1 second")
        yield* settle(
          "the first 5 committed",
          Effect.map(committed, (c) => c === 5)
        )

        // The output topic stops answering; the input goes on. Offsets 5..9 are processed, their outputs are not
        // acknowledged: commit intervals pass, and the committed offset must stay at 5.
        yield* broker.holdSendsTo(["out"])
        yield* produce(5)
        yield* settle(
          "the next batch's send is held",
          Effect.map(broker.heldSends, (n) => n === 1)
        )
        for (let s = 0; s < 5; s++) {
          yield* TestClock.adjust("1 second")
          for (let i = 0; i < 50; i++) yield* Effect.yieldNow
          assert.strictEqual(yield* committed, 5, "committed past the last acknowledged input")
        }
        assert.strictEqual(yield* outputs, 5)

        yield* broker.releaseSends
        yield* settle(
          "all 10 outputs",
          Effect.map(outputs, (n) => n === 10)
        )
        yield* TestClock.adjust("1 second")
        yield* settle(
          "all 10 committed",
          Effect.map(committed, (c) => c === 10)
        )
        assert.deepStrictEqual(
          (yield* broker.records("out")).map((r) => text(r.value ?? new Uint8Array())),
          Array.from({ length: 10 }, (_, i) => `v${i}`)
        )
        // The stop's bounds run on the test clock: move it along until the runner has stopped.
        const stop = yield* Effect.forkChild(Fiber.interrupt(fiber))
        for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
        yield* Fiber.join(stop)
      }).pipe(Effect.provide(memoryBroker))
  )
})
