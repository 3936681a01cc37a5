/**
 * The worker's HTTP endpoint: `/metrics` in the Prometheus text format (Sluice's Effect metrics: records in, out and
 * dead-lettered per topic, batch and commit latency, lag per partition), `/health` (liveness) and `/ready`
 * (readiness), both answered from the `Health` registry. Later topologies add their own routes here (table state
 * for the sensor pipeline).
 *
 * `/health` is 200 only while every registered part is live: the worker running, no partition stuck on one batch
 * beyond its bound, every loader alive; otherwise 503 with a JSON body naming what is wrong. `/ready` is 200 once the
 * worker has its assignment and every table has loaded.
 */
import { createServer } from "node:http"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { Health, type Report } from "./Health.ts"

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

export const routes = Layer.mergeAll(health, ready, PrometheusMetrics.layerHttp({ path: "/metrics" }))

/** Serves the routes on 127.0.0.1:`port` for as long as the layer lives. */
export const layer = (port: number, host = "127.0.0.1") =>
  HttpRouter.serve(routes, { disableLogger: true }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port, host }))
  )
