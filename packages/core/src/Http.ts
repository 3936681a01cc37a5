/**
 * The worker's HTTP endpoint: `/metrics` in the Prometheus text format (Sluice's Effect metrics: records in, out and
 * dead-lettered per topic, batch and commit latency, lag per partition), `/health` (liveness) and `/ready`
 * (readiness), both answered from the `Health` registry, and `/tables` (the stores of the topologies running here).
 *
 * It listens where `sluice run --http HOST:PORT` says (`parseAddress`), or on 127.0.0.1 for `--metrics-port PORT`:
 * the loopback interface unless the operator names another, since nothing here asks who is calling.
 *
 * `/tables` lists the stores of the topologies running here, `/tables/<store>` their entries in this worker's tasks
 * (`?limit=`, default 1000), and `/tables/<store>/<key>` one key (its text, as UTF-8 bytes): 200 with the value,
 * 404 when absent, 421 naming the partition and its owner when another worker owns the key's task (Tables.ts).
 *
 * `/health` is 200 only while every registered part is live: the worker running, no partition stuck on one batch
 * beyond its bound, every loader alive; otherwise 503 with a JSON body naming what is wrong. `/ready` is 200 once the
 * worker has its assignment and every table has loaded.
 */
import { createServer } from "node:http"
import { Effect, Layer, Result } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { Health, type Report } from "./Health.ts"
import { parseHostPort } from "./internal/address.ts"
import { bytes } from "./Record.ts"
import { type Lookup, Tables, type TablesShape } from "./Tables.ts"

const answer = (pick: (report: Report) => boolean, ok: string, notOk: string) =>
  Effect.gen(function* () {
    const health = yield* Health
    const report = yield* health.report
    const good = pick(report)
    const problems = report.checks
      .filter((c) => !pick({ live: c.live, ready: c.ready, checks: [] }))
      .map((c) => `${c.name}: ${c.detail ?? "not ok"}`)
    return HttpServerResponse.jsonUnsafe(
      { status: good ? ok : notOk, ...(good ? {} : { problems }), checks: report.checks },
      { status: good ? 200 : 503 }
    )
  })

export const health = HttpRouter.add(
  "GET",
  "/health",
  answer((r) => r.live, "ok", "unhealthy")
)

export const ready = HttpRouter.add(
  "GET",
  "/ready",
  answer((r) => r.ready, "ready", "not ready")
)

type Answer = Lookup | { readonly _tag: "Failed"; readonly message: string }

const json = (body: unknown, status = 200) => HttpServerResponse.jsonUnsafe(body, { status })

const noSuchStore = (tables: TablesShape, store: string) =>
  json(
    {
      error: `no store named ${store} on this worker`,
      stores: tables.stores().map((q) => q.store)
    },
    404
  )

export const storesList = HttpRouter.add(
  "GET",
  "/tables",
  Effect.map(Tables, (tables) =>
    json({ stores: tables.stores().map((q) => ({ store: q.store, group: q.group, partitions: q.taskCount })) })
  )
)

export const storeEntries = HttpRouter.add(
  "GET",
  "/tables/:store",
  Effect.gen(function* () {
    const tables = yield* Tables
    const { store = "" } = yield* HttpRouter.params
    const request = yield* HttpServerRequest.HttpServerRequest
    const limit = Number(new URL(request.url, "http://localhost").searchParams.get("limit") ?? "1000")
    const found = tables.entries(store, Number.isInteger(limit) && limit > 0 ? limit : 1000)
    return found === undefined ? noSuchStore(tables, store) : json({ store, ...found })
  })
)

export const storeKey = HttpRouter.add(
  "GET",
  "/tables/:store/:key",
  Effect.gen(function* () {
    const tables = yield* Tables
    const { store = "", key = "" } = yield* HttpRouter.params
    const text = decodeURIComponent(key)
    const result = yield* tables
      .lookup(store, bytes(text))
      .pipe(Effect.catch((e): Effect.Effect<Answer> => Effect.succeed({ _tag: "Failed", message: e.message })))
    switch (result._tag) {
      case "NoSuchStore":
        return noSuchStore(tables, store)
      case "Found":
        return json({ store, key: result.key, partition: result.partition, value: result.value })
      case "Missing":
        return json({ store, key: text, partition: result.partition, found: false }, 404)
      case "Elsewhere":
        // Kafka Streams' interactive queries: this worker does not own the key's task, so it says who does.
        return json(
          {
            error: `key ${text} of ${store} is in partition ${result.partition}, owned by ${result.owner ?? "another member"}, not this worker`,
            partition: result.partition,
            owner: result.owner ?? null
          },
          421
        )
      case "Failed":
        return json({ error: result.message }, 503)
    }
  })
)

export const routes = Layer.mergeAll(
  health,
  ready,
  storesList,
  storeEntries,
  storeKey,
  PrometheusMetrics.layerHttp({ path: "/metrics" })
)

/** Where the server listens. */
export interface Address {
  /** A host name or an IP address (IPv6 without brackets), as `listen` takes it. */
  readonly host: string
  readonly port: number
}

/** The default interface: nothing is served beyond this machine unless the operator says so. */
export const loopback = (port: number): Address => ({ host: "127.0.0.1", port })

/**
 * `HOST:PORT` (an IPv6 host in brackets: `[::1]:6066`; `0.0.0.0:6066` for every interface), the same spelling and
 * rules as broker addresses; the failure says what is expected.
 */
export const parseAddress = (text: string): Result.Result<Address, string> => {
  const parsed = parseHostPort(text.trim())
  return parsed === undefined
    ? Result.fail(
        `invalid HTTP address "${text}": expected HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:6066, [::1]:6066, 0.0.0.0:6066)`
      )
    : Result.succeed({ host: parsed.host.replace(/^\[(.*)\]$/, "$1"), port: parsed.port })
}

/** `http://host:port`, for log lines and help. */
export const urlOf = (address: Address): string =>
  `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`

/**
 * Serves the routes at `address` for as long as the layer lives. Node's HTTP server layer loads when this layer is
 * built, not with this module: a worker without `--http` does not load it at start-up.
 */
export const layer = (address: Address) =>
  HttpRouter.serve(routes, { disableLogger: true }).pipe(
    Layer.provide(
      Layer.unwrap(
        Effect.map(
          Effect.promise(() => import("@effect/platform-node/NodeHttpServer")),
          (NodeHttpServer) => NodeHttpServer.layer(createServer, { port: address.port, host: address.host })
        )
      )
    )
  )
