/**
 * `sluice topics` and `sluice groups describe` against the real broker (SLUICE_BROKERS, default 127.0.0.1:9092), run
 * as a user types them: create, list, describe, a group with commits and a live member, delete.
 */
import { randomUUID } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import * as Codec from "@sluice/core/Codec"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import { bytes } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Effect, Fiber, Layer, Logger } from "effect"
import { TestConsole } from "effect/testing"
import { main } from "../src/main.ts"

const brokers = process.env.SLUICE_BROKERS ?? "127.0.0.1:9092"
const kafka = KafkaJs.layer({ brokers: brokers.split(","), clientId: "admin-test" })

/** What `sluice <argv>` prints on stdout. */
const stdout = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const before = (yield* TestConsole.logLines).length
    yield* main([...argv, "--brokers", brokers])
    return (yield* TestConsole.logLines).slice(before).join("\n")
  })

describe("sluice topics and groups (real broker)", () => {
  it.live(
    "create, list, describe, delete; a group's members, commits and lag",
    () =>
      Effect.gen(function* () {
        const name = `admin-${randomUUID().slice(0, 8)}`
        assert.include(
          yield* stdout(["topics", "create", name, "--partitions", "3", "--config", "retention.ms=3600000"]),
          `created ${name} with 3 partition(s)`
        )
        assert.include(yield* stdout(["topics", "create", name]), "already exists")
        assert.match(yield* stdout(["topics", "list"]), new RegExp(`${name} +3`))
        const listed: ReadonlyArray<{ name: string; partitions: number }> = JSON.parse(
          yield* stdout(["topics", "list", "--json"])
        )
        assert.deepInclude(listed, { name, partitions: 3 })

        const k = yield* Kafka
        yield* k.send(Array.from({ length: 30 }, (_, i) => ({ topic: name, key: bytes(`k${i}`), value: bytes("v") })))
        const described = JSON.parse(yield* stdout(["topics", "describe", name, "--json"]))
        assert.strictEqual(described.partitions, 3)
        assert.strictEqual(described.records, 30)

        // A group that has consumed 30 records and is still running: one member, every partition, lag 0.
        const group = `${name}-group`
        const seen = { n: 0 }
        const topology = Topology.make({
          name: "admin-test",
          input: Topic.make(name, { key: Codec.raw, value: Codec.raw }),
          process: (records) =>
            Effect.sync(() => {
              seen.n += records.length
              return { outputs: [], rejected: [] }
            })
        })
        // Its log lines would go to the console this test reads.
        const worker = yield* Effect.forkChild(
          Runner.run(topology, { groupId: group, commitInterval: "200 millis" }).pipe(Effect.provide(Logger.layer([])))
        )
        for (let i = 0; i < 300; i++) {
          const state = JSON.parse(yield* stdout(["groups", "describe", group, "--json"]))
          if (
            state.members.length === 1 &&
            state.partitions.length === 3 &&
            state.partitions.every((p: { lag: number | null }) => p.lag === 0)
          )
            break
          yield* Effect.sleep("100 millis")
        }
        const state = JSON.parse(yield* stdout(["groups", "describe", group, "--json"]))
        assert.strictEqual(seen.n, 30)
        assert.strictEqual(state.members.length, 1)
        assert.strictEqual(state.members[0].assignment.length, 3)
        assert.deepStrictEqual(
          state.partitions.map((p: { committed: number; high: number; lag: number }) => p.committed - p.high + p.lag),
          [0, 0, 0]
        )
        const text = yield* stdout(["groups", "describe", group])
        assert.include(text, `group ${group}: 1 member(s), stable; total lag 0`)
        assert.match(text, /TOPIC +PARTITION +COMMITTED +HIGH +LAG +MEMBER/)
        yield* Fiber.interrupt(worker)

        assert.include(yield* stdout(["topics", "delete", name, `${name}.dlq`, `${name}-missing`]), `deleted ${name}`)
        assert.notInclude(yield* stdout(["topics", "list"]), `${name} `)
      }).pipe(Effect.provide(Layer.merge(kafka, TestConsole.layer))),
    60_000
  )
})
