/**
 * The worker's HTTP endpoint: `/metrics` in the Prometheus text format (Sluice's Effect metrics: records in, out and
 * dead-lettered per topic, batch and commit latency, lag per partition) and `/health`. Later topologies add their
 * own routes here (table state for the sensor pipeline).
 */
import { createServer } from "node:http"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"

export const health = HttpRouter.add("GET", "/health", HttpServerResponse.jsonUnsafe({ status: "ok" }))

export const routes = Layer.mergeAll(health, PrometheusMetrics.layerHttp({ path: "/metrics" }))

/** Serves the routes on 127.0.0.1:`port` for as long as the layer lives. */
export const layer = (port: number, host = "127.0.0.1") =>
  HttpRouter.serve(routes, { disableLogger: true }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port, host }))
  )
