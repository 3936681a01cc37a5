import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Metric, Result } from "effect"
import { HttpClient, HttpRouter } from "effect/http"
import * as Health from "../src/Health.ts"
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

  it.effect("/health is 200 while every part is live, 503 naming the part that is not; /ready likewise", () =>
    Effect.gen(function* () {
      const health = yield* Health.Health
      const ok = yield* HttpClient.get("/health")
      assert.strictEqual(ok.status, 200)
      assert.deepInclude(yield* ok.json, { status: "ok" })

      let loaded = false
      const table = yield* health.register(
        "table profiles",
        Effect.sync(() => ({ live: true, ready: loaded, detail: loaded ? "up to date" : "loading" }))
      )
      yield* health.register("worker w", Effect.succeed({ live: false, ready: true, detail: "in:0 stuck for 61 s" }))
      const sick = yield* HttpClient.get("/health")
      assert.strictEqual(sick.status, 503)
      const body = yield* sick.json
      assert.deepInclude(body, { status: "unhealthy", problems: ["worker w: in:0 stuck for 61 s"] })

      const notReady = yield* HttpClient.get("/ready")
      assert.strictEqual(notReady.status, 503)
      assert.deepInclude(yield* notReady.json, { status: "not ready", problems: ["table profiles: loading"] })
      loaded = true
      assert.strictEqual((yield* HttpClient.get("/ready")).status, 200)

      yield* table.die("the profile topic was deleted")
      assert.deepInclude(yield* (yield* HttpClient.get("/ready")).json, {
        problems: ["table profiles: the profile topic was deleted"]
      })
    }).pipe(Effect.scoped)
  )
})

describe("Http.parseAddress", () => {
  it("takes HOST:PORT as brokers are written: a name, IPv4, or IPv6 in brackets (given to listen without them)", () => {
    assert.deepStrictEqual(Http.parseAddress("127.0.0.1:6066"), Result.succeed({ host: "127.0.0.1", port: 6066 }))
    assert.deepStrictEqual(Http.parseAddress(" localhost:80 "), Result.succeed({ host: "localhost", port: 80 }))
    assert.deepStrictEqual(Http.parseAddress("[::1]:6066"), Result.succeed({ host: "::1", port: 6066 }))
    assert.deepStrictEqual(Http.loopback(9464), { host: "127.0.0.1", port: 9464 })
  })

  it("refuses what is not HOST:PORT with a port from 1 to 65535, saying what it expects", () => {
    for (const bad of ["6066", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":6066", "::1:6066", "host:port"]) {
      const parsed = Http.parseAddress(bad)
      assert.isTrue(Result.isFailure(parsed), bad)
      if (Result.isFailure(parsed)) assert.include(parsed.failure, "expected HOST:PORT with a port from 1 to 65535")
    }
  })
})
