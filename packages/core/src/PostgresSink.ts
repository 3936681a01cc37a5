/**
 * Postgres tables as sinks (Sink.ts): a `Sink<Row, SqlClient>` made from a table and its columns, on the pool of
 * Postgres.ts (the password stays `Redacted` there).
 *
 * Rows go in statements of at most `batchSize` rows, `INSERT INTO t (...) SELECT * FROM unnest($1::text[],
 * $2::int8[], ...) ON CONFLICT DO NOTHING`: one array parameter per column, whatever the number of rows. Not a
 * multi-row `VALUES` list, because that takes one parameter per value (the driver refuses more than 32,767: a
 * 10,000-row batch of 5 columns does not fit) and its text changes with the batch size, so no prepared statement
 * is reused; this statement is prepared once per connection. `ON CONFLICT DO NOTHING` makes the write idempotent
 * when the table has a unique key on the record's source (topic, partition, offset): a record re-delivered after a
 * crash inserts no second row.
 *
 * With `offsets`, each write also upserts the positions the written rows reached into `sluice_offsets (group_id,
 * topic, partition, next_offset)` in the same transaction, and `readOffsets` reads them back for
 * `Topology.make({ startOffsets })`: tasks start where the table says, exactly-once into Postgres.
 *
 * Failures are `SinkError`s whose reason says what a retry can do: a connection refused, reset or closed, a server
 * starting up or shutting down, a timeout, a deadlock: retryable (the Sink runtime retries them). A value the table
 * refuses (SQLSTATE class 22, data: a value too long, `\u0000` in jsonb; class 23, a constraint): `Rejected` with
 * the server's message, so that row's input record is dead-lettered. Anything else (a missing table, bad
 * credentials, a revoked grant) is not a row's fault, so it is not `Rejected` (that would dead-letter every row):
 * it is retried like an outage, and stops the worker when the retries run out.
 */
import * as PgTypes from "@effect/sql-pg/PgTypes"
import { type Duration, Effect, Predicate, Result, type Schedule } from "effect"
import { SqlClient, type SqlError, type Statement } from "effect/sql"
import { type Reason, Rejected, SinkError, Timeout, Transient, Unavailable } from "./Errors.ts"
import type { TopicPartition, TopicPartitionOffset } from "./Record.ts"
import * as Sink from "./Sink.ts"

/** A column's Postgres type, and so the JavaScript values it takes. */
export type ColumnType = "text" | "jsonb" | "int4" | "int8" | "float8" | "bool" | "timestamptz"

/** The column types a row field of type `V` may be written to (`jsonb` takes JSON text). */
export type ColumnFor<V> = [V] extends [string | null]
  ? "text" | "jsonb"
  : [V] extends [number | null]
    ? "int4" | "int8" | "float8"
    : [V] extends [boolean | null]
      ? "bool"
      : [V] extends [Date | null]
        ? "timestamptz"
        : never

/**
 * The columns of rows of type `Row`: each field with a column type its values fit. A row type with an index
 * signature (columns known only at run time, `{ readonly [column: string]: ... }`) takes any column type: its
 * values are checked when they are encoded (a value that does not fit its column is a `Rejected` row).
 */
export type Columns<Row> = string extends keyof Row
  ? { readonly [column: string]: ColumnType }
  : { readonly [K in keyof Row & string]: ColumnFor<Row[K]> }

