/**
 * The kafkajs layer when the broker (SLUICE_BROKERS, default 127.0.0.1:9092) is not there: starting during an
 * outage, giving up, being interrupted, closing with the broker gone or stalled, and what reaches the log meanwhile.
 * A proxy (`kafkaProxy.ts`) in front of the real broker makes it appear, vanish or stall.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import { Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes } from "../src/Record.ts"
import { firstBroker, unique } from "./support/brokers.ts"
import { captureLogs, type Line } from "./support/captureLogs.ts"
import { freePort, startProxy } from "./support/kafkaProxy.ts"

const hasStack = (line: Line) =>
  /\n\s+at /.test(line.message) ||
  Object.values(line.annotations).some((v) => typeof v === "string" && /\n\s+at /.test(v))

const elapsedSince = (started: number) => Date.now() - started

describe("KafkaJs during an outage (real broker behind a proxy)", () => {
  it.live("a layer started while nothing listens connects once the broker appears", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const { lines, layer } = captureLogs()
      const started = Date.now()
      const building = yield* Effect.forkChild(
        Effect.gen(function* () {
          const kafka = yield* Kafka
          return yield* kafka.listTopics
        }).pipe(Effect.provide(KafkaJs.layer({ brokers: [`127.0.0.1:${port}`] })), Effect.provide(layer))
      )
      yield* Effect.sleep("1500 millis")
      const proxy = yield* Effect.acquireRelease(
        Effect.promise(() => startProxy(firstBroker, port)),
        (p) => Effect.promise(p.stop)
      )
      const topics = yield* Fiber.join(building).pipe(Effect.timeout("20 seconds"))
      assert.isArray(topics)
      assert.isAbove(elapsedSince(started), 1500)
      const warnings = lines.filter((l) => l.level === "Warn" && l.message.startsWith("cannot reach Kafka"))
      assert.isAtLeast(warnings.length, 2)
      assert.match(
        warnings[0]!.message,
        new RegExp(
          `^cannot reach Kafka at 127\\.0\\.0\\.1:${port} \\(attempt 1\\): .*ECONNREFUSED.*; retrying in 250 ms$`
        )
      )
      assert.include(warnings[1]!.message, "(attempt 2)")
      assert.strictEqual(proxy.port, port)
    }).pipe(Effect.scoped)
  )

  it.live("a layer gives up after connectRetry.maxDurationMs with a retryable KafkaError; kafkajs stays quiet", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const { lines, layer } = captureLogs()
      const started = Date.now()
      const error = yield* Layer.build(
        KafkaJs.layer({ brokers: [`127.0.0.1:${port}`], connectRetry: { maxDurationMs: 2000 } })
      ).pipe(Effect.provide(layer), Effect.flip)
      const elapsed = elapsedSince(started)
      assert.strictEqual(error._tag, "KafkaError")
      if (error._tag !== "KafkaError") return
      assert.strictEqual(error.operation, "connect")
      assert.strictEqual(error.reason._tag, "Unavailable")
      assert.isTrue(error.isRetryable)
      assert.isAtLeast(elapsed, 1900)
      assert.isBelow(elapsed, 4000)

      // Sluice's own line per attempt; kafkajs' entries only at Debug, and nothing above Debug with a stack trace.
      const warnings = lines.filter((l) => l.level === "Warn")
      assert.isAtLeast(warnings.length, 3)
      assert.isTrue(warnings.every((l) => l.message.startsWith(`cannot reach Kafka at 127.0.0.1:${port} (attempt `)))
      const kafkajs = lines.filter((l) => l.message.startsWith("kafkajs "))
      assert.isNotEmpty(kafkajs, "kafkajs' entries do reach the logger")
      assert.deepStrictEqual(
        kafkajs.filter((l) => l.level !== "Debug").map((l) => l.message),
        []
      )
      assert.deepStrictEqual(
        lines.filter((l) => l.level !== "Debug" && hasStack(l)).map((l) => l.message),
        []
      )
      // Identical entries are summarised: each kind at most once in a run shorter than the window.
      const messages = kafkajs.map((l) => l.message)
      assert.strictEqual(new Set(messages).size, messages.length, messages.join("\n"))
    }).pipe(Effect.scoped)
  )

  it.live("interrupting a layer that waits for its broker stops it promptly", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const { layer } = captureLogs()
      const fiber = yield* Effect.forkChild(
        Layer.build(KafkaJs.layer({ brokers: [`127.0.0.1:${port}`] })).pipe(Effect.provide(layer), Effect.scoped)
      )
      yield* Effect.sleep("1500 millis")
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      assert.isBelow(elapsedSince(started), 1000)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fiber)))
    })
  )

  for (const outage of ["goes away", "stalls"] as const) {
    it.live(`closing a layer whose broker ${outage} takes about closeTimeoutMs, and so does each consumer`, () =>
      Effect.gen(function* () {
        const proxy = yield* Effect.promise(() => startProxy(firstBroker))
        const layerScope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          KafkaJs.layer({ brokers: [`127.0.0.1:${proxy.port}`], logLevel: "None", closeTimeoutMs: 1000 }),
          layerScope
        )
        const kafka = Context.get(context, Kafka)
        const topic = unique("sluice-close")
        yield* kafka.createTopics([{ name: topic, partitions: 1 }])
        yield* kafka.send([{ topic, key: null, value: bytes("x") }])
        // A program's consumers live in its own scope, closed before the layer's.
        const program = yield* Scope.make()
        yield* kafka
          .consume(
            { groupId: unique("sluice-close-group"), topics: [topic] },
            { onBatch: () => Effect.void, onAssignment: () => Effect.void }
          )
          .pipe(Scope.provide(program))
        yield* kafka.read({ topics: [topic] }).pipe(Stream.runDrain, Effect.forkIn(program))
        yield* Effect.sleep("3 seconds")

        if (outage === "goes away") yield* Effect.promise(proxy.stop)
        else proxy.stall()
        const started = Date.now()
        yield* Scope.close(program, Exit.void)
        const consumers = elapsedSince(started)
        yield* Scope.close(layerScope, Exit.void)
        const total = elapsedSince(started)
        yield* Effect.logInfo(
          `broker ${outage}: consumers closed in ${consumers} ms, the layer in ${total - consumers} ms`
        )
        assert.isBelow(consumers, 2500, "two consumers, each bounded by closeTimeoutMs")
        assert.isBelow(total - consumers, 1500, "the producer and the admin close side by side")
        if (outage === "goes away") assert.isBelow(total, 2000)
        if (outage === "stalls") yield* Effect.promise(proxy.stop)
      })
    )
  }
})
