/**
 * Calling kafkajs, without a broker: the connect loop's backoff, its log lines and its bound, and bounded
 * disconnects.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { KafkaError, Rejected, Unavailable } from "../src/Errors.ts"
import { connectWithRetry, disconnectWithin } from "../src/internal/kafkajsClient.ts"
import { captureLogs } from "./support/captureLogs.ts"

const refused = new KafkaError({ operation: "connect", reason: new Unavailable({ message: "connect ECONNREFUSED" }) })

/** A connect that fails `failures` times, recording when each attempt was made. */
const flaky = (failures: number, error: KafkaError = refused) => {
  const attempts: Array<number> = []
  const connect = Effect.clockWith((clock) =>
    Effect.suspend(() => {
      attempts.push(clock.currentTimeMillisUnsafe())
      return attempts.length <= failures ? Effect.fail(error) : Effect.void
    })
  )
  return { attempts, connect }
}

describe("kafkajs connect", () => {
  it.effect("retries with backoff from 250 ms doubling to 5 s, one Warn line per failed attempt", () =>
    Effect.gen(function* () {
      const { attempts, connect } = flaky(8)
      const { text, layer } = captureLogs()
      const fiber = yield* Effect.forkChild(
        connectWithRetry(["127.0.0.1:9099"], undefined, connect).pipe(Effect.provide(layer))
      )
      yield* TestClock.adjust("1 minute")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.deepStrictEqual(
        attempts.map((t, i) => (i === 0 ? 0 : t - attempts[i - 1]!)),
        [0, 250, 500, 1000, 2000, 4000, 5000, 5000, 5000]
      )
      const lines = text()
      assert.strictEqual(lines.length, 8)
      assert.strictEqual(
        lines[2],
        "Warn cannot reach Kafka at 127.0.0.1:9099 (attempt 3): connect ECONNREFUSED; retrying in 1 s"
      )
      assert.strictEqual(
        lines[0],
        "Warn cannot reach Kafka at 127.0.0.1:9099 (attempt 1): connect ECONNREFUSED; retrying in 250 ms"
      )
    })
  )

  it.effect("gives up after maxDurationMs with the last retryable error, the last attempt at the deadline", () =>
    Effect.gen(function* () {
      const { attempts, connect } = flaky(1000)
      const fiber = yield* Effect.forkChild(
        connectWithRetry(["b:1"], 2000, connect).pipe(Effect.provide(captureLogs().layer))
      )
      yield* TestClock.adjust("1 minute")
      const exit = yield* Fiber.await(fiber)
      assert.deepStrictEqual(exit, Exit.fail(refused))
      assert.deepStrictEqual(attempts, [0, 250, 750, 1750, 2000])
    })
  )

  it.effect("maxDurationMs 0 is one attempt; a non-retryable failure is not retried", () =>
    Effect.gen(function* () {
      const once = flaky(5)
      assert.deepStrictEqual(yield* Effect.exit(connectWithRetry(["b:1"], 0, once.connect)), Exit.fail(refused))
      assert.strictEqual(once.attempts.length, 1)
      const denied = new KafkaError({ operation: "connect", reason: new Rejected({ message: "SASL failed" }) })
      const never = flaky(5, denied)
      assert.deepStrictEqual(yield* Effect.exit(connectWithRetry(["b:1"], undefined, never.connect)), Exit.fail(denied))
      assert.strictEqual(never.attempts.length, 1)
    })
  )

  it.effect("interrupting it stops the retries", () =>
    Effect.gen(function* () {
      const { attempts, connect } = flaky(1000)
      const fiber = yield* Effect.forkChild(
        connectWithRetry(["b:1"], undefined, connect).pipe(Effect.provide(captureLogs().layer))
      )
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.interrupt(fiber)
      const made = attempts.length
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(attempts.length, made)
    })
  )

  it.live("disconnectWithin waits at most its bound for a stuck disconnect", () =>
    Effect.gen(function* () {
      let timedOut = false
      const started = Date.now()
      yield* disconnectWithin(
        { disconnect: () => new Promise<void>(() => {}) },
        200,
        Effect.sync(() => {
          timedOut = true
        })
      )
      assert.isTrue(timedOut)
      assert.isBelow(Date.now() - started, 1000)
      yield* disconnectWithin({ disconnect: () => Promise.reject(new Error("gone")) }, 200, Effect.die("not this"))
    })
  )
})
