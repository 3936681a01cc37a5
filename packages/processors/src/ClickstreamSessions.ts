/**
 * Clickstream sessions (seed 004, example 1): click events enriched with user profiles from Redis and with their
 * session's running metrics, written to ClickHouse (`clickstream_events`, for analytics) and to Postgres (one row
 * per event and a view of each session's latest metrics), both through the `Sink` runtime, so an input offset is
 * committed only once both databases hold its rows.
 *
 * - Input: `<prefix>clickstream`, **keyed by `session_id`**: every event of a session is in one partition, so one
 *   task (and one store, whose changelog partition is the task's) holds the session, and a restart or a handoff
 *   restores it with the partition. Events of one session produced under another key would split its metrics.
 * - Enrichment: `user:profile:<user_id>` in Redis (JSON), one MGET per batch for the users the local cache (bounded,
 *   with a TTL: CachedLookup.ts) does not hold. A user without a profile (or with one that does not decode) gets
 *   `defaultProfile` and is counted in `sluice_clickstream_profiles_missing`.
 * - Redis unreachable: `wait` (the default) fails the batch with a retryable error, which the runtime retries on its
 *   schedule (100 ms doubling to 5 s, for up to 2 minutes; then the worker stops, with nothing committed past what
 *   was written, and a restart goes on from there): nothing is lost or enriched wrongly. `defaults` enriches the
 *   batch with cached profiles or the defaults instead, counted as missing, and goes on.
 * - Session metrics, in the task's `sessions` store: start and last event time (min and max, so order does not
 *   matter), event count and the distinct pages of its `page_view` events. The store also keeps the session's last
 *   input offset: an event at or below it is a re-delivery (at-least-once, after a crash between the store's
 *   changelog write and the commit) and does not count twice, so the metrics stay exact. Its rows are written
 *   again with the session's current metrics; the databases keep one row per input offset (ClickhouseTables.ts).
 */
import * as Batch from "@sluice/core/Batch"
import * as CachedLookup from "@sluice/core/CachedLookup"
import * as Codec from "@sluice/core/Codec"
import * as Errors from "@sluice/core/Errors"
import type * as Lookup from "@sluice/core/Lookup"
import type { ConsumerRecord } from "@sluice/core/Record"
import { bytes } from "@sluice/core/Record"
import { Redis, type RedisShape } from "@sluice/core/Redis"
import * as RedisLookup from "@sluice/core/RedisLookup"
import type * as Sink from "@sluice/core/Sink"
import * as Store from "@sluice/core/Store"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Context, Duration, Effect, Layer, Metric, Result, Schema } from "effect"

export const ClickEvent = Schema.Struct({
  event_id: Schema.String,
  event_type: Schema.String,
  user_id: Schema.String,
  session_id: Schema.String,
  /** ISO 8601, e.g. `2026-12-01T10:00:00.123Z`. */
  timestamp: Schema.String,
  page_url: Schema.String,
  referrer: Schema.NullOr(Schema.String),
  user_agent: Schema.String,
  ip_address: Schema.String,
  country: Schema.String,
  city: Schema.String,
  properties: Schema.Record(Schema.String, Schema.Unknown)
})
export type ClickEvent = typeof ClickEvent.Type

/** The value of `user:profile:<user_id>`. */
export const UserProfile = Schema.Struct({
  user_id: Schema.String,
  name: Schema.String,
  segment: Schema.String,
  tier: Schema.String,
  lifetime_value: Schema.Finite
})
export type UserProfile = typeof UserProfile.Type

/** What a user without a profile is enriched with. */
export const defaultProfile = (userId: string): UserProfile => ({
  user_id: userId,
  name: "unknown",
  segment: "unknown",
  tier: "free",
  lifetime_value: 0
})

