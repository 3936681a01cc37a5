/** The clickstream commands (src/ProduceClickstream.ts, src/RunClickstream.ts): registered, described, checked. */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestConsole } from "effect/testing"
import { main } from "../src/main.ts"

const stdout = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const before = (yield* TestConsole.logLines).length
    yield* main(argv)
    return (yield* TestConsole.logLines).slice(before).join("\n")
  })

describe("sluice clickstream commands", () => {
  it.effect("run clickstream-sessions --help names its inputs, outputs, the Redis policy and the exit codes", () =>
    Effect.gen(function* () {
      const text = yield* stdout(["run", "clickstream-sessions", "--help"])
      for (const part of [
        "user:profile:<user_id>",
        "clickstream_events",
        "--redis-down",
        "--batch-size",
        "Exit codes:"
      ])
        assert.include(text, part)
    })
  )

  it.effect("produce lists clickstream and user-profiles-redis", () =>
    Effect.gen(function* () {
      const text = yield* stdout(["produce", "--help"])
      assert.include(text, "clickstream")
      assert.include(text, "user-profiles-redis")
    })
  )

  it.effect("produce clickstream writes --count events keyed by session (in-memory broker)", () =>
    Effect.gen(function* () {
      const text = yield* stdout(["produce", "clickstream", "--brokers", "memory", "--count", "50", "--sessions", "7"])
      assert.match(text, /produced 50 events over 7 sessions of 7 users to clickstream \(keyed by session_id\)/)
    })
  )
})
