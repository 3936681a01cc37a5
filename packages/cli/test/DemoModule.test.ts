/**
 * `sluice demo ./topology.ts --input TOPIC=FILE` (src/DemoModule.ts): a user's topology on the in-memory broker over
 * input files, run until its input is committed, its outputs, dead letters and stores printed. The demo's runs use
 * the live clock (`TestClock.withLive`): it is a command that runs in real time (its runner commits every 20 ms and
 * it polls the group's offsets), and a whole run takes ~100 ms.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import * as DemoModule from "../src/DemoModule.ts"
import { main } from "../src/main.ts"

const shout = "packages/cli/test/fixtures/shout.ts"

const file = (lines: ReadonlyArray<string>) => {
  const path = join(mkdtempSync(join(tmpdir(), "sluice-demo-")), "lines.jsonl")
  writeFileSync(path, `${lines.join("\n")}\n`)
  return path
}

const printed = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const before = (yield* TestConsole.logLines).length
    yield* TestClock.withLive(main(argv))
    return (yield* TestConsole.logLines).slice(before).join("\n")
  })

describe("sluice demo <module>", () => {
  it.effect("runs the module over its input file until committed: every output, dead letter and store entry", () =>
    Effect.gen(function* () {
      const input = file(['{"k":"a","t":"hi"}', '{"k":"b","t":"yo"}', '{"k":"a","t":"ho"}'])
      const out = yield* printed(["demo", shout, "--input", `lines=${input}`, "--key-field", "k", "--json"])
      const report = JSON.parse(out)
      assert.strictEqual(report.topology, "shout")
      assert.deepStrictEqual(report.inputs, { lines: 3 })
      const shouts = report.outputs.shouts as ReadonlyArray<{ key: string; value: string }>
      assert.deepStrictEqual(shouts.map((r) => `${r.key}:${r.value}`).toSorted(), [
        'a:{"K":"A","T":"HI"} #1',
        'a:{"K":"A","T":"HO"} #2',
        'b:{"K":"B","T":"YO"} #1'
      ])
      assert.deepStrictEqual(report.outputs["lines.dlq"], [])
      assert.deepStrictEqual(report.stores["shout-counts"], [
        { partition: 0, key: "a", value: 2 },
        { partition: 0, key: "b", value: 1 }
      ])
    })
  )

  it.effect("prints a record's dead letter with its reason; text output per topic and store", () =>
    Effect.gen(function* () {
      // No --key-field: the records have no key, which the topology's string key codec refuses.
      const out = yield* printed(["demo", shout, "--input", `lines=${file(["plain"])}`, "--partitions", "2"])
      assert.include(out, "shouts: 0 record(s)")
      assert.include(out, "lines.dlq: 1 record(s)")
      assert.include(out, "value=plain")
      assert.include(out, "sluice.error.tag")
      assert.include(out, "store shout-counts: empty")
    })
  )

  it.effect("names what is wrong: no --input, a topic that is not an input, a file that is missing", () =>
    Effect.gen(function* () {
      const errors = (argv: ReadonlyArray<string>) =>
        Effect.gen(function* () {
          const before = (yield* TestConsole.errorLines).length
          const exit = yield* Effect.exit(main(argv))
          assert.isTrue(Exit.isFailure(exit))
          return (yield* TestConsole.errorLines).slice(before).join("\n")
        })
      assert.include(yield* errors(["demo", shout]), "give the input records with --input TOPIC=FILE")
      assert.include(
        yield* errors(["demo", shout, "--input", "clicks=x.jsonl"]),
        "clicks is not an input of shout; its inputs are lines"
      )
      assert.include(yield* errors(["demo", shout, "--input", "lines=/no/such.jsonl"]), "cannot read the file")
    })
  )

  it.effect("--key-field: each line's field is its key; a line without it names the file and line", () =>
    Effect.gen(function* () {
      const records = yield* DemoModule.recordsOf("t", "f", '{"id":7,"x":1}\n\n{"id":"b"}\n', Option.some("id"))
      assert.deepStrictEqual(
        records.map((r) => [Buffer.from(r.key ?? []).toString(), Buffer.from(r.value ?? []).toString()]),
        [
          ["7", '{"id":7,"x":1}'],
          ["b", '{"id":"b"}']
        ]
      )
      const missing = yield* Effect.flip(DemoModule.recordsOf("t", "f", '{"id":1}\n{"x":2}\n', Option.some("id")))
      assert.include(missing.reason, "--input t=f, line 2")
      assert.include(missing.reason, 'no string or number field "id"')
      const notJson = yield* Effect.flip(DemoModule.recordsOf("t", "f", "nope\n", Option.some("id")))
      assert.include(notJson.reason, "line 1: not JSON")
      const plain = yield* DemoModule.recordsOf("t", "f", "a\nb\n", Option.none())
      assert.deepStrictEqual(
        plain.map((r) => r.key),
        [null, null]
      )
    })
  )
})