export interface Options<Row> {
  /** The table, optionally schema-qualified (`analytics.events_raw`). */
  readonly table: string
  /** Every column written, with its type, in insert order. */
  readonly columns: Columns<Row>
  /** Names the sink in logs, errors and metrics. Default: the table. */
  readonly name?: string
  /**
   * Store the positions the written rows reached in the offsets table, in the same transaction, under this
   * consumer group (exactly-once into Postgres; see `readOffsets`).
   */
  readonly offsets?: { readonly group: string; readonly table?: string }
  /**
   * Rows per INSERT, and a task's rows are written once it holds this many (`Sink.make`). Default 1,000. A write of
   * more rows (a fetched batch bigger than this, a flush before a commit) is several statements in one transaction,
   * with the offsets under `writeWithOffsets`.
   */
  readonly batchSize?: number
  readonly flushInterval?: Duration.Input
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

const defaultBatchSize = 1_000

/** The offsets table when none is named: `sluice_offsets`, in the sink's table's schema. */
export const defaultOffsetsTable = (table: string): string => {
  const dot = table.lastIndexOf(".")
  return dot < 0 ? "sluice_offsets" : `${table.slice(0, dot)}.sluice_offsets`
}

const elementOid: { readonly [T in ColumnType]: number } = {
  // jsonb travels as text and is cast by the server (`::jsonb[]`): the row holds JSON text, which the jsonb codec
  // would encode a second time, as a JSON string.
  text: PgTypes.OID.text,
  jsonb: PgTypes.OID.text,
  int4: PgTypes.OID.int4,
  int8: PgTypes.OID.int8,
  float8: PgTypes.OID.float8,
  bool: PgTypes.OID.bool,
  timestamptz: PgTypes.OID.timestamptz
}

/** The array parameter of one column: typed, so that a batch whose values are all null still binds. */
const arrayOf = (values: Array<unknown>, type: ColumnType): Result.Result<PgTypes.Parameter, PgTypes.CodecError> => {
  if (type === "int8") for (let i = 0; i < values.length; i++) values[i] = toInt8(values[i])
  return PgTypes.array(values, elementOid[type])
}

const toInt8 = (value: unknown): unknown =>
  typeof value === "number" && Number.isSafeInteger(value) ? BigInt(value) : value

/**
 * `INSERT INTO table (columns) SELECT * FROM unnest(one typed array per column) <conflict>`: one statement, one
 * parameter per column, whatever the number of rows.
 */
const insertRows = (
  sql: SqlClient.SqlClient,
  table: string,
  columns: ReadonlyArray<readonly [string, ColumnType]>,
  rows: ReadonlyArray<unknown>,
  conflict: Statement.Fragment
): Effect.Effect<void, PgTypes.CodecError | SqlError.SqlError> =>
  Effect.gen(function* () {
    const params: Array<Statement.Fragment> = []
    for (const [column, type] of columns) {
      const values = new Array<unknown>(rows.length)
      for (let i = 0; i < rows.length; i++) values[i] = field(rows[i], column)
      const array = arrayOf(values, type)
      if (Result.isFailure(array)) return yield* array.failure
      params.push(sql`${array.success}::${sql.literal(type)}[]`)
    }
    yield* sql`INSERT INTO ${sql(table)} (${sql.csv(columns.map(([c]) => sql`${sql(c)}`))})
      SELECT * FROM unnest(${sql.csv(params)}) ${conflict}`
  })

const offsetColumns: ReadonlyArray<readonly [string, ColumnType]> = [
  ["group_id", "text"],
  ["topic", "text"],
  ["partition", "int4"],
  ["next_offset", "int8"]
]

/**
 * What the Sink runtime calls to write `options.table`: `write` (one statement per batch), and with
 * `options.offsets` also `writeWithOffsets` (rows and positions in one transaction) and `readOffsets`. `make` is
 * `Sink.make` over these; tests call them directly.
 */
export const writes = <Row>(
  options: Options<Row>
): Pick<Sink.Options<Row, SqlClient.SqlClient>, "name" | "write" | "writeWithOffsets" | "readOffsets"> => {
  const name = options.name ?? options.table
  const columns = Object.entries<ColumnType>(options.columns)
  const toSinkError = (e: PgTypes.CodecError | SqlError.SqlError | SinkError): SinkError =>
    e instanceof SinkError
      ? e
      : e._tag === "PgTypesCodecError"
        ? new SinkError({
            sink: name,
            reason: new Rejected({ message: `cannot encode a value: ${e.message}`, cause: e })
          })
        : sinkErrorOf(name)(e)
  const statementRows = options.batchSize ?? defaultBatchSize
  const insert = (sql: SqlClient.SqlClient, rows: ReadonlyArray<Row>) =>
    Effect.gen(function* () {
      for (let i = 0; i < rows.length; i += statementRows) {
        const chunk = rows.length <= statementRows ? rows : rows.slice(i, i + statementRows)
        yield* insertRows(sql, options.table, columns, chunk, sql`ON CONFLICT DO NOTHING`)
      }
    })
  // A write of several statements is one transaction too: one commit (one WAL flush) per write, not per statement.
  const write = (rows: ReadonlyArray<Row>) =>
    SqlClient.SqlClient.use((sql) =>
      rows.length <= statementRows ? insert(sql, rows) : sql.withTransaction(insert(sql, rows))
    ).pipe(Effect.mapError(toSinkError))
  if (options.offsets === undefined) return { name, write }

  const group = options.offsets.group
  const offsetsTable = options.offsets.table ?? defaultOffsetsTable(options.table)
  return {
    name,
    write,
    writeWithOffsets: (rows, positions) =>
      SqlClient.SqlClient.use((sql) =>
        // The rows and the positions they reached commit together or not at all.
        sql.withTransaction(
          Effect.andThen(
            insert(sql, rows),
            positions.length === 0
              ? Effect.void
              : insertRows(
                  sql,
                  offsetsTable,
                  offsetColumns,
                  positions.map((p) => ({
                    group_id: group,
                    topic: p.topic,
                    partition: p.partition,
                    next_offset: p.offset
                  })),
                  sql`ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`
                )
          )
        )
      ).pipe(Effect.mapError(toSinkError)),
    readOffsets: (partitions) =>
      readOffsets({ group, table: offsetsTable, partitions }).pipe(Effect.mapError(toSinkError))
  }
}

export const make = <Row>(options: Options<Row>): Sink.Sink<Row, SqlClient.SqlClient> =>
  Sink.make<Row, SqlClient.SqlClient>({
    ...writes(options),
    batchSize: options.batchSize ?? defaultBatchSize,
    ...(options.flushInterval === undefined ? {} : { flushInterval: options.flushInterval }),
    ...(options.retry === undefined ? {} : { retry: options.retry })
  })

const field = (row: unknown, column: string): unknown => {
  const value = Predicate.hasProperty(row, column) ? row[column] : undefined
  return value === undefined ? null : value
}

/** The positions stored for `group` of `partitions` (none stored: left out). */
export const readOffsets = (options: {
  readonly group: string
  readonly partitions: ReadonlyArray<TopicPartition>
  readonly table?: string
}): Effect.Effect<ReadonlyArray<TopicPartitionOffset>, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    if (options.partitions.length === 0) return []
    const sql = yield* SqlClient.SqlClient
    const topics = [...new Set(options.partitions.map((p) => p.topic))]
    const found = yield* sql<{ readonly topic: string; readonly partition: number; readonly next_offset: bigint }>`
      SELECT topic, partition, next_offset FROM ${sql(options.table ?? "sluice_offsets")}
      WHERE group_id = ${options.group} AND ${sql.in("topic", topics)}`
    const wanted = new Set(options.partitions.map((p) => `${p.topic}\u0000${p.partition}`))
    return found
      .filter((r) => wanted.has(`${r.topic}\u0000${r.partition}`))
      .map((r) => ({ topic: r.topic, partition: r.partition, offset: Number(r.next_offset) }))
  })

