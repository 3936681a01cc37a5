/**
 * ClickHouse as a Sluice service, over the official `@clickhouse/client` (HTTP interface): DDL, inserts of a batch
 * of rows as `JSONEachRow`, and queries read back as JSON rows.
 *
 * Only this module imports the client. Every failure is a `ClickHouseError` whose reason says whether a retry can
 * help: the server unreachable, a timeout or a server that is busy (too many parts, memory, too many queries) is
 * retryable; so is a missing table, database or user, which is about where rows go, not about the rows, so that a
 * sink stops the worker after its retries rather than dead-letter every row. Any other server exception (a value
 * that does not parse into its column, an unknown field) is `Rejected`: the data is wrong and a retry cannot help.
 *
 * Versions: the project's server is Debian's ClickHouse 18.16.1 (scripts/clickhouse.sh); client 1.23.1 talks to it.
 * 18.16's error text (`Code: 27, e.displayText() = DB::Exception: ...`) lacks the `(TYPE_NAME)` suffix the client
 * parses, so errors are classified by the numeric code read from the message here. 18.16 has no `DateTime64`:
 * keep milliseconds in a column of their own (see `ClickstreamSessions.ts`).
 */
import { Config, Context, Duration, Effect, Layer, Redacted, Schema } from "effect"
import * as Errors from "./Errors.ts"

/** A failed ClickHouse call. `operation` is the service method (`ping`, `insert`, `command`, `query`). */
export class ClickHouseError extends Schema.TaggedError<ClickHouseError>()("ClickHouseError", {
  operation: Schema.String,
  reason: Errors.Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    return `ClickHouse ${this.operation} failed: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/** A row for `JSONEachRow`: column name to a JSON value (DateTime columns take epoch seconds). */
export type Row = { readonly [column: string]: string | number | boolean | null | ReadonlyArray<string | number> }

export interface ClickHouseShape {
  readonly ping: Effect.Effect<void, ClickHouseError>
  /** A statement without a result (DDL, `OPTIMIZE`, `TRUNCATE`). */
  readonly command: (sql: string) => Effect.Effect<void, ClickHouseError>
  /**
   * One `INSERT ... FORMAT JSONEachRow` of all the rows. Below the server's `max_insert_block_size` (1,048,576 rows)
   * the rows form one block, which a MergeTree writes all or nothing: a row that does not parse fails the whole
   * insert and writes none.
   */
  readonly insert: (table: string, rows: ReadonlyArray<Row>) => Effect.Effect<void, ClickHouseError>
  /** A `SELECT`, its rows as JSON objects (64-bit integers come as strings, as ClickHouse writes them). */
  readonly query: (sql: string) => Effect.Effect<ReadonlyArray<unknown>, ClickHouseError>
}

export class ClickHouse extends Context.Service<ClickHouse, ClickHouseShape>()("@sluice/core/ClickHouse") {}

export interface Options {
  /** `http://[user:password@]host:8123[/database]`. Pass it Redacted when it holds a password. */
  readonly url: string | Redacted.Redacted<string>
  /** How long one request may take. Default 30 seconds. */
  readonly requestTimeout?: Duration.Input
  /** Sockets kept open to the server. Default 10. */
  readonly maxOpenConnections?: number
}

/** `CLICKHOUSE_URL`, default the server `scripts/clickhouse.sh` starts; Redacted because it may carry a password. */
export const urlConfig = Config.Redacted("CLICKHOUSE_URL").pipe(
  Config.withDefault(Redacted.make("http://127.0.0.1:8123"))
)

// Server error codes (ClickHouse's ErrorCodes.cpp) that mean "not now": a retry can succeed.
const transientCodes = new Set([
  159, // TIMEOUT_EXCEEDED
  164, // READONLY
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  319, // UNKNOWN_STATUS_OF_INSERT
  425 // SYSTEM_ERROR
])
// Codes about where rows go rather than the rows themselves: no row is at fault, so none is dead-lettered.
const destinationCodes = new Set([
  60, // UNKNOWN_TABLE
  81, // UNKNOWN_DATABASE
  192, // UNKNOWN_USER
  193, // WRONG_PASSWORD
  194, // REQUIRED_PASSWORD
  497, // ACCESS_DENIED
  516 // AUTHENTICATION_FAILED
])
const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "UND_ERR_SOCKET"
])

