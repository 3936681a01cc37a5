/**
 * The kafkajs layer's checks that need no broker: invalid broker addresses fail at once, before any connection.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import * as KafkaJs from "../src/KafkaJs.ts"

describe("KafkaJs", () => {
  it.live("an invalid broker address fails the layer at once with ConfigInvalid naming it", () =>
    Effect.gen(function* () {
      const started = Date.now()
      const error = yield* Layer.build(KafkaJs.layer({ brokers: ["127.0.0.1:9092", "not-a-host"] })).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "ConfigInvalid")
      assert.include(error.message, `"not-a-host"`)
      assert.include(error.message, "host:port")
      assert.isBelow(Date.now() - started, 500)
    })
  )

  it.live("layerConfig rejects an invalid SLUICE_BROKERS with a ConfigError naming it", () =>
    Effect.gen(function* () {
      const error = yield* Layer.build(KafkaJs.layerConfig).pipe(
        Effect.scoped,
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnvRecord({ SLUICE_BROKERS: "kafka:99999" }))),
        Effect.flip
      )
      assert.strictEqual(error._tag, "ConfigError")
      assert.include(error.message, `"kafka:99999"`)
    })
  )
})
