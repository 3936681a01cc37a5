/**
 * How kafkajs' log entries reach Effect's logger: what Sluice handles itself goes to Debug, nothing above Debug
 * carries a stack trace, and repeated entries are summarised.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type LogLevel } from "effect"
import * as KafkaJS from "kafkajs"
import { annotationsOf, logCreator, makeSummary, severityOf } from "../src/internal/kafkajsLog.ts"
import { captureLogs } from "./support/captureLogs.ts"

const { ERROR, WARN, INFO } = KafkaJS.logLevel

describe("kafkajs log", () => {
  it("what Sluice retries or reports itself is Debug", () => {
    const handled: ReadonlyArray<readonly [string, KafkaJS.logLevel, string]> = [
      ["Connection", ERROR, "Connection error: connect ECONNREFUSED 127.0.0.1:9099"],
      ["Connection", ERROR, "Response Metadata(key: 3, version: 6)"],
      ["Connection", ERROR, "Connection timeout"],
      ["BrokerPool", ERROR, "Failed to connect to seed broker, trying another broker from the list: boom"],
      ["Producer", ERROR, "Failed to send messages: This server does not host this topic-partition"],
      ["Producer", ERROR, "The request included a message larger than the max message size the server will accept"],
      ["Consumer", ERROR, "Crash: KafkaJSNumberOfRetriesExceeded: Request Heartbeat(key: 12, version: 3) timed out"],
      ["Consumer", ERROR, "Restarting the consumer in 300ms"],
      ["Runner", ERROR, "The coordinator is not aware of this member, re-joining the group"],
      ["Runner", WARN, "The group is rebalancing, re-joining"],
      ["ConsumerGroup", WARN, "The coordinator is loading offsets, resync group"],
      ["Cluster", ERROR, "Failed to find group coordinator"],
      ["Admin", WARN, "Could not create topics"]
    ]
    for (const [namespace, level, message] of handled) {
      assert.strictEqual(severityOf(namespace, level, message), "Debug", `${namespace}: ${message}`)
    }
  })

  it("real problems keep their level", () => {
    const real: ReadonlyArray<readonly [string, KafkaJS.logLevel, string, LogLevel.Severity]> = [
      ["Runner", ERROR, "Error when calling eachBatch", "Error"],
      ["Producer", ERROR, "Failed to execute listener: boom", "Error"],
      ["ConsumerGroup", ERROR, "Offset out of range, resetting to default offset", "Error"],
      ["Consumer", ERROR, "Caught error when disconnecting the consumer: boom", "Error"],
      ["ConsumerGroup", WARN, "Consumer group received unsubscribed topics", "Warn"],
      ["ConsumerGroup", INFO, "Consumer has joined the group", "Info"]
    ]
    for (const [namespace, level, message, severity] of real) {
      assert.strictEqual(severityOf(namespace, level, message), severity, `${namespace}: ${message}`)
    }
  })

  it("above Debug no stack trace goes along and errors become their message", () => {
    const error = new Error("boom")
    const extra = { stack: error.stack, error, groupId: "g" }
    assert.deepStrictEqual(annotationsOf("Error", extra), { error: "boom", groupId: "g" })
    assert.deepStrictEqual(annotationsOf("Warn", extra), { error: "boom", groupId: "g" })
    assert.strictEqual(annotationsOf("Debug", extra).stack, error.stack)
  })

  it("an entry repeated within the window is logged once, the next one after it says how many were left out", () => {
    let now = 0
    const summary = makeSummary(10_000, () => now)
    assert.deepStrictEqual(summary("a"), { log: true, suppressed: 0 })
    now = 1000
    assert.deepStrictEqual(summary("a"), { log: false, suppressed: 0 })
    assert.deepStrictEqual(summary("b"), { log: true, suppressed: 0 }, "another entry is not held back")
    now = 9999
    assert.deepStrictEqual(summary("a"), { log: false, suppressed: 0 })
    now = 10_000
    assert.deepStrictEqual(summary("a"), { log: true, suppressed: 2 })
    now = 20_001
    assert.deepStrictEqual(summary("a"), { log: true, suppressed: 0 })
  })

  it.effect("entries reach Effect's logger as one line each, summarised", () =>
    Effect.gen(function* () {
      const { text, layer } = captureLogs()
      const context = yield* Effect.context<never>().pipe(Effect.provide(layer))
      const log = logCreator(context)(KafkaJS.logLevel.DEBUG)
      const error = new Error("connect ECONNREFUSED 127.0.0.1:9099")
      for (let i = 0; i < 12; i++) {
        log({
          namespace: "Connection",
          level: ERROR,
          label: "ERROR",
          log: { timestamp: "", message: "Connection error: connect ECONNREFUSED 127.0.0.1:9099", stack: error.stack }
        })
        log({
          namespace: "Runner",
          level: ERROR,
          label: "ERROR",
          log: { timestamp: "", message: "Error when calling eachBatch", stack: error.stack, error }
        })
      }
      assert.deepStrictEqual(text(), [
        "Debug kafkajs Connection: Connection error: connect ECONNREFUSED 127.0.0.1:9099",
        "Error kafkajs Runner: Error when calling eachBatch"
      ])
    })
  )

  it.effect("kafkajs' own debug entries (a request, its response) pass whole, each one", () =>
    Effect.gen(function* () {
      const { text, layer } = captureLogs()
      const context = yield* Effect.context<never>().pipe(Effect.provide(layer))
      const log = logCreator(context)(KafkaJS.logLevel.DEBUG)
      for (let i = 0; i < 3; i++)
        log({
          namespace: "Connection",
          level: KafkaJS.logLevel.DEBUG,
          label: "DEBUG",
          log: { timestamp: "", message: "Request JoinGroup(key: 11, version: 5)", correlationId: i }
        })
      assert.deepStrictEqual(text(), Array(3).fill("Debug kafkajs Connection: Request JoinGroup(key: 11, version: 5)"))
    })
  )
})
