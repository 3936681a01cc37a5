/**
 * Where the start-up of `sluice run click-enrichment --strategy table` goes, in one process: the same steps the
 * command runs (the KafkaJs layer, the global table, the runner), each stamped in ms since the process started
 * (performance.now()), and kafkajs' own requests (its debug log: Request/Response lines with their time) to see what
 * the group join and the table's read cost on the broker's side.
 *
 * `node scripts/perf/startup-phases.ts --brokers B --prefix P --group G [--kafkajs-log]` on topics filled with
 * `sluice produce profiles/clicks --topic-prefix P`; prints one JSON line of marks, and with --kafkajs-log the
 * requests as `ms  line` on stderr.
 */
const imported0 = performance.now()
const KafkaJs = await import("@sluice/core/KafkaJs")
const Health = await import("@sluice/core/Health")
const Metrics = await import("@sluice/core/Metrics")
const Runner = await import("@sluice/core/Runner")
const Topology = await import("@sluice/core/Topology")
const ClickEnrichment = await import("@sluice/processors/ClickEnrichment")
const { Effect, Fiber, Layer, Logger, References } = await import("effect")
const { args, required } = await import("./measure.ts")
const imported = performance.now()

const options = args(process.argv.slice(2))
const topics = ClickEnrichment.named(required(options, "prefix"))
const marks: Record<string, number> = {
  processStartToScript: Math.round(imported0),
  modulesLoaded: Math.round(imported)
}
const mark = (name: string) => {
  if (marks[name] === undefined) marks[name] = Math.round(performance.now())
}
const kafkajsLog = options.has("kafkajs-log")
const lines: Array<string> = []
const recorder = Logger.make(({ message }) => {
  const text = Array.isArray(message) ? message.join(" ") : String(message)
  if (text.includes("Request") || text.includes("Response") || text.includes("join") || text.includes("Join"))
    lines.push(`${performance.now().toFixed(1).padStart(8)}  ${text}`)
})

const program = Effect.gen(function* () {
  mark("layerStart")
  const kafkaContext = yield* Layer.build(
    KafkaJs.layer({
      brokers: required(options, "brokers").split(","),
      clientId: "perf-startup",
      ...(kafkajsLog ? { logLevel: "Debug" as const } : {})
    })
  )
  mark("connected")
  const lookup = yield* Layer.build(ClickEnrichment.ProfileLookup.table(topics)).pipe(
    Effect.provideContext(kafkaContext)
  )
  mark("tableLoaded")
  const topology = Topology.tapBatches(ClickEnrichment.topology({ topics }), () =>
    Effect.sync(() => mark("firstBatch"))
  )
  const before = yield* Metrics.totals
  const runner = yield* Runner.run(topology, { groupId: required(options, "group"), sessionTimeoutMs: 6_000 }).pipe(
    Effect.provideContext(lookup),
    Effect.provideContext(kafkaContext),
    Effect.forkScoped
  )
  const health = yield* Health.Health
  while ((yield* Metrics.totals).out - before.out < 1) {
    if (marks.ready === undefined && (yield* health.report).ready) mark("ready")
    if (runner.pollUnsafe() !== undefined) return yield* Effect.die(new Error("the topology stopped early"))
    yield* Effect.sleep("1 millis")
  }
  mark("firstOutputAcked")
  process.stdout.write(`${JSON.stringify(marks)}\n`)
  if (kafkajsLog) process.stderr.write(`${lines.join("\n")}\n`)
  yield* Fiber.interrupt(runner)
})

Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(Logger.layer([recorder])),
    Effect.provideService(References.MinimumLogLevel, kafkajsLog ? "Debug" : "Info")
  )
).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`startup-phases failed: ${String(error)}\n`)
    process.exit(1)
  }
)
