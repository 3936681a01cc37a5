/**
 * The ClickHouse half of `sluice bench sinks`: rows/s of the ClickHouse sink's write (one `INSERT ... FORMAT
 * JSONEachRow` per batch, ClickHouse.ts) at each batch size, with clickstream-sessions' real rows (26 columns, ~700
 * bytes of JSON each) into a fresh `ReplacingMergeTree` table per size, dropped afterwards.
 *
 * Batches are written one after the other, as one task's sink writes them. A run counts only once the table holds
 * every row it was sent, once (`count() FINAL` and `uniqExact` over the source position): a fast write that lost
 * rows is not a result. Batch size 1 is an insert per row, a new part each (ClickHouse's known anti-pattern), so it
 * is run on fewer rows (`rowsFor`), and the active parts left after it are reported.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as ClickstreamData from "@sluice/processors/ClickstreamData"
import type * as ClickstreamSessions from "@sluice/processors/ClickstreamSessions"
import * as ClickstreamTables from "@sluice/processors/ClickstreamTables"
import { Effect, Schema } from "effect"

export interface Result {
  readonly sink: "clickhouse"
  readonly batchSize: number
  readonly rows: number
  readonly inserts: number
  readonly ms: number
  readonly rowsPerSec: number
  readonly msPerInsert: number
  readonly bytesPerRow: number
  /** The table holds each row once (FINAL and by distinct source position). */
  readonly verified: boolean
  /** Active parts of the table right after the run (before background merges catch up). */
  readonly parts: number
}

/** Rows measured at a batch size: `rows`, but at most 2,000 inserts (batch size 1 makes a part per row). */
export const rowsFor = (batchSize: number, rows: number): number => Math.min(rows, batchSize * 2_000)

/** `n` clickstream rows as the sink writes them, with distinct source positions. */
export const rowsOf = (n: number): Array<ClickstreamTables.ClickHouseRow> => {
  const events = ClickstreamData.generate({ count: n, users: 1_000, sessions: Math.max(1, Math.ceil(n / 20)) })
  return events.map((event, i) => {
    const time = Date.parse(event.timestamp)
    const session: ClickstreamSessions.SessionState = {
      user_id: event.user_id,
      start: time - 60_000,
      last: time,
      events: 1 + (i % 20),
      pages: [event.page_url],
      offset: i
    }
    return ClickstreamTables.toClickHouse({
      event,
      time,
      profile: ClickstreamData.profileFor(1 + (i % 1_000)),
      profileFound: true,
      session,
      record: {
        topic: "bench.clickstream",
        partition: i % 3,
        offset: i,
        key: null,
        value: null,
        headers: {},
        timestamp: time
      }
    })
  })
}

const Numbers = Schema.Array(Schema.Struct({ n: Schema.NumberFromString }))

const number = (ch: ClickHouse.ClickHouseShape, sql: string) =>
  Effect.flatMap(ch.query(sql), (rows) =>
    Effect.map(Schema.decodeUnknownEffect(Numbers)(rows), (decoded) => decoded[0]?.n ?? 0)
  )

/** Measures one batch size on a fresh table. */
export const measure = Effect.fnUntraced(function* (batchSize: number, rows: number, runId: string) {
  const ch = yield* ClickHouse.ClickHouse
  const table = `sluice_bench_${runId}_${batchSize}`
  const data = rowsOf(rowsFor(batchSize, rows))
  const bytesPerRow = Math.round(
    data.slice(0, 1_000).reduce((n, r) => n + JSON.stringify(r).length + 1, 0) / Math.min(1_000, data.length)
  )
  yield* ch.command(ClickstreamTables.clickhouseDdl(table))
  return yield* Effect.gen(function* () {
    const started = performance.now()
    let inserts = 0
    for (let i = 0; i < data.length; i += batchSize) {
      yield* ch.insert(table, data.slice(i, i + batchSize))
      inserts++
    }
    const ms = performance.now() - started
    const parts = yield* number(
      ch,
      `SELECT toString(count()) AS n FROM system.parts WHERE database = currentDatabase() AND table = '${table}' AND active`
    )
    const final = yield* number(ch, `SELECT toString(count()) AS n FROM ${table} FINAL`)
    const distinct = yield* number(
      ch,
      `SELECT toString(uniqExact(source_topic, source_partition, source_offset)) AS n FROM ${table}`
    )
    const result: Result = {
      sink: "clickhouse",
      batchSize,
      rows: data.length,
      inserts,
      ms: Math.round(ms),
      rowsPerSec: Math.round((data.length * 1000) / ms),
      msPerInsert: Math.round((ms / inserts) * 100) / 100,
      bytesPerRow,
      verified: final === data.length && distinct === data.length,
      parts
    }
    return result
  }).pipe(Effect.ensuring(Effect.ignore(ch.command(`DROP TABLE IF EXISTS ${table}`))))
})

export const describe = (r: Result): string =>
  `clickhouse batch ${r.batchSize}: ${r.rows} rows in ${r.inserts} inserts, ${r.ms} ms, ${r.rowsPerSec} rows/s (${r.msPerInsert} ms/insert, ~${r.bytesPerRow} B/row), ${r.verified ? "verified" : "NOT VERIFIED"}, ${r.parts} active parts after`
