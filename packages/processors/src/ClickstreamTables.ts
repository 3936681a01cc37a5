/**
 * Where clickstream-sessions writes: the ClickHouse table `clickstream_events` and the Postgres table
 * `clickstream_session_events` with its view `clickstream_sessions`, their DDL (run at startup, idempotent), the row
 * each gets for an enriched event, and the live sinks.
 *
 * Both are idempotent by the input record's position, which is how at-least-once becomes "one row per input offset":
 * - Postgres: primary key `(source_topic, source_partition, source_offset)`, written `ON CONFLICT DO NOTHING`
 *   (PostgresSink.ts): a re-delivered record inserts nothing.
 * - ClickHouse has no `ON CONFLICT`: the table is a `ReplacingMergeTree` ordered by the same three columns, so a
 *   re-delivered record's second row is folded into the first when their parts merge. Until then a plain `count()`
 *   may count it twice: query with `FINAL` (or count `uniqExact(source_partition, source_offset)`) for exact
 *   numbers, or `OPTIMIZE TABLE clickstream_events FINAL` to merge now.
 *
 * Times: the seed's DDL has `timestamp DateTime64(3)`. The server this project runs (Debian's ClickHouse 18.16.1)
 * has no `DateTime64`, so `timestamp` is a `DateTime` (seconds, UTC) and `timestamp_ms` (UInt16) holds the
 * milliseconds; `session_start` likewise with `session_start_ms`. On ClickHouse 20.1+ the pair can become one
 * `DateTime64(3)` column.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as ClickHouseSink from "@sluice/core/ClickHouseSink"
import * as PostgresSink from "@sluice/core/PostgresSink"
import { type Duration, Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { Enriched } from "./ClickstreamSessions.ts"

/** Table names for a deployment: the lab's names, after a prefix made of identifier characters. */
export const tables = (prefix = "") => {
  const p = prefix.replace(/[^A-Za-z0-9_]/g, "_")
  return {
    clickhouse: `${p}clickstream_events`,
    postgres: `${p}clickstream_session_events`,
    sessionsView: `${p}clickstream_sessions`
  }
}
export type Tables = ReturnType<typeof tables>

// ---------------------------------------------------------------------------------------------------------------
// ClickHouse
// ---------------------------------------------------------------------------------------------------------------

/** A `clickstream_events` row (JSONEachRow: DateTime columns as epoch seconds). */
// A type, not an interface: only a type alias is assignable to ClickHouse.Row's index signature.
export type ClickHouseRow = {
  readonly event_id: string
  readonly event_type: string
  readonly user_id: string
  readonly session_id: string
  readonly timestamp: number
  readonly timestamp_ms: number
  readonly page_url: string
  readonly referrer: string | null
  readonly user_agent: string
  readonly ip_address: string
  readonly country: string
  readonly city: string
  readonly properties: string
  readonly user_name: string
  readonly user_segment: string
  readonly user_tier: string
  readonly user_lifetime_value: number
  readonly profile_found: number
  readonly session_start: number
  readonly session_start_ms: number
  readonly session_duration_ms: number
  readonly session_event_count: number
  readonly session_pages_viewed: number
  readonly source_topic: string
  readonly source_partition: number
  readonly source_offset: number
}

export const clickhouseDdl = (table: string) => `
CREATE TABLE IF NOT EXISTS ${table} (
  event_id String,
  event_type String,
  user_id String,
  session_id String,
  timestamp DateTime,            -- the seed: DateTime64(3), which 18.16 lacks; milliseconds in timestamp_ms
  timestamp_ms UInt16,
  page_url String,
  referrer Nullable(String),
  user_agent String,
  ip_address String,
  country String,
  city String,
  properties String,             -- JSON
  user_name String,
  user_segment String,
  user_tier String,
  user_lifetime_value Float64,
  profile_found UInt8,           -- 0: no profile in Redis, enriched with the defaults
  session_start DateTime,
  session_start_ms UInt16,
  session_duration_ms UInt64,
  session_event_count UInt32,
  session_pages_viewed UInt32,
  ${ClickHouseSink.sourceColumnsDdl}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (source_topic, source_partition, source_offset)`

export const toClickHouse = (e: Enriched): ClickHouseRow => ({
  event_id: e.event.event_id,
  event_type: e.event.event_type,
  user_id: e.event.user_id,
  session_id: e.event.session_id,
  timestamp: Math.floor(e.time / 1000),
  timestamp_ms: e.time % 1000,
  page_url: e.event.page_url,
  referrer: e.event.referrer,
  user_agent: e.event.user_agent,
  ip_address: e.event.ip_address,
  country: e.event.country,
  city: e.event.city,
  properties: JSON.stringify(e.event.properties),
  user_name: e.profile.name,
  user_segment: e.profile.segment,
  user_tier: e.profile.tier,
  user_lifetime_value: e.profile.lifetime_value,
  profile_found: e.profileFound ? 1 : 0,
  session_start: Math.floor(e.session.start / 1000),
  session_start_ms: e.session.start % 1000,
  session_duration_ms: e.session.last - e.session.start,
  session_event_count: e.session.events,
  session_pages_viewed: e.session.pages.length,
  ...ClickHouseSink.sourceColumns(e.record)
})

export const clickhouseSink = (
  t: Tables,
  options: { readonly batchSize?: number; readonly flushInterval?: Duration.Input } = {}
) => ClickHouseSink.make<ClickHouseRow>({ table: t.clickhouse, ...options })

