/**
 * A JSON pipeline (PipelineSpec.ts) as a topology, built from Sluice's parts: the input topics, a cached Redis
 * lookup (CachedLookup.ts) for the enrichment, event-time tumbling windows with a grace and one final result each
 * (Windows.ts, Aggregator.ts) for the aggregation, and a ClickHouse or Postgres sink in the commit path
 * (PipelineClickHouse.ts, PipelinePostgres.ts).
 *
 * - **Events** are JSON objects on the `topics` (the Kafka key as text, or none). One that is not JSON, not an
 *   object, or lacks what a stage needs is a dead letter in `<topic>.dlq` with the reason (`InvalidEvent`).
 * - **Enrichment** (`redis_lookup`): the event's `key_field` (a string, or a number as its decimal text) is looked up
 *   in Redis at `cache_prefix + value`: a string of a JSON object (what `sluice produce user-profiles-redis` writes)
 *   or a hash, told apart by their type (`decodeProfile`): one MGET per batch for the keys the local cache (10,000
 *   entries, 60 s) does not hold, and TYPE and HGETALL, pipelined, for the keys MGET answers nil. A key without a
 *   profile enriches with none, counted in `sluice_pipeline_profiles_missing`; one that holds something else (a
 *   string that is not a JSON object, a list) too, counted in `sluice_pipeline_profiles_invalid` and named in a
 *   warning (`ProfileInvalid`). Redis unreachable: the batch is retried (100 ms doubling to 5 s, for up to 2
 *   minutes), then the worker stops.
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
 * Rows reach the database through the `Sink` runtime: an input offset is committed only once the rows it caused are
 * written, and a window's row before the store forgets the window (Delivery.ts). What `--guarantee exactly_once`
 * means for each output: `delivery`.
 */
import { Aggregator, Batch, Codec, Errors, type Task, Topic, Topology, Window, Windows } from "@sluice/core"
import type * as CachedLookup from "@sluice/core/CachedLookup"
import type * as Delivery from "@sluice/core/Delivery"
import * as PostgresSink from "@sluice/core/PostgresSink"
import type * as Redis from "@sluice/core/Redis"
import type * as Sink from "@sluice/core/Sink"
import { Data, Effect, Metric, Predicate, Schema } from "effect"
import type { Pipeline } from "./PipelineSpec.ts"
import * as PipelineTable from "./PipelineTable.ts"
import { eventTimeMs } from "./Sensors.ts"

export const Event = Schema.Record(Schema.String, Schema.Unknown)
export type Event = typeof Event.Type

/** A profile: a JSON object, whatever its fields. */
export type Profile = { readonly [field: string]: unknown }

export const eventsTopic = (name: string) =>
  Topic.make(name, { key: Codec.nullable(Codec.string), value: Codec.json(Event) })

/**
 * The names a deployment uses: the pipeline's, after `--topic-prefix` (tables: as identifier characters, and for
 * Postgres in lowercase, the only names the schema allows).
 */
export const named = (p: Pipeline, prefix = "") => {
  const tablePrefix = prefix.replace(/[^A-Za-z0-9_]/g, "_")
  return {
    topics: p.topics.map((t) => `${prefix}${t}`),
    late: `${prefix}${p.name}.late`,
    profileKeyPrefix: `${prefix}${p.enrichment?.cachePrefix ?? ""}`,
    table: `${p.output.type === "postgres" ? tablePrefix.toLowerCase() : tablePrefix}${p.output.table}`
  }
}
export type Names = ReturnType<typeof named>

export const profilesMissing = Metric.counter("sluice_pipeline_profiles_missing", {
  description: "events of a JSON pipeline enriched with no profile: none in Redis",
  incremental: true
})

export const profilesInvalid = Metric.counter("sluice_pipeline_profiles_invalid", {
  description:
    "events of a JSON pipeline enriched with no profile because Redis holds something else at its key: neither a JSON object (as a string) nor a hash",
  incremental: true
})

