/**
 * Sluice's contender for `compare.ts`: what `sluice run click-enrichment --strategy table` runs (the global table
 * loaded before the topology starts, at-least-once delivery with its default commit interval, the KafkaJs layer),
 * on the given topics, until N enriched records are acknowledged; then one JSON line (measure.ts).
 *
 * `node scripts/perf/sluice.ts --brokers B --profiles T --clicks T --out T --group G --events N` and, to try other
 * settings, `[--mailbox N] [--step N] [--held N]` (Runner's mailboxCapacity, maxStepRecords, maxHeldRecords),
 * `[--batch-bytes N]` (KafkaJs maxBatchBytes), `[--provenance]` (the topology's provenance headers).
 */
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Metrics from "@sluice/core/Metrics"
import * as Runner from "@sluice/core/Runner"
import * as Topology from "@sluice/core/Topology"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Effect, Fiber, Layer } from "effect"
import { args, makeMeter, required } from "./measure.ts"

const options = args(process.argv.slice(2))
const events = Number(required(options, "events"))
const meter = makeMeter("sluice", events)
const topics: ClickEnrichment.Topics = {
  profiles: ClickEnrichment.profilesTopic(required(options, "profiles")),
  clicks: ClickEnrichment.clicksTopic(required(options, "clicks")),
  enriched: ClickEnrichment.enrichedTopic(required(options, "out"))
}

const program = Effect.gen(function* () {
  const lookup = yield* Layer.build(ClickEnrichment.ProfileLookup.table(topics))
  meter.loaded()
  const topology = Topology.tapBatches(
    ClickEnrichment.topology({ topics, provenance: options.has("provenance") }),
    () => Effect.sync(meter.first)
  )
  const before = yield* Metrics.totals
  const mailbox = options.get("mailbox")
  const step = options.get("step")
  const held = options.get("held")
  const runner = yield* Runner.run(topology, {
    groupId: required(options, "group"),
    sessionTimeoutMs: 6_000,
    ...(mailbox === undefined ? {} : { mailboxCapacity: Number(mailbox) }),
    ...(step === undefined ? {} : { maxStepRecords: Number(step) }),
    ...(held === undefined ? {} : { maxHeldRecords: Number(held) })
  }).pipe(Effect.provideContext(lookup), Effect.forkScoped)
  while ((yield* Metrics.totals).out - before.out < events) {
    const exit = runner.pollUnsafe()
    if (exit !== undefined) return yield* Effect.die(new Error(`the topology stopped early: ${String(exit)}`))
    yield* Effect.sleep("5 millis")
  }
  const result = meter.done()
  yield* Effect.sync(() => process.stdout.write(`${JSON.stringify(result)}\n`))
  yield* Fiber.interrupt(runner)
})

Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(
      KafkaJs.layer({
        brokers: required(options, "brokers").split(","),
        clientId: "perf-sluice",
        ...(options.has("batch-bytes") ? { maxBatchBytes: Number(options.get("batch-bytes")) } : {})
      })
    )
  )
).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`sluice failed: ${String(error)}\n`)
    process.exit(1)
  }
)
