/**
 * A JSON pipeline (PipelineSpec.ts) as a topology, built from Sluice's parts: the input topics, a cached Redis
 * lookup (CachedLookup.ts) for the enrichment, event-time tumbling windows with a grace and one final result each
 * (Windows.ts, Aggregator.ts) for the aggregation, and a ClickHouse sink (ClickHouseSink.ts) in the commit path.
 *
 * - **Events** are JSON objects on the `topics` (the Kafka key as text, or none). One that is not JSON, not an
 *   object, or lacks what a stage needs is a dead letter in `<topic>.dlq` with the reason (`InvalidEvent`).
 * - **Enrichment** (`redis_lookup`): the event's `key_field` (a string, or a number as its decimal text) is looked up
 *   in Redis at `cache_prefix + value`, a JSON string (what `sluice produce user-profiles-redis` writes), one MGET
 *   per batch for the keys the local cache (10,000 entries, 60 s) does not hold. A key without a profile (or with
 *   one that is not a JSON object) enriches with none, counted in `sluice_pipeline_profiles_missing`. Redis
 *   unreachable: the batch is retried (100 ms doubling to 5 s, for up to 2 minutes), then the worker stops.
 * - **Aggregation**: tumbling windows of `window_size_seconds` of event time (the event's `timestamp_field`: ISO
 *   8601, without a zone meaning UTC, or epoch seconds or milliseconds told apart by size, as Sensors.ts does), per
 *   record key (the seed's events are keyed by `session_id`: a window per session and minute; Kafka puts one key's
 *   records in one partition, so one task holds each window). Each window's row is written once, when the task's
 *   stream time (its largest event time so far) passes the window's end plus `grace_seconds`; an event that comes
 *   after that is late: it counts in no window and goes to `<pipeline_name>.late`. `event_count` counts the
 *   window's events, `unique_users` its distinct `user_field` values (exactly), `session_duration` is its last
 *   minus its first event time (ms). A window whose key's events stop is written when later events move the
 *   task's stream time on, as in Kafka Streams.
 * - **Without aggregation** each event becomes a row (PipelineTable.ts), enriched or raw.
 *
 * Rows reach ClickHouse through the `Sink` runtime: an input offset is committed only once the rows it caused are
 * written, and a window's row before the store forgets the window (Delivery.ts).
 */
import { Aggregator, Batch, Codec, Errors, type Task, Topic, Topology, Window, Windows } from "@sluice/core"
import type * as CachedLookup from "@sluice/core/CachedLookup"
import type * as ClickHouse from "@sluice/core/ClickHouse"
import type * as Sink from "@sluice/core/Sink"
import { Effect, Metric, Predicate, Schema } from "effect"
import type { Pipeline } from "./PipelineSpec.ts"
import * as PipelineTable from "./PipelineTable.ts"
import { eventTimeMs } from "./Sensors.ts"

export const Event = Schema.Record(Schema.String, Schema.Unknown)
export type Event = typeof Event.Type

/** A profile: any JSON object. */
export type Profile = { readonly [field: string]: unknown }

export const eventsTopic = (name: string) =>
  Topic.make(name, { key: Codec.nullable(Codec.string), value: Codec.json(Event) })

/** The names a deployment uses: the pipeline's, after `--topic-prefix` (tables: as identifier characters). */
export const named = (p: Pipeline, prefix = "") => ({
  topics: p.topics.map((t) => `${prefix}${t}`),
  late: `${prefix}${p.name}.late`,
  profileKeyPrefix: `${prefix}${p.enrichment?.cachePrefix ?? ""}`,
  table: `${prefix.replace(/[^A-Za-z0-9_]/g, "_")}${p.output.table}`
})
export type Names = ReturnType<typeof named>

export const profilesMissing = Metric.counter("sluice_pipeline_profiles_missing", {
  description: "events of a JSON pipeline enriched with no profile (none in Redis, or one that is not a JSON object)",
  incremental: true
})

// ---------------------------------------------------------------------------------------------------------------
// Event time
// ---------------------------------------------------------------------------------------------------------------

const iso =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?$/

/** An ISO 8601 date and time as epoch ms (no zone: UTC; fractions past ms cut), or `undefined`. */
export const isoMillis = (text: string): number | undefined => {
  const m = iso.exec(text)
  if (m === null) return undefined
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number
  ]
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, "0"))
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined
  const date = new Date(0)
  // setUTCFullYear, not Date.UTC, which reads years below 100 as 19xx.
  date.setUTCFullYear(year, month - 1, day)
  if (date.getUTCDate() !== day) return undefined
  date.setUTCHours(hour, minute, second, millis)
  const offset = m[9] === undefined ? 0 : (m[9] === "-" ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11] ?? 0))
  const t = date.getTime() - offset * 60_000
  return t >= 0 ? t : undefined
}

