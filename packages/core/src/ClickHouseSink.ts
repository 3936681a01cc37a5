/**
 * A `Sink` (Sink.ts) into a ClickHouse table: each flush is one `INSERT ... FORMAT JSONEachRow` of the buffered rows.
 *
 * Failures keep the reason the ClickHouse service gives them (ClickHouse.ts): the server down, a timeout or a busy
 * server are retried on the sink's schedule, and the worker stops once that runs out, with nothing committed past
 * what was written; a batch the server refuses for its data (a value that does not parse into its column) is
 * written again row by row by the Sink runtime, and each refused row becomes its input record's dead letter with
 * the server's message.
 *
 * At-least-once, and ClickHouse has no `ON CONFLICT`: a crash between a write and the commit of its offsets writes
 * those rows again. Make the table idempotent by its source position: a `ReplacingMergeTree` ordered by
 * `(source_topic, source_partition, source_offset)` folds the repeats when parts merge, and until then
 * `SELECT ... FINAL` (or `uniqExact` over the position) counts each input record once. `sourceColumns` gives those
 * three columns for a row.
 */
import type { Duration, Schedule } from "effect"
import { Effect } from "effect"
import { ClickHouse, type ClickHouseError, isIdentifier, type Row } from "./ClickHouse.ts"
import { SinkError } from "./Errors.ts"
import type { ConsumerRecord } from "./Record.ts"
import * as Sink from "./Sink.ts"

export interface Options {
  /** The table, `name` or `database.name`. */
  readonly table: string
  /** The sink's name in logs, metrics and dead letters. Default `clickhouse:<table>`. */
  readonly name?: string
  /** Rows per insert (Sink.ts `batchSize`). Default 1,000; keep it under the server's 1,048,576-row block. */
  readonly batchSize?: number
  readonly flushInterval?: Duration.Input
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

const toSinkError = (name: string) => (e: ClickHouseError) => new SinkError({ sink: name, reason: e.reason })

/** A sink that inserts its rows into `options.table`; it needs the `ClickHouse` service. */
export const make = <R extends Row = Row>(options: Options): Sink.Sink<R, ClickHouse> => {
  if (!isIdentifier(options.table)) throw new Error(`not a ClickHouse table name: ${JSON.stringify(options.table)}`)
  const name = options.name ?? `clickhouse:${options.table}`
  return Sink.make<R, ClickHouse>({
    name,
    write: (rows) =>
      Effect.flatMap(ClickHouse, (ch) => ch.insert(options.table, rows)).pipe(Effect.mapError(toSinkError(name))),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.flushInterval === undefined ? {} : { flushInterval: options.flushInterval }),
    ...(options.retry === undefined ? {} : { retry: options.retry })
  })
}

/** The columns that identify a row by the input record it came from: the idempotency key of the table. */
export const sourceColumns = (record: ConsumerRecord) => ({
  source_topic: record.topic,
  source_partition: record.partition,
  source_offset: record.offset
})

/** The DDL for those columns, to put in a `CREATE TABLE` (and its `ORDER BY`). */
export const sourceColumnsDdl = "source_topic String, source_partition UInt32, source_offset UInt64"
