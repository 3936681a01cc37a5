/** Stores read from outside: the owner of a key's task answers, another worker says which partition and owner. */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { HttpClient, HttpRouter } from "effect/http"
import * as Http from "../src/Http.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import { partitionForKey } from "../src/Partitioner.ts"
import { bytes } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Tables from "../src/Tables.ts"
import { settle, wordCount } from "./support/runtime.ts"

const topology = wordCount()

describe("Tables", () => {
  it.effect("the worker that owns a key's task answers; the other names the partition and the owner", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: "words", partitions: 4 }])
      const keys = ["a", "b", "c", "d", "e", "f"]
      yield* kafka.send(
        keys.flatMap((k, i) => Array.from({ length: i + 1 }, () => ({ topic: "words", key: bytes(k), value: null })))
      )
      // Two workers in one process, each with its own registry, as two processes would have.
      const one = Tables.make()
      const two = Tables.make()
      const a = yield* Effect.forkChild(Runner.run(topology).pipe(Effect.provideService(Tables.Tables, one)))
      yield* settle(
        "the first worker's tasks",
        Effect.map(broker.members("wc"), (m) => m.length === 1 && m[0]!.assignment.length === 4)
      )
      const b = yield* Effect.forkChild(Runner.run(topology).pipe(Effect.provideService(Tables.Tables, two)))
      yield* settle(
        "two members with two tasks each",
        Effect.map(broker.members("wc"), (m) => m.length === 2 && m.every((x) => x.assignment.length === 2))
      )
      const members = yield* broker.members("wc")
      const ownerOf = (key: string) => {
        const partition = partitionForKey(bytes(key), 4)
        return { partition, member: members.find((m) => m.assignment.some((tp) => tp.partition === partition))! }
      }
      // Which registry is whose: the first worker to join is the first member.
      const registryOf = (memberId: string) => (memberId === members[0]!.memberId ? one : two)
      yield* settle(
        "every count durable at its owner",
        Effect.map(
          Effect.forEach(keys, (k) => registryOf(ownerOf(k).member.memberId).lookup("counts", bytes(k))),
          (found) => found.every((f, i) => f._tag === "Found" && f.value === i + 1)
        )
      )
      for (const [i, key] of keys.entries()) {
        const { partition, member } = ownerOf(key)
        const mine = registryOf(member.memberId)
        const other = mine === one ? two : one
        assert.deepStrictEqual(yield* mine.lookup("counts", bytes(key)), {
          _tag: "Found",
          partition,
          key,
          value: i + 1
        })
        const elsewhere = yield* other.lookup("counts", bytes(key))
        assert.strictEqual(elsewhere._tag, "Elsewhere")
        if (elsewhere._tag === "Elsewhere") {
          assert.strictEqual(elsewhere.partition, partition)
          assert.include(elsewhere.owner, member.memberId)
        }
      }
      const all = [...(one.entries("counts", 100)?.entries ?? []), ...(two.entries("counts", 100)?.entries ?? [])]
      assert.deepStrictEqual(
        Object.fromEntries(all.map((e) => [String(e.key), e.value])),
        Object.fromEntries(keys.map((k, i) => [k, i + 1]))
      )

      // Over HTTP, answered from the first worker's registry.
      const server = HttpRouter.serve(Http.routes, { disableLogger: true, disableListenLog: true }).pipe(
        Layer.provideMerge(NodeHttpServer.layerTest),
        Layer.provide(Layer.succeed(Tables.Tables, one))
      )
      const ownKey = keys.find((k) => registryOf(ownerOf(k).member.memberId) === one)!
      const otherKey = keys.find((k) => registryOf(ownerOf(k).member.memberId) === two)!
      yield* Effect.gen(function* () {
        const found = yield* HttpClient.get(`/tables/counts/${ownKey}`)
        assert.strictEqual(found.status, 200)
        assert.deepInclude(yield* found.json, { store: "counts", key: ownKey, value: keys.indexOf(ownKey) + 1 })
        const moved = yield* HttpClient.get(`/tables/counts/${otherKey}`)
        assert.strictEqual(moved.status, 421)
        assert.include(JSON.stringify(yield* moved.json), ownerOf(otherKey).member.memberId)
        assert.strictEqual((yield* HttpClient.get("/tables/nope")).status, 404)
        const list = yield* HttpClient.get("/tables/counts")
        assert.strictEqual(list.status, 200)
        assert.deepInclude(yield* list.json, { store: "counts", truncated: false })
      }).pipe(Effect.provide(server))
      yield* Fiber.interrupt(b)
      yield* Fiber.interrupt(a)
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )
})
