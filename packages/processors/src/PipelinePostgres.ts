/**
 * A JSON pipeline's Postgres output (`output.type: "postgres"`): the table of PipelineTable.ts as Postgres stores
 * it, in `output.schema`, created at startup when absent and refused when it does not fit, and the sink that writes
 * it (PostgresSink.ts: batched `unnest` inserts, retryable failures told from refused rows).
 *
 * The table's primary key is the row's identity (`(key, window_start)` for windows, the source position for
 * events), and rows are inserted `ON CONFLICT DO NOTHING`: a row written again (a record re-delivered after a
 * crash, a window's final emitted again) inserts nothing, so the table holds each row once.
 *
 * An existing table fits when it has every column with the pipeline's type, `NULL` allowed where the pipeline
 * writes nulls, no other column that must be written (`NOT NULL` without a default), a unique key on exactly the
 * identity (without one a re-delivered row would be a second row), and no unique key without all of it (that would
 * swallow rows the pipeline writes, e.g. a key's second window).
 */
import { ConfigInvalid } from "@sluice/core/Errors"
import * as PostgresSink from "@sluice/core/PostgresSink"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { Pipeline } from "./PipelineSpec.ts"
import * as PipelineTable from "./PipelineTable.ts"

/** Where a deployment's rows go: `schema.table`, and `schema.sluice_offsets` under exactly-once. */
export interface Relations {
  readonly schema: string
  /** The table's name in its schema (after `--topic-prefix`). */
  readonly name: string
  /** `schema.name`. */
  readonly table: string
  readonly offsets: string
}

export const relations = (schema: string, name: string): Relations => {
  const table = `${schema}.${name}`
  return { schema, name, table, offsets: PostgresSink.defaultOffsetsTable(table) }
}

/** Postgres's longest name; a longer one is cut silently, which would make the check look at another table. */
const maxNameLength = 63

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/** `CREATE TABLE IF NOT EXISTS`: the pipeline's columns, `NOT NULL` but where it writes nulls, its identity as key. */
export const ddl = (p: Pipeline, r: Relations): string => {
  const list = PipelineTable.fields(p).map(
    (f) => `  ${quote(f.name)} ${PipelineTable.postgres.type(f)}${f.nullable ? "" : " NOT NULL"}`
  )
  const key = PipelineTable.identity(p).map(quote).join(", ")
  return `CREATE TABLE IF NOT EXISTS ${quote(r.schema)}.${quote(r.name)} (\n${list.join(",\n")},\n  PRIMARY KEY (${key})\n)`
}

/** A column as the catalog describes it. */
export interface Found extends PipelineTable.Column {
  readonly notNull: boolean
  readonly hasDefault: boolean
}

/** What the catalog says of an existing table: its columns, and the column sets of its unique indexes. */
export interface Existing {
  readonly columns: ReadonlyArray<Found>
  readonly uniqueKeys: ReadonlyArray<ReadonlyArray<string>>
}

/** `pg_type` names as the pipeline writes them (PipelineTable.postgres); others as they are. */
const existing = (r: Relations) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const columns = yield* sql<{
      readonly name: string
      readonly type: string
      readonly not_null: boolean
      readonly has_default: boolean
    }>`SELECT a.attname AS name, t.typname AS type, a.attnotnull AS not_null, a.atthasdef AS has_default
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = to_regclass(${`${quote(r.schema)}.${quote(r.name)}`}) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`
    // Partial and expression indexes guard only some rows, or something else than columns: not a row's identity.
    const keys = yield* sql<{ readonly columns: ReadonlyArray<string> }>`
      SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = to_regclass(${`${quote(r.schema)}.${quote(r.name)}`}) AND i.indisunique
        AND i.indpred IS NULL AND i.indexprs IS NULL
      GROUP BY i.indexrelid`
    return {
      columns: columns.map((c) => ({ name: c.name, type: c.type, notNull: c.not_null, hasDefault: c.has_default })),
      uniqueKeys: keys.map((k) => k.columns)
    } satisfies Existing
  })

/** What is wrong with an existing table for the pipeline, or `undefined` when it fits. */
export const mismatch = (p: Pipeline, table: string, found: Existing): string | undefined => {
  const wanted = new Map(PipelineTable.fields(p).map((f) => [f.name, f]))
  const more: Array<string> = []
  for (const c of found.columns) {
    const f = wanted.get(c.name)
    if (f?.nullable === true && c.notNull) more.push(`${c.name} is NOT NULL (the pipeline writes null there)`)
    if (f === undefined && c.notNull && !c.hasDefault)
      more.push(`${c.name} is NOT NULL without a default (the pipeline does not write it)`)
  }
  const identity = PipelineTable.identity(p)
  const same = (key: ReadonlyArray<string>) => key.length === identity.length && identity.every((c) => key.includes(c))
  if (!found.uniqueKeys.some(same))
    more.push(
      `no primary key or unique constraint on (${identity.join(", ")}) (a row written again would be a second row)`
    )
  for (const key of found.uniqueKeys)
    if (!identity.every((c) => key.includes(c)))
      more.push(`the unique key on (${key.join(", ")}) would refuse rows the pipeline writes`)
  return PipelineTable.mismatch(p, PipelineTable.postgres, table, found.columns, more)
}

/**
 * Creates what is missing (the schema, the table, with `offsets` the offsets table) and checks the table; fails
 * with `ConfigInvalid` naming what does not fit. One worker at a time (an advisory lock).
 */
export const ensure = (p: Pipeline, r: Relations, options: { readonly offsets: boolean }) =>
  Effect.gen(function* () {
    if (r.name.length > maxNameLength)
      return yield* new ConfigInvalid({
        reason: `the Postgres table name ${r.name} (output.table after --topic-prefix) has ${r.name.length} characters; Postgres allows ${maxNameLength}: use a shorter table name or prefix`
      })
    const sql = yield* SqlClient.SqlClient
    const found = yield* PostgresSink.migrate(
      `sluice:pipeline:${r.table}`,
      Effect.gen(function* () {
        yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${quote(r.schema)}`)
        yield* sql.unsafe(ddl(p, r))
        if (options.offsets) yield* PostgresSink.createOffsetsTable(r.offsets)
        return yield* existing(r)
      })
    )
    const problem = mismatch(p, r.table, found)
    if (problem !== undefined) return yield* new ConfigInvalid({ reason: problem })
  })

/** The sink of the pipeline's rows; with `offsetsGroup`, it stores that group's offsets with the rows. */
export const sink = (p: Pipeline, r: Relations, options: { readonly offsetsGroup?: string | undefined } = {}) =>
  PostgresSink.make<PipelineTable.Row<Date | boolean>>({
    name: `postgres:${r.table}`,
    table: r.table,
    columns: Object.fromEntries(PipelineTable.fields(p).map((f) => [f.name, PipelineTable.postgres.type(f)])),
    ...(options.offsetsGroup === undefined ? {} : { offsets: { group: options.offsetsGroup, table: r.offsets } }),
    batchSize: p.output.batchSize,
    flushInterval: `${p.output.flushIntervalMs} millis`
  })
