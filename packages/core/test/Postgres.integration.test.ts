/**
 * The Postgres layers against the real server (`scripts/postgres.sh start`), plus the failure paths: a closed
 * port and wrong credentials must fail while the layer is built, with a typed SqlError, not at the first query.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Postgres from "../src/Postgres.ts"

// DATABASE_URL as the code reads it (default: the development database of `scripts/postgres.sh`).
const url = Effect.runSync(Postgres.urlConfig)
/** The server's URL with one part changed: another port, another password. */
const changed = (change: (u: URL) => void): string => {
  const u = new URL(Redacted.value(url))
  change(u)
  return u.toString()
}
const table = `sluice_test_${process.pid}_${Date.now()}`

layer(Postgres.layer({ url }), { excludeTestServices: true })("Postgres (live server)", (it) => {
  it.effect("insert rows into a temporary table and read them back", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE ${sql(table)} (name text PRIMARY KEY, rows integer NOT NULL)`
      yield* Effect.addFinalizer(() => sql`DROP TABLE IF EXISTS ${sql(table)}`.pipe(Effect.orDie))

      yield* sql`INSERT INTO ${sql(table)} ${sql.insert([
        { name: "users", rows: 3 },
        { name: "orders", rows: 5 },
        { name: "clicks", rows: 1 }
      ])}`
      const found = yield* sql<{ name: string; rows: number }>`
        SELECT name, rows FROM ${sql(table)} WHERE rows > ${2} ORDER BY name`
      assert.deepStrictEqual(found, [
        { name: "orders", rows: 5 },
        { name: "users", rows: 3 }
      ])
    })
  )
})

describe("Postgres (unreachable)", () => {
  const build = (badUrl: string) =>
    Effect.gen(function* () {
      yield* SqlClient.SqlClient
    }).pipe(Effect.provide(Postgres.layer({ url: badUrl })), Effect.timeout("10 seconds"), Effect.flip)

  it.live("a layer on a closed port fails quickly with a SqlError (ConnectionError)", () =>
    Effect.gen(function* () {
      const started = Date.now()
      const error = yield* build(
        changed((u) => {
          u.port = "1"
        })
      )
      const elapsed = Date.now() - started
      if (error._tag !== "SqlError") return assert.fail(`expected a SqlError, got ${error._tag}`)
      assert.strictEqual(error.reason._tag, "ConnectionError")
      assert.isTrue(error.isRetryable)
      assert.isBelow(elapsed, 2000)
    })
  )

  it.live("wrong credentials fail with a SqlError (AuthenticationError) that is not retryable", () =>
    Effect.gen(function* () {
      const error = yield* build(
        changed((u) => {
          u.password = "wrong-password"
        })
      )
      if (error._tag !== "SqlError") return assert.fail(`expected a SqlError, got ${error._tag}`)
      assert.strictEqual(error.reason._tag, "AuthenticationError")
      assert.isFalse(error.isRetryable)
    })
  )
})
