/**
 * How a Postgres failure becomes a `SinkError`: retryable for an outage, `Rejected` (dead letter) only for a value
 * the table refuses. The errors are built as `@effect/sql-pg` builds them (a reason whose cause carries the
 * server's SQLSTATE and message); PostgresSink.integration.test.ts gets the same from the real server.
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlError } from "effect/sql"
import { isRetryable } from "../src/Errors.ts"
import * as PostgresSink from "../src/PostgresSink.ts"

const server = (code: string, message: string) => ({ code, message })
const props = (cause: unknown) => ({ cause, message: "PgConnection: Query failed", operation: "query" })

const cases: ReadonlyArray<readonly [string, SqlError.SqlError, string, boolean]> = [
  [
    "connection refused",
    new SqlError.SqlError({
      reason: new SqlError.ConnectionError(props({ code: "ECONNREFUSED", message: "connect ECONNREFUSED" }))
    }),
    "Unavailable",
    true
  ],
  [
    "server shutting down (57P03, which the driver leaves unclassified)",
    new SqlError.SqlError({
      reason: new SqlError.UnknownError(props(server("57P03", "the database system is shutting down")))
    }),
    "Unavailable",
    true
  ],
  [
    "terminated by the administrator (57P01)",
    new SqlError.SqlError({
      reason: new SqlError.UnknownError(props(server("57P01", "terminating connection due to administrator command")))
    }),
    "Unavailable",
    true
  ],
  [
    "statement timeout",
    new SqlError.SqlError({
      reason: new SqlError.StatementTimeoutError(props(server("57014", "canceling statement")))
    }),
    "Timeout",
    true
  ],
  [
    "deadlock",
    new SqlError.SqlError({ reason: new SqlError.DeadlockError(props(server("40P01", "deadlock detected"))) }),
    "Transient",
    true
  ],
  [
    "too many connections (53300)",
    new SqlError.SqlError({
      reason: new SqlError.UnknownError(props(server("53300", "sorry, too many clients already")))
    }),
    "Transient",
    true
  ],
  [
    "a value too long (22001)",
    new SqlError.SqlError({
      reason: new SqlError.UnknownError(props(server("22001", "value too long for type character varying(3)")))
    }),
    "Rejected",
    false
  ],
  [
    "a check constraint (23514)",
    new SqlError.SqlError({
      reason: new SqlError.ConstraintError(props(server("23514", 'new row violates check constraint "positive"')))
    }),
    "Rejected",
    false
  ],
  [
    "a missing table (42P01): not a row's fault",
    new SqlError.SqlError({
      reason: new SqlError.SqlSyntaxError(props(server("42P01", 'relation "events_raw" does not exist')))
    }),
    "Unavailable",
    true
  ],
  [
    "bad credentials (28P01): not a row's fault",
    new SqlError.SqlError({
      reason: new SqlError.AuthenticationError(props(server("28P01", "password authentication failed")))
    }),
    "Unavailable",
    true
  ]
]

describe("PostgresSink.reasonOf", () => {
  for (const [what, error, tag, retryable] of cases) {
    it(`${what}: ${tag}`, () => {
      const sinkError = PostgresSink.sinkErrorOf("events_raw")(error)
      assert.strictEqual(sinkError.reason._tag, tag)
      assert.strictEqual(isRetryable(sinkError), retryable)
    })
  }

  it("the reason carries the server's message and SQLSTATE, not the driver's", () => {
    const reason = PostgresSink.reasonOf(
      new SqlError.SqlError({
        reason: new SqlError.UnknownError(props(server("22P05", "unsupported Unicode escape sequence")))
      })
    )
    assert.strictEqual(reason.message, "unsupported Unicode escape sequence [SQLSTATE 22P05]")
  })

  it("the offsets table lives in the sink's schema", () => {
    assert.strictEqual(PostgresSink.defaultOffsetsTable("events_raw"), "sluice_offsets")
    assert.strictEqual(PostgresSink.defaultOffsetsTable("lab.events_raw"), "lab.sluice_offsets")
  })
})
