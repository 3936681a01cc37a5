/** The global table's loader under failure: reloads after a retryable failure, stops the worker after a lasting one. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Codec from "../src/Codec.ts"
import { KafkaError, Rejected, Unavailable } from "../src/Errors.ts"
import * as Health from "../src/Health.ts"
import { Kafka } from "../src/Kafka.ts"
import * as MemoryBroker from "../src/MemoryBroker.ts"
import { bytes } from "../src/Record.ts"
import * as Table from "../src/Table.ts"
import * as Topic from "../src/Topic.ts"

const profiles = Topic.make("profiles", { key: Codec.intString, value: Codec.nullable(Codec.json(Schema.String)) })

/**
 * The in-memory broker, except that every `read` stream fails once `breakReads` has been called with this error
 * (after it has delivered what it had), until `healReads`.
 */
const faultyReads = Effect.gen(function* () {
  const kafka = yield* Kafka
  const faults: { error: KafkaError | undefined } = { error: undefined }
  const service = Kafka.of({
    ...kafka,
    read: (options) =>
      kafka.read(options).pipe(
        Stream.merge(
          Stream.fromEffect(
            Effect.gen(function* () {
              while (faults.error === undefined) yield* Effect.sleep("10 millis")
              return yield* faults.error
            })
          )
        )
      )
  })
  return { service, faults }
})

const put = (id: number, name: string | null) =>
  Effect.flatMap(Kafka, (kafka) =>
    kafka.send([
      { topic: "profiles", key: bytes(String(id)), value: name === null ? null : bytes(JSON.stringify(name)) }
    ])
  )

/** A one-partition table holding user 1, loaded through reads that fail on demand. */
const loadedWithFaults = Effect.gen(function* () {
  const kafka = yield* Kafka
  yield* kafka.createTopics([{ name: "profiles", partitions: 1, config: { "cleanup.policy": "compact" } }])
  yield* put(1, "Ann")
  const { service, faults } = yield* faultyReads
  const table = yield* Table.makeReady(profiles).pipe(Effect.provideService(Kafka, service))
  return { table, faults, health: yield* Health.Health }
})

describe("Table", () => {
  it.effect("after a retryable failure a fresh load replaces the map, which served meanwhile", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "profiles", partitions: 2, config: { "cleanup.policy": "compact" } }])
      yield* put(1, "Ann")
      yield* put(2, "Bob")
      const { service, faults } = yield* faultyReads
      const health = yield* Health.Health
      const table = yield* Table.makeReady(profiles).pipe(Effect.provideService(Kafka, service))
      assert.deepStrictEqual(yield* table.getMany([1, 2]), ["Ann", "Bob"])

      faults.error = new KafkaError({ operation: "read", reason: new Unavailable({ message: "broker down" }) })
      yield* TestClock.adjust("20 millis")
      yield* put(2, null)
      yield* put(3, "Cy")
      // While the loader waits to reload, the old map keeps serving and the table counts as live.
      assert.deepStrictEqual(yield* table.getMany([1, 2]), ["Ann", "Bob"])
      const during = yield* health.report
      assert.isTrue(during.live)
      assert.match(during.checks[0]?.detail ?? "", /reloading after: .*broker down/)

      faults.error = undefined
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* table.getMany([1, 2, 3]), ["Ann", undefined, "Cy"])
      assert.isTrue((yield* health.report).ready)
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(MemoryBroker.layer, Health.layer)))
  )

  it.effect("a non-retryable failure after the table is ready marks it dead: the worker stops", () =>
    Effect.gen(function* () {
      const { faults, health } = yield* loadedWithFaults
      faults.error = new KafkaError({ operation: "read", reason: new Rejected({ message: "topic deleted" }) })
      yield* TestClock.adjust("20 millis")
      const failure = yield* Effect.flip(health.failures)
      assert.strictEqual(failure.component, "table profiles")
      assert.include(failure.reason, "topic deleted")
      assert.isFalse((yield* health.report).live)
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(MemoryBroker.layer, Health.layer)))
  )

  it.effect("retryable failures that last longer than the bound mark it dead too", () =>
    Effect.gen(function* () {
      const { faults, health } = yield* loadedWithFaults
      faults.error = new KafkaError({ operation: "read", reason: new Unavailable({ message: "broker down" }) })
      for (let i = 0; i < 60; i++) yield* TestClock.adjust("1 second")
      assert.isTrue((yield* health.report).live, "still retrying after a minute")
      for (let i = 0; i < 70; i++) yield* TestClock.adjust("1 second")
      const failure = yield* Effect.flip(health.failures)
      assert.include(failure.reason, "broker down (failing for")
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(MemoryBroker.layer, Health.layer)))
  )

  it.effect("stored as bytes: updates, tombstones and skipped records behave as a map of decoded values would", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "profiles", partitions: 1, config: { "cleanup.policy": "compact" } }])
      for (const cacheSize of [0, 2, 10_000]) {
        const table = yield* Table.makeReady(profiles, { cacheSize })
        yield* put(1, "Ann")
        yield* put(2, "Bob")
        // A key written as "007" is the integer 7, found by looking up 7.
        yield* kafka.send([{ topic: "profiles", key: bytes("007"), value: bytes(JSON.stringify("Seven")) }])
        const settled = (expected: ReadonlyArray<string | undefined>) =>
          Effect.gen(function* () {
            for (let i = 0; i < 100; i++) {
              const got = yield* table.getMany([1, 2, 7, 9])
              if (JSON.stringify(got) === JSON.stringify(expected)) return
              yield* TestClock.adjust("10 millis")
            }
            assert.deepStrictEqual(yield* table.getMany([1, 2, 7, 9]), [...expected], `cache ${cacheSize}`)
          })
        yield* settled(["Ann", "Bob", "Seven", undefined])
        yield* put(1, "Anne")
        yield* put(2, null)
        // Not a JSON string: skipped, and the previous value stays.
        yield* kafka.send([{ topic: "profiles", key: bytes("7"), value: bytes("{not json") }])
        yield* put(9, "Nine")
        yield* settled(["Anne", undefined, "Seven", "Nine"])
        assert.strictEqual(yield* table.size, 3, `cache ${cacheSize}`)
        assert.isAtLeast(yield* table.skipped, 1)
        yield* put(9, null)
        yield* put(1, null)
        yield* put(7, null)
      }
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(MemoryBroker.layer, Health.layer)))
  )
})
