/**
 * The Redis service against the real server at REDIS_URL (default redis://127.0.0.1:6379, read by `Redis.urlConfig`
 * as the code reads it; `scripts/redis.sh start`), plus the failure path
 * against a closed port. Keys live under a prefix unique to the run and are deleted afterwards.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Redis as IORedis } from "ioredis"
import * as Redis from "../src/Redis.ts"
import * as RedisLookup from "../src/RedisLookup.ts"

const prefix = `sluice-test:${process.pid}:${Date.now()}:`
const key = (name: string) => `${prefix}${name}`

const RedisLive = Redis.layerConfig

layer(RedisLive, { excludeTestServices: true })("Redis (live server)", (it) => {
  it.effect("set then get round-trips a value; a missing key is null", () =>
    Effect.gen(function* () {
      const redis = yield* Redis.Redis
      yield* redis.ping
      yield* redis.set(key("one"), "hello")
      assert.strictEqual(yield* redis.get(key("one")), "hello")
      assert.isNull(yield* redis.get(key("absent")))
      assert.strictEqual(yield* redis.del(key("one")), 1)
      assert.isNull(yield* redis.get(key("one")))
    }).pipe(Effect.ensuring(cleanup))
  )

  it.effect("setMany then mget answers in key order, null for a missing key; delMany removes them", () =>
    Effect.gen(function* () {
      const redis = yield* Redis.Redis
      const entries = Array.from({ length: 50 }, (_, i) => [key(`k${i}`), `v${i}`] as const)
      yield* redis.setMany(entries)

      const asked = [key("k7"), key("missing"), key("k0"), key("k49")]
      assert.deepStrictEqual(yield* redis.mget(asked), ["v7", null, "v0", "v49"])
      assert.deepStrictEqual(yield* redis.mget([]), [])

      assert.strictEqual(yield* redis.delMany([...entries.map(([k]) => k), key("missing")]), 50)
      assert.deepStrictEqual(yield* redis.mget([key("k0"), key("k49")]), [null, null])
      assert.strictEqual(yield* redis.delMany([]), 0)
    }).pipe(Effect.ensuring(cleanup))
  )

  it.effect("getMany reads strings and hashes, names other types, null for an absent key; setHashes replaces", () =>
    Effect.gen(function* () {
      const redis = yield* Redis.Redis
      yield* redis.setMany([
        [key("s"), "text"],
        [key("was-string"), "old"]
      ])
      yield* redis.setHashes([
        [key("h"), { name: "Ada", tier: "pro" }],
        [key("was-string"), { n: "1" }]
      ])
      // A list, which Sluice never writes: through a client of the test's own.
      const url = Redacted.value(Effect.runSync(Redis.urlConfig))
      yield* Effect.acquireUseRelease(
        Effect.sync(() => new IORedis(url)),
        (client) => Effect.promise(() => client.rpush(key("l"), "a", "b")),
        (client) => Effect.promise(() => client.quit())
      )
      const asked = [key("h"), key("s"), key("absent"), key("l"), key("was-string"), key("s")]
      assert.deepStrictEqual(yield* redis.getMany(asked), [
        { type: "hash", fields: { name: "Ada", tier: "pro" } },
        { type: "string", value: "text" },
        null,
        { type: "other", redisType: "list" },
        { type: "hash", fields: { n: "1" } },
        { type: "string", value: "text" }
      ])
      assert.deepStrictEqual(yield* redis.getMany([]), [])
      // MGET answers nil for a hash: what `strings` sees of it.
      assert.deepStrictEqual(yield* redis.mget([key("h")]), [null])

      const lookup = RedisLookup.values(redis, {
        key: (k: string) => key(k),
        decode: (value, at) => `${at.slice(prefix.length)}:${value.type}`
      })
      assert.deepStrictEqual(yield* lookup.getMany(["s", "h", "absent", "l"]), [
        "s:string",
        "h:hash",
        undefined,
        "l:other"
      ])
    }).pipe(Effect.ensuring(cleanup))
  )

  it.effect("flushPrefix deletes exactly the keys under the prefix, glob characters taken literally", () =>
    Effect.gen(function* () {
      const redis = yield* Redis.Redis
      yield* redis.setMany([
        [key("p*/a"), "1"],
        [key("p*/b"), "2"],
        [key("px/c"), "3"]
      ])
      assert.strictEqual(yield* redis.flushPrefix(key("p*/")), 2)
      assert.deepStrictEqual(yield* redis.mget([key("p*/a"), key("p*/b"), key("px/c")]), [null, null, "3"])

      const refused = yield* Effect.flip(redis.flushPrefix(""))
      assert.strictEqual(refused.isRetryable, false)
    }).pipe(Effect.ensuring(cleanup))
  )
})

// Deletes whatever a test left under the run's prefix, even when it failed half-way.
const cleanup = Effect.gen(function* () {
  const redis = yield* Redis.Redis
  yield* redis.flushPrefix(prefix)
}).pipe(Effect.orDie)

describe("Redis (unreachable)", () => {
  it.live("a layer on a closed port fails quickly with a retryable RedisError", () =>
    Effect.gen(function* () {
      const started = Date.now()
      const error = yield* Effect.gen(function* () {
        yield* Redis.Redis
      }).pipe(Effect.provide(Redis.layer({ url: "redis://127.0.0.1:1" })), Effect.timeout("5 seconds"), Effect.flip)
      const elapsed = Date.now() - started
      if (error._tag !== "RedisError") return assert.fail(`expected a RedisError, got ${error._tag}`)
      assert.strictEqual(error.operation, "connect")
      assert.strictEqual(error.isRetryable, true)
      assert.include(error.reason.message, "ECONNREFUSED")
      assert.isBelow(elapsed, 2000)
    })
  )
})
