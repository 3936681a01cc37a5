/** `sluice bench join --workers` (src/BenchWorkers.ts): reading a worker's assignment, and the flags it refuses. */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestConsole } from "effect/testing"
import * as BenchWorkers from "../src/BenchWorkers.ts"
import { main } from "../src/main.ts"

describe("lastAssignment", () => {
  it("is the partitions of the last 'assigned' line, none before the first", () => {
    const log = [
      "[19:02:48.522] INFO (#1): running click-enrichment (at_least_once) on 127.0.0.1:9092 in group g",
      "[19:02:48.648] INFO (#25): assigned 12 partition(s): 0,1,2,3,4,5,6,7,8,9,10,11 of p-clicks",
      "\u001b[2m[19:02:50.712]\u001b[0m INFO (#96): assigned 6 partition(s): 0,1,2,3,4,5 of p-clicks",
      "[19:02:53.524] INFO (#17): in=0 out=0 dead-lettered=0"
    ].join("\n")
    assert.deepStrictEqual(BenchWorkers.lastAssignment(log), [0, 1, 2, 3, 4, 5])
    assert.deepStrictEqual(BenchWorkers.lastAssignment(`${log}\nassigned 0 partition(s):  of p-clicks`), [])
    assert.deepStrictEqual(BenchWorkers.lastAssignment("no assignment yet"), [])
  })
})

describe("sluice bench join --workers", () => {
  const refused = (argv: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(main(["bench", "join", "--workers", "2", ...argv]))
      assert.isTrue(exit._tag === "Failure")
      return (yield* TestConsole.errorLines).join("\n")
    })

  it.effect("refuses what worker processes cannot do, saying why", () =>
    Effect.gen(function* () {
      assert.include(yield* refused(["--brokers", "memory"]), "cannot reach this process's in-memory broker")
      // Before anything connects: nothing listens on port 1.
      const nowhere = ["--brokers", "127.0.0.1:1"]
      assert.include(yield* refused(["--strategy", "all", ...nowhere]), "--workers runs one strategy")
      assert.include(yield* refused(["--rate", "100", ...nowhere]), "it takes neither --rate nor --out")
    })
  )
})
