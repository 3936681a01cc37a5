/** `sluice run` (src/Run.ts): the options a run derives from its flags, and what its `--help` says. */
import { assert, describe, it } from "@effect/vitest"
import * as Main from "@sluice/core/Main"
import { Effect, Option } from "effect"
import { TestConsole } from "effect/testing"
import { main } from "../src/main.ts"
import * as Run from "../src/Run.ts"

describe("the consumer group of a run", () => {
  it("is --topic-prefix followed by the topology's name by default", () => {
    assert.strictEqual(Run.groupId({ group: Option.none(), prefix: "staging-" }, "user-events"), "staging-user-events")
    assert.strictEqual(Run.groupId({ group: Option.none(), prefix: "" }, "user-events"), "user-events")
  })

  it("differs between prefixes, so two deployments never share a group", () => {
    const a = Run.groupId({ group: Option.none(), prefix: "a-" }, "click-enrichment")
    const b = Run.groupId({ group: Option.none(), prefix: "b-" }, "click-enrichment")
    assert.notStrictEqual(a, b)
  })

  it("is --group when given, whatever the prefix", () => {
    assert.strictEqual(Run.groupId({ group: Option.some("mine"), prefix: "staging-" }, "user-events"), "mine")
  })

  it("is what the runner is given", () => {
    const options = Run.runOptions({ group: Option.none(), prefix: "p-", shutdownTimeoutMs: 1_000 }, "user-events")
    assert.strictEqual(options.groupId, "p-user-events")
    assert.strictEqual(options.shutdownTimeout, "1000 millis")
  })
})

/** What `sluice <argv>` prints on stdout (TestConsole keeps every line of the test: these are the new ones). */
const stdout = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const before = (yield* TestConsole.logLines).length
    yield* main(argv)
    return (yield* TestConsole.logLines).slice(before).join("\n")
  })

const help = (...argv: ReadonlyArray<string>) => stdout([...argv, "--help"])

describe("sluice run --help", () => {
  it.effect("lists every exit code, as core Main.ts defines them", () =>
    Effect.gen(function* () {
      for (const argv of [["run"], ["run", "user-events"], ["run", "click-enrichment"]]) {
        const text = yield* help(...argv)
        const where = `sluice ${argv.join(" ")} --help:\n${text}`
        assert.include(text, "Exit codes:", where)
        assert.match(
          text,
          new RegExp(`\\n {4}${Main.exitCodes.ok} +finished, or stopped cleanly by SIGINT/SIGTERM`),
          where
        )
        assert.match(text, new RegExp(`\\n {4}${Main.exitCodes.failed} +failed`), where)
        assert.match(text, new RegExp(`\\n {4}${Main.exitCodes.usage} +invalid arguments or configuration`), where)
        assert.match(
          text,
          new RegExp(`\\n {4}${Main.exitCodes.uncleanStop} +a signal stopped it, but not cleanly`),
          where
        )
        assert.match(text, new RegExp(`\\n {4}${Main.exitCodes.hardExit} +the graceful stop outlived`), where)
        assert.match(text, /\n {4}128\+n +a second signal n .*\(130 SIGINT, 143 SIGTERM\)/, where)
      }
    })
  )

  it.effect("says what the consumer group is by default", () =>
    Effect.gen(function* () {
      assert.include(yield* help("run"), "by default that is --topic-prefix followed by the topology's name")
      const topology = yield* help("run", "user-events")
      assert.match(
        topology,
        /--group string +consumer group id \(default: --topic-prefix followed by the topology's name/
      )
      assert.match(topology, /--topic-prefix string +prefix for every topic name and for the default consumer group/)
      assert.match(topology, /--shutdown-timeout-ms integer +.*\(1\.\.3600000; default 5000\)/)
      assert.match(topology, /--metrics-port integer +.*\(1\.\.65535; default: off\)/)
    })
  )

  it.effect("lists the topologies by their one-line summary", () =>
    Effect.gen(function* () {
      const text = yield* help("run")
      assert.match(text, /SUBCOMMANDS\n +user-events +Consume user-events: [^\n]*\n +click-enrichment +Enrich clicks/)
    })
  )
})

describe("other commands' --help stays true", () => {
  it.effect("ranges and defaults are the ones the flags check and use", () =>
    Effect.gen(function* () {
      const produce = yield* help("produce", "user-events")
      assert.match(produce, /--count, -n integer +how many records \(at least 1; default 1000\)/)
      assert.match(produce, /--include-bad number +.*\(0\.\.1; default 0\)/)
      assert.match(produce, /--seed integer +.*\(0\.\.4294967295; default 42\)/)
      assert.match(
        yield* help("inspect"),
        /--limit, -n integer +stop after this many records \(at least 1; default 20\)/
      )
      assert.match(
        yield* help("bench", "join"),
        /--rescan-events integer +.*\(at least 1; default: min\(--events, 200\)\)/
      )
      assert.match(yield* help("demo"), /--print integer +enriched events to print \(at least 0; default 10\)/)
      // The stated default is what runs.
      const produced = yield* stdout(["produce", "user-events", "--brokers", "memory"])
      assert.include(produced, "produced 1000 records to user-events (0 malformed)")
    })
  )
})
