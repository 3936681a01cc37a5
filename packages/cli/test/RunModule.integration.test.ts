/** `sluice run ./module.ts` against the real broker (SLUICE_BROKERS, default 127.0.0.1:9092), as a user runs it. */
import { randomUUID } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Reader from "@sluice/core/Reader"
import { bytes, text } from "@sluice/core/Record"
import { Effect, Fiber, Layer, Stream } from "effect"
import { TestConsole } from "effect/testing"
import { main } from "../src/main.ts"

const brokers = process.env.SLUICE_BROKERS ?? "127.0.0.1:9092"
const kafka = KafkaJs.layer({ brokers: brokers.split(","), clientId: "run-module-test" })

describe("sluice run <module> (real broker)", () => {
  it.live(
    "runs the topology a module exports, under the topic prefix, exactly once",
    () =>
      Effect.gen(function* () {
        const prefix = `mod-${randomUUID().slice(0, 8)}-`
        const k = yield* Kafka
        yield* k.createTopics([{ name: `${prefix}lines`, partitions: 3 }])
        const keys = ["a", "b", "c", "d"]
        yield* k.send(
          Array.from({ length: 40 }, (_, i) => ({
            topic: `${prefix}lines`,
            key: bytes(keys[i % keys.length]!),
            value: bytes(`line ${i}`)
          }))
        )
        const run = yield* Effect.forkChild(
          main([
            "run",
            "packages/cli/test/fixtures/shout.ts",
            "--brokers",
            brokers,
            "--topic-prefix",
            prefix,
            "--guarantee",
            "exactly_once"
          ])
        )
        let shouts: ReadonlyArray<string> = []
        for (let i = 0; i < 200 && shouts.length < 40; i++) {
          yield* Effect.sleep("200 millis")
          const exists = (yield* k.listTopics).includes(`${prefix}shouts`)
          if (!exists) continue
          shouts = (yield* Stream.runCollect(Reader.readToEnd(`${prefix}shouts`)))
            .flat()
            .map((r) => text(r.value ?? new Uint8Array()))
        }
        yield* Fiber.interrupt(run)
        assert.strictEqual(shouts.length, 40)
        assert.include(shouts, "LINE 0 #1")
        // Per key, the counts run 1..10: each line once, in order.
        for (const key of keys) {
          const mine = shouts.filter((s) => Number(s.split(" ")[1]) % keys.length === keys.indexOf(key))
          assert.deepStrictEqual(
            mine.map((s) => Number(s.split("#")[1])),
            Array.from({ length: 10 }, (_, i) => i + 1)
          )
        }
      }).pipe(Effect.provide(Layer.merge(kafka, TestConsole.layer))),
    90_000
  )
})
