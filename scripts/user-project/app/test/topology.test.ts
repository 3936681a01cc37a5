/** The user's test: the topology on the in-memory broker, time on the TestClock. */
import { assert, describe, it } from "@effect/vitest"
import { Kafka } from "@sluice/core/Kafka"
import { layer, MemoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { make } from "../src/topology.ts"

describe("order-totals", () => {
  it.effect("keeps a running total per SKU and dead-letters what is not an order", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "t-orders", partitions: 3 }])
      // Keyed by SKU: one SKU's orders meet in one task, and so in one store.
      const lines: ReadonlyArray<readonly [string, string]> = [
        ["a", '{"sku":"a","qty":2}'],
        ["b", '{"sku":"b","qty":1}'],
        ["x", "not json"],
        ["a", '{"sku":"a","qty":3}']
      ]
      yield* kafka.send(lines.map(([sku, l]) => ({ topic: "t-orders", key: bytes(sku), value: bytes(l) })))
      const fiber = yield* Effect.forkChild(Runner.run(make("t-")))
      for (let i = 0; i < 1000 && (yield* broker.records("t-totals")).length < 3; i++) yield* Effect.yieldNow
      const totals = (yield* broker.records("t-totals")).map((r) => text(r.value ?? new Uint8Array()))
      assert.sameMembers(totals, ["a=2", "b=1", "a=5"])
      assert.strictEqual((yield* broker.records("t-orders.dlq")).length, 1)
      const stopping = yield* Effect.forkChild(Fiber.interrupt(fiber))
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(stopping)
    }).pipe(Effect.provide(layer))
  )
})
