/** `sluice run` (src/Run.ts): the options a run derives from its flags, and what its `--help` says. */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Http from "@sluice/core/Http"
import * as Main from "@sluice/core/Main"
import * as Store from "@sluice/core/Store"
import { Effect, Option, Result } from "effect"
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
      for (const argv of [
        ["run"],
        ["run", "user-events"],
        ["run", "click-enrichment"],
        ["run", "counts"],
        ["run", "sensor-pipeline"]
      ]) {
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
      assert.match(
        topology,
        /--metrics-port integer +the same as --http 127\.0\.0\.1:PORT \(1\.\.65535; default: off\)/
      )
      assert.match(
        topology,
        /--http string +serve \/metrics \(Prometheus\), \/health, \/ready and \/tables .* \(default: off\)/
      )
    })
  )

  it.effect("lists the topologies by their one-line summary", () =>
    Effect.gen(function* () {
      const text = yield* help("run")
      assert.match(
        text,
        /SUBCOMMANDS\n +user-events +Consume user-events: [^\n]*\n +click-enrichment +Enrich clicks[^\n]*\n +counts +Count records per key[^\n]*\n +sensor-pipeline +The sensor metrics pipeline/
      )
    })
  )
})

describe("where a run serves HTTP", () => {
  const address = (http: string | undefined, metricsPort: number | undefined) =>
    Run.httpAddress({ http: Option.fromUndefinedOr(http), metricsPort: Option.fromUndefinedOr(metricsPort) }, Http)

  it("--http HOST:PORT where it says, --metrics-port PORT on 127.0.0.1, nowhere without either", () => {
    assert.deepStrictEqual(
      address("0.0.0.0:6066", undefined),
      Result.succeed(Option.some({ host: "0.0.0.0", port: 6066 }))
    )
    assert.deepStrictEqual(address(undefined, 9464), Result.succeed(Option.some({ host: "127.0.0.1", port: 9464 })))
    assert.deepStrictEqual(address(undefined, undefined), Result.succeed(Option.none()))
  })

  it("refuses both at once, and an address that does not parse, naming the flag", () => {
    const both = address("127.0.0.1:6066", 9464)
    assert.isTrue(Result.isFailure(both) && both.failure.reason.includes("--http and --metrics-port"))
    const bad = address("6066", undefined)
    assert.isTrue(Result.isFailure(bad) && bad.failure.reason.startsWith("--http: invalid HTTP address"))
  })
})

describe("sluice run counts", () => {
  it.effect("keeps its stores in memory by default, in SQLite files under --state-dir when given", () =>
    Effect.gen(function* () {
      assert.strictEqual(Run.stateStore(Option.none()), Store.memory)
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "sluice-run-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const backend = yield* Run.stateStore(Option.some(dir)).open({ application: "g", task: 2, store: "counts" })
      backend.apply([[new Uint8Array([1]), new Uint8Array([2])]], 7)
      backend.close()
      assert.isTrue(existsSync(join(dir, "g", "2", "counts.sqlite")), "the task's file is under --state-dir")
      const again = yield* Run.stateStore(Option.some(dir)).open({ application: "g", task: 2, store: "counts" })
      assert.strictEqual(again.checkpoint(), 7, "and it persists: a restart restores from the checkpoint")
      again.close()
    })
  )

  it("names its worker --worker-id, else host:pid", () => {
    assert.strictEqual(Run.workerId(Option.some("w-1")), "w-1")
    assert.strictEqual(Run.workerId(Option.none()), `${hostname()}:${process.pid}`)
  })

  it.effect("says in --help where its state lives and who it is", () =>
    Effect.gen(function* () {
      const text = yield* help("run", "counts")
      assert.match(text, /--state-dir directory +keep each task's stores in SQLite files under DIR/)
      assert.match(text, /--worker-id string +the worker's name in every output record \(default: <host>:<pid>\)/)
      assert.include(text, "At-least-once (the default), a count can exceed the truth")
      assert.include(text, "with --guarantee exactly_once, every count is exact")
      assert.match(text, /--guarantee choice +at_least_once \(default\)/)
      assert.match(text, /--commit-interval-ms integer +commit at least this often/)
    })
  )

  it.effect("needs its input topic: without one it says so and how to fill it", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(main(["run", "counts", "--brokers", "memory", "--topic-prefix", "none-"]))
      assert.isTrue(exit._tag === "Failure")
      const err = (yield* TestConsole.errorLines).join("\n")
      assert.include(err, "topic none-count-input does not exist")
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
      assert.match(
        yield* help("demo"),
        /--print integer +enriched events to print; with a module, records per output topic and entries per store \(at least 0; default 10\)/
      )
      // The stated default is what runs.
      const produced = yield* stdout(["produce", "user-events", "--brokers", "memory"])
      assert.include(produced, "produced 1000 records to user-events (0 malformed)")
      assert.match(
        yield* help("produce", "counts"),
        /--keys integer +how many distinct keys, taken round robin \(at least 1; default 100\)/
      )
      const counts = yield* stdout(["produce", "counts", "--brokers", "memory", "--keys", "7"])
      assert.include(counts, "produced 1000 records over 7 keys to count-input")
      const sensors = yield* help("produce", "sensors")
      assert.match(sensors, /--interval number +seconds between two readings sent .*\(0\.\.3600; default 1\)/)
      assert.match(sensors, /--event-step-ms integer +.*\(0\.\.86400000; default: the send interval\)/)
      assert.match(sensors, /--sensors integer +how many distinct sensors \(at least 1; default 10\)/)
      const readings = yield* stdout([
        "produce",
        "sensors",
        "--brokers",
        "memory",
        "--interval",
        "0",
        "--include-bad",
        "0.1"
      ])
      assert.match(readings, /produced 1000 readings of 10 sensor\(s\) to sensor-readings \(\d+ malformed, 0 late\)/)
    })
  )
})
