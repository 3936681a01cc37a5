/**
 * `sluice bench windows`: sensor readings through 60 s tumbling windows (count, min, max and mean temperature per
 * sensor), measured and verified, Sluice against the same aggregation written by hand (issue #10).
 *
 * The readings are produced once, to a fresh topic: `--events` readings over `--sensors` sensors, all valid, event
 * times `--step-ms` apart so that they span many windows, none late. Then each contender consumes all of them from
 * the beginning in its own consumer group and writes the windows that close to its own output topic:
 *
 * - `loop`: a plain kafkajs loop with a Map of open windows (BenchWindowsLoop.ts), the floor;
 * - `at_least_once` and `exactly_once`: Sluice, a windows-only topology (`Windows.aggregate` with a struct of
 *   count/min/max/mean, the sensor pipeline's windows and grace) under each guarantee.
 *
 * events/s is input readings / the time from the contender's first fetched batch to its last window visible
 * (acknowledged with acks=all; under exactly-once, in a committed transaction), polled every 5 ms. CPU is the
 * benchmarking process' (user + system) over that time; the broker's is not in it. Every output is then read
 * back (read_committed) and checked against the truth (BenchWindowsReport.ts): a contender with one window missing,
 * wrong or unexpected fails the run, whatever its speed. Results go to stdout, progress to stderr (a progress line
 * every 2 s on a terminal).
 */
import { loadavg } from "node:os"
import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import * as Reader from "@sluice/core/Reader"
import * as Runner from "@sluice/core/Runner"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import * as Window from "@sluice/core/Window"
import * as Windows from "@sluice/core/Windows"
import * as SensorData from "@sluice/processors/SensorData"
import * as Sensors from "@sluice/processors/Sensors"
import { Console, Effect, Option, Result, Schema, type Scope } from "effect"
import { Command, Flag } from "effect/cli"
import * as Loop from "./BenchWindowsLoop.ts"
import * as Report from "./BenchWindowsReport.ts"
import * as Flags from "./Flags.ts"

export class WindowsBenchFailed extends Schema.TaggedError<WindowsBenchFailed>()("WindowsBenchFailed", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/** The readings topic and one contender's output. */
interface Topics {
  readonly readings: Sensors.Topics["readings"]
  readonly aggregates: Sensors.Topics["aggregates"]
  readonly deadLetters: string
}

/** The windows of the sensor pipeline and nothing else: no enrichment, no counts, no late topic. */
export const topology = (topics: Topics, options: { readonly graceMs: number; readonly partitions: number }) => {
  const windows = Windows.aggregate({
    name: "bench-windows",
    windows: Window.tumbling(Sensors.windowMs),
    grace: options.graceMs,
    key: Codec.string,
    aggregator: Sensors.temperatures,
    result: (out, sensor, window, t) => out.emit(topics.aggregates, sensor, Sensors.windowAggregate(sensor, window, t))
  })
  return Topology.make({
    name: "bench-windows",
    input: topics.readings,
    deadLetterTopic: topics.deadLetters,
    outputs: [{ name: topics.aggregates.name, partitions: options.partitions }],
    stores: windows.stores,
    process: (records, ctx) =>
      Effect.sync(() => {
        const open = windows.open(ctx)
        const added = Batch.forEach(records, ({ key, value, record }, out) =>
          open.add(out, record, key, value.temperature, Sensors.eventTimeMs(value.timestamp) ?? -1)
        )
        return Batch.concat([added, open.close()])
      })
  })
}

export interface Settings {
  readonly events: number
  readonly sensors: number
  readonly partitions: number
  readonly stepMs: number
  readonly graceMs: number
  readonly seed: number
  readonly contenders: ReadonlyArray<Report.Contender>
  readonly brokers: string
  readonly json: boolean
}

const chunk = 10_000
const startMs = 1_700_000_000_000

/** Produces the readings, and recomputes from them the windows every contender must emit. */
const produce = Effect.fnUntraced(function* (s: Settings, readings: Sensors.Topics["readings"]) {
  const kafka = yield* Kafka
  const truth = Report.truth(Sensors.windowMs, s.graceMs)
  let reported = Date.now()
  for (let from = 0; from < s.events; from += chunk) {
    const part = SensorData.generate({
      count: Math.min(chunk, s.events - from),
      sensors: s.sensors,
      seed: s.seed + from / chunk,
      startMs: startMs + from * s.stepMs,
      stepMs: s.stepMs,
      lateByMs: Sensors.windowMs + s.graceMs,
      topic: readings.name
    })
    const written = yield* kafka.send(part)
    for (let i = 0; i < part.length; i++) {
      const reading = readings.value.decode(part[i]!.value)
      if (Result.isFailure(reading)) return yield* new WindowsBenchFailed({ reason: reading.failure })
      // The event time the generator meant, not the one parsed back: a contender that reads it wrong must fail.
      const eventMs = startMs + (from + i) * s.stepMs
      truth.add(written[i]!.partition, reading.success.sensor_id, eventMs, reading.success.temperature)
    }
    if (Date.now() - reported > 2_000) {
      reported = Date.now()
      yield* Console.error(`bench windows: produced ${from + part.length}/${s.events} readings`)
    }
  }
  return truth
})

interface Status {
  readonly consumed: number
  readonly visible: number
  readonly failure: string | undefined
}

/** Starts a contender in the current scope; its status says how far it got. */
const start = (
  contender: Report.Contender,
  s: Settings,
  topics: Topics,
  groupId: string,
  p: Loop.Progress
): Effect.Effect<Effect.Effect<Status>, never, Kafka | Scope.Scope> =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    if (contender === "loop") {
      const options = {
        groupId,
        input: topics.readings.name,
        output: topics.aggregates.name,
        partitions: s.partitions,
        windowMs: Sensors.windowMs,
        graceMs: s.graceMs
      }
      // kafkajs cannot reach the in-memory broker: there the loop's handler runs over Sluice's Kafka service.
      yield* s.brokers === "memory"
        ? Loop.runOnService(kafka, options, p)
        : Loop.runKafkaJs(s.brokers.split(","), options, p)
      return Effect.sync(() => ({ consumed: p.consumed, visible: p.visible, failure: p.failure }))
    }
    const before = yield* Metrics.totals
    const tapped = Topology.tapBatches(topology(topics, s), () => Effect.sync(() => Loop.started(p)))
    const runner = yield* Effect.forkScoped(Runner.run(tapped, { groupId, guarantee: contender }))
    return Effect.map(Metrics.totals, (t) => {
      const exit = runner.pollUnsafe()
      return {
        consumed: t.in - before.in,
        visible: t.out - before.out,
        failure: exit === undefined ? undefined : `the topology stopped: ${String(exit)}`
      }
    })
  })