/** Creates the offsets table when it does not exist (run at startup, under `migrate`). */
export const createOffsetsTable = (table = "sluice_offsets") =>
  SqlClient.SqlClient.use(
    (sql) => sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
      group_id text NOT NULL,
      topic text NOT NULL,
      partition int NOT NULL,
      next_offset bigint NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (group_id, topic, partition)
    )`
  ).pipe(Effect.asVoid)

/**
 * Runs DDL in one transaction that holds an advisory lock named by `key`: workers that start together create the
 * tables one after the other (two concurrent `CREATE TABLE IF NOT EXISTS` of one table can fail with a unique
 * violation in the catalog).
 */
export const migrate = <A, E, R>(key: string, ddl: Effect.Effect<A, E, R>) =>
  SqlClient.SqlClient.use((sql) =>
    sql.withTransaction(Effect.andThen(sql`SELECT pg_advisory_xact_lock(hashtext(${key}))`, ddl))
  )

// ---------------------------------------------------------------------------------------------------------------
// SqlError → SinkError
// ---------------------------------------------------------------------------------------------------------------

/** The SQLSTATE and the server's message of a failure, when the server sent one. */
const serverError = (error: SqlError.SqlError) => {
  const cause = error.reason.cause
  const code = Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
  const text = Predicate.hasProperty(cause, "message") && typeof cause.message === "string" ? cause.message : undefined
  const detail = Predicate.hasProperty(cause, "detail") && typeof cause.detail === "string" ? cause.detail : undefined
  return { code, text, detail }
}

/** What a failure means for a sink: see the module comment. */
export const reasonOf = (error: SqlError.SqlError): Reason => {
  const { code, text, detail } = serverError(error)
  const message = [
    text ?? error.reason.message ?? error.message,
    detail === undefined ? "" : ` (${detail})`,
    code === undefined || !/^[0-9A-Z]{5}$/.test(code) ? "" : ` [SQLSTATE ${code}]`
  ].join("")
  const cause = error
  switch (error.reason._tag) {
    case "ConnectionError":
      return new Unavailable({ message, cause })
    case "StatementTimeoutError":
    case "LockTimeoutError":
      return new Timeout({ message, cause })
    case "DeadlockError":
    case "SerializationError":
      return new Transient({ message, cause })
    case "UniqueViolation":
    case "ConstraintError":
      return new Rejected({ message, cause })
  }
  if (code !== undefined) {
    // Data exceptions: this value, in this row.
    if (code.startsWith("22")) return new Rejected({ message, cause })
    // Connection exceptions, and the server starting up, shutting down or crashing (57P01-57P03).
    if (code.startsWith("08") || code.startsWith("57P")) return new Unavailable({ message, cause })
    // Insufficient resources (too many connections, disk full), operator intervention (a cancelled query).
    if (code.startsWith("53") || code.startsWith("57")) return new Transient({ message, cause })
  } else if (error.reason._tag === "UnknownError") {
    // No SQLSTATE: the driver could not encode the statement's values (a value of the batch).
    return new Rejected({ message, cause })
  }
  // Not a row's fault: a missing table or column, credentials, grants. Retried like an outage, then the worker
  // stops, rather than dead-letter every row.
  return new Unavailable({ message: `the statement was refused, not a row: ${message}`, cause })
}

/** `reasonOf` as the `SinkError` of sink `name`. */
export const sinkErrorOf =
  (name: string) =>
  (error: SqlError.SqlError): SinkError =>
    new SinkError({ sink: name, reason: reasonOf(error) })
