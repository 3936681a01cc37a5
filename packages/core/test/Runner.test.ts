/** The runner's failure and shutdown paths, on the in-memory broker. */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber } from "effect"
import * as Batch from "../src/Batch.ts"
import { KafkaError, Unavailable } from "../src/Errors.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker, layer as memoryBroker } from "../src/MemoryBroker.ts"
import { bytes } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"

const input = Topic.raw("in")
const output = Topic.raw("out")

const setup = Effect.gen(function* () {
  const kafka = yield* Kafka
  yield* kafka.createTopics([{ name: "in", partitions: 1 }])
  yield* kafka.send([1, 2, 3].map((i) => ({ topic: "in", key: bytes(`k${i}`), value: bytes(`v${i}`) })))
})

describe("Runner", () => {
  it.live("a defect in a processor fails the worker instead of stalling its partition", () =>
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
      const exit = yield* Runner.run(topology).pipe(Effect.timeout("5 seconds"), Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isTrue(Cause.hasDies(exit.cause), `expected the defect, got ${Cause.pretty(exit.cause)}`)
      }
    }).pipe(Effect.provide(memoryBroker))
  )

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
      const broker = yield* MemoryBroker
      assert.strictEqual((yield* broker.records("out")).length, 0)
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 1 })))
  )

  it.live("records are processed once per partition in a clean run, with outputs in order", () =>
    Effect.gen(function* () {
      yield* setup
      const topology = Topology.make({
        name: "copy",
        input,
        outputs: [{ name: "out", partitions: 1 }],
        process: (records) => Effect.succeed(Batch.forEach(records, (r, out) => out.emit(output, r.key, r.value)))
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology))
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
})
