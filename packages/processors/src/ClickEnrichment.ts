/**
 * The delayed-join lab done right: click events enriched with user profiles from the compacted `user_profiles`
 * topic. The topology asks a `ProfileLookup` for a whole batch of user ids at once; which strategy answers
 * (in-memory table, the lab's rescan, Redis) is a layer choice, and the topology's code does not change.
 *
 * Unknown users follow a stated policy: `null` enriches with null name and city (default), `dead-letter` rejects
 * the click to `clicks.dlq` with the reason. A click is never dropped silently.
 */
import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import * as Errors from "@sluice/core/Errors"
import * as Lookup from "@sluice/core/Lookup"
import { bytes } from "@sluice/core/Record"
import * as RedisLookup from "@sluice/core/RedisLookup"
import * as Table from "@sluice/core/Table"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Console, Context, Effect, Layer, Result, Schema } from "effect"

export const Profile = Schema.Struct({ id: Schema.Int, name: Schema.String, city: Schema.String })
export type Profile = typeof Profile.Type

export const Click = Schema.Struct({ timestamp: Schema.Finite, user_id: Schema.Int, url: Schema.String })
export type Click = typeof Click.Type

export const EnrichedClick = Schema.Struct({
  timestamp: Schema.Finite,
  user_id: Schema.Int,
  url: Schema.String,
  user_name: Schema.NullOr(Schema.String),
  user_city: Schema.NullOr(Schema.String)
})
export type EnrichedClick = typeof EnrichedClick.Type

/** Compacted; a null value is a tombstone that deletes the profile. */
export const profilesTopic = (name: string) =>
  Topic.make(name, { key: Codec.intString, value: Codec.nullable(Codec.json(Profile)) })
export const clicksTopic = (name: string) => Topic.make(name, { key: Codec.intString, value: Codec.json(Click) })
export const enrichedTopic = (name: string) =>
  Topic.make(name, { key: Codec.intString, value: Codec.json(EnrichedClick) })

/** The topics a click-enrichment deployment uses; `named(prefix)` gives fresh ones (benchmarks, tests). */
export interface Topics {
  readonly profiles: ReturnType<typeof profilesTopic>
  readonly clicks: ReturnType<typeof clicksTopic>
  readonly enriched: ReturnType<typeof enrichedTopic>
}

export const named = (prefix = ""): Topics => ({
  profiles: profilesTopic(`${prefix}user_profiles`),
  clicks: clicksTopic(`${prefix}clicks`),
  enriched: enrichedTopic(`${prefix}clicks.enriched`)
})

export const defaultTopics = named()
export const { profiles, clicks, enriched } = defaultTopics

export const profilesSpec = (topics: Topics = defaultTopics, partitions = 3) => ({
  name: topics.profiles.name,
  partitions,
  config: { "cleanup.policy": "compact" }
})

/** The join strategy: one lookup per batch of clicks. */
export class ProfileLookup extends Context.Service<ProfileLookup, Lookup.Lookup<number, Profile>>()(
  "@sluice/processors/ClickEnrichment/ProfileLookup"
) {
  /** The Ref-backed global table, loaded once from the compacted topic; ready before the layer is. */
  static readonly table = (topics: Topics = defaultTopics) =>
    Layer.effect(
      ProfileLookup,
      Effect.map(Table.makeReady(topics.profiles), (table) => Lookup.fromTable(table))
    )
  /** The lab's N+1: re-read the whole profile topic for every click. The baseline, kept on purpose. */
  static readonly rescan = (topics: Topics = defaultTopics) =>
    Layer.effect(ProfileLookup, Lookup.rescan(topics.profiles))
  /** Profiles in Redis, filled by a loader from the same topic; one MGET per batch. Needs the Redis service. */
  static readonly redis = (topics: Topics = defaultTopics) =>
    Layer.effect(ProfileLookup, RedisLookup.make(topics.profiles, { prefix: `sluice:${topics.profiles.name}:` }))
}

/**
 * Provenance headers, written on each enriched click when the topology is made with `provenance: true`: which click
 * it came from (`partition:offset`) and when that click was produced (its timestamp, for latency). Off by default:
 * two headers per record cost about a quarter of the throughput of a run (issue #13), and the enriched value
 * already carries the click's own timestamp.
 */
export const clickHeaders = { source: "sluice.click.source", producedAt: "sluice.click.produced-at" } as const

export type UnknownUserPolicy = "null" | "dead-letter"

export class UnknownUser extends Errors.RecordRejected {}

/** Joins one batch; pure, so the strategies can be compared on exactly the same code path. */
export const join = (
  records: ReadonlyArray<Topic.Decoded<number, Click>>,
  found: ReadonlyArray<Profile | undefined>,
  policy: UnknownUserPolicy,
  topics: Topics = defaultTopics,
  provenance = false
): Batch.BatchResult =>
  Batch.forEach(records, ({ key, value, record }, out, i) => {
    const profile = found[i]
    if (profile === undefined && policy === "dead-letter") {
      return out.reject(new UnknownUser({ tag: "UnknownUser", reason: `no profile for user_id ${value.user_id}` }))
    }
    const enriched: EnrichedClick = {
      timestamp: value.timestamp,
      user_id: value.user_id,
      url: value.url,
      user_name: profile?.name ?? null,
      user_city: profile?.city ?? null
    }
    if (!provenance) return out.emit(topics.enriched, key, enriched)
    out.emit(topics.enriched, key, enriched, {
      headers: {
        [clickHeaders.source]: bytes(`${record.partition}:${record.offset}`),
        [clickHeaders.producedAt]: bytes(String(record.timestamp))
      }
    })
  })

export const topology = (
  options: {
    readonly unknownUsers?: UnknownUserPolicy
    readonly print?: boolean
    readonly topics?: Topics
    /** Write the provenance headers (`clickHeaders`) on every enriched click. Default false. */
    readonly provenance?: boolean
  } = {}
) => {
  const topics = options.topics ?? defaultTopics
  return Topology.make({
    name: "click-enrichment",
    input: topics.clicks,
    outputs: [{ name: topics.enriched.name, partitions: 3 }],
    process: (records) =>
      Effect.gen(function* () {
        const lookup = yield* ProfileLookup
        const found = yield* lookup.getMany(records.map((r) => r.value.user_id))
        const result = join(records, found, options.unknownUsers ?? "null", topics, options.provenance ?? false)
        if (options.print) yield* Console.log(printable(result).join("\n"))
        return result
      })
  })
}

/** The lab's log line for an enriched click. */
export const formatEnriched = (e: EnrichedClick): string =>
  `Enriched Event: {'user_id': ${e.user_id}, 'url': '${e.url}', 'user_name': ${e.user_name === null ? "None" : `'${e.user_name}'`}}`

/** The lab's log lines for the enriched records of a batch result. */
export const printable = (result: Batch.BatchResult): ReadonlyArray<string> =>
  result.outputs.flatMap((r) => {
    const decoded = enriched.value.decode(r.value)
    return Result.isSuccess(decoded) ? [formatEnriched(decoded.success)] : []
  })
