/**
 * Redis as a Sluice service: the few batch-first operations that lookups, sinks and tests need, over ioredis.
 *
 * Only this module imports ioredis, so nothing else depends on its types or its error shapes. Every failure is a
 * `RedisError` that says whether a retry can help: connection trouble (refused, reset, timed out, reconnecting) is
 * retryable, a command Redis itself rejected (wrong type, bad auth) is not.
 */

import { Config, Context, Duration, Effect, Layer, Predicate, Redacted, Schema } from "effect"
import type { Redis as IORedis } from "ioredis"
import * as Errors from "./Errors.ts"

/** A failed Redis call. `operation` is the service method (`connect`, `mget`, ...). */
export class RedisError extends Schema.TaggedError<RedisError>()("RedisError", {
  operation: Schema.String,
  reason: Errors.Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    return `Redis ${this.operation} failed: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/**
 * A key's value whatever its type (`getMany`): a string (what SET and MSET write), a hash (HSET), or another type,
 * named as TYPE names it (`list`, `set`, `zset`, `stream`). An absent key is `null`.
 */
export type Value =
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "hash"; readonly fields: { readonly [field: string]: string } }
  | { readonly type: "other"; readonly redisType: string }

export interface RedisShape {
  readonly ping: Effect.Effect<void, RedisError>
  readonly get: (key: string) => Effect.Effect<string | null, RedisError>
  /** One MGET: the values in the order of `keys`, `null` where a key is missing. */
  readonly mget: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string | null>, RedisError>
  /**
   * The values of `keys` in their order whatever their type, `null` where a key is absent: one MGET, and for the keys
   * it answers nil (absent, or not a string) one pipeline of TYPE and HGETALL. Strings cost what `mget` costs; a
   * batch with keys of other types or absent ones takes a second round trip.
   */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Value | null>, RedisError>
  readonly set: (key: string, value: string) => Effect.Effect<void, RedisError>
  /** One MSET: all entries are written atomically, in one round trip; a later duplicate key wins. */
  readonly setMany: (entries: ReadonlyArray<readonly [key: string, value: string]>) => Effect.Effect<void, RedisError>
  /**
   * Each key becomes a hash of exactly the fields given (DEL, then HSET: whatever the key held before is replaced,
   * as MSET replaces), all in one MULTI: atomic, one round trip.
   */
  readonly setHashes: (
    entries: ReadonlyArray<readonly [key: string, fields: { readonly [field: string]: string }]>
  ) => Effect.Effect<void, RedisError>
  /** How many of the keys existed (0 or 1). */
  readonly del: (key: string) => Effect.Effect<number, RedisError>
  /** One DEL for all keys; how many of them existed. */
  readonly delMany: (keys: ReadonlyArray<string>) => Effect.Effect<number, RedisError>
  /**
   * Deletes every key that starts with `prefix` (SCAN, one DEL per page) and says how many it deleted. For tests
   * and tooling: SCAN walks the whole keyspace. An empty prefix is refused rather than deleting everything.
   */
  readonly flushPrefix: (prefix: string) => Effect.Effect<number, RedisError>
}

export class Redis extends Context.Service<Redis, RedisShape>()("@sluice/core/Redis") {}

export interface Options {
  /** `redis://[user:password@]host:port[/db]`. Pass it Redacted when it holds a password. */
  readonly url: string | Redacted.Redacted<string>
  /** How long one connection attempt may take. Default 5 seconds. */
  readonly connectTimeout?: Duration.Input
  /** How long a command may wait for its reply before it fails (a stalled server). Default 5 seconds. */
  readonly commandTimeout?: Duration.Input
}

/** `REDIS_URL`, default `redis://127.0.0.1:6379`; Redacted because it may carry a password. */
export const urlConfig = Config.Redacted("REDIS_URL").pipe(Config.withDefault(Redacted.make("redis://127.0.0.1:6379")))

// Replies with which the server says "not now" rather than "no": it is loading, busy with a script, or failing over.
const transientReplies = ["LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"]

const toReason = (cause: unknown): Errors.Reason => {
  const fields = { message: cause instanceof Error ? cause.message : String(cause), cause }
  if (!(cause instanceof Error)) return new Errors.Rejected(fields)
  if (cause.name === "ReplyError") {
    return transientReplies.some((prefix) => cause.message.startsWith(prefix))
      ? new Errors.Transient(fields)
      : new Errors.Rejected(fields)
  }
  // A malformed URL or argument: no retry fixes it. Everything else ioredis raises is about the connection.
  if (cause instanceof TypeError || cause instanceof RangeError) return new Errors.Rejected(fields)
  return /timed? ?out/i.test(cause.message) ? new Errors.Timeout(fields) : new Errors.Unavailable(fields)
}

/** A hash's fields as ioredis gives them (an object of strings), copied into a plain object. */
const stringFields = (fields: object): { readonly [field: string]: string } => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(fields)) out[k] = String(v)
  return out
}

