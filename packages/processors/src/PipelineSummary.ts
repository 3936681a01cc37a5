/**
 * What a JSON pipeline does, in words: `sluice pipeline validate` prints it, `sluice run --pipeline` logs it when it
 * starts, and `validate --json` gives its table (`table`).
 */
import type * as Delivery from "@sluice/core/Delivery"
import { delivery, type Names } from "./Pipeline.ts"
import type { Pipeline } from "./PipelineSpec.ts"
import * as PipelineTable from "./PipelineTable.ts"

/** Where a run reads and how it delivers, as the CLI resolved them. */
export interface Resolved {
  readonly brokers: string
  readonly group: string
  readonly guarantee: Delivery.Guarantee
}

/** The output's table: its database, its name (Postgres: schema-qualified), its columns and its identity. */
export const table = (p: Pipeline, names: Names) => {
  const postgres = p.output.type === "postgres"
  return {
    database: postgres ? PipelineTable.postgres.database : PipelineTable.clickhouse.database,
    name: p.output.type === "postgres" ? `${p.output.schema}.${names.table}` : names.table,
    columns: postgres
      ? PipelineTable.fields(p).map((f) => ({
          name: f.name,
          type: PipelineTable.postgres.type(f),
          nullable: f.nullable
        }))
      : PipelineTable.columns(p, PipelineTable.clickhouse),
    key: PipelineTable.identity(p)
  }
}

/** The table and its columns as `validate` and the start describe them. */
const described = (p: Pipeline, names: Names) => {
  const t = table(p, names)
  const columns = t.columns.map((c) => `${c.name} ${c.type}${"nullable" in c && !c.nullable ? " not null" : ""}`)
  return t.database === "ClickHouse"
    ? `ClickHouse ${t.name} (created if absent: ${columns.join(", ")})`
    : `Postgres ${t.name} (DATABASE_URL; created if absent: ${columns.join(", ")}, primary key (${t.key.join(", ")}))`
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
      `enrich   each event's ${p.enrichment.keyField} looked up in Redis at ${names.profileKeyPrefix}<${p.enrichment.keyField}> (a string of JSON or a hash; one MGET per batch behind a local cache of 10,000 entries, 60 s, HGETALL for the keys that are not strings); ${p.aggregation === undefined ? "each row has the profile (null when there is none)" : "each window's row counts its events with a profile (enriched_events)"}`
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
    `write    ${described(p, names)}; ${p.output.batchSize} rows per insert, at least every ${p.output.flushIntervalMs} ms`
  )
  if (resolved !== undefined) lines.push(`deliver  ${resolved.guarantee}: ${delivery(p, resolved.guarantee).text}`)
  else
    lines.push(
      `deliver  at_least_once (the default): ${delivery(p, "at_least_once").text}`,
      `         exactly_once (--guarantee exactly_once): ${delivery(p, "exactly_once").text}`
    )
  return lines
}
