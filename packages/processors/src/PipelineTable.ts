/**
 * The ClickHouse table of a JSON pipeline (PipelineSpec.ts): its columns, derived from what the pipeline does, the
 * row each window or event becomes, and the check at startup that creates the table when it is absent and refuses
 * one whose columns do not fit.
 *
 * - With `aggregation`: one row per key and window, `window_start` and `window_end` (`DateTime`, UTC seconds: a
 *   window's bounds are whole seconds), `key` (the record key the windows are per), then a column per metric:
 *   `event_count`, `unique_users`, `session_duration_ms` (UInt64), and with `enrichment` also `enriched_events` (the
 *   window's events whose profile was found). `ReplacingMergeTree` ordered by `(key, window_start)`: a final emitted
 *   again after a crash (at-least-once) folds into the first when parts merge; query with `FINAL` for exact numbers.
 * - Without: one row per event, `kafka_timestamp` (`DateTime`) and `kafka_timestamp_ms` (the record's Kafka
 *   timestamp), `key` (`Nullable(String)`), `event` (its JSON), with `enrichment` also `lookup_key`,
 *   `profile` (`Nullable(String)`, the profile's JSON) and `profile_found`, then the source position:
 *   `ReplacingMergeTree` ordered by it, one row per input offset (ClickHouseSink.ts).
 *
 * ClickHouse 18.16 (the project's server) has no `DateTime64`, hence the milliseconds column of its own.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as ClickHouseSink from "@sluice/core/ClickHouseSink"
import { ConfigInvalid } from "@sluice/core/Errors"
import type { ConsumerRecord } from "@sluice/core/Record"
import type { Window } from "@sluice/core/Window"
import { Effect, Predicate } from "effect"
import type { Pipeline } from "./PipelineSpec.ts"

export interface Column {
  readonly name: string
  readonly type: string
}

/** A window's aggregate: what its row's metric columns are made of. */
export interface Summary {
  readonly events: number
  /** Distinct users; 0 when `unique_users` is not asked for. */
  readonly users: number
  /** The earliest and latest event time in the window, epoch ms. */
  readonly first: number
  readonly last: number
  /** Events whose profile was found. */
  readonly enriched: number
}

/** The metric columns, each with the aggregate it shows. */
const metricColumns = {
  event_count: { name: "event_count", of: (s: Summary) => s.events },
  unique_users: { name: "unique_users", of: (s: Summary) => s.users },
  session_duration: { name: "session_duration_ms", of: (s: Summary) => s.last - s.first }
} as const

const col = (name: string, type: string): Column => ({ name, type })

/** Every column of the pipeline's table, in order. */
export const columns = (p: Pipeline): ReadonlyArray<Column> => {
  const enriched = p.enrichment !== undefined
  if (p.aggregation !== undefined)
    return [
      col("window_start", "DateTime"),
      col("window_end", "DateTime"),
      col("key", "String"),
      ...p.aggregation.metrics.map((m) => col(metricColumns[m].name, "UInt64")),
      ...(enriched ? [col("enriched_events", "UInt64")] : [])
    ]
  return [
    col("kafka_timestamp", "DateTime"),
    col("kafka_timestamp_ms", "UInt16"),
    col("key", "Nullable(String)"),
    col("event", "String"),
    ...(enriched
      ? [col("lookup_key", "String"), col("profile", "Nullable(String)"), col("profile_found", "UInt8")]
      : []),
    col("source_topic", "String"),
    col("source_partition", "UInt32"),
    col("source_offset", "UInt64")
  ]
}

export const ddl = (p: Pipeline, table: string): string => {
  const list = columns(p)
    .map((c) => `  ${c.name} ${c.type}`)
    .join(",\n")
  const [time, order] =
    p.aggregation !== undefined
      ? ["window_start", "(key, window_start)"]
      : ["kafka_timestamp", "(source_topic, source_partition, source_offset)"]
  return `CREATE TABLE IF NOT EXISTS ${table} (\n${list}\n) ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(${time})\nORDER BY ${order}`
}

/** A window's row. */
export const windowRow = (p: Pipeline, key: string, window: Window, s: Summary): ClickHouse.Row => {
  const row: Record<string, number | string> = {
    window_start: window.start / 1000,
    window_end: window.end / 1000,
    key
  }
  for (const m of p.aggregation?.metrics ?? []) row[metricColumns[m].name] = metricColumns[m].of(s)
  if (p.enrichment !== undefined) row.enriched_events = s.enriched
  return row
}

/** An event's row; `lookup` is its enrichment, when the pipeline has one. */
export const eventRow = (
  record: ConsumerRecord,
  key: string | null,
  event: unknown,
  lookup: { readonly key: string; readonly profile: unknown } | undefined
): ClickHouse.Row => ({
  kafka_timestamp: Math.floor(record.timestamp / 1000),
  kafka_timestamp_ms: record.timestamp % 1000,
  key,
  event: JSON.stringify(event),
  ...(lookup === undefined
    ? {}
    : {
        lookup_key: lookup.key,
        profile: lookup.profile === undefined ? null : JSON.stringify(lookup.profile),
        profile_found: lookup.profile === undefined ? 0 : 1
      }),
  ...ClickHouseSink.sourceColumns(record)
})

/** `database.table` split; the connection's database when the name has none. */
const where = (table: string) => {
  const dot = table.indexOf(".")
  return dot < 0
    ? { database: "currentDatabase()", name: `'${table}'` }
    : { database: `'${table.slice(0, dot)}'`, name: `'${table.slice(dot + 1)}'` }
}

const existing = (table: string) =>
  Effect.gen(function* () {
    const ch = yield* ClickHouse.ClickHouse
    const { database, name } = where(table)
    // The name is an identifier (checked by the pipeline's schema), so it can be quoted as it is.
    const rows = yield* ch.query(
      `SELECT name, type FROM system.columns WHERE database = ${database} AND table = ${name}`
    )
    return rows.flatMap((r) =>
      Predicate.hasProperty(r, "name") &&
      typeof r.name === "string" &&
      Predicate.hasProperty(r, "type") &&
      typeof r.type === "string"
        ? [{ name: r.name, type: r.type }]
        : []
    )
  })

/** What is wrong with a table of `found` columns for the pipeline, or `undefined` when its rows fit. */
export const mismatch = (p: Pipeline, table: string, found: ReadonlyArray<Column>): string | undefined => {
  const have = new Map(found.map((c) => [c.name, c.type]))
  const problems = columns(p).flatMap((c) => {
    const type = have.get(c.name)
    if (type === undefined) return [`${c.name} is missing (the pipeline writes ${c.type})`]
    return type === c.type ? [] : [`${c.name} is ${type} (the pipeline writes ${c.type})`]
  })
  if (problems.length === 0) return undefined
  return (
    `ClickHouse table ${table} exists with columns that do not fit the pipeline: ${problems.join("; ")}. ` +
    "Drop it (it is created at startup), or name another table in output.table (or use --topic-prefix)"
  )
}

/** Creates the table when it is absent; fails with `ConfigInvalid` naming the columns when it does not fit. */
export const ensure = (p: Pipeline, table: string) =>
  Effect.gen(function* () {
    const ch = yield* ClickHouse.ClickHouse
    if ((yield* existing(table)).length === 0) yield* ch.command(ddl(p, table))
    const problem = mismatch(p, table, yield* existing(table))
    if (problem !== undefined) return yield* new ConfigInvalid({ reason: problem })
  })
