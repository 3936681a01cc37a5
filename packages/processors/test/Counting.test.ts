/**
 * The counting topology on the in-memory broker, on the test clock: counts are right, a restart restores the
 * store from its changelog and goes on counting, and a SQLite store kept across a restart restores only the
 * changelog's tail (measured as the records the runtime says it restored). The pure checks the integration tests
 * rely on (`verify`, `handoffs`) are tested here too, on histories written by hand.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Kafka } from "@sluice/core/Kafka"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import * as Runner from "@sluice/core/Runner"
import * as Store from "@sluice/core/Store"
import { Effect, Fiber, Layer, Logger } from "effect"
import { TestClock } from "effect/testing"
import * as Counting from "../src/Counting.ts"
import { settle } from "./support/effects.ts"

const partitions = 3
const topics = Counting.named("t-")
const group = "counting"
const changelog = Store.changelogTopic(group, Counting.counts)

/** The restores the runtime logs, as they come. */
const restoreLog = () => {
  const restores: Array<Counting.Restore> = []
  const logger = Logger.make(({ message }) => {
    for (const part of Array.isArray(message) ? message : [message]) {
      const restore = Counting.restoreOf(String(part))
      if (restore !== undefined) restores.push(restore)
    }
  })
  return { restores, layer: Logger.layer([logger]) }
}
const logs = restoreLog()

const Env = Layer.mergeAll(layerWith({ maxBatchSize: 100 }), logs.layer)

const committedToEnd = Effect.gen(function* () {
  const kafka = yield* Kafka
  const highs = yield* kafka.offsets(topics.input.name)
  const committed = new Map((yield* kafka.committedOffsets(group, topics.input.name)).map((c) => [c.partition, c]))
  return highs.every((h) => (committed.get(h.partition)?.offset ?? 0) === h.high)
})

/** One worker's run: started, left to process and commit everything there is, then stopped. */
const runToEnd = (worker: string, stateStore?: Store.BackendFactory, state?: "none") =>
  Effect.gen(function* () {
    const topology = Counting.topology({ topics, worker, partitions, ...(state === undefined ? {} : { state }) })
    const fiber = yield* Effect.forkChild(
      Runner.run(topology, { groupId: group, ...(stateStore === undefined ? {} : { stateStore }) })
    )
    yield* settle("every input record committed", committedToEnd)
    // The stop's bounds run on the test clock too.
    const stop = yield* Effect.forkChild(Fiber.interrupt(fiber))
    for (let i = 0; i < 10 && stop.pollUnsafe() === undefined; i++) yield* TestClock.adjust("1 second")
    yield* Fiber.join(stop)
  })

/**
 * Produces `count` records over `keys` keys. `spread` places them on partitions by the key's number rather than
 * its hash: an input partitioned by another producer's rule.
 */
const produce = (count: number, keys: number, from: number, spread = false) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topics.input.name, partitions }])
    const records = Counting.generate({ count, keys, from, topic: topics.input.name }).map((r, i) =>
      spread ? { ...r, partition: ((from + i) % keys) % partitions } : r
    )
    yield* kafka.send(records)
    return records
  })

const outputs = Effect.gen(function* () {
  const broker = yield* MemoryBroker
  return Counting.decodeOutputs(yield* broker.records(topics.output.name), topics)
})

