/**
 * The events-to-Postgres topology on the in-memory broker with `Sink.collector` for the table: one row per JSON
 * object, with the record's key, JSON text and source; everything else dead-lettered with the reason; with
 * offsets, a run in a new group starts where the sink's offsets are. The lab's producer is checked too. The real
 * table, view and failures are in EventsToPostgres.integration.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as DeadLetter from "@sluice/core/DeadLetter"
import { Kafka } from "@sluice/core/Kafka"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import { header, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Sink from "@sluice/core/Sink"
import { Effect, Fiber, Predicate } from "effect"
import { TestClock } from "effect/testing"
import * as EventsToPostgres from "../src/EventsToPostgres.ts"
import { waitUntil } from "./support/effects.ts"

const memory = layerWith({ maxBatchSize: 100 })
const topics = EventsToPostgres.named("t-")

describe("EventsToPostgres", () => {
  it("notAnObject: only a JSON object passes", () => {
    assert.isUndefined(EventsToPostgres.notAnObject(`{"event_type":"click"}`))
    assert.isUndefined(EventsToPostgres.notAnObject(`{}`))
    assert.include(EventsToPostgres.notAnObject(`{"a":`), "not JSON")
    assert.include(EventsToPostgres.notAnObject(""), "not JSON")
    assert.include(EventsToPostgres.notAnObject(`[1,2]`), "array")
    assert.include(EventsToPostgres.notAnObject(`"text"`), "string")
    assert.include(EventsToPostgres.notAnObject(`null`), "null")
    assert.include(EventsToPostgres.notAnObject(`42`), "number")
  })

  it("generate: deterministic, keyed by user id, every 20th good event untyped, bad kinds in turn", () => {
    const records = EventsToPostgres.generate({ count: 1_000, badRatio: 0.05, seed: 3 })
    assert.deepStrictEqual(records, EventsToPostgres.generate({ count: 1_000, badRatio: 0.05, seed: 3 }))
    const kinds = new Map<string, number>()
    let untyped = 0
    for (const r of records) {
      const kind = header(r.headers ?? {}, EventsToPostgres.badHeader)
      if (kind !== undefined) {
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
        continue
      }
      const event: unknown = JSON.parse(text(r.value ?? new Uint8Array()))
      if (!Predicate.hasProperty(event, "user_id")) return assert.fail(`not an event: ${JSON.stringify(event)}`)
      if (!Predicate.hasProperty(event, "event_type")) untyped++
      assert.strictEqual(text(r.key ?? new Uint8Array()), String(event.user_id))
    }
    assert.deepStrictEqual(Object.fromEntries(kinds), {
      "invalid-json": 10,
      "not-an-object": 10,
      "empty-value": 10,
      "invalid-utf8": 10,
      "nul-in-jsonb": 10
    })
    assert.strictEqual(untyped, Math.floor(950 / EventsToPostgres.untypedEvery))
  })

  it.effect(
    "one row per JSON object, with its source; not an object, or not UTF-8: a dead letter with the reason",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const broker = yield* MemoryBroker
        yield* kafka.createTopics([{ name: topics.raw.name, partitions: 3 }])
        const records = EventsToPostgres.generate({ count: 400, badRatio: 0.05, topic: topics.raw.name })
        yield* kafka.send(records)
        // The collector stands in for the table, refusing what Postgres refuses (jsonb cannot hold \u0000).
        const table = Sink.collector<EventRow>({
          refuse: (row) => (row.payload.includes("\\u0000") ? "unsupported Unicode escape sequence" : undefined)
        })
        const fiber = yield* Effect.forkChild(Runner.run(EventsToPostgres.topology({ sink: table.sink, topics })))
        yield* waitUntil(
          "380 rows and 20 dead letters",
          Effect.map(
            broker.records(`${topics.raw.name}.dlq`),
            // 400 records, 20 malformed: 16 not objects, 4 objects the table refuses.
            (letters) => table.rows().length === 380 && letters.length === 20
          )
        )
        const rows = table.rows()
        const stored = yield* broker.records(topics.raw.name)
        for (const row of rows) {
          const source = stored.find((r) => r.partition === row.source_partition && r.offset === row.source_offset)
          if (source === undefined) return assert.fail(`no input at ${row.source_partition}@${row.source_offset}`)
          assert.strictEqual(row.payload, text(source.value ?? new Uint8Array()), "the payload is the record's JSON")
          assert.strictEqual(row.msg_key, source.key === null ? null : text(source.key))
          assert.strictEqual(row.source_topic, topics.raw.name)
        }
        const letters = yield* broker.records(`${topics.raw.name}.dlq`)
        const reasons = new Map(
          letters.map((l) => [
            header(l.headers, EventsToPostgres.badHeader),
            header(l.headers, DeadLetter.headers.errorMessage) ?? ""
          ])
        )
        assert.match(reasons.get("invalid-json")!, /not JSON/)
        assert.match(reasons.get("not-an-object")!, /not an object/)
        assert.match(reasons.get("empty-value")!, /not JSON/)
        assert.match(reasons.get("invalid-utf8")!, /UTF-8/)
        assert.match(reasons.get("nul-in-jsonb")!, /unsupported Unicode escape sequence/)
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.provide(memory))
  )

  it.effect("exactly-once: tasks start from the offsets the sink stored, not from the group's commits", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: topics.raw.name, partitions: 3 }])
      yield* kafka.send(EventsToPostgres.generate({ count: 300, topic: topics.raw.name }))
      const table = Sink.collector<EventRow>({ offsets: true })
      const topology = EventsToPostgres.topology({ sink: table.sink, topics, exactlyOnce: true })
      const first = yield* Effect.forkChild(Runner.run(topology))
      yield* waitUntil(
        "300 rows and their offsets",
        Effect.sync(() => [...table.offsets().values()].reduce((a, b) => a + b, 0) === 300)
      )
      yield* Fiber.interrupt(first)
      yield* kafka.send(EventsToPostgres.generate({ count: 30, seed: 9, topic: topics.raw.name }))
      const second = yield* Effect.forkChild(Runner.run(topology, { groupId: "a-new-group" }))
      yield* waitUntil(
        "330 rows",
        Effect.sync(() => table.rows().length >= 330)
      )
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(table.rows().length, 330, "the new group read none of the first 300 again")
      yield* Fiber.interrupt(second)
    }).pipe(Effect.provide(memory))
  )
})

type EventRow = EventsToPostgres.EventRow
