/**
 * The user-events topology and the runtime on the in-memory broker (the TopologyTestDriver role): the same
 * topology that runs on Kafka in UserEvents.integration.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Batch, DeadLetter, Errors, Topology } from "@sluice/core"
import { Kafka } from "@sluice/core/Kafka"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, header, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Topic from "@sluice/core/Topic"
import { Effect, Fiber, Layer, Ref, Result } from "effect"
import { TestClock } from "effect/testing"
import * as UserEvents from "../src/UserEvents.ts"
import { waitUntil } from "./support/effects.ts"

const Env = Layer.mergeAll(layerWith({ maxBatchSize: 200 }), UserEvents.EventCounts.layer)

const count = (topic: string) =>
  Effect.gen(function* () {
    const broker = yield* MemoryBroker
    return (yield* broker.records(topic)).length
  })

const setup = (topics: UserEvents.Topics, records: number, badRatio = 0) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topics.events.name, partitions: 3 }])
    const generated = UserEvents.generate({ count: records, badRatio, topic: topics.events.name })
    yield* kafka.send(generated)
    return generated
  })

describe("user-events on the in-memory broker", () => {
  it.effect("processes every good record and dead-letters malformed ones with their headers", () =>
    Effect.gen(function* () {
      const topics = UserEvents.named("a-")
      const sent = yield* setup(topics, 1_000, 0.05)
      const bad = sent.filter((r) => r.headers?.["sluice.test.bad"] !== undefined)
      assert.strictEqual(bad.length, 50)
      const fiber = yield* Effect.forkChild(Runner.run(UserEvents.topology(topics)))
      yield* waitUntil(
        "all records are out",
        Effect.map(
          Effect.all([count(topics.activity.name), count(`${topics.events.name}.dlq`)]),
          ([a, d]) => a + d === 1_000
        )
      )
      yield* Fiber.interrupt(fiber)

      const broker = yield* MemoryBroker
      const dlq = yield* broker.records(`${topics.events.name}.dlq`)
      assert.strictEqual(dlq.length, 50)
      const kinds = new Set(dlq.map((r) => header(r.headers, "sluice.test.bad")))
      assert.deepStrictEqual([...kinds].sort(), [...UserEvents.badKinds].sort())
      const input = yield* broker.records(topics.events.name)
      for (const r of dlq) {
        assert.strictEqual(header(r.headers, DeadLetter.headers.errorTag), "DecodeError")
        assert.isAbove(header(r.headers, DeadLetter.headers.errorMessage)?.length ?? 0, 10)
        assert.strictEqual(header(r.headers, DeadLetter.headers.sourceTopic), topics.events.name)
        const original = input.find(
          (i) =>
            String(i.partition) === header(r.headers, DeadLetter.headers.sourcePartition) &&
            String(i.offset) === header(r.headers, DeadLetter.headers.sourceOffset)
        )
        assert.isDefined(original)
        assert.deepStrictEqual(r.value, original?.value ?? null)
        assert.deepStrictEqual(r.key, original?.key ?? null)
        assert.isFalse(Number.isNaN(Date.parse(header(r.headers, DeadLetter.headers.errorTime) ?? "")))
      }
      const counts = yield* Ref.get(yield* UserEvents.EventCounts)
      assert.strictEqual(counts.login + counts.purchase + counts.logout, 950)
    }).pipe(Effect.provide(Env))
  )

  it.effect("a restart resumes from the committed offset: nothing skipped, nothing reprocessed", () =>
    Effect.gen(function* () {
      const topics = UserEvents.named("b-")
      yield* setup(topics, 600)
      const first = yield* Effect.forkChild(Runner.run(UserEvents.topology(topics), { groupId: "g" }))
      yield* waitUntil(
        "600 out",
        Effect.map(count(topics.activity.name), (n) => n === 600)
      )
      yield* Fiber.interrupt(first)
      const kafka = yield* Kafka
      yield* kafka.send(UserEvents.generate({ count: 400, seed: 9, topic: topics.events.name }))
      const second = yield* Effect.forkChild(Runner.run(UserEvents.topology(topics), { groupId: "g" }))
      yield* waitUntil(
        "1000 out",
        Effect.map(count(topics.activity.name), (n) => n >= 1_000)
      )
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(second)
      const out = yield* (yield* MemoryBroker).records(topics.activity.name)
      const sources = out.map((r) => {
        const decoded = Topic.decode(topics.activity, r)
        return Result.isSuccess(decoded)
          ? `${decoded.success.value.source_partition}:${decoded.success.value.source_offset}`
          : "?"
      })
      assert.strictEqual(out.length, 1_000)
      assert.strictEqual(new Set(sources).size, 1_000)
    }).pipe(Effect.provide(Env))
  )

  it.effect("retryable produce failures are retried, not dead-lettered", () =>
    Effect.gen(function* () {
      const topics = UserEvents.named("c-")
      yield* setup(topics, 300)
      yield* (yield* MemoryBroker).failSends(3, true)
      const fiber = yield* Effect.forkChild(Runner.run(UserEvents.topology(topics)))
      yield* waitUntil(
        "300 out",
        Effect.map(count(topics.activity.name), (n) => n === 300)
      )
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(yield* count(`${topics.events.name}.dlq`), 0)
    }).pipe(Effect.provide(Env))
  )

  it.effect(
    "a non-retryable batch failure is narrowed to the failing record; a throwing handler is a dead letter",
    () =>
      Effect.gen(function* () {
        const topics = UserEvents.named("d-")
        yield* setup(topics, 200)
        class Poison extends Errors.RecordRejected {}
        const topology = Topology.make({
          name: "poison",
          input: topics.events,
          process: (records) =>
            records.some((r) => r.value.event_id === "e13")
              ? Effect.fail(new Poison({ tag: "Poison", reason: "e13 is poison" }))
              : Effect.succeed(
                  Batch.forEach(records, (r, out) => {
                    if (r.value.event_id === "e42") throw new TypeError("boom")
                    out.emit(topics.activity, r.key, {
                      event_id: r.value.event_id,
                      user_id: r.value.user_id,
                      event_type: r.value.event_type,
                      summary: "",
                      source_partition: r.record.partition,
                      source_offset: r.record.offset
                    })
                  })
                )
        })
        const fiber = yield* Effect.forkChild(Runner.run(topology))
        yield* waitUntil(
          "200 handled",
          Effect.map(
            Effect.all([count(topics.activity.name), count(`${topics.events.name}.dlq`)]),
            ([a, d]) => a + d === 200
          )
        )
        yield* Fiber.interrupt(fiber)
        const dlq = yield* (yield* MemoryBroker).records(`${topics.events.name}.dlq`)
        const tags = dlq.map(
          (r) => `${header(r.headers, DeadLetter.headers.errorTag)}:${text(r.value ?? new Uint8Array())}`
        )
        assert.strictEqual(dlq.length, 2)
        assert.isTrue(tags.some((t) => t.startsWith("Poison:") && t.includes('"e13"')))
        assert.isTrue(tags.some((t) => t.startsWith("HandlerDefect:") && t.includes('"e42"')))
      }).pipe(Effect.provide(Env))
  )

  it.effect(
    "invalid UTF-8, numbers out of range and odd header bytes reach the DLQ byte-exact; nothing corrupt comes out",
    () =>
      Effect.gen(function* () {
        const topics = UserEvents.named("bytes-")
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: topics.events.name, partitions: 1 }])
        const odd = Uint8Array.of(0xff, 0xfe, 0x00, 0x01)
        const event = (id: string, extra = "") =>
          bytes(`{"event_id":"${id}","user_id":7,"event_type":"purchase","timestamp":1700000000000${extra}}`)
        const badString = Uint8Array.of(
          ...bytes(`{"event_id":"x`),
          0xc3,
          ...bytes(`","user_id":7,"event_type":"login","timestamp":1}`)
        )
        const sent = [
          { topic: topics.events.name, key: bytes("u7"), value: event("ok-1", ',"amount":12.5') },
          { topic: topics.events.name, key: bytes("u7"), value: event("inf", ',"amount":1e400') },
          { topic: topics.events.name, key: Uint8Array.of(0x75, 0xff), value: event("bad-key") },
          { topic: topics.events.name, key: bytes("u7"), value: badString, headers: { trace: odd } },
          { topic: topics.events.name, key: bytes("u7"), value: event("ok-2", `,"amount":3`), headers: { trace: odd } }
        ]
        yield* kafka.send(sent)
        const fiber = yield* Effect.forkChild(Runner.run(UserEvents.topology(topics), { commitEveryRecords: 1 }))
        yield* (yield* MemoryBroker).awaitCommitted("user-events", topics.events.name)
        yield* Fiber.interrupt(fiber)
        const broker = yield* MemoryBroker
        const activity = yield* broker.records(topics.activity.name)
        assert.deepStrictEqual(
          activity.map((r) => JSON.parse(text(r.value ?? new Uint8Array())).event_id),
          ["ok-1", "ok-2"],
          "only the valid events produce activity"
        )
        for (const r of activity) assert.notInclude(text(r.value ?? new Uint8Array()), "Infinity")
        const dlq = yield* broker.records(`${topics.events.name}.dlq`)
        assert.strictEqual(dlq.length, 3)
        const [inf, badKey, badValue] = dlq
        assert.deepStrictEqual(inf?.value, sent[1]!.value)
        assert.include(header(inf?.headers ?? {}, DeadLetter.headers.errorMessage), "non-finite number at $.amount")
        assert.deepStrictEqual(badKey?.key, sent[2]!.key, "the key's original bytes, not a U+FFFD rewrite")
        assert.include(header(badKey?.headers ?? {}, DeadLetter.headers.errorMessage), "key")
        assert.include(header(badKey?.headers ?? {}, DeadLetter.headers.errorMessage), "invalid UTF-8")
        assert.deepStrictEqual(badValue?.value, badString)
        assert.deepStrictEqual(badValue?.headers.trace, odd, "header bytes kept exactly")
      }).pipe(Effect.provide(Env))
  )
})
