/**
 * Numeric flags are checked before anything connects (src/Flags.ts): the CLI's `main` run with bad values fails
 * with a ConfigInvalid naming the flag, the value and the range, exit code 2, and produces nothing. Against
 * `--brokers 127.0.0.1:1`, where nothing listens, so a command that got as far as connecting would fail with a
 * KafkaError instead; and against `--brokers memory`, where a command that ran would print what it produced.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TestConsole } from "effect/testing"
import * as Flags from "../src/Flags.ts"
import { main } from "../src/main.ts"
import * as Report from "../src/Report.ts"

const nowhere = "127.0.0.1:1"

/** Runs `sluice <argv>` in-process; the failure it ends with and everything it printed. */
const sluice = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(main(argv))
    const out = (yield* TestConsole.logLines).join("\n")
    const err = (yield* TestConsole.errorLines).join("\n")
    const failure = exit._tag === "Failure" ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
    return { exit, failure, out, err }
  })

/** The `Reported` failure main ends with for invalid arguments: exit code 2, the message printed once. */
const rejected = (argv: ReadonlyArray<string>, ...expected: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const started = Date.now()
    const r = yield* sluice(argv)
    const where = `sluice ${argv.join(" ")}\nstdout: ${r.out}\nstderr: ${r.err}`
    const failure = r.failure
    if (!(failure instanceof Report.Reported)) return assert.fail(`expected Reported, got ${failure}: ${where}`)
    assert.strictEqual(failure.exitCode, 2, where)
    for (const text of expected) {
      assert.include(failure.message, text, where)
      assert.include(r.err, `error: `, where)
      assert.include(r.err, text, where)
    }
    assert.include(r.err, "hint: see --help for the accepted values", where)
    assert.notMatch(r.out, /produced|enriched|record\(s\)/, `nothing was produced or read: ${where}`)
    // Checked before connecting: the kafkajs layer would still be retrying 127.0.0.1:1.
    assert.isBelow(Date.now() - started, 2_000, where)
    return r
  })

describe("Flags.outOfRange", () => {
  it("names the flag, the value and the range", () => {
    assert.strictEqual(Flags.outOfRange("count", -5, { min: 1 }), "--count must be at least 1 (got -5)")
    assert.strictEqual(
      Flags.outOfRange("metrics-port", 0, { min: 1, max: 65_535 }),
      "--metrics-port must be between 1 and 65535 (got 0)"
    )
    assert.isUndefined(Flags.outOfRange("include-bad", 1, { min: 0, max: 1 }))
    assert.isUndefined(Flags.outOfRange("include-bad", 0, { min: 0, max: 1 }))
    assert.isUndefined(Flags.outOfRange("count", 1, { min: 1 }))
  })

  it("writes the range into --help", () => {
    assert.strictEqual(Flags.formatRange({ min: 1 }), "at least 1")
    assert.strictEqual(Flags.formatRange({ min: 0, max: 1 }), "0..1")
  })
})

