/** The README's word-count example, as written there, run on the in-memory broker. */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { Aggregator, Batch, Codec, Store, Topic, Topology, Window, Windows } from "../src/index.ts"
import { Kafka } from "../src/Kafka.ts"
import { MemoryBroker, layer as memoryBroker } from "../src/MemoryBroker.ts"
import { bytes, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"

const counts = Store.make("counts", { key: Codec.string, value: Codec.json(Schema.Finite) })
const words = Topic.make("words", { key: Codec.string, value: Codec.raw })
const totals = Topic.make("word-totals", { key: Codec.string, value: Codec.json(Schema.Finite) })

export const wordCount = Topology.make({
  name: "word-count",
  input: words,
  stores: [counts],
  outputs: [{ name: totals.name, partitions: 3 }],
  process: (records, ctx) =>
    Effect.sync(() => {
      const store = ctx.store(counts)
      return Batch.forEach(records, (r, out) => {
        const n = (store.get(r.key) ?? 0) + 1
        store.put(r.key, n)
        out.emit(totals, r.key, n)
      })
    })
})

it.effect("the README's word count counts", () =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const broker = yield* MemoryBroker
    yield* kafka.createTopics([{ name: "words", partitions: 3 }])
    yield* kafka.send(
      ["to", "be", "or", "not", "to", "be"].map((w) => ({ topic: "words", key: bytes(w), value: null }))
    )
    const fiber = yield* Effect.forkChild(Runner.run(wordCount))
    for (let i = 0; i < 2_000 && (yield* broker.records("word-totals")).length < 6; i++) yield* Effect.yieldNow
    const last = new Map<string, string>()
    for (const r of yield* broker.records("word-totals"))
      last.set(text(r.key ?? new Uint8Array()), text(r.value ?? new Uint8Array()))
    assert.deepStrictEqual(Object.fromEntries(last), { to: "2", be: "2", or: "1", not: "1" })
    yield* Fiber.interrupt(fiber)
  }).pipe(Effect.provide(memoryBroker))
)

// The README's windows example, as written there.
const Reading = Schema.Struct({ sensor: Schema.String, temperature: Schema.Finite, timestamp: Schema.Int })
const readings = Topic.make("sensor-readings", { key: Codec.string, value: Codec.json(Reading) })
const Summary = Schema.Struct({
  start: Schema.Int,
  end: Schema.Int,
  min: Schema.NullOr(Schema.Finite),
  max: Schema.NullOr(Schema.Finite),
  mean: Schema.NullOr(Schema.Finite),
  count: Schema.Int
})
const minutes = Topic.make("sensor-minutes", { key: Codec.string, value: Codec.json(Summary) })

const temps = Windows.aggregate({
  name: "sensor-windows",
  windows: Window.tumbling("60 seconds"),
  grace: "10 seconds",
  key: Codec.string,
  aggregator: Aggregator.struct({
    min: Aggregator.min,
    max: Aggregator.max,
    mean: Aggregator.mean,
    count: Aggregator.count
  }),
  emit: "final",
  lateTopic: "sensor-late",
  result: (out, key, window, value) => out.emit(minutes, key, { ...window, ...value })
})

export const sensorMinutes = Topology.make({
  name: "sensor-minutes",
  input: readings,
  stores: [...temps.stores],
  timers: [...temps.timers],
  process: (records, ctx) =>
    Effect.sync(() => {
      const w = temps.open(ctx)
      const r = Batch.forEach(records, (rec, out) =>
        w.add(out, rec.record, rec.key, rec.value.temperature, rec.value.timestamp)
      )
      return Batch.concat([r, w.close()])
    })
})

it.effect("the README's sensor windows emit a minute's summary when it closes, and send a late reading aside", () =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const broker = yield* MemoryBroker
    yield* kafka.createTopics([{ name: "sensor-readings", partitions: 1 }])
    const reading = (temperature: number, timestamp: number) => ({
      topic: "sensor-readings",
      key: bytes("s1"),
      value: bytes(JSON.stringify({ sensor: "s1", temperature, timestamp }))
    })
    // [0, 60 s) closes at 70 s of stream time: 59 s still counts at 61 s, 50 s is late at 71 s.
    yield* kafka.send([reading(20, 1_000), reading(22, 30_000), reading(25, 61_000), reading(18, 59_000)])
    yield* kafka.send([reading(30, 71_000), reading(19, 50_000)])
    const fiber = yield* Effect.forkChild(Runner.run(sensorMinutes))
    for (let i = 0; i < 2_000 && (yield* broker.records("sensor-late")).length < 1; i++) yield* Effect.yieldNow
    const summaries = (yield* broker.records("sensor-minutes")).map((r) =>
      JSON.parse(text(r.value ?? new Uint8Array()))
    )
    assert.deepStrictEqual(summaries, [{ start: 0, end: 60_000, min: 18, max: 22, mean: 20, count: 3 }])
    assert.strictEqual((yield* broker.records("sensor-late")).length, 1)
    yield* Fiber.interrupt(fiber)
  }).pipe(Effect.provide(memoryBroker))
)