/** A session's metrics so far, in the task's store. Times are epoch ms. */
export const SessionState = Schema.Struct({
  user_id: Schema.String,
  start: Schema.Finite,
  last: Schema.Finite,
  events: Schema.Int,
  /** Distinct `page_url`s of its `page_view` events, in the order first seen. */
  pages: Schema.Array(Schema.String),
  /** The input offset of its last event applied: re-deliveries at or below it are not counted again. */
  offset: Schema.Int
})
export type SessionState = typeof SessionState.Type

export const sessions = Store.make("sessions", { key: Codec.string, value: Codec.json(SessionState) })

export const eventsTopic = (name: string) => Topic.make(name, { key: Codec.string, value: Codec.json(ClickEvent) })

/** The topic and Redis keys of a deployment; `named(prefix)` gives fresh ones (tests, parallel environments). */
export const named = (prefix = "") => ({
  events: eventsTopic(`${prefix}clickstream`),
  /** Redis keys of profiles: `<prefix>user:profile:<user_id>` (the lab's keys without a prefix). */
  profileKeyPrefix: `${prefix}user:profile:`
})
export type Topics = ReturnType<typeof named>

export const profilesMissing = Metric.counter("sluice_clickstream_profiles_missing", {
  description: "clickstream events enriched with the default profile (no profile, or one that does not decode)",
  incremental: true
})

/** Where profiles come from: a lookup of a batch of user ids, with the local cache in front. */
export class UserProfiles extends Context.Service<UserProfiles, CachedLookup.CachedLookup<string, UserProfile>>()(
  "@sluice/processors/ClickstreamSessions/UserProfiles"
) {
  /** Profiles in Redis (`<keyPrefix><user_id>`): one MGET per batch for the users the cache misses. */
  static readonly redis = (options: { readonly keyPrefix: string; readonly cache?: CachedLookup.Options }) =>
    Layer.effect(
      UserProfiles,
      Effect.map(Redis, (redis) => CachedLookup.make(fromRedis(redis, options.keyPrefix), cacheOf(options)))
    )
  /** Profiles from a function (tests); `fail` makes lookups fail as Redis does when it is down. */
  static readonly fromLookup = (lookup: Lookup.Lookup<string, UserProfile>, cache?: CachedLookup.Options) =>
    Layer.sync(UserProfiles, () => CachedLookup.make(lookup, cache ?? defaultCache))
}

export const defaultCache: CachedLookup.Options = { maxEntries: 10_000, ttl: Duration.seconds(60) }
const cacheOf = (options: { readonly cache?: CachedLookup.Options }) => options.cache ?? defaultCache

const decodeProfile = Schema.decodeUnknownResult(Schema.fromJsonString(UserProfile))

/** Profiles as Redis keeps them; a value that does not decode counts as no profile. */
export const fromRedis = (redis: RedisShape, keyPrefix: string): Lookup.Lookup<string, UserProfile> =>
  RedisLookup.strings(redis, {
    key: (id: string) => keyPrefix + id,
    decode: (v) => Result.getOrUndefined(decodeProfile(v))
  })

/** One event, enriched, with its session's metrics once it is applied: what both sinks' rows are made of. */
export interface Enriched {
  readonly event: ClickEvent
  /** `event.timestamp` in epoch ms. */
  readonly time: number
  readonly profile: UserProfile
  readonly profileFound: boolean
  readonly session: SessionState
  readonly record: ConsumerRecord
}

export class InvalidTimestamp extends Errors.RecordRejected {}

/**
 * Applies an event to its session's state: pure. `undefined` when the event was already applied (its offset is at
 * or below the state's), so a re-delivery leaves the state as it is.
 */
export const applyEvent = (
  state: SessionState | undefined,
  event: ClickEvent,
  time: number,
  offset: number
): SessionState | undefined => {
  if (state !== undefined && offset <= state.offset) return undefined
  const viewed = event.event_type === "page_view"
  if (state === undefined)
    return { user_id: event.user_id, start: time, last: time, events: 1, pages: viewed ? [event.page_url] : [], offset }
  return {
    user_id: state.user_id,
    start: Math.min(state.start, time),
    last: Math.max(state.last, time),
    events: state.events + 1,
    pages: viewed && !state.pages.includes(event.page_url) ? [...state.pages, event.page_url] : state.pages,
    offset
  }
}