describe("sluice with out-of-range numbers", () => {
  it.effect("produce user-events --count -5: exit code 2, nothing produced", () =>
    rejected(["produce", "user-events", "--count", "-5", "--brokers", "memory"], "--count must be at least 1 (got -5)")
  )

  it.effect("produce user-events: every bad flag at once, before connecting", () =>
    rejected(
      [
        "produce",
        "user-events",
        "-n",
        "0",
        "--users",
        "0",
        "--include-bad",
        "1.5",
        "--seed",
        "-1",
        "--brokers",
        nowhere
      ],
      "--count must be at least 1 (got 0)",
      "--users must be at least 1 (got 0)",
      "--include-bad must be between 0 and 1 (got 1.5)",
      "--seed must be between 0 and 4294967295 (got -1)"
    )
  )

  it.effect("produce profiles and clicks", () =>
    Effect.gen(function* () {
      yield* rejected(["produce", "profiles", "--users", "-1", "--brokers", nowhere], "--users must be at least 1")
      yield* rejected(
        ["produce", "clicks", "--count", "0", "--users", "0", "--brokers", "memory"],
        "--count must be at least 1 (got 0)",
        "--users must be at least 1 (got 0)"
      )
    })
  )

  it.effect("produce counts: --count, --keys, --partitions", () =>
    rejected(
      ["produce", "counts", "--count", "0", "--keys", "0", "--partitions", "0", "--brokers", nowhere],
      "--count must be at least 1 (got 0)",
      "--keys must be at least 1 (got 0)",
      "--partitions must be between 1 and 10000 (got 0)"
    )
  )

  it.effect("run: --metrics-port in 1..65535, --shutdown-timeout-ms above 0", () =>
    Effect.gen(function* () {
      yield* rejected(
        ["run", "user-events", "--metrics-port", "70000", "--brokers", nowhere],
        "--metrics-port must be between 1 and 65535 (got 70000)"
      )
      yield* rejected(
        ["run", "click-enrichment", "--metrics-port", "0", "--shutdown-timeout-ms", "0", "--brokers", nowhere],
        "--metrics-port must be between 1 and 65535 (got 0)",
        "--shutdown-timeout-ms must be between 1 and 3600000 (got 0)"
      )
      yield* rejected(
        ["run", "user-events", "--shutdown-timeout-ms", "-100", "--brokers", "memory"],
        "--shutdown-timeout-ms must be between 1 and 3600000 (got -100)"
      )
    })
  )

  it.effect("inspect --limit 0", () =>
    rejected(["inspect", "some-topic", "--limit", "0", "--brokers", nowhere], "--limit must be at least 1 (got 0)")
  )

  it.effect("bench join: --events, --users, --rescan-events", () =>
    rejected(
      ["bench", "join", "--events", "0", "--users", "-3", "--rescan-events", "0", "--brokers", "memory"],
      "--events must be at least 1 (got 0)",
      "--users must be at least 1 (got -3)",
      "--rescan-events must be at least 1 (got 0)"
    )
  )

  it.effect("bench state: --keys, --partitions, --tail", () =>
    rejected(
      ["bench", "state", "--keys", "0", "--partitions", "1001", "--tail", "0", "--brokers", "memory"],
      "--keys must be at least 1 (got 0)",
      "--partitions must be between 1 and 1000 (got 1001)",
      "--tail must be at least 1 (got 0)"
    )
  )

  it.effect("demo: --events, --users, --print", () =>
    rejected(
      ["demo", "--events", "0", "--users", "0", "--print", "-1"],
      "--events must be at least 1 (got 0)",
      "--users must be at least 1 (got 0)",
      "--print must be at least 0 (got -1)"
    )
  )

  it.effect("the bounds themselves are accepted", () =>
    Effect.gen(function* () {
      const r = yield* sluice([
        "produce",
        "user-events",
        "-n",
        "1",
        "--users",
        "1",
        "--include-bad",
        "1",
        "--seed",
        "4294967295",
        "--brokers",
        "memory"
      ])
      assert.strictEqual(r.exit._tag, "Success", r.err)
      assert.include(r.out, "produced 1 records to user-events (1 malformed)")
    })
  )

  it.effect("a value effect/cli cannot parse is invalid arguments too: exit code 2", () =>
    Effect.gen(function* () {
      const r = yield* sluice(["produce", "user-events", "--count", "abc", "--brokers", "memory"])
      const failure = r.failure
      if (!(failure instanceof Report.Reported)) return assert.fail(`expected Reported, got ${failure}`)
      assert.strictEqual(failure.exitCode, 2)
      assert.notInclude(r.out, "produced")
    })
  )
})

describe("the sluice binary", () => {
  it("exits with code 2 on an out-of-range flag, saying which", () => {
    const root = fileURLToPath(new URL("../../..", import.meta.url))
    const bin = `${root}node_modules/.bin`
    const result = spawnSync(
      "node",
      [
        "--conditions=@sluice/source",
        "packages/cli/src/bin.ts",
        "produce",
        "clicks",
        "--count",
        "-5",
        "--brokers",
        "memory"
      ],
      { cwd: root, env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}`, NO_COLOR: "1" }, encoding: "utf8" }
    )
    assert.strictEqual(result.status, 2, `stdout: ${result.stdout}\nstderr: ${result.stderr}`)
    assert.include(result.stderr, "error: --count must be at least 1 (got -5)")
    assert.notInclude(result.stdout, "produced")
  })
})

describe("Flags.check", () => {
  it.effect("ignores flags without a range and absent optional ones", () =>
    Effect.gen(function* () {
      const port = Flags.int("port", { description: "a port", min: 1, max: 9, whenAbsent: "off" })
      yield* Flags.check({ port }, { port: Option.none() })
      yield* Flags.check({ port }, { port: Option.some(9) })
      const error = yield* Effect.flip(Flags.check({ port }, { port: Option.some(10) }))
      assert.strictEqual(error.message, "--port must be between 1 and 9 (got 10)")
    })
  )
})
