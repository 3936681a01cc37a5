/**
 * The table of a JSON pipeline (PipelineSpec.ts), whatever the database: its columns, derived from what the
 * pipeline does, the row each window or event becomes, its key, and what is wrong with an existing table whose
 * columns do not fit. `PipelineClickHouse.ts` and `PipelinePostgres.ts` create and check it in their database;
 * a `Dialect` says how each kind of column is stored there.
 *
 * - With `aggregation`: one row per key and window, `window_start` and `window_end` (a window's bounds are whole
 *   seconds), `key` (the record key the windows are per), then a column per metric: `event_count`,
 *   `unique_users`, `session_duration_ms`, and with `enrichment` also `enriched_events` (the window's events whose
 *   profile was found). Its identity is `(key, window_start)`: a final emitted again after a crash is the same row.
 * - Without: one row per event, `kafka_timestamp` (the record's Kafka timestamp, ms), `key` (nullable), `event`
 *   (its JSON), with `enrichment` also `lookup_key`, `profile` (nullable, the profile's JSON) and `profile_found`,
 *   then the source position, its identity: one row per input offset.
 */
import * as ClickHouseSink from "@sluice/core/ClickHouseSink"
import type { ConsumerRecord } from "@sluice/core/Record"
import type { Window } from "@sluice/core/Window"
import type { Pipeline } from "./PipelineSpec.ts"

/** A stored column: its name and its database's type name. */
export interface Column {
  readonly name: string
  readonly type: string
}

/** What a column holds, whatever the database. */
export type Kind = "seconds" | "instant" | "count" | "text" | "json" | "flag" | "partition" | "offset"

