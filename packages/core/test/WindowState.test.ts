/**
 * The window store's layout (internal/windowState.ts): fixed windows keyed by start first, so the windows due are a
 * range; and state in an older layout refused with what to do, rather than misread.
 */
import { assert, describe, it } from "@effect/vitest"
import { make as memoryBackend } from "../src/internal/storeMemory.ts"
import { make as taskStore } from "../src/internal/storeTask.ts"
import * as State from "../src/internal/windowState.ts"
import * as Store from "../src/Store.ts"

const open = () => taskStore(Store.make("w", { key: State.bytes, value: State.bytes }), memoryBackend(), "w-changelog")
const key = (s: string) => new TextEncoder().encode(s)

describe("window state", () => {
  it("fixed windows are ordered by start, then key, and ranged by start", () => {
    const kv = open()
    for (const [k, start] of [
      ["b", 2_000],
      ["a", 1_000],
      ["zz", 1_000],
      ["a", 3_000]
    ] as const) {
      kv.put(State.fixedKey(key(k), start), State.windowValue(null))
    }
    const due = [...kv.range(State.fixedFrom, State.fixedBelow(2_001))].map(([k]) => State.parseFixedKey(k))
    assert.deepStrictEqual(
      due.map((d) => [new TextDecoder().decode(d.key), d.start]),
      [
        ["a", 1_000],
        ["zz", 1_000],
        ["b", 2_000]
      ]
    )
  })

  it("the stream time round-trips with the layout's format byte", () => {
    const kv = open()
    assert.strictEqual(State.readStreamTime("w", kv), -1)
    State.writeStreamTime(kv, 1_700_000_000_123)
    assert.strictEqual(State.readStreamTime("w", kv), 1_700_000_000_123)
    assert.strictEqual(kv.get(State.metaKey)?.length, 9)
  })

  it("state written in the first layout (an 8-byte stream time) is refused, naming what to do", () => {
    const kv = open()
    kv.put(State.metaKey, new Uint8Array(8))
    assert.throws(() => State.readStreamTime("w", kv), /layout 1, this Sluice reads layout 2: reset the application/)
  })
})