/** An event's time as epoch ms: ISO 8601 text, or epoch seconds or milliseconds (Sensors.ts's rule). */
export const eventTime = (value: unknown): number | undefined =>
  typeof value === "number" ? eventTimeMs(value) : typeof value === "string" ? isoMillis(value) : undefined

// ---------------------------------------------------------------------------------------------------------------
// The topology
// ---------------------------------------------------------------------------------------------------------------

/** What a window aggregates of each event. */
interface Sample {
  readonly time: number
  readonly user: string
  readonly found: boolean
}

/** A field as a lookup key or user: a string, or a whole number as its decimal text. */
const text = (value: unknown): string | undefined =>
  typeof value === "string" ? value : Number.isSafeInteger(value) ? String(value) : undefined

const describe = (value: unknown) => (value === undefined ? "none" : JSON.stringify(value))

export class InvalidEvent extends Errors.RecordRejected {}

const invalid = (reason: string) => new InvalidEvent({ tag: "InvalidEvent", reason })

/** What the stages need of an event, or why it cannot go through them. */
export const check = (
  p: Pipeline,
  key: string | null,
  event: Event
): { readonly lookupKey: string | undefined; readonly sample: Omit<Sample, "found"> | undefined } | InvalidEvent => {
  let lookupKey: string | undefined
  if (p.enrichment !== undefined) {
    const field = p.enrichment.keyField
    lookupKey = text(event[field])
    if (lookupKey === undefined)
      return invalid(
        `enrichment: ${field} must be a string or a whole number to look up, found ${describe(event[field])}`
      )
  }
  const a = p.aggregation
  if (a === undefined) return { lookupKey, sample: undefined }
  if (key === null) return invalid("aggregation: windows are per record key, and this record has none")
  const time = eventTime(event[a.timestampField])
  if (time === undefined)
    return invalid(
      `aggregation: ${a.timestampField} must be an ISO 8601 time or epoch seconds or milliseconds, found ${describe(event[a.timestampField])}`
    )
  if (!a.metrics.includes("unique_users")) return { lookupKey, sample: { time, user: "" } }
  const user = text(event[a.userField])
  if (user === undefined)
    return invalid(
      `unique_users: ${a.userField} must be a string or a whole number, found ${describe(event[a.userField])}`
    )
  return { lookupKey, sample: { time, user } }
}

const base = {
  events: Aggregator.count,
  first: Aggregator.mapInput(Aggregator.min, (s: Sample) => s.time),
  last: Aggregator.mapInput(Aggregator.max, (s: Sample) => s.time),
  enriched: Aggregator.mapInput(Aggregator.sum, (s: Sample) => (s.found ? 1 : 0))
}

interface Base {
  readonly events: number
  readonly first: number | null
  readonly last: number | null
  readonly enriched: number
}

// A window has at least one event, so first and last are never null.
const finished = (v: Base, users: number): PipelineTable.Summary => ({
  events: v.events,
  first: v.first ?? 0,
  last: v.last ?? 0,
  enriched: v.enriched,
  users
})

/** The windowed aggregation; the set of users is kept only when `unique_users` is asked for (it grows with them). */
const windowsOf = <R>(p: Pipeline, names: Names, sink: Sink.Sink<ClickHouse.Row, R>) => {
  const a = p.aggregation
  if (a === undefined) return undefined
  const options = {
    name: "windows",
    windows: Window.tumbling(`${a.windowSeconds} seconds`),
    grace: `${a.graceSeconds} seconds`,
    key: Codec.string,
    lateTopic: names.late
  } as const
  const row = (out: Windows.Output, key: string, window: Window.Window, s: PipelineTable.Summary) =>
    out.write(sink, PipelineTable.windowRow(p, key, window, s))
  return a.metrics.includes("unique_users")
    ? Windows.aggregate({
        ...options,
        aggregator: Aggregator.struct({
          ...base,
          users: Aggregator.mapInput(Aggregator.distinctCount, (s: Sample) => s.user)
        }),
        result: (out, key, window, v) => row(out, key, window, finished(v, v.users))
      })
    : Windows.aggregate({
        ...options,
        aggregator: Aggregator.struct(base),
        result: (out, key, window, v) => row(out, key, window, finished(v, 0))
      })
}

export interface Parts<R> {
  /** Where rows go: `ClickHouseSink.make` (the CLI), a `Sink.collector` in tests. */
  readonly sink: Sink.Sink<ClickHouse.Row, R>
  /** The profiles, with `enrichment`: `RedisLookup.strings` behind a `CachedLookup` (the CLI), a function in tests. */
  readonly profiles?: CachedLookup.CachedLookup<string, Profile> | undefined
  /** Partitions of the late-events topic when it is created (the inputs'). Default 1. */
  readonly partitions?: number
}

