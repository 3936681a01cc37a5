/** `sluice run ./module.ts` (src/RunModule.ts): what it loads, and what it says when a module is not a topology. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestConsole } from "effect/testing"
import { main } from "../src/main.ts"
import * as RunModule from "../src/RunModule.ts"

const fixture = (name: string) => `packages/cli/test/fixtures/${name}`

describe("sluice run <module>", () => {
  it.effect("loads the topology a module's default export builds from the topic prefix", () =>
    Effect.gen(function* () {
      const topology = yield* RunModule.load(fixture("shout.ts"), { prefix: "stage-" })
      assert.strictEqual(topology.name, "shout")
      assert.deepStrictEqual(
        topology.inputs.map((i) => i.topic),
        ["stage-lines"]
      )
      assert.deepStrictEqual(
        topology.stores.map((s) => s.name),
        ["shout-counts"]
      )
    })
  )

  it.effect("names what is wrong: a missing file, a module without a topology, an unknown built-in", () =>
    Effect.gen(function* () {
      const missing = yield* Effect.flip(RunModule.load(fixture("missing.ts"), { prefix: "" }))
      assert.include(missing.reason, "no such file")
      const wrong = yield* Effect.flip(RunModule.load(fixture("not-a-topology.ts"), { prefix: "" }))
      assert.include(wrong.reason, "exports no topology")
      const exit = yield* Effect.exit(main(["run", "shouty", "--brokers", "memory"]))
      assert.isTrue(Exit.isFailure(exit))
      assert.include((yield* TestConsole.errorLines).join("\n"), "unknown topology shouty")
    })
  )

  it("tells module paths from built-in names", () => {
    for (const path of ["./t.ts", "/abs/t.js", "t.mjs", "dir/t.ts"]) assert.isTrue(RunModule.isModulePath(path), path)
    for (const name of ["counts", "user-events"]) assert.isFalse(RunModule.isModulePath(name), name)
  })

  it.effect("runs a module on the in-memory broker with the flags of the built-in topologies", () =>
    Effect.gen(function* () {
      // The in-memory broker starts empty: the run stops at once, saying that its input does not exist.
      const exit = yield* Effect.exit(main(["run", fixture("shout.ts"), "--brokers", "memory", "--topic-prefix", "m-"]))
      assert.isTrue(Exit.isFailure(exit))
      assert.include((yield* TestConsole.errorLines).join("\n"), "topic m-lines does not exist")
    })
  )
})
