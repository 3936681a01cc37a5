/**
 * The at-least-once delivery path on the in-memory broker: the order in which a step's records become durable.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as Delivery from "../src/Delivery.ts"
import { type GroupConsumer, Kafka } from "../src/Kafka.ts"
import { layerWith } from "../src/MemoryBroker.ts"
import { bytes, type ProducerRecord, type RecordMetadata } from "../src/Record.ts"

const consumer: GroupConsumer = {
  commit: () => Effect.void,
  pause: () => Effect.void,
  resume: () => Effect.void,
  seek: () => Effect.void,
  stop: Effect.void,
  failed: Effect.never
}

const record = (topic: string): ProducerRecord => ({ topic, key: bytes("k"), value: bytes("v"), partition: 0 })

describe("at-least-once delivery", () => {
  it.effect("sends a step's changelog records only once its outputs and dead letters are acknowledged", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics(["out", "out.dlq", "app-store-changelog"].map((name) => ({ name, partitions: 1 })))
      // A send is one call per chunk on a real client: a store durably ahead of its outputs would, after a crash,
      // say that outputs (a window's final result) were written that never were.
      const calls: Array<ReadonlyArray<string>> = []
      const outputsAcked = yield* Deferred.make<void>()
      const held = {
        ...kafka,
        send: (records: ReadonlyArray<ProducerRecord>) =>
          Effect.gen(function* () {
            calls.push(records.map((r) => r.topic))
            if (records.some((r) => r.topic === "out")) yield* Deferred.await(outputsAcked)
            return yield* kafka.send(records)
          })
      }
      const delivery = yield* Delivery.atLeastOnce(held, consumer, { commitInterval: "1 hour" })
      const task = yield* delivery.open("in", 0)
      let durable: ReadonlyArray<RecordMetadata> | undefined
      const completing = yield* Effect.forkChild(
        task.complete({
          outgoing: {
            outputs: [record("out"), record("out")],
            deadLetters: [record("out.dlq")],
            changelog: [record("app-store-changelog")]
          },
          positions: [{ topic: "in", partition: 0, offset: 3 }],
          records: 3,
          onDurable: (metadata) => {
            durable = metadata
          }
        })
      )
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(calls, [["out", "out", "out.dlq"]], "no changelog record while the outputs are in flight")
      yield* Deferred.succeed(outputsAcked, undefined)
      yield* Fiber.join(completing)
      assert.deepStrictEqual(calls, [["out", "out", "out.dlq"], ["app-store-changelog"]])
      assert.deepStrictEqual(durable, [{ topic: "app-store-changelog", partition: 0, offset: 0 }])
    }).pipe(Effect.provide(layerWith()))
  )
})
