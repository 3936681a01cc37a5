/** `sluice run` (src/Run.ts): the options a run derives from its flags. */
import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
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
