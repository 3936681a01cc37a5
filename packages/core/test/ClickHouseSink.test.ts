/**
 * The ClickHouse sink over a stand-in ClickHouse service (the in-memory broker, the test clock): inserts of at most
 * `batchSize` rows, every row once, and a row the server refuses for its data dead-lettered with the server's reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import * as Batch from "../src/Batch.ts"
import { ClickHouse, ClickHouseError, type Row } from "../src/ClickHouse.ts"
import * as ClickHouseSink from "../src/ClickHouseSink.ts"
import * as Codec from "../src/Codec.ts"
import * as DeadLetter from "../src/DeadLetter.ts"
import { Rejected } from "../src/Errors.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"

/** A ClickHouse that keeps what it is sent; a row with a negative `n` is refused like a UInt column would. */
const fake = () => {
  const inserts: Array<ReadonlyArray<Row>> = []
  const layer = Layer.succeed(ClickHouse, {
    ping: Effect.void,
    command: () => Effect.void,
    query: () => Effect.succeed([]),
    insert: (_table, rows) =>
      rows.some((r) => typeof r.n === "number" && r.n < 0)
        ? Effect.fail(
            new ClickHouseError({
              operation: "insert",
              reason: new Rejected({ message: "Code: 72, DB::Exception: Unsigned type must not contain '-' symbol" })
            })
          )
        : Effect.sync(() => {
            inserts.push(rows)
          })
  })
  return { inserts, layer }
}

const events = Topic.make("events", { key: Codec.nullable(Codec.string), value: Codec.intString })

const topology = (
  sink: ReturnType<typeof ClickHouseSink.make<{ readonly n: number; readonly source_offset: number }>>
) =>
  Topology.make({
    name: "to-clickhouse",
    input: events,
    sinks: [sink],
    process: (records) =>
      Effect.succeed(
        Batch.forEach(records, (r, out) => out.write(sink, { n: r.value, source_offset: r.record.offset }))
      )
  })

const settle = Effect.fnUntraced(function* (condition: () => boolean) {
  for (let i = 0; i < 60 && !condition(); i++) {
    yield* TestClock.adjust("1 second")
    for (let j = 0; j < 50; j++) yield* Effect.yieldNow
  }
})

const run = (values: ReadonlyArray<number>) => {
  const ch = fake()
  return {
    ch,
    run: Effect.gen(function* () {
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: "events", partitions: 1 }])
      yield* kafka.send(values.map((v) => ({ topic: "events", key: null, value: bytes(String(v)) })))
      const sink = ClickHouseSink.make<{ readonly n: number; readonly source_offset: number }>({
        table: "t",
        batchSize: 10
      })
      const fiber = yield* Effect.forkChild(Runner.run(topology(sink)))
      const expected = values.filter((v) => v >= 0).length
      yield* settle(() => new Set(ch.inserts.flat().map((r) => r.source_offset)).size >= expected)
      const letters = yield* (yield* MemoryBroker).records(DeadLetter.topicFor("events"))
      yield* Fiber.interrupt(fiber)
      return letters
    }).pipe(Effect.provide(Layer.mergeAll(layerWith({ maxBatchSize: 64 }), ch.layer)))
  }
}

describe("ClickHouseSink", () => {
  it.effect("writes inserts of at most batchSize rows (a 64-record step is split), every row once", () => {
    const { ch, run: go } = run(Array.from({ length: 95 }, (_, i) => i))
    return Effect.gen(function* () {
      yield* go
      assert.isTrue(
        ch.inserts.every((insert) => insert.length >= 1 && insert.length <= 10),
        `insert sizes ${ch.inserts.map((i) => i.length)}`
      )
      const offsets = ch.inserts.flat().map((r) => r.source_offset)
      assert.strictEqual(offsets.length, 95)
      assert.strictEqual(new Set(offsets).size, 95)
    })
  })

  it.effect("a row the server refuses for its data is its record's dead letter, with the server's reason", () => {
    const { ch, run: go } = run(Array.from({ length: 95 }, (_, i) => (i === 42 ? -1 : i)))
    return Effect.gen(function* () {
      const letters = yield* go
      assert.deepStrictEqual(
        letters.map((l) => text(l.value ?? new Uint8Array())),
        ["-1"]
      )
      assert.include(text(letters[0]!.headers[DeadLetter.headers.errorMessage]!), "Unsigned type")
      // Inserts of the refused write that went in before it are written again as the runtime narrows it down:
      // repeats by source offset, which the ReplacingMergeTree folds.
      const offsets = new Set(ch.inserts.flat().map((r) => r.source_offset))
      assert.strictEqual(offsets.size, 94)
      assert.isFalse(offsets.has(42))
    })
  })

  it("refuses a table name that is not an identifier", () => {
    assert.throws(() => ClickHouseSink.make({ table: "t; DROP TABLE x" }), /not a ClickHouse table name/)
  })
})
