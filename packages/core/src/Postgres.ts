/**
 * Postgres for Sluice: `SqlClient` layers over `@effect/sql-pg`, configured from one URL.
 *
 * The pool opens connections lazily, so on its own a wrong URL or a stopped server would only show up at the
 * first query. These layers run `SELECT 1` while they are built: startup fails at once with a typed `SqlError`
 * (its `reason` tells a refused connection from bad credentials), bounded by the 5 second connect timeout.
 *
 * `@effect/sql-pg` (and `pg`) load when one of these layers is built, not with this module, so that a process that
 * never talks to Postgres does not load them at start-up.
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import { Config, Context, Effect, Layer, Redacted } from "effect"
import { SqlClient, type SqlError } from "effect/sql"

/** `DATABASE_URL`, default the development database that `scripts/postgres.sh` creates. */
export const urlConfig = Config.Redacted("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make("postgres://sluice:sluice@127.0.0.1:5432/sluice"))
)

export interface Options extends Omit<PgClient.PgPoolConfig, "url"> {
  /** `postgres://user:password@host:port/database`. Pass it Redacted: it usually holds a password. */
  readonly url: string | Redacted.Redacted<string>
}

const checked = <E>(
  pg: (client: typeof PgClient) => Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, E>
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, E | SqlError.SqlError> =>
  Layer.unwrap(
    Effect.map(
      Effect.promise(() => import("@effect/sql-pg/PgClient")),
      pg
    )
  ).pipe(Layer.tap((context) => Context.get(context, SqlClient.SqlClient)`SELECT 1`.pipe(Effect.asVoid)))

/** A pooled client for `options.url`, checked by one query before the layer is ready. */
export const layer = (options: Options): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> =>
  checked((client) =>
    client.layer({ ...options, url: Redacted.isRedacted(options.url) ? options.url : Redacted.make(options.url) })
  )

/** `layer` with the URL from `DATABASE_URL`. */
export const layerConfig: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError | Config.ConfigError> =
  checked((client) => client.layerConfig({ url: urlConfig }))