/** Creates the ClickHouse table when it does not exist. */
export const setupClickHouse = (t: Tables) => ClickHouse.ClickHouse.use((ch) => ch.command(clickhouseDdl(t.clickhouse)))

// ---------------------------------------------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------------------------------------------

/** A `clickstream_session_events` row: the event, its enrichment and its session's metrics once it was applied. */
export interface PostgresRow {
  readonly source_topic: string
  readonly source_partition: number
  readonly source_offset: number
  readonly event_id: string
  readonly event_type: string
  readonly user_id: string
  readonly session_id: string
  readonly event_time: Date
  readonly page_url: string
  readonly referrer: string | null
  readonly country: string
  readonly city: string
  readonly properties: string
  readonly user_name: string
  readonly user_segment: string
  readonly user_tier: string
  readonly user_lifetime_value: number
  readonly profile_found: boolean
  readonly session_start: Date
  readonly session_duration_ms: number
  readonly session_event_count: number
  readonly session_pages_viewed: number
}

export const toPostgres = (e: Enriched): PostgresRow => ({
  ...ClickHouseSink.sourceColumns(e.record),
  event_id: e.event.event_id,
  event_type: e.event.event_type,
  user_id: e.event.user_id,
  session_id: e.event.session_id,
  event_time: new Date(e.time),
  page_url: e.event.page_url,
  referrer: e.event.referrer,
  country: e.event.country,
  city: e.event.city,
  properties: JSON.stringify(e.event.properties),
  user_name: e.profile.name,
  user_segment: e.profile.segment,
  user_tier: e.profile.tier,
  user_lifetime_value: e.profile.lifetime_value,
  profile_found: e.profileFound,
  session_start: new Date(e.session.start),
  session_duration_ms: e.session.last - e.session.start,
  session_event_count: e.session.events,
  session_pages_viewed: e.session.pages.length
})

export const postgresSink = (t: Tables, options: { readonly batchSize?: number } = {}) =>
  PostgresSink.make<PostgresRow>({
    table: t.postgres,
    columns: {
      source_topic: "text",
      source_partition: "int4",
      source_offset: "int8",
      event_id: "text",
      event_type: "text",
      user_id: "text",
      session_id: "text",
      event_time: "timestamptz",
      page_url: "text",
      referrer: "text",
      country: "text",
      city: "text",
      properties: "jsonb",
      user_name: "text",
      user_segment: "text",
      user_tier: "text",
      user_lifetime_value: "float8",
      profile_found: "bool",
      session_start: "timestamptz",
      session_duration_ms: "int8",
      session_event_count: "int4",
      session_pages_viewed: "int4"
    },
    ...options
  })

/**
 * Creates the Postgres table and the view when they do not exist (under an advisory lock: workers that start
 * together create them one after the other). The view is each session's row with the most events: its metrics
 * after its last event, as the task's store held them.
 */
export const setupPostgres = (t: Tables) =>
  PostgresSink.migrate(
    t.postgres,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS ${sql(t.postgres)} (
        source_topic text NOT NULL,
        source_partition int NOT NULL,
        source_offset bigint NOT NULL,
        event_id text NOT NULL,
        event_type text NOT NULL,
        user_id text NOT NULL,
        session_id text NOT NULL,
        event_time timestamptz NOT NULL,
        page_url text NOT NULL,
        referrer text,
        country text NOT NULL,
        city text NOT NULL,
        properties jsonb NOT NULL,
        user_name text NOT NULL,
        user_segment text NOT NULL,
        user_tier text NOT NULL,
        user_lifetime_value double precision NOT NULL,
        profile_found boolean NOT NULL,
        session_start timestamptz NOT NULL,
        session_duration_ms bigint NOT NULL,
        session_event_count int NOT NULL,
        session_pages_viewed int NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source_topic, source_partition, source_offset)
      )`
      yield* sql`CREATE INDEX IF NOT EXISTS ${sql(`${t.postgres}_session`)}
        ON ${sql(t.postgres)} (session_id, session_event_count DESC)`
      const [view] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_views
        WHERE viewname = ${t.sessionsView} AND schemaname = current_schema()`
      // No CREATE VIEW IF NOT EXISTS in Postgres, and OR REPLACE would overwrite a view someone changed.
      if ((view?.n ?? 0) === 0)
        yield* sql`CREATE VIEW ${sql(t.sessionsView)} AS
          SELECT DISTINCT ON (session_id)
            session_id, user_id, user_segment, user_tier, profile_found,
            session_start,
            session_start + session_duration_ms * interval '1 millisecond' AS session_end,
            session_duration_ms,
            session_event_count AS event_count,
            session_pages_viewed AS pages_viewed
          FROM ${sql(t.postgres)}
          ORDER BY session_id, session_event_count DESC, source_offset DESC`
    })
  )

/** Creates both databases' tables (startup of `sluice run clickstream-sessions`, and tests). */
export const setup = (t: Tables) => Effect.andThen(setupClickHouse(t), setupPostgres(t))

/** The live sinks of the topology, with the row each gets. */
export const sinks = (t: Tables, options: { readonly batchSize?: number } = {}) => ({
  clickhouse: clickhouseSink(t, options),
  postgres: postgresSink(t, options),
  toClickHouse,
  toPostgres
})