/** A key whose value is no profile: a string that is not a JSON object, or a list, set, sorted set or stream. */
export class ProfileInvalid extends Data.TaggedError("ProfileInvalid")<{
  readonly key: string
  readonly reason: string
}> {
  override get message(): string {
    return `Redis ${this.key} is no profile: ${this.reason}`
  }
}

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
const windowsOf = <V, R>(
  p: Pipeline,
  names: Names,
  sink: Sink.Sink<PipelineTable.Row<V>, R>,
  dialect: PipelineTable.Dialect<V>
) => {
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
    out.write(sink, PipelineTable.windowRow(p, dialect, key, window, s))
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

export interface Parts<V, R> {
  /**
   * Where rows go, and how their database stores them: `PipelineClickHouse.sink` with `PipelineTable.clickhouse`,
   * `PipelinePostgres.sink` with `PipelineTable.postgres` (the CLI), a `Sink.collector` in tests.
   */
  readonly sink: Sink.Sink<PipelineTable.Row<V>, R>
  readonly dialect: PipelineTable.Dialect<V>
  /**
   * The profiles, with `enrichment`: `RedisLookup.values` decoded by `decodeProfile` behind a `CachedLookup` (the
   * CLI), a function in tests.
   */
  readonly profiles?: CachedLookup.CachedLookup<string, Profile | ProfileInvalid> | undefined
  /** Partitions of the late-events topic when it is created (the inputs'). Default 1. */
  readonly partitions?: number
  /**
   * Tasks start from the positions the sink stored with its rows (`delivery(p, guarantee).sinkOffsets`; the sink
   * must store them: `PipelinePostgres.sink` with `offsetsGroup`).
   */
  readonly startFromSink?: boolean
}

/** At most this many invalid profiles are named in a batch's warning (all are counted). */
const namedInvalid = 3

/** The topology of `p`, under the names of `names` (`named(p, prefix)`). */
export const topology = <V, R>(p: Pipeline, names: Names, parts: Parts<V, R>) => {
  const profiles = parts.profiles
  if (p.enrichment !== undefined && profiles === undefined)
    throw new Error(`pipeline ${p.name}: enrichment needs profiles`)
  if (parts.startFromSink === true && p.aggregation !== undefined)
    throw new Error(`pipeline ${p.name}: windows keep their state in Kafka; tasks cannot start from the sink's offsets`)
  const { sink, dialect } = parts
  const windows = windowsOf(p, names, sink, dialect)

  const process = (records: ReadonlyArray<Topic.Decoded<string | null, Event>>, ctx: Task.TaskContext) =>
    Effect.gen(function* () {
      const checked = records.map((r) => check(p, r.key, r.value))
      const keys = checked.flatMap((c) => (c instanceof InvalidEvent || c.lookupKey === undefined ? [] : [c.lookupKey]))
      // One lookup for the batch: the cache answers what it holds, Redis the rest (RedisLookup.values).
      const found = profiles === undefined || keys.length === 0 ? [] : yield* profiles.getMany(keys)
      const byKey = new Map(keys.map((k, i) => [k, found[i]]))
      let missing = 0
      // By Redis key: each key named once in the warning, every event counted.
      const invalid = new Map<string, ProfileInvalid>()
      let unreadable = 0
      const open = windows?.open(ctx)
      const result = Batch.forEach(records, (r, out, i) => {
        const c = checked[i]!
        if (c instanceof InvalidEvent) return out.reject(c)
        let lookup: { readonly key: string; readonly profile: Profile | undefined } | undefined
        if (c.lookupKey !== undefined) {
          const answer = byKey.get(c.lookupKey)
          if (answer instanceof ProfileInvalid) {
            unreadable++
            invalid.set(answer.key, answer)
          } else if (answer === undefined) missing++
          lookup = { key: c.lookupKey, profile: answer instanceof ProfileInvalid ? undefined : answer }
        }
        if (open !== undefined && c.sample !== undefined && r.key !== null)
          open.add(out, r.record, r.key, { ...c.sample, found: lookup?.profile !== undefined }, c.sample.time)
        else out.write(sink, PipelineTable.eventRow(dialect, r.record, r.key, r.value, lookup))
      })
      if (missing > 0) yield* Metric.update(profilesMissing, missing)
      if (unreadable > 0) {
        yield* Metric.update(profilesInvalid, unreadable)
        yield* Effect.logWarning(
          `${unreadable} event(s) enriched with no profile, their key holding something else (sluice_pipeline_profiles_invalid): ${[
            ...invalid.values()
          ]
            .slice(0, namedInvalid)
            .map((e) => e.message)
            .join("; ")}${invalid.size > namedInvalid ? `; and ${invalid.size - namedInvalid} more key(s)` : ""}`
        )
      }
      return open === undefined ? result : Batch.concat([result, open.close()])
    })

  return Topology.make<Errors.LookupError | Errors.SinkError, R>({
    name: p.name,
    inputs: names.topics.map((t) => Topology.input(eventsTopic(t), process)),
    stores: windows?.stores ?? [],
    timers: windows?.timers ?? [],
    outputs: windows === undefined ? [] : [{ name: names.late, partitions: parts.partitions ?? 1 }],
    sinks: [sink],
    ...(parts.startFromSink === true ? { startOffsets: (_task, partitions) => sink.readOffsets(partitions) } : {})
  })
}

/**
 * A profile as Redis keeps it at `key`: a string of a JSON object (what `sluice produce user-profiles-redis`
 * writes), or a hash (its fields, as strings); anything else is `ProfileInvalid`, and the event goes on without one.
 */
export const decodeProfile = (value: Redis.Value, key: string): Profile | ProfileInvalid => {
  switch (value.type) {
    case "hash":
      return { ...value.fields }
    case "other":
      return new ProfileInvalid({ key, reason: `a ${value.redisType}, neither a string of JSON nor a hash` })
    case "string": {
      let parsed: unknown
      try {
        parsed = JSON.parse(value.value)
      } catch (e) {
        return new ProfileInvalid({ key, reason: `a string that is not JSON (${e instanceof Error ? e.message : e})` })
      }
      return Predicate.isObject(parsed)
        ? { ...parsed }
        : new ProfileInvalid({
            key,
            reason: `a string of JSON ${parsed === null ? "null" : Array.isArray(parsed) ? "array" : typeof parsed}, not an object`
          })
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What a guarantee means
// ---------------------------------------------------------------------------------------------------------------

/**
 * How a run of `p` under `guarantee` delivers: the runner's guarantee, and whether the sink stores the offsets with
 * its rows (tasks then start from there).
 *
 * Exactly-once into Postgres is Postgres's transaction (rows and offsets together, as events-to-postgres does) only
 * for a pipeline without windows. Windows keep their state in Kafka (a changelog), so the offsets that go with that
 * state are Kafka's: a task started from Postgres's offsets would restore a state from another point and count
 * events twice or not at all. With windows, exactly-once is Kafka's transaction (state, late events, dead letters
 * and offsets together), and the table's primary key makes a final emitted again after an aborted transaction
 * insert nothing.
 */
export const delivery = (
  p: Pipeline,
  guarantee: Delivery.Guarantee
): { readonly runner: Delivery.Guarantee; readonly sinkOffsets: boolean; readonly text: string } => {
  const postgres = p.output.type === "postgres"
  const again = postgres
    ? "a row written again inserts nothing (primary key, ON CONFLICT DO NOTHING)"
    : "a row written again folds into the first (ReplacingMergeTree; query with FINAL)"
  if (guarantee === "at_least_once")
    return {
      runner: guarantee,
      sinkOffsets: false,
      text: `an input offset is committed once its rows are written; after a crash what was not committed is processed again${p.aggregation === undefined ? "" : " (a window still open may count an event twice)"}, and ${again}`
    }
  if (postgres && p.aggregation === undefined)
    return {
      runner: "at_least_once",
      sinkOffsets: true,
      text: `rows and the consumed offsets in one Postgres transaction (${PostgresSink.defaultOffsetsTable(`${p.output.schema}.${p.output.table}`)}); tasks start from those offsets, not from the group's commits; dead letters stay at-least-once`
    }
  return {
    runner: guarantee,
    sinkOffsets: false,
    text: `${p.aggregation === undefined ? "dead letters" : "the windows' state, late events, dead letters"} and input offsets in one Kafka transaction per commit${postgres ? " (the windows' state is in Kafka, so its offsets must be too)" : ""}; rows are written before it commits, and after an abort ${again}`
  }
}