/** What a session store needs to offer: a task's store, or a Map in tests. */
export type SessionStore = Pick<Store.KeyValueStore<string, SessionState>, "get" | "put">

/** The sinks the topology writes to; the live ones are in ClickstreamTables.ts, tests pass `Sink.collector`s. */
export interface Sinks<CH, PG, RC, RP> {
  readonly clickhouse: Sink.Sink<CH, RC>
  readonly postgres: Sink.Sink<PG, RP>
  readonly toClickHouse: (e: Enriched) => CH
  readonly toPostgres: (e: Enriched) => PG
}

/**
 * Enriches one batch: pure but for the store. `found[i]` is the profile of `records[i]`'s user, if any. An event
 * whose timestamp does not parse is dead-lettered (its session is not touched).
 */
export const process = <CH, PG, RC, RP>(
  records: ReadonlyArray<Topic.Decoded<string, ClickEvent>>,
  found: ReadonlyArray<UserProfile | undefined>,
  store: SessionStore,
  sinks: Sinks<CH, PG, RC, RP>
): { readonly result: Batch.BatchResult; readonly missing: number } => {
  let missing = 0
  const result = Batch.forEach(records, ({ value: event, record }, out, i) => {
    const time = Date.parse(event.timestamp)
    if (Number.isNaN(time))
      return out.reject(
        new InvalidTimestamp({ tag: "InvalidTimestamp", reason: `timestamp is not ISO 8601: ${event.timestamp}` })
      )
    const key = event.session_id
    const before = store.get(key)
    const after = applyEvent(before, event, time, record.offset)
    if (after !== undefined) store.put(key, after)
    const profile = found[i]
    if (profile === undefined) missing++
    const enriched: Enriched = {
      event,
      time,
      profile: profile ?? defaultProfile(event.user_id),
      profileFound: profile !== undefined,
      // A re-delivered event (`after` undefined) carries the session's current metrics.
      session: after ?? before!,
      record
    }
    out.write(sinks.clickhouse, sinks.toClickHouse(enriched))
    out.write(sinks.postgres, sinks.toPostgres(enriched))
  })
  return { result, missing }
}

export type LookupPolicy = "wait" | "defaults"

export const topology = <CH, PG, RC, RP>(options: {
  readonly topics?: Topics
  readonly sinks: Sinks<CH, PG, RC, RP>
  /** What a batch does while Redis is unreachable (see the module comment). Default `wait`. */
  readonly onLookupFailure?: LookupPolicy
}) => {
  const topics = options.topics ?? named()
  const policy = options.onLookupFailure ?? "wait"
  return Topology.make<string, ClickEvent, Errors.LookupError, RC | RP | UserProfiles>({
    name: "clickstream-sessions",
    input: topics.events,
    stores: [sessions],
    sinks: [options.sinks.clickhouse, options.sinks.postgres],
    process: (records, ctx) =>
      Effect.gen(function* () {
        const profiles = yield* UserProfiles
        const userIds = records.map((r) => r.value.user_id)
        const lookup = profiles.getMany(userIds)
        const found =
          policy === "wait"
            ? yield* lookup
            : yield* lookup.pipe(
                Effect.catch((e) =>
                  Effect.as(
                    Effect.logWarning(`profiles unavailable, enriching with defaults: ${e.message}`),
                    userIds.map(() => undefined)
                  )
                )
              )
        const { result, missing } = process(records, found, ctx.store(sessions), options.sinks)
        if (missing > 0) yield* Metric.update(profilesMissing, missing)
        return result
      })
  })
}

/** The record of an event for the input topic: keyed by its session, so the session stays in one task. */
export const recordOf = (topics: Topics, event: ClickEvent) => ({
  topic: topics.events.name,
  key: bytes(event.session_id),
  value: bytes(JSON.stringify(event))
})
