import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { HttpClient, HttpRouter } from "effect/http"
import * as Http from "../src/Http.ts"
import * as Metrics from "../src/Metrics.ts"

const TestServer = HttpRouter.serve(Http.routes, { disableLogger: true, disableListenLog: true }).pipe(
  Layer.provideMerge(NodeHttpServer.layerTest)
)

layer(TestServer)("Http", (it) => {
  it.effect("/metrics serves Sluice's metrics in the Prometheus text format", () =>
    Effect.gen(function* () {
      yield* Metric.update(Metrics.forPartition("http-test", 0).in, 7)
      yield* Metric.update(Metrics.batchLatency, 3)
      const res = yield* HttpClient.get("/metrics")
      assert.strictEqual(res.status, 200)
      const body = yield* res.text
      assert.match(body, /sluice_records_in\{[^}]*topic="http-test"[^}]*\} 7/)
      assert.match(body, /sluice_batch_latency_ms_bucket\{le="4"\} \d+/)
    })
  )

  it.effect("/health answers", () =>
    Effect.gen(function* () {
      const res = yield* HttpClient.get("/health")
      assert.strictEqual(res.status, 200)
      assert.deepStrictEqual(yield* res.json, { status: "ok" })
    })
  )
})
