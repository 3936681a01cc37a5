/** The README's word-count example, as written there, run on the in-memory broker. */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { Batch, Codec, Store, Topic, Topology } from "../src/index.ts"
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
