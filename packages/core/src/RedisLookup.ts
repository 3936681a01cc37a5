/**
 * The `redis` join strategy: values kept in Redis by a loader fed from the same (compacted) topic, looked up with
 * one MGET per batch of keys, never one GET per key. The loader writes each fetched batch with one MSET and one DEL
 * (tombstones), and the lookup reports ready once Redis holds what the topic had when it started. `strings` and
 * `values` look up what someone else keeps in Redis: strings only (one MGET), or strings and hashes.
 */
import { Effect, Result, type Scope } from "effect"
import { type KafkaError, LookupError } from "./Errors.ts"
import * as Loader from "./internal/loader.ts"
import type { Kafka } from "./Kafka.ts"
import type { Lookup } from "./Lookup.ts"
import { bytes, text } from "./Record.ts"
import { Redis, type RedisError, type RedisShape, type Value } from "./Redis.ts"
import * as Topic from "./Topic.ts"

const fromRedisError = (e: RedisError) => new LookupError({ strategy: "redis", reason: e.reason })

/**
 * Starts the loader in the current scope, waits until Redis is loaded, and returns the lookup. `prefix` namespaces
 * the keys (one per deployment or benchmark run).
 */
export const make = Effect.fnUntraced(function* <K, V>(
  topic: Topic.Topic<K, V | null>,
  options: { readonly prefix: string; readonly keyToString?: (key: K) => string }
): Effect.fn.Return<Lookup<K, V>, KafkaError | RedisError, Kafka | Redis | Scope.Scope> {
  const redis = yield* Redis
  const keyOf = options.keyToString ?? String
  const redisKey = (key: K) => options.prefix + keyOf(key)
  const loader = yield* Loader.start({
    name: `redis loader ${topic.name}`,
    topic: topic.name,
    // Redis has no map to swap: a fresh load after a failure re-writes every key in topic order, so until it has
    // caught up a key may briefly hold an older value than before the failure.
    begin: Effect.succeed<Loader.Load<RedisError>>({
      apply: (batch) =>
        Effect.gen(function* () {
          // Last write per key within the batch wins, as it would record by record.
          const latest = new Map<string, string | null>()
          for (const record of batch.records) {
            const decoded = Topic.decode(topic, record)
            if (Result.isFailure(decoded)) {
              yield* Effect.logWarning(`redis loader ${topic.name}: skipped a record: ${decoded.failure.message}`)
              continue
            }
            latest.set(redisKey(decoded.success.key), record.value === null ? null : text(record.value))
          }
          const sets: Array<readonly [string, string]> = []
          const dels: Array<string> = []
          for (const [k, v] of latest) {
            if (v === null) dels.push(k)
            else sets.push([k, v])
          }
          yield* redis.setMany(sets)
          yield* redis.delMany(dels)
        }),
      caughtUp: Effect.void
    })
  })
  yield* loader.ready

  return strings(redis, {
    key: redisKey,
    decode: (v) => {
      const decoded = topic.value.decode(bytes(v))
      return Result.isSuccess(decoded) && decoded.success !== null ? decoded.success : undefined
    }
  })
})

/**
 * A lookup of values Redis keeps as strings (what MSET and SET write), one MGET per batch of keys: `key` says
 * where a key's value is, `decode` what its string means (`undefined`: as if the key were absent). Keys of another
 * type (a hash) read as absent, as MGET answers them (`values` reads hashes too).
 */
export const strings = <K, V>(
  redis: RedisShape,
  options: { readonly key: (key: K) => string; readonly decode: (value: string) => V | undefined }
): Lookup<K, V> => ({
  strategy: "redis",
  getMany: (keys) =>
    Effect.map(redis.mget(keys.map(options.key)), (values) =>
      values.map((v) => (v === null ? undefined : options.decode(v)))
    ).pipe(Effect.mapError(fromRedisError))
})

/**
 * A lookup of values Redis keeps as strings or hashes (HSET), read with `RedisShape.getMany`: one MGET per batch,
 * and a second round trip (TYPE and HGETALL, pipelined) only for the keys that are not strings. `decode` says what
 * a value means (`undefined`: as if the key were absent); a key of another type (a list) comes to it as `other`.
 */
export const values = <K, V>(
  redis: RedisShape,
  options: { readonly key: (key: K) => string; readonly decode: (value: Value, key: string) => V | undefined }
): Lookup<K, V> => ({
  strategy: "redis",
  getMany: (keys) => {
    const redisKeys = keys.map(options.key)
    return Effect.map(redis.getMany(redisKeys), (found) =>
      found.map((v, i) => (v === null ? undefined : options.decode(v, redisKeys[i]!)))
    ).pipe(Effect.mapError(fromRedisError))
  }
})