/** Runs a contender until its last window is visible; stops it; reads its output back and checks it. */
const race = Effect.fnUntraced(function* (
  contender: Report.Contender,
  s: Settings,
  prefix: string,
  expected: ReadonlyMap<string, Sensors.WindowAggregate>,
  loop: Report.Result | undefined
) {
  const kafka = yield* Kafka
  const label = Report.labels[contender]
  const own = Sensors.named(`${prefix}${contender}-`)
  const topics: Topics = {
    readings: Sensors.named(prefix).readings,
    aggregates: own.aggregates,
    deadLetters: own.deadLetters
  }
  yield* kafka.createTopics([{ name: topics.aggregates.name, partitions: s.partitions }])
  const loadStart = Report.load(loadavg())
  yield* Console.error(`bench windows: ${label}: starting (load average ${loadStart.join(" ")})`)
  const p = Loop.progress()
  const windows = expected.size
  const timed = yield* Effect.scoped(
    Effect.gen(function* () {
      const status = yield* start(contender, s, topics, `${prefix}${contender}`, p)
      const deadline = Date.now() + 60_000 + s.events * 2
      let last = { at: Date.now(), consumed: 0 }
      for (;;) {
        const now = yield* status
        if (now.failure !== undefined) return yield* new WindowsBenchFailed({ reason: `${label}: ${now.failure}` })
        // With no window to wait for (a tiny run), the last reading consumed is the end.
        if (windows > 0 ? now.visible >= windows : now.consumed >= s.events) break
        if (Date.now() > deadline) {
          return yield* new WindowsBenchFailed({
            reason: `${label}: timed out with ${now.visible}/${windows} windows visible`
          })
        }
        if (process.stderr.isTTY === true && Date.now() - last.at >= 2_000) {
          const perSec = ((now.consumed - last.consumed) * 1000) / (Date.now() - last.at)
          last = { at: Date.now(), consumed: now.consumed }
          yield* Console.error(Report.progressLine(label, now.consumed, s.events, now.visible, windows, perSec))
        }
        yield* Effect.sleep("5 millis")
      }
      const cpu = process.cpuUsage(p.firstCpu)
      return { elapsedMs: Date.now() - p.firstAt, cpuMs: (cpu.user + cpu.system) / 1000 }
    })
  )
  const loadEnd = Report.load(loadavg())
  yield* Console.error(`bench windows: ${label}: done in ${timed.elapsedMs} ms; reading its output back`)
  const got = yield* Reader.foldToEnd(topics.aggregates.name, Report.collected(), (acc, record) => {
    const decoded = Topic.decode(topics.aggregates, record)
    return Report.collect(acc, Result.isSuccess(decoded) ? decoded.success.value : undefined)
  })
  const v = Report.verify(expected, got, contender !== "exactly_once")
  for (const line of v.examples) yield* Console.error(`bench windows: ${label}: ${line}`)
  const result: Report.Result = {
    contender,
    label,
    events: s.events,
    sensors: s.sensors,
    partitions: s.partitions,
    stepMs: s.stepMs,
    graceMs: s.graceMs,
    windows,
    outputRecords: got.records,
    verified: v.verified,
    correct: v.correct,
    ...Report.measured({ events: s.events, elapsedMs: timed.elapsedMs, cpuMs: timed.cpuMs, loop }),
    loadStart,
    loadEnd
  }
  yield* s.json
    ? Console.log(JSON.stringify(result))
    : Console.error(`bench windows: ${label}: ${result.eventsPerSec} events/s, ${result.verified}`)
  return result
})

