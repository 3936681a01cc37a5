import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Table from "@sluice/core/Table"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Effect } from "effect"
const topics = ClickEnrichment.named("big-")
let peak = 0
setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 20).unref()
await Effect.runPromise(Effect.gen(function* () {
  const t0 = Date.now()
  const table = yield* Table.makeReady(topics.profiles)
  console.log("load", Date.now() - t0, "size", yield* table.size, "peak", peak >> 20)
  ;(globalThis as any).gc?.()
  console.log("after gc rss", process.memoryUsage().rss >> 20, "heap", process.memoryUsage().heapUsed >> 20)
}).pipe(Effect.scoped, Effect.provide(KafkaJs.layer({ brokers: ["127.0.0.1:9092"] }))))
process.exit(0)
