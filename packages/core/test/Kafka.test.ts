/**
 * The rules every Kafka layer shares: broker addresses (`parseBrokers`, `brokersConfig`), the pre-check of `send`
 * (`oversized`) and the error for a missing topic (`unknownTopic`).
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Result } from "effect"
import { brokersConfig, oversized, parseBrokers, unknownTopic } from "../src/Kafka.ts"
import { bytes } from "../src/Record.ts"

describe("Kafka", () => {
  it("parseBrokers accepts host:port lists, IPv6 in brackets, blanks around entries", () => {
    assert.deepStrictEqual(parseBrokers("127.0.0.1:9092"), Result.succeed(["127.0.0.1:9092"]))
    assert.deepStrictEqual(
      parseBrokers(" kafka-1.internal:9092, kafka_2:19092 ,[::1]:9093,"),
      Result.succeed(["kafka-1.internal:9092", "kafka_2:19092", "[::1]:9093"])
    )
    assert.deepStrictEqual(
      parseBrokers("localhost:1,localhost:65535"),
      Result.succeed(["localhost:1", "localhost:65535"])
    )
  })

  it("parseBrokers names the bad entry and the expected form", () => {
    for (const [input, bad] of [
      ["not-a-host", "not-a-host"],
      ["127.0.0.1:9092,not-a-host", "not-a-host"],
      ["localhost:0", "localhost:0"],
      ["localhost:65536", "localhost:65536"],
      ["localhost:9092x", "localhost:9092x"],
      ["localhost:-1", "localhost:-1"],
      [":9092", ":9092"],
      ["::1:9092", "::1:9092"],
      ["kafka:9092/path", "kafka:9092/path"],
      ["ka fka:9092", "ka fka:9092"],
      ["http://kafka:9092", "http://kafka:9092"]
    ] as const) {
      const result = parseBrokers(input)
      assert.isTrue(Result.isFailure(result), input)
      if (Result.isSuccess(result)) continue
      assert.include(result.failure, `"${bad}"`, input)
      assert.include(result.failure, "host:port", input)
      assert.include(result.failure, "1 to 65535", input)
    }
    const empty = parseBrokers(" , ")
    assert.isTrue(Result.isFailure(empty) && empty.failure.includes("host:port"))
  })

  it.effect("brokersConfig validates SLUICE_BROKERS with parseBrokers, default 127.0.0.1:9092", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) => brokersConfig.parse(ConfigProvider.fromEnvRecord(env))
      assert.deepStrictEqual(yield* read({}), ["127.0.0.1:9092"])
      assert.deepStrictEqual(yield* read({ SLUICE_BROKERS: "a:1, b:2" }), ["a:1", "b:2"])
      const error = yield* read({ SLUICE_BROKERS: "not-a-host" }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "ConfigError")
      assert.include(error.message, "SLUICE_BROKERS")
      assert.include(error.message, `"not-a-host"`)
    })
  )

  it("oversized names the first offending record's topic, size and limit, and lists every offending index", () => {
    const record = (topic: string, n: number) => ({ topic, key: null, value: new Uint8Array(n) })
    const limits: Record<string, number> = { a: 100, b: 200 }
    const limitOf = (topic: string) => limits[topic] ?? 0
    assert.isUndefined(oversized([record("a", 10), record("b", 100)], limitOf))
    const error = oversized([record("a", 10), record("b", 300), record("a", 200), record("b", 10)], limitOf)
    assert.strictEqual(error?.operation, "send")
    const reason = error?.reason
    assert.strictEqual(reason?._tag, "MessageTooLarge")
    if (reason?._tag !== "MessageTooLarge") return
    assert.deepStrictEqual(reason.records, [1, 2])
    assert.deepStrictEqual([reason.topic, reason.size, reason.limit], ["b", 370, 200])
    assert.strictEqual(
      reason.message,
      "record 1 is 370 bytes, over the 200-byte limit (max.message.bytes) of topic b, and 1 more record is over " +
        "their topic's limit; nothing was sent"
    )
    assert.isFalse(error?.isRetryable)
    assert.strictEqual(
      oversized([{ topic: "a", key: bytes("k"), value: null }], () => 10)?.reason._tag,
      "MessageTooLarge"
    )
  })

  it("unknownTopic says which topic does not exist", () => {
    const error = unknownTopic("offsets", "orders")
    assert.strictEqual(error.message, "Kafka offsets failed: topic orders does not exist")
    assert.deepStrictEqual(
      [error.reason._tag, error.reason._tag === "UnknownTopic" && error.reason.topic],
      ["UnknownTopic", "orders"]
    )
    assert.isFalse(error.isRetryable)
  })
})