const changelogSize = Effect.gen(function* () {
  const broker = yield* MemoryBroker
  return (yield* broker.records(changelog)).length
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "sluice-counting-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("counting on the in-memory broker", () => {
  it.effect("counts every key exactly, each output one more than the key's last, on its task's partition", () =>
    Effect.gen(function* () {
      // Partitioned by key number, not by the key's hash: the outputs must still land on their task's partition.
      const sent = yield* produce(1_200, 40, 0, true)
      yield* runToEnd("w1")
      const out = yield* outputs
      assert.strictEqual(out.length, 1_200)
      const v = Counting.verify(Counting.recompute(sent), Counting.finalCounts(out))
      assert.strictEqual(v.exact, 40, Counting.describe(v))
      assert.strictEqual(v.excess, 0, Counting.describe(v))
      const previous = new Map<string, number>()
      for (const o of [...out].sort((a, b) => a.partition - b.partition || a.at - b.at)) {
        assert.strictEqual(o.count, (previous.get(o.key) ?? 0) + 1, `${o.key} at ${o.partition}@${o.at}`)
        previous.set(o.key, o.count)
        assert.strictEqual(o.partition, o.task, "task i writes partition i")
        assert.strictEqual(o.worker, "w1")
      }
    }).pipe(Effect.provide(Env))
  )

  it.effect("a restart in the same group restores the store from its changelog and counts on from there", () =>
    Effect.gen(function* () {
      logs.restores.length = 0
      const first = yield* produce(600, 30, 0)
      yield* runToEnd("w1")
      assert.deepStrictEqual(logs.restores, [], "the first run has nothing to restore")
      const written = yield* changelogSize
      assert.isAbove(written, 0)

      const second = yield* produce(600, 30, 600)
      yield* runToEnd("w2")
      // A memory store starts empty: each task reads its whole changelog partition.
      assert.strictEqual(logs.restores.length, partitions, JSON.stringify(logs.restores))
      assert.strictEqual(
        logs.restores.reduce((n, r) => n + r.records, 0),
        written
      )
      assert.isTrue(logs.restores.every((r) => r.from === 0))

      const out = yield* outputs
      const v = Counting.verify(Counting.recompute([...first, ...second]), Counting.finalCounts(out))
      assert.strictEqual(v.exact, 30, Counting.describe(v))
      assert.strictEqual(v.excess, 0, Counting.describe(v))
      // The second worker went on from the restored counts: its first count of a key is the first run's last + 1.
      const w2 = out.filter((o) => o.worker === "w2")
      assert.strictEqual(w2.length, 600)
      assert.isTrue(w2.every((o) => o.count > 20))
    }).pipe(Effect.provide(Env))
  )

  it.effect("with Store.sqlite, a restart restores only the changelog's tail, written while it was away", () =>
    Effect.gen(function* () {
      logs.restores.length = 0
      const dir = yield* tempDir
      const sqlite = Store.sqlite({ dir })
      const batches = [yield* produce(900, 45, 0)]
      yield* runToEnd("sqlite-1", sqlite)
      const afterFirst = yield* changelogSize

      // Another worker (memory store, restored in full) counts the next records: the tail the SQLite files miss.
      batches.push(yield* produce(300, 45, 900))
      yield* runToEnd("memory", Store.memory)
      const afterSecond = yield* changelogSize
      assert.strictEqual(
        logs.restores.reduce((n, r) => n + r.records, 0),
        afterFirst,
        "memory: the whole changelog"
      )
      logs.restores.length = 0

      batches.push(yield* produce(300, 45, 1_200))
      yield* runToEnd("sqlite-2", sqlite)
      const tail = logs.restores.reduce((n, r) => n + r.records, 0)
      assert.strictEqual(tail, afterSecond - afterFirst, `restored ${JSON.stringify(logs.restores)}`)
      assert.isBelow(tail, afterSecond, "not the whole changelog")
      assert.isTrue(
        logs.restores.every((r) => r.from > 0),
        "from the SQLite checkpoint, not the beginning"
      )

      const v = Counting.verify(Counting.recompute(batches.flat()), Counting.finalCounts(yield* outputs))
      assert.strictEqual(v.exact, 45, Counting.describe(v))
      assert.strictEqual(v.excess, 0, Counting.describe(v))
    }).pipe(Effect.scoped, Effect.provide(Env))
  )

  it.effect("without a store (the benchmark's baseline) the counts of one run are the same", () =>
    Effect.gen(function* () {
      const sent = yield* produce(500, 25, 0)
      assert.deepStrictEqual(Counting.topology({ worker: "plain", partitions, state: "none" }).stores, [])
      yield* runToEnd("plain", undefined, "none")
      const v = Counting.verify(Counting.recompute(sent), Counting.finalCounts(yield* outputs))
      assert.strictEqual(v.exact, 25, Counting.describe(v))
      assert.strictEqual(yield* changelogSize, 0, "no changelog")
    }).pipe(Effect.provide(Env))
  )
})