const fail = (operation: string) => (cause: unknown) => new RedisError({ operation, reason: toReason(cause) })

const connect = (options: Options) =>
  Effect.gen(function* () {
    const url = Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url
    let connectedOnce = false
    // ioredis loads when a client is made, not with this module: a process that never talks to Redis (a worker
    // with the table strategy) does not pay for its ~50 modules at start-up.
    const { Redis: Client } = yield* Effect.tryPromise({ try: () => import("ioredis"), catch: fail("connect") })
    const client = yield* Effect.try({
      try: () =>
        new Client(url, {
          lazyConnect: true,
          connectTimeout: Duration.toMillis(options.connectTimeout ?? "5 seconds"),
          commandTimeout: Duration.toMillis(options.commandTimeout ?? "5 seconds"),
          // While the connection is down, commands fail at once (retryable) instead of queueing without bound; the
          // caller's retry Schedule decides how long to wait, and in-flight commands are failed on disconnect.
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          // The first connection gets one attempt, so an unreachable Redis fails startup at once and the client
          // ends by itself. Once connected, reconnecting never gives up, so a Redis restart does not kill a
          // long-running processor; the delay is capped so it comes back soon after Redis does.
          retryStrategy: (attempt) => (connectedOnce ? Math.min(50 * 2 ** (attempt - 1), 2000) : null)
        }),
      catch: fail("connect")
    })
    // Without a listener ioredis prints "Unhandled error event" for every failed (re)connect. Operations already
    // report their own failures; the last one is kept because a failed connect() only rejects with "Connection is
    // closed." while the reason (ECONNREFUSED, ...) arrives here.
    let lastError: unknown
    client.on("error", (error: unknown) => {
      lastError = error
    })
    yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (error) => fail("connect")(lastError ?? error)
    })
    connectedOnce = true
    return client
  })

const close = (client: IORedis) =>
  Effect.tryPromise(() => client.quit()).pipe(
    Effect.timeout("1 second"),
    // QUIT cannot be sent while the connection is down; disconnect still stops the reconnect loop.
    Effect.catch(() => Effect.sync(() => client.disconnect()))
  )

