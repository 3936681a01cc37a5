/**
 * The global table's compact store (internal/compactStore.ts) against a Map over the same operations: inserts,
 * updates, deletes in every order (backward-shift deletion in probe runs), growth of the index, compaction of the
 * arena, entries larger than a chunk.
 */
import { assert, describe, it } from "@effect/vitest"
import * as CompactStore from "../src/internal/compactStore.ts"

const makeRandom = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
  return seed / 2 ** 31
}

const key = (n: number) => Buffer.from(`key-${n}`)

/** Every key of the reference has its value in the store, and the store has nothing else among `keys`. */
const assertSame = (
  store: CompactStore.CompactStore,
  reference: ReadonlyMap<number, Uint8Array>,
  keys: number,
  label: string
) => {
  assert.strictEqual(store.size(), reference.size, `${label}: size`)
  for (let n = 0; n < keys; n++) {
    const position = store.find(key(n))
    const expected = reference.get(n)
    if (expected === undefined) assert.strictEqual(position, -1, `${label}: key ${n} should be absent`)
    else {
      assert.isAtLeast(position, 0, `${label}: key ${n} should be present`)
      assert.isTrue(Buffer.from(store.valueAt(position)).equals(Buffer.from(expected)), `${label}: value of ${n}`)
    }
  }
}

describe("compact store", () => {
  it("agrees with a Map over random inserts, updates and deletes", () => {
    const random = makeRandom(1)
    const store = CompactStore.make()
    const reference = new Map<number, Uint8Array>()
    const keys = 3_000
    for (let step = 0; step < 60_000; step++) {
      const n = Math.floor(random() * keys)
      if (random() < 0.3) {
        store.delete(key(n))
        reference.delete(n)
      } else {
        const value = Buffer.from(`value-${n}-${step}-${"x".repeat(Math.floor(random() * 40))}`)
        store.set(key(n), value)
        reference.set(n, value)
      }
      if (step % 10_000 === 0) assertSame(store, reference, keys, `step ${step}`)
    }
    assertSame(store, reference, keys, "end")
    for (let n = 0; n < keys; n++) {
      store.delete(key(n))
      reference.delete(n)
    }
    assertSame(store, reference, keys, "all deleted")
  })

  it("keeps its values through compactions of the arena", () => {
    const store = CompactStore.make()
    const reference = new Map<number, Uint8Array>()
    const big = Buffer.alloc(2_000, 7)
    const before = store.generation()
    // 300 keys rewritten 100 times with 2 kB values: ~60 MB written, mostly garbage.
    for (let round = 0; round < 100; round++) {
      for (let n = 0; n < 300; n++) {
        const value = Buffer.concat([Buffer.from(`${round}:${n}:`), big])
        store.set(key(n), value)
        reference.set(n, value)
      }
    }
    assert.isAbove(store.generation(), before, "the arena was compacted")
    assert.isBelow(store.bytes(), 16 * 1024 * 1024, "garbage does not pile up")
    assertSame(store, reference, 300, "after compactions")
  })

  it("stores an entry larger than a chunk, and keys that collide in the index", () => {
    const store = CompactStore.make()
    const huge = Buffer.alloc(5 * 1024 * 1024, 3)
    store.set(key(1), Buffer.from("small"))
    store.set(key(2), huge)
    store.set(key(3), Buffer.from("after"))
    assert.isTrue(Buffer.from(store.valueAt(store.find(key(2)))).equals(huge))
    assert.strictEqual(Buffer.from(store.valueAt(store.find(key(3)))).toString(), "after")
    store.set(Buffer.alloc(0), Buffer.from("empty key"))
    store.set(key(4), Buffer.alloc(0))
    assert.strictEqual(Buffer.from(store.valueAt(store.find(Buffer.alloc(0)))).toString(), "empty key")
    assert.strictEqual(store.valueAt(store.find(key(4))).length, 0)
    assert.strictEqual(store.find(key(5)), -1)
    assert.strictEqual(store.size(), 5)
  })
})