describe("counting's checks", () => {
  const written = (partition: number, worker: string, at: number, timestamp = at): Counting.Written => ({
    key: "k",
    count: at + 1,
    worker,
    task: partition,
    offset: at,
    partition,
    at,
    timestamp
  })

  it("handoffs: one change of owner per handoff is clean; a worker writing again after its successor is not", () => {
    const clean = Counting.handoffs([
      written(0, "a", 0),
      written(0, "a", 1),
      written(0, "b", 2),
      written(1, "a", 0),
      written(0, "c", 3)
    ])
    assert.deepStrictEqual(
      [...clean.owners],
      [
        [0, ["a", "b", "c"]],
        [1, ["a"]]
      ]
    )
    assert.strictEqual(clean.returns, 0)
    assert.strictEqual(clean.interleaved, 0)
    assert.strictEqual(clean.overlapMs, 0)
    assert.strictEqual(clean.maxChangesPerEpoch, 2, "one epoch: no membership change to spread them over")

    // Out of offset order on purpose: the history is the output offsets' order, not the array's.
    const overlapping = Counting.handoffs([
      written(0, "b", 2, 20),
      written(0, "a", 0, 0),
      written(0, "a", 3, 30),
      written(0, "b", 4, 40),
      written(0, "a", 5, 50)
    ])
    assert.deepStrictEqual(overlapping.owners.get(0), ["a", "b", "a", "b", "a"])
    assert.strictEqual(overlapping.returns, 3)
    assert.strictEqual(overlapping.interleaved, 3, "a at 3, b at 4, a at 5")
    assert.strictEqual(overlapping.overlapMs, 10 + 10 + 10, "b from 20 to a at 30, a from 30 to b at 40, b to a at 50")
  })

  it("handoffs: a worker coming back after another membership change is a return, not an overlap", () => {
    const history = [written(0, "a", 0, 0), written(0, "b", 1, 10), written(0, "b", 2, 15), written(0, "a", 3, 30)]
    const byEpoch = Counting.handoffs(history, [5, 25])
    assert.strictEqual(byEpoch.returns, 1)
    assert.strictEqual(byEpoch.interleaved, 0)
    assert.strictEqual(byEpoch.maxChangesPerEpoch, 1)
    const oneEpoch = Counting.handoffs(history, [5])
    assert.strictEqual(oneEpoch.interleaved, 1, "a wrote again in the epoch b took over in")
    assert.strictEqual(oneEpoch.overlapMs, 20)
    assert.strictEqual(oneEpoch.maxChangesPerEpoch, 2)
  })

  it("verify: counts over the truth are excess, counts under it or missing are lost, others unexpected", () => {
    const truth = new Map([
      ["a", 3],
      ["b", 2],
      ["c", 1],
      ["d", 4]
    ])
    const v = Counting.verify(
      truth,
      new Map([
        ["a", 3],
        ["b", 4],
        ["c", 0],
        ["x", 1]
      ])
    )
    assert.deepStrictEqual(v, {
      keys: 4,
      exact: 1,
      excess: 2,
      keysOver: 1,
      under: ["c: 0 < 1", "d: 0 < 4"],
      unexpected: ["x"]
    })
    assert.isFalse(Counting.isComplete(v))
    assert.isTrue(Counting.isComplete(Counting.verify(truth, new Map([...truth].map(([k, n]) => [k, n + 1])))))
  })

  it("restoreOf reads the runtime's restore line, and nothing else", () => {
    assert.deepStrictEqual(
      Counting.restoreOf("restored counts of task 4: 1200 changelog record(s) from offset 300 in 57 ms"),
      { store: "counts", task: 4, records: 1200, from: 300, ms: 57 }
    )
    assert.isUndefined(Counting.restoreOf("assigned 6 partition(s): 0,1,2,3,4,5 of count-input"))
  })

  it("generate and recompute: round robin over the keys; undecodable keys are not counted", () => {
    const records = Counting.generate({ count: 10, keys: 4, topic: "in", from: 2 })
    assert.deepStrictEqual(
      records.map((r) => new TextDecoder().decode(r.key ?? new Uint8Array())),
      ["key-2", "key-3", "key-0", "key-1", "key-2", "key-3", "key-0", "key-1", "key-2", "key-3"]
    )
    const truth = Counting.recompute([...records, { key: null }, { key: Uint8Array.of(0xff) }])
    assert.deepStrictEqual([...truth].sort(), [
      ["key-0", 2],
      ["key-1", 2],
      ["key-2", 3],
      ["key-3", 3]
    ])
  })
})