/** Builds the service on a connected client that is closed with the scope. */
export const make = Effect.fnUntraced(function* (options: Options) {
  const client = yield* Effect.acquireRelease(connect(options), close)

  const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, RedisError> =>
    Effect.tryPromise({ try: run, catch: fail(operation) }).pipe(Effect.withSpan(`Redis.${operation}`))

  const delMany = (keys: ReadonlyArray<string>) =>
    // DEL with no keys is a Redis syntax error, and there is nothing to do anyway.
    keys.length === 0 ? Effect.succeed(0) : call("delMany", () => client.del([...keys]))

  /** A pipeline's or a transaction's replies, failing with the first command's error when any failed. */
  const replies = (operation: string, run: () => Promise<ReadonlyArray<[Error | null, unknown]> | null>) =>
    Effect.flatMap(call(operation, run), (results) => {
      const failed = (results ?? []).find(([error]) => error !== null)?.[0]
      return failed === undefined || failed === null
        ? Effect.succeed(results ?? [])
        : Effect.fail(fail(operation)(failed))
    })

  const getMany = (keys: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Value | null>, RedisError> =>
    Effect.gen(function* () {
      if (keys.length === 0) return []
      const strings = yield* call("getMany", () => client.mget([...keys]))
      const values: Array<Value | null> = strings.map((v) => (v === null ? null : { type: "string", value: v }))
      const others = keys.filter((_, i) => strings[i] === null)
      if (others.length === 0) return values
      const pipeline = client.pipeline()
      for (const key of others) pipeline.type(key).hgetall(key)
      // HGETALL of a key that is not a hash fails (WRONGTYPE) in its slot alone: TYPE says what the key is.
      const results = (yield* call("getMany", () => pipeline.exec())) ?? []
      let j = 0
      for (let i = 0; i < keys.length; i++) {
        if (strings[i] !== null) continue
        const [typeError, type] = results[2 * j] ?? [null, undefined]
        const [, fields] = results[2 * j + 1] ?? [null, undefined]
        j++
        if (typeError !== null) return yield* Effect.fail(fail("getMany")(typeError))
        // A key created as a string since the MGET counts as absent, as it was then.
        if (type === "none" || type === "string") continue
        values[i] =
          type === "hash" && Predicate.isObject(fields)
            ? { type: "hash", fields: stringFields(fields) }
            : { type: "other", redisType: String(type) }
      }
      return values
    })

  const scanPage = (pattern: string, cursor: string) =>
    call("flushPrefix", () => client.scan(cursor, "MATCH", pattern, "COUNT", 1000))

  return Redis.of({
    ping: call("ping", () => client.ping()).pipe(Effect.asVoid),
    get: (key) => call("get", () => client.get(key)),
    mget: (keys) => (keys.length === 0 ? Effect.succeed([]) : call("mget", () => client.mget([...keys]))),
    set: (key, value) => call("set", () => client.set(key, value)).pipe(Effect.asVoid),
    // MSET rather than a pipeline of SETs: one command, one round trip, and all-or-nothing.
    setMany: (entries) =>
      entries.length === 0 ? Effect.void : call("setMany", () => client.mset(new Map(entries))).pipe(Effect.asVoid),
    getMany,
    setHashes: (entries) => {
      if (entries.length === 0) return Effect.void
      const multi = client.multi()
      for (const [key, fields] of entries) {
        multi.del(key)
        // HSET with no field is a syntax error: an empty hash is no key at all in Redis.
        if (Object.keys(fields).length > 0) multi.hset(key, fields)
      }
      return replies("setHashes", () => multi.exec()).pipe(Effect.asVoid)
    },
    del: (key) => call("del", () => client.del(key)),
    delMany,
    flushPrefix: (prefix) =>
      Effect.gen(function* () {
        if (prefix.length === 0) {
          return yield* new RedisError({
            operation: "flushPrefix",
            reason: new Errors.Rejected({ message: "an empty prefix would delete every key" })
          })
        }
        // The prefix is matched literally, so glob characters in it are escaped.
        const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`
        let cursor = "0"
        let deleted = 0
        do {
          const [next, keys] = yield* scanPage(pattern, cursor)
          deleted += yield* delMany(keys)
          cursor = next
        } while (cursor !== "0")
        return deleted
      })
  })
})

/** Connects while the layer is built, so an unreachable Redis fails startup with a retryable `RedisError`. */
export const layer = (options: Options): Layer.Layer<Redis, RedisError> => Layer.effect(Redis, make(options))

/** `layer` with the URL from `REDIS_URL`. */
export const layerConfig: Layer.Layer<Redis, RedisError | Config.ConfigError> = Layer.unwrap(
  Effect.map(urlConfig, (url) => layer({ url }))
)