export const bench = (s: Settings) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const prefix = `bench-windows-${Date.now().toString(36)}-`
    const readings = Sensors.named(prefix).readings
    const spanMs = s.events * s.stepMs
    yield* kafka.createTopics([{ name: readings.name, partitions: s.partitions }])
    yield* Console.error(
      `bench windows: producing ${s.events} readings of ${s.sensors} sensors to ${readings.name} (${s.partitions} partitions), ` +
        `${s.stepMs} ms apart: ${Math.round(spanMs / 1000)} s of event time, ${Math.ceil(spanMs / Sensors.windowMs)} windows of 60 s`
    )
    const truth = yield* produce(s, readings)
    const expected = truth.closed()
    if (truth.late() > 0) yield* Console.error(`bench windows: ${truth.late()} readings are late (counted nowhere)`)
    yield* Console.error(`bench windows: ${expected.size} windows close; each contender must emit exactly those`)
    const results: Array<Report.Result> = []
    for (const contender of s.contenders) {
      const loop = results.find((r) => r.contender === "loop")
      results.push(yield* race(contender, s, prefix, expected, loop))
    }
    if (!s.json) yield* Console.log(Report.summary(results))
    else for (const line of Report.targets(results)) yield* Console.error(`bench windows: ${line}`)
    const wrong = results.filter((r) => !r.correct)
    if (wrong.length > 0) {
      return yield* new WindowsBenchFailed({
        reason: `wrong results: ${wrong.map((r) => `${r.label} (${r.verified})`).join(", ")}`
      })
    }
  }).pipe(
    // The topics are throwaway: dropping them keeps a shared broker tidy. The prefix covers the outputs, the
    // changelogs and the dead-letter topics too (the groups' names start with it).
    Effect.ensuring(
      Kafka.use((kafka) =>
        kafka.listTopics.pipe(
          Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith("bench-windows-"))))
        )
      ).pipe(Effect.ignore)
    )
  )

export const command = Flags.command(
  "windows",
  {
    events: Flags.int("events", {
      description: "sensor readings to produce, and for each contender to aggregate",
      alias: "n",
      min: 1,
      default: 1_000_000
    }),
    sensors: Flags.int("sensors", { description: "distinct sensors the readings come from", min: 1, default: 10_000 }),
    partitions: Flags.int("partitions", {
      description: "partitions of the readings topic, i.e. tasks",
      min: 1,
      max: 1_000,
      default: 3
    }),
    stepMs: Flags.int("step-ms", {
      description: "event time between consecutive readings, ms",
      min: 1,
      whenAbsent: `the readings span about ${Report.defaultSpan} windows of 60 s (at least 1 ms)`
    }),
    graceMs: Flags.int("grace-ms", {
      description: "how far out of order a reading may come, ms: a window closes at its end plus this",
      min: 0,
      default: Sensors.defaultGraceMs
    }),
    seed: Flags.seed,
    contender: Flag.Literals("contender", [...Report.contenders, "all"]).pipe(
      Flag.withDescription(
        "what to measure: loop (plain kafkajs + Map), at_least_once or exactly_once (Sluice), or all, in that order; default all"
      ),
      Flag.withDefault("all")
    ),
    brokers: Flags.brokers,
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "one JSON object per contender on stdout (events, windows, elapsedMs, eventsPerSec, cpuMs, cpuPercent, cpuUsPerEvent, vsLoop, load averages, verified, correct); progress stays on stderr"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    bench({
      events: o.events,
      sensors: o.sensors,
      partitions: o.partitions,
      stepMs: Option.getOrElse(o.stepMs, () => Report.defaultStepMs(o.events, Sensors.windowMs)),
      graceMs: o.graceMs,
      seed: o.seed,
      contenders: o.contender === "all" ? Report.contenders : [o.contender],
      brokers: o.brokers,
      json: o.json
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription(
    "Benchmark windowed aggregation: readings through 60 s tumbling windows (count/min/max/mean per sensor) by a plain kafkajs loop and by Sluice at-least-once and exactly-once, each verified against a recomputation; events/s, CPU and the ratio to the loop"
  ),
  Command.withExamples([
    {
      command: "sluice bench windows --events 20000 --sensors 1000 --brokers memory",
      description: "on the in-memory broker: nothing to install (the loop then runs over Sluice's Kafka service)"
    },
    {
      command: "sluice bench windows --json > windows.jsonl",
      description: "1,000,000 readings of 10,000 sensors against Kafka on 127.0.0.1:9092, one JSON object per contender"
    }
  ])
)