/** The topology of `p`, under the names of `names` (`named(p, prefix)`). */
export const topology = <R>(p: Pipeline, names: Names, parts: Parts<R>) => {
  const profiles = parts.profiles
  if (p.enrichment !== undefined && profiles === undefined)
    throw new Error(`pipeline ${p.name}: enrichment needs profiles`)
  const windows = windowsOf(p, names, parts.sink)

  const process = (records: ReadonlyArray<Topic.Decoded<string | null, Event>>, ctx: Task.TaskContext) =>
    Effect.gen(function* () {
      const checked = records.map((r) => check(p, r.key, r.value))
      const keys = checked.flatMap((c) => (c instanceof InvalidEvent || c.lookupKey === undefined ? [] : [c.lookupKey]))
      // One lookup for the batch: the cache answers what it holds, Redis the rest in one MGET.
      const found = profiles === undefined || keys.length === 0 ? [] : yield* profiles.getMany(keys)
      const byKey = new Map(keys.map((k, i) => [k, found[i]]))
      let missing = 0
      const open = windows?.open(ctx)
      const result = Batch.forEach(records, (r, out, i) => {
        const c = checked[i]!
        if (c instanceof InvalidEvent) return out.reject(c)
        const lookup = c.lookupKey === undefined ? undefined : { key: c.lookupKey, profile: byKey.get(c.lookupKey) }
        if (lookup !== undefined && lookup.profile === undefined) missing++
        if (open !== undefined && c.sample !== undefined && r.key !== null)
          open.add(out, r.record, r.key, { ...c.sample, found: lookup?.profile !== undefined }, c.sample.time)
        else out.write(parts.sink, PipelineTable.eventRow(r.record, r.key, r.value, lookup))
      })
      if (missing > 0) yield* Metric.update(profilesMissing, missing)
      return open === undefined ? result : Batch.concat([result, open.close()])
    })

  return Topology.make({
    name: p.name,
    inputs: names.topics.map((t) => Topology.input(eventsTopic(t), process)),
    stores: windows?.stores ?? [],
    timers: windows?.timers ?? [],
    outputs: windows === undefined ? [] : [{ name: names.late, partitions: parts.partitions ?? 1 }],
    sinks: [parts.sink]
  })
}

/** A profile as Redis keeps it: JSON text of an object; anything else counts as none. */
export const decodeProfile = (value: string): Profile | undefined => {
  try {
    const parsed: unknown = JSON.parse(value)
    return Predicate.isObject(parsed) && !Array.isArray(parsed) ? { ...parsed } : undefined
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What a pipeline does, in words
// ---------------------------------------------------------------------------------------------------------------

/** Where a run reads: the brokers and the group, as the CLI resolved them. */
export interface Resolved {
  readonly brokers: string
  readonly group: string
}

/** What `p` does, a line per stage: `sluice pipeline validate` prints it, `sluice run --pipeline` logs it. */
export const summary = (p: Pipeline, names: Names, resolved?: Resolved): ReadonlyArray<string> => {
  const from = resolved?.brokers ?? p.brokers?.join(",") ?? "--brokers / SLUICE_BROKERS (bootstrap_servers absent)"
  const group = resolved?.group ?? p.groupId
  const lines = [
    `read     ${names.topics.join(", ")} from ${from} in group ${group}: a group without committed offsets starts at the ${p.autoOffsetReset} offset; at most ${p.maxPollRecords} records per step; malformed events to <topic>.dlq`
  ]
  if (p.enrichment !== undefined)
    lines.push(
      `enrich   each event's ${p.enrichment.keyField} looked up in Redis at ${names.profileKeyPrefix}<${p.enrichment.keyField}> (a JSON string; one MGET per batch behind a local cache of 10,000 entries, 60 s); ${p.aggregation === undefined ? "each row has the profile (null when there is none)" : "each window's row counts its events with a profile (enriched_events)"}`
    )
  const a = p.aggregation
  if (a !== undefined) {
    const metric = {
      event_count: "event_count",
      unique_users: `unique_users (distinct ${a.userField})`,
      session_duration: "session_duration_ms (last minus first event time)"
    }
    lines.push(
      `window   ${a.windowSeconds} s tumbling windows of event time (${a.timestampField}) per record key, each written once when the task's stream time passes its end + ${a.graceSeconds} s grace; later events to ${names.late}`,
      `metrics  ${a.metrics.map((m) => metric[m]).join(", ")}${p.enrichment === undefined ? "" : ", enriched_events"}`
    )
  } else lines.push(`rows     one per event, ${p.enrichment === undefined ? "as it came" : "with its profile"}`)
  lines.push(
    `write    ClickHouse ${names.table} (created if absent: ${PipelineTable.columns(p)
      .map((c) => `${c.name} ${c.type}`)
      .join(
        ", "
      )}); ${p.output.batchSize} rows per insert, at least every ${p.output.flushIntervalMs} ms; an input offset is committed once its rows are written`
  )
  return lines
}
