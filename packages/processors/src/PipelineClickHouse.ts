/**
 * A JSON pipeline's ClickHouse output (`output.type: "clickhouse"`): the table of PipelineTable.ts as ClickHouse
 * stores it, created at startup when absent and refused when its columns do not fit, and the sink that writes it.
 *
 * `ReplacingMergeTree` ordered by the row's identity (`(key, window_start)` for windows, the source position for
 * events): ClickHouse has no `ON CONFLICT`, so a row written again after a crash (at-least-once) folds into the
 * first when parts merge; query with `FINAL` for exact numbers.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as ClickHouseSink from "@sluice/core/ClickHouseSink"
import { ConfigInvalid } from "@sluice/core/Errors"
import { Effect, Predicate } from "effect"
import type { Pipeline } from "./PipelineSpec.ts"
import * as PipelineTable from "./PipelineTable.ts"

export const ddl = (p: Pipeline, table: string): string => {
  const list = PipelineTable.columns(p, PipelineTable.clickhouse)
    .map((c) => `  ${c.name} ${c.type}`)
    .join(",\n")
  const time = p.aggregation !== undefined ? "window_start" : "kafka_timestamp"
  return `CREATE TABLE IF NOT EXISTS ${table} (\n${list}\n) ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(${time})\nORDER BY (${PipelineTable.identity(p).join(", ")})`
}

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

/** What is wrong with a ClickHouse table of `found` columns for the pipeline, or `undefined` when its rows fit. */
export const mismatch = (p: Pipeline, table: string, found: ReadonlyArray<PipelineTable.Column>) =>
  PipelineTable.mismatch(p, PipelineTable.clickhouse, table, found)

/** Creates the table when it is absent; fails with `ConfigInvalid` naming the columns when it does not fit. */
export const ensure = (p: Pipeline, table: string) =>
  Effect.gen(function* () {
    const ch = yield* ClickHouse.ClickHouse
    if ((yield* existing(table)).length === 0) yield* ch.command(ddl(p, table))
    const problem = mismatch(p, table, yield* existing(table))
    if (problem !== undefined) return yield* new ConfigInvalid({ reason: problem })
  })

/** The sink of the pipeline's rows into `table`. */
export const sink = (p: Pipeline, table: string) =>
  ClickHouseSink.make<PipelineTable.Row<number>>({
    table,
    batchSize: p.output.batchSize,
    flushInterval: `${p.output.flushIntervalMs} millis`
  })
