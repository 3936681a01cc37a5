/** The local cache in front of a lookup: one call per batch for what it misses, TTL on the test clock, LRU bound. */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import * as CachedLookup from "../src/CachedLookup.ts"
import { LookupError, Unavailable } from "../src/Errors.ts"
import type { Lookup } from "../src/Lookup.ts"

/** A lookup of `key.toUpperCase()` for keys not starting with "x" (absent), recording each call's keys. */
const recording = () => {
  const calls: Array<ReadonlyArray<string>> = []
  let failing = false
  const lookup: Lookup<string, string> = {
    strategy: "test",
    getMany: (keys) =>
      Effect.suspend(() => {
        calls.push(keys)
        return failing
          ? Effect.fail(new LookupError({ strategy: "test", reason: new Unavailable({ message: "down" }) }))
          : Effect.succeed(keys.map((k) => (k.startsWith("x") ? undefined : k.toUpperCase())))
      })
  }
  return {
    lookup,
    calls,
    fail: (on: boolean) => {
      failing = on
    }
  }
}

describe("CachedLookup", () => {
  it.effect("asks the lookup once per batch, for the distinct keys it misses, absent keys included", () =>
    Effect.gen(function* () {
      const source = recording()
      const cache = CachedLookup.make(source.lookup, { maxEntries: 100, ttl: "1 minute" })
      assert.deepStrictEqual(yield* cache.getMany(["a", "b", "a", "x1"]), ["A", "B", "A", undefined])
      assert.deepStrictEqual(source.calls, [["a", "b", "x1"]])
      assert.deepStrictEqual(yield* cache.getMany(["b", "c", "x1", "c"]), ["B", "C", undefined, "C"])
      assert.deepStrictEqual(source.calls, [["a", "b", "x1"], ["c"]], "b and the absent x1 came from the cache")
      assert.deepStrictEqual(yield* cache.getMany(["a", "b"]), ["A", "B"])
      assert.strictEqual(source.calls.length, 2, "a batch the cache holds makes no call")
      assert.deepStrictEqual(cache.stats(), { hits: 4, misses: 4, size: 4 })
    })
  )

  it.effect("entries expire after the TTL", () =>
    Effect.gen(function* () {
      const source = recording()
      const cache = CachedLookup.make(source.lookup, { maxEntries: 100, ttl: "10 seconds" })
      yield* cache.getMany(["a"])
      yield* TestClock.adjust("9 seconds")
      yield* cache.getMany(["a"])
      assert.strictEqual(source.calls.length, 1)
      yield* TestClock.adjust("1 second")
      yield* cache.getMany(["a"])
      assert.strictEqual(source.calls.length, 2, "asked again at the TTL")
    })
  )

  it.effect("holds at most maxEntries, evicting the least recently used", () =>
    Effect.gen(function* () {
      const source = recording()
      const cache = CachedLookup.make(source.lookup, { maxEntries: 2, ttl: "1 minute" })
      yield* cache.getMany(["a", "b"])
      yield* cache.getMany(["a"]) // a is now the most recently used
      yield* cache.getMany(["c"]) // evicts b
      assert.strictEqual(cache.stats().size, 2)
      yield* cache.getMany(["a"])
      assert.strictEqual(source.calls.length, 2, "a was kept")
      yield* cache.getMany(["b"])
      assert.deepStrictEqual(source.calls.at(-1), ["b"], "b was evicted")
    })
  )

  it.effect("a failed lookup fails the batch and caches nothing", () =>
    Effect.gen(function* () {
      const source = recording()
      const cache = CachedLookup.make(source.lookup, { maxEntries: 10, ttl: "1 minute" })
      yield* cache.getMany(["a"])
      source.fail(true)
      const error = yield* Effect.flip(cache.getMany(["a", "b"]))
      assert.isTrue(error.isRetryable)
      source.fail(false)
      assert.deepStrictEqual(yield* cache.getMany(["a", "b"]), ["A", "B"])
      assert.deepStrictEqual(source.calls.at(-1), ["b"])
    })
  )
})
