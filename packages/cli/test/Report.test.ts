/**
 * How the CLI reports failures (src/Report.ts): hints chosen by the reason's tag, naming the topic, the brokers and
 * the sizes, and what `sluice` prints for them end to end.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import {
  ConfigInvalid,
  KafkaError,
  LookupError,
  MessageTooLarge,
  Rejected,
  Timeout,
  Unavailable,
  UnknownTopic
} from "@sluice/core/Errors"
import { RedisError } from "@sluice/core/Redis"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as EventsToPostgres from "@sluice/processors/EventsToPostgres"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { TestConsole } from "effect/testing"
import * as Flags from "../src/Flags.ts"
import { main } from "../src/main.ts"
import * as Report from "../src/Report.ts"

const kafka = (reason: KafkaError["reason"]) => new KafkaError({ operation: "describeTopic", reason })

describe("creatorOf", () => {
  it("names the command that creates each of the built-in topologies' topics, under any prefix", () => {
    assert.strictEqual(
      Report.creatorOf(EventsToPostgres.named("staging-").raw.name),
      "sluice produce events --topic-prefix staging-"
    )
    assert.strictEqual(
      Report.creatorOf(ClickEnrichment.named("staging-").profiles.name),
      "sluice produce profiles --topic-prefix staging-"
    )
    assert.strictEqual(Report.creatorOf("staging-something-else"), undefined)
  })
})

describe("hintFor", () => {
  it("UnknownTopic: names the topic and the command that creates it, with its prefix", () => {
    assert.strictEqual(
      Report.hintFor(kafka(new UnknownTopic({ message: "no such thing", topic: "staging-user-events" }))),
      "topic staging-user-events does not exist: create it (`sluice produce user-events --topic-prefix staging-`), or check --topic-prefix and --brokers"
    )
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "user_profiles" }))),
      "create it (`sluice produce profiles`)"
    )
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "a-clicks" }))),
      "create it (`sluice produce clicks --topic-prefix a-`)"
    )
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "a-clicks.enriched" }))),
      "create it (`sluice run click-enrichment --topic-prefix a-`)"
    )
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "user-events.dlq" }))),
      "create it (`sluice run user-events`)"
    )
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "s-sensor-readings" }))),
      "create it (`sluice produce sensors --topic-prefix s-`)"
    )
    assert.strictEqual(
      Report.hintFor(kafka(new UnknownTopic({ message: "x", topic: "orders" }))),
      "topic orders does not exist: create it, or check --topic-prefix and --brokers"
    )
  })

  it("Unavailable and Timeout: asks whether Kafka runs at the brokers in use", () => {
    const brokers = { brokers: "kafka-1:9092,kafka-2:9092" }
    for (const reason of [new Unavailable({ message: "down" }), new Timeout({ message: "slow" })]) {
      assert.strictEqual(
        Report.hintFor(kafka(reason), brokers),
        "is Kafka running at kafka-1:9092,kafka-2:9092? `bash scripts/services.sh start`, or point --brokers / SLUICE_BROKERS at your cluster"
      )
    }
  })

  it("MessageTooLarge: the size, the limit, the topic and what to change", () => {
    const hint = Report.hintFor(
      kafka(new MessageTooLarge({ message: "too big", topic: "clicks", size: 2_000_000, limit: 1_048_588 }))
    )
    assert.strictEqual(
      hint,
      "a record of 2000000 bytes is larger than topic clicks accepts (1048588 bytes): make the records smaller, or raise the topic's max.message.bytes (and the broker's message.max.bytes and replica.fetch.max.bytes to match)"
    )
    assert.include(
      Report.hintFor(kafka(new MessageTooLarge({ message: "too big" }))),
      "raise the topic's max.message.bytes"
    )
  })

  it("goes by the reason's tag, not the message's wording", () => {
    // Words the old regexes looked for, under a reason that is neither an outage nor a missing topic.
    assert.isUndefined(Report.hintFor(kafka(new Rejected({ message: "unknown topic? broker connect ECONNREFUSED" }))))
    assert.include(
      Report.hintFor(kafka(new UnknownTopic({ message: "UNKNOWN_TOPIC_OR_PARTITION", topic: "t" }))),
      "topic t"
    )
  })

  it("Redis and lookups: by strategy and reason", () => {
    const down = new Unavailable({ message: "ECONNREFUSED" })
    assert.include(Report.hintFor(new RedisError({ operation: "connect", reason: down })), "is Redis running?")
    assert.isUndefined(
      Report.hintFor(new RedisError({ operation: "get", reason: new Rejected({ message: "WRONGTYPE" }) }))
    )
    assert.include(Report.hintFor(new LookupError({ strategy: "redis", reason: down })), "is Redis running?")
    assert.include(
      Report.hintFor(new LookupError({ strategy: "table", reason: down }), { brokers: "k:9092" }),
      "is Kafka running at k:9092?"
    )
    assert.strictEqual(Report.hintFor(new ConfigInvalid({ reason: "x" })), "see --help for the accepted values")
  })
})

describe("what sluice prints", () => {
  it.effect("inspect of a missing topic: the error and the hint that names it", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(main(["inspect", "staging-clicks", "--from-beginning", "--brokers", "memory"]))
      assert.strictEqual(exit._tag, "Failure")
      const err = (yield* TestConsole.errorLines).join("\n")
      assert.include(err, "error: Kafka describeTopic failed")
      assert.include(
        err,
        "hint: topic staging-clicks does not exist: create it (`sluice produce clicks --topic-prefix staging-`)"
      )
    })
  )

  it.effect("a command's failure is hinted with its own --brokers", () =>
    Effect.gen(function* () {
      const failing = Flags.command("failing", { brokers: Flags.brokers }, () =>
        Effect.fail(kafka(new Unavailable({ message: "connect ECONNREFUSED" })))
      )
      const exit = yield* Effect.exit(
        Command.runWith(failing, { version: "0" })(["--brokers", "10.0.0.7:9092"]).pipe(
          Effect.provide(NodeServices.layer)
        )
      )
      assert.strictEqual(exit._tag, "Failure")
      const err = (yield* TestConsole.errorLines).join("\n")
      assert.include(err, "hint: is Kafka running at 10.0.0.7:9092?")
    })
  )
})