/** The server's error code in an exception's text (`Code: 60, ...` on 18.16, `Code: 60. DB::Exception` later). */
export const serverCode = (message: string): number | undefined => {
  const m = /^Code: (\d+)[.,]/.exec(message.trimStart())
  return m === null ? undefined : Number(m[1])
}

/** Why a call failed, from what the client threw. */
export const toReason = (cause: unknown): Errors.Reason => {
  // 18.16 ends its exceptions with ", e.what() = DB::Exception" and a line break: one line, without the noise.
  const message = (cause instanceof Error ? cause.message : String(cause))
    .replace(/,\s*e\.what\(\) = DB::Exception\s*$/, "")
    .replace(/\s+/g, " ")
    .trim()
  const fields = { message, cause }
  if (!(cause instanceof Error)) return new Errors.Rejected(fields)
  const code = serverCode(message)
  if (code !== undefined) {
    if (transientCodes.has(code)) return new Errors.Transient(fields)
    if (destinationCodes.has(code)) return new Errors.Unavailable(fields)
    return new Errors.Rejected(fields)
  }
  const errno = "code" in cause && typeof cause.code === "string" ? cause.code : ""
  if (errno === "ETIMEDOUT" || /timeout/i.test(message)) return new Errors.Timeout(fields)
  if (connectionCodes.has(errno) || /socket hang up|other side closed|ECONNRE/i.test(message))
    return new Errors.Unavailable(fields)
  // A malformed URL or a bad argument: no retry fixes it.
  return new Errors.Rejected(fields)
}

const fail = (operation: string) => (cause: unknown) => new ClickHouseError({ operation, reason: toReason(cause) })

/** Table and column names are spliced into SQL, so only plain identifiers (optionally `db.table`) are accepted. */
const identifier = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/

/** Builds the service on a client that is closed with the scope; the server is pinged first. */
export const make = Effect.fnUntraced(function* (options: Options) {
  const url = Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url
  // The client library loads when a client is made, not with this module, so that a process that never writes to
  // ClickHouse does not load it at start-up.
  const { ClickHouseLogLevel, createClient } = yield* Effect.tryPromise({
    try: () => import("@clickhouse/client"),
    catch: fail("connect")
  })
  const client = yield* Effect.acquireRelease(
    Effect.try({
      try: () =>
        createClient({
          url,
          request_timeout: Duration.toMillis(options.requestTimeout ?? "30 seconds"),
          max_open_connections: options.maxOpenConnections ?? 10,
          // The client logs every failed request at ERROR itself; Sluice reports them as typed errors instead.
          log: { level: ClickHouseLogLevel.OFF }
        }),
      catch: fail("connect")
    }),
    (c) => Effect.promise(() => c.close()).pipe(Effect.timeout("1 second"), Effect.ignore)
  )

  const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, ClickHouseError> =>
    Effect.tryPromise({ try: run, catch: fail(operation) }).pipe(Effect.withSpan(`ClickHouse.${operation}`))

  const ping = Effect.flatMap(
    call("ping", () => client.ping()),
    (result) => (result.success ? Effect.void : Effect.fail(fail("ping")(result.error)))
  )
  yield* ping

  return ClickHouse.of({
    ping,
    command: (sql) => call("command", () => client.command({ query: sql })).pipe(Effect.asVoid),
    insert: (table, rows) =>
      !identifier.test(table)
        ? Effect.fail(
            new ClickHouseError({
              operation: "insert",
              reason: new Errors.Rejected({ message: `not a table name: ${JSON.stringify(table)}` })
            })
          )
        : rows.length === 0
          ? Effect.void
          : call("insert", () => client.insert({ table, values: [...rows], format: "JSONEachRow" })).pipe(
              Effect.asVoid
            ),
    query: (sql) =>
      call("query", async () => {
        const result = await client.query({ query: sql, format: "JSONEachRow" })
        const rows: ReadonlyArray<unknown> = await result.json()
        return rows
      })
  })
})

/** Connects while the layer is built, so an unreachable server fails startup with a retryable `ClickHouseError`. */
export const layer = (options: Options): Layer.Layer<ClickHouse, ClickHouseError> =>
  Layer.effect(ClickHouse, make(options))

/** `layer` with the URL from `CLICKHOUSE_URL`. */
export const layerConfig: Layer.Layer<ClickHouse, ClickHouseError | Config.ConfigError> = Layer.unwrap(
  Effect.map(urlConfig, (url) => layer({ url }))
)

/** Whether `name` can be spliced into SQL as a table name. */
export const isIdentifier = (name: string): boolean => identifier.test(name)