/** A column of the pipeline's table, before a database gives it a type. */
export interface Field {
  readonly name: string
  readonly kind: Kind
  readonly nullable: boolean
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

const field = (name: string, kind: Kind, nullable = false): Field => ({ name, kind, nullable })

/** Every column of the pipeline's table, in order. */
export const fields = (p: Pipeline): ReadonlyArray<Field> => {
  const enriched = p.enrichment !== undefined
  if (p.aggregation !== undefined)
    return [
      field("window_start", "seconds"),
      field("window_end", "seconds"),
      field("key", "text"),
      ...p.aggregation.metrics.map((m) => field(metricColumns[m].name, "count")),
      ...(enriched ? [field("enriched_events", "count")] : [])
    ]
  return [
    field("kafka_timestamp", "instant"),
    field("key", "text", true),
    field("event", "json"),
    ...(enriched ? [field("lookup_key", "text"), field("profile", "json", true), field("profile_found", "flag")] : []),
    field("source_topic", "text"),
    field("source_partition", "partition"),
    field("source_offset", "offset")
  ]
}

/** The columns that identify a row: a row written again (a re-delivery, a final re-emitted) has the same ones. */
export const identity = (p: Pipeline): ReadonlyArray<string> =>
  p.aggregation !== undefined ? ["key", "window_start"] : ["source_topic", "source_partition", "source_offset"]

/** A row of a database whose column values of its own are `V` (ClickHouse: numbers; Postgres: dates, booleans). */
export type Row<V> = { readonly [column: string]: V | string | number | null }

/** How a database stores each kind of column. */
export interface Dialect<V> {
  readonly database: "ClickHouse" | "Postgres"
  /** The stored columns of a field: one, or with ClickHouse an instant's seconds and milliseconds. */
  readonly columns: (f: Field) => ReadonlyArray<Column>
  /** A window bound (epoch ms, whole seconds). */
  readonly seconds: (ms: number) => V
  /** An instant (epoch ms) as the columns of field `name`. */
  readonly instant: (name: string, ms: number) => Row<V>
  readonly flag: (value: boolean) => V
}

/** Every stored column of the pipeline's table in `dialect`, in order. */
export const columns = <V>(p: Pipeline, dialect: Dialect<V>): ReadonlyArray<Column> =>
  fields(p).flatMap(dialect.columns)

/** A window's row. */
export const windowRow = <V>(p: Pipeline, dialect: Dialect<V>, key: string, window: Window, s: Summary): Row<V> => {
  const row: Record<string, V | string | number> = {
    window_start: dialect.seconds(window.start),
    window_end: dialect.seconds(window.end),
    key
  }
  for (const m of p.aggregation?.metrics ?? []) row[metricColumns[m].name] = metricColumns[m].of(s)
  if (p.enrichment !== undefined) row.enriched_events = s.enriched
  return row
}

/** An event's row; `lookup` is its enrichment, when the pipeline has one. */
export const eventRow = <V>(
  dialect: Dialect<V>,
  record: ConsumerRecord,
  key: string | null,
  event: unknown,
  lookup: { readonly key: string; readonly profile: unknown } | undefined
): Row<V> => ({
  ...dialect.instant("kafka_timestamp", record.timestamp),
  key,
  event: JSON.stringify(event),
  ...(lookup === undefined
    ? {}
    : {
        lookup_key: lookup.key,
        profile: lookup.profile === undefined ? null : JSON.stringify(lookup.profile),
        profile_found: dialect.flag(lookup.profile !== undefined)
      }),
  ...ClickHouseSink.sourceColumns(record)
})

/**
 * What is wrong with a table of `found` columns for the pipeline (and `more` problems its database found), or
 * `undefined` when its rows fit.
 */
export const mismatch = <V>(
  p: Pipeline,
  dialect: Dialect<V>,
  table: string,
  found: ReadonlyArray<Column>,
  more: ReadonlyArray<string> = []
): string | undefined => {
  const have = new Map(found.map((c) => [c.name, c.type]))
  const problems = columns(p, dialect).flatMap((c) => {
    const type = have.get(c.name)
    if (type === undefined) return [`${c.name} is missing (the pipeline writes ${c.type})`]
    return type === c.type ? [] : [`${c.name} is ${type} (the pipeline writes ${c.type})`]
  })
  problems.push(...more)
  if (problems.length === 0) return undefined
  return (
    `${dialect.database} table ${table} exists with columns that do not fit the pipeline: ${problems.join("; ")}. ` +
    "Drop it (it is created at startup), or name another table in output.table (or use --topic-prefix)"
  )
}

// ---------------------------------------------------------------------------------------------------------------
// The databases
// ---------------------------------------------------------------------------------------------------------------

const clickhouseTypes: { readonly [K in Kind]: string } = {
  seconds: "DateTime",
  instant: "DateTime",
  count: "UInt64",
  text: "String",
  json: "String",
  flag: "UInt8",
  partition: "UInt32",
  offset: "UInt64"
}

/**
 * ClickHouse 18.16 (the project's server) has no `DateTime64`: a time is a `DateTime` (UTC seconds), and an
 * instant has its milliseconds in a column of its own, `<name>_ms`.
 */
export const clickhouse: Dialect<number> = {
  database: "ClickHouse",
  columns: (f) => {
    const type = clickhouseTypes[f.kind]
    const column = { name: f.name, type: f.nullable ? `Nullable(${type})` : type }
    return f.kind === "instant" ? [column, { name: `${f.name}_ms`, type: "UInt16" }] : [column]
  },
  seconds: (ms) => ms / 1000,
  instant: (name, ms) => ({ [name]: Math.floor(ms / 1000), [`${name}_ms`]: ms % 1000 }),
  flag: (value) => (value ? 1 : 0)
}

/** Postgres's types, as `pg_type` names them (what `information_schema.columns.udt_name` reports). */
const postgresTypes = {
  seconds: "timestamptz",
  instant: "timestamptz",
  count: "int8",
  text: "text",
  json: "jsonb",
  flag: "bool",
  partition: "int4",
  offset: "int8"
} as const satisfies { readonly [K in Kind]: string }

export type PostgresType = (typeof postgresTypes)[Kind]

/** Postgres: `timestamptz` (ms), `int8` counts, `jsonb`, `bool`; a column is `NOT NULL` unless it may be null. */
export const postgres: Dialect<Date | boolean> & { readonly type: (f: Field) => PostgresType } = {
  database: "Postgres",
  type: (f) => postgresTypes[f.kind],
  columns: (f) => [{ name: f.name, type: postgresTypes[f.kind] }],
  seconds: (ms) => new Date(ms),
  instant: (name, ms) => ({ [name]: new Date(ms) }),
  flag: (value) => value
}
