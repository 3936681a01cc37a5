/**
 * A `Sink` (Sink.ts) into a ClickHouse table: a flush writes the buffered rows as `INSERT ... FORMAT JSONEachRow`
 * statements of at most `batchSize` rows each (a write of more, a buffer filled by large steps, is split).
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
  /**
   * Rows per insert, and when a task's buffer is written (Sink.ts `batchSize`). Default 1,000. An insert below the
   * server's `max_insert_block_size` (1,048,576 rows) is one block, written all or nothing.
   */
  readonly batchSize?: number
  readonly flushInterval?: Duration.Input
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

const toSinkError = (name: string) => (e: ClickHouseError) => new SinkError({ sink: name, reason: e.reason })

/** A sink that inserts its rows into `options.table`; it needs the `ClickHouse` service. */
export const make = <R extends Row = Row>(options: Options): Sink.Sink<R, ClickHouse> => {
  if (!isIdentifier(options.table)) throw new Error(`not a ClickHouse table name: ${JSON.stringify(options.table)}`)
  const name = options.name ?? `clickhouse:${options.table}`
  const batchSize = options.batchSize ?? 1_000
  return Sink.make<R, ClickHouse>({
    name,
    write: (rows) =>
      Effect.flatMap(ClickHouse, (ch) =>
        Effect.gen(function* () {
          // A retry after a failure part-way writes the earlier inserts again: the table folds them (see above).
          for (let i = 0; i < rows.length; i += batchSize)
            yield* ch.insert(options.table, rows.length <= batchSize ? rows : rows.slice(i, i + batchSize))
        })
      ).pipe(Effect.mapError(toSinkError(name))),
    batchSize,
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
