/** `sluice run <topology>`: run a topology against Kafka until SIGINT/SIGTERM, with progress lines. */
import { hostname } from "node:os"
import type * as Delivery from "@sluice/core/Delivery"
import { ConfigInvalid } from "@sluice/core/Errors"
import type * as Http from "@sluice/core/Http"
import { Kafka } from "@sluice/core/Kafka"
import * as Main from "@sluice/core/Main"
import * as Metrics from "@sluice/core/Metrics"
import * as Runner from "@sluice/core/Runner"
import * as Store from "@sluice/core/Store"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as Counting from "@sluice/processors/Counting"
import * as Sensors from "@sluice/processors/Sensors"
import * as UserEvents from "@sluice/processors/UserEvents"
import { Config, Console, Effect, Layer, Option, Ref, Result, Schedule } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as RunClickstream from "./RunClickstream.ts"
import * as RunEvents from "./RunEvents.ts"
import * as RunModule from "./RunModule.ts"
import * as Strategy from "./Strategy.ts"

const group = Flag.String("group").pipe(
  Flag.withDescription(
    "consumer group id (default: --topic-prefix followed by the topology's name, e.g. staging-user-events, so each prefix has a group of its own)"
  ),
  Flag.optional
)
const http = Flag.String("http").pipe(
  Flag.withDescription(
    "serve /metrics (Prometheus), /health, /ready and /tables (store contents) at HOST:PORT, e.g. 127.0.0.1:6066; 0.0.0.0:PORT listens on every interface (default: off)"
  ),
  Flag.optional
)
const metricsPort = Flags.int("metrics-port", {
  description: "the same as --http 127.0.0.1:PORT",
  min: 1,
  max: 65_535,
  whenAbsent: "off"
})

interface HttpFlags {
  readonly http: Option.Option<string>
  readonly metricsPort: Option.Option<number>
}

/**
 * Where the worker serves HTTP: `--http HOST:PORT`, or `--metrics-port PORT` on 127.0.0.1 (its older spelling);
 * nowhere without either. Both at once is an error, as is an address that does not parse. `http` is the core
 * Http module, passed in because it is imported only by a run that serves HTTP.
 */
export const httpAddress = (
  o: HttpFlags,
  http: Pick<typeof Http, "loopback" | "parseAddress">
): Result.Result<Option.Option<Http.Address>, ConfigInvalid> => {
  if (Option.isSome(o.http) && Option.isSome(o.metricsPort))
    return Result.fail(
      new ConfigInvalid({ reason: "--http and --metrics-port both say where to serve HTTP: give one of them" })
    )
  if (Option.isSome(o.metricsPort)) return Result.succeed(Option.some(http.loopback(o.metricsPort.value)))
  if (Option.isNone(o.http)) return Result.succeed(Option.none())
  return Result.mapBoth(http.parseAddress(o.http.value), {
    onFailure: (reason) => new ConfigInvalid({ reason: `--http: ${reason}` }),
    onSuccess: Option.some
  })
}

/**
 * The HTTP server when asked for, nothing otherwise. The server's modules (core Http.ts, effect's HTTP router and
 * Node's server) load only when it is asked for: a worker without it starts without them.
 */
export const httpLayer = (o: HttpFlags) =>
  Option.isNone(o.http) && Option.isNone(o.metricsPort)
    ? Layer.empty
    : Layer.unwrap(
        Effect.flatMap(
          Effect.promise(() => import("@sluice/core/Http")),
          (http) =>
            Effect.map(
              Effect.fromResult(httpAddress(o, http)),
              Option.match({ onNone: () => Layer.empty, onSome: http.layer })
            )
        )
      )

/** The metrics endpoint on 127.0.0.1 when asked for, nothing otherwise (`--metrics-port`). */
export const metricsLayer = (port: Option.Option<number>) => httpLayer({ http: Option.none(), metricsPort: port })

const shutdownTimeout = Flags.int("shutdown-timeout-ms", {
  description: "bound on the graceful stop: drain, flush, commit, leave",
  min: 1,
  // An hour is longer than any orchestrator waits; the bound also has to fit a Node timer (2^31 - 1 ms).
  max: 3_600_000,
  default: 5_000
})

const guarantee = Flag.Literals("guarantee", ["at_least_once", "exactly_once"]).pipe(
  Flag.withDescription(
    "at_least_once (default): outputs are durable before their input offsets are committed, a crash re-processes what was not committed; exactly_once: each task's outputs, dead letters, store changes and input offsets are committed in one Kafka transaction (read them with isolation read_committed)"
  ),
  Flag.withDefault("at_least_once")
)

const commitInterval = Flags.int("commit-interval-ms", {
  description:
    "commit at least this often while records flow (default 1000; 100 under exactly_once, where it is also the longest an output waits before read_committed readers see it)",
  min: 1,
  max: 3_600_000,
  whenAbsent: "per guarantee"
})

/** The flags every `sluice run` topology takes. */
export const common = {
  brokers: Flags.brokers,
  prefix: Flags.prefix,
  group,
  shutdownTimeoutMs: shutdownTimeout,
  http,
  metricsPort,
  guarantee,
  commitIntervalMs: commitInterval
}

/**
 * The consumer group a run joins: `--group`, else the topic prefix followed by the topology's name. The prefix is
 * part of it because it is what isolates deployments: two workers with different prefixes read different topics,
 * and in one group each would be assigned partitions of the other's topic that it never reads.
 */
export const groupId = (o: { readonly group: Option.Option<string>; readonly prefix: string }, topology: string) =>
  Option.getOrElse(o.group, () => `${o.prefix}${topology}`)

/** How long past `--shutdown-timeout-ms` the process waits for the clients to disconnect before exiting hard. */
const graceMarginMs = 2_000

export const runOptions = (
  o: {
    readonly group: Option.Option<string>
    readonly prefix: string
    readonly shutdownTimeoutMs: number
    readonly guarantee?: Delivery.Guarantee
    readonly commitIntervalMs?: Option.Option<number>
  },
  topology: string
): Runner.RunOptions => {
  // The process exits hard if the graceful stop outlives its bound by more than the margin the clients need to
  // disconnect (each bounded by the Kafka layer's close timeout).
  Main.setGracePeriod(o.shutdownTimeoutMs + graceMarginMs)
  return {
    groupId: groupId(o, topology),
    shutdownTimeout: `${o.shutdownTimeoutMs} millis`,
    sessionTimeoutMs: 6_000,
    onUncleanStop: Main.markUncleanStop,
    guarantee: o.guarantee ?? "at_least_once",
    ...(o.commitIntervalMs !== undefined && Option.isSome(o.commitIntervalMs)
      ? { commitInterval: `${o.commitIntervalMs.value} millis` }
      : {})
  }
}

const code = (n: number | string, text: string) => `  ${String(n).padEnd(9)}${text}`

/** What `sluice run` and its topologies say in `--help` about how a run ends (the codes are core Main.ts's). */
export const exitCodesHelp = [
  "Exit codes:",
  code(Main.exitCodes.ok, "finished, or stopped cleanly by SIGINT/SIGTERM (drained, committed, left the group)"),
  code(Main.exitCodes.failed, "failed (the error is printed)"),
  code(Main.exitCodes.usage, "invalid arguments or configuration"),
  code(
    Main.exitCodes.uncleanStop,
    "a signal stopped it, but not cleanly: work in flight was abandoned at --shutdown-timeout-ms, or the"
  ),
  code("", "final commit failed; what was not committed is re-delivered to the group's next owner"),
  code(
    Main.exitCodes.hardExit,
    `the graceful stop outlived --shutdown-timeout-ms plus a ${graceMarginMs / 1000} s margin and the process exited hard`
  ),
  code("128+n", "a second signal n arrived during the stop and the process exited at once (130 SIGINT, 143 SIGTERM)")
].join("\n")

/**
 * The description of `sluice run` and its topologies: the summary, more lines if any, then the exit codes.
 * effect/cli indents only the first line of a description, so the others are indented here (blank lines stay
 * blank); subcommand lists show the summary alone.
 */
export const describedWithExitCodes =
  (summary: string, ...more: ReadonlyArray<string>) =>
  <const Name extends string, Input, E, R, ContextInput>(self: Command.Command<Name, Input, ContextInput, E, R>) =>
    self.pipe(
      Command.withDescription([summary, ...more, "", exitCodesHelp].join("\n").replace(/\n(?=.)/g, "\n  ")),
      Command.withShortDescription(summary)
    )

/** Logs records in/out/dead-lettered every few seconds while something runs. */
export const progress = (extra: Effect.Effect<string> = Effect.succeed("")) =>
  Effect.gen(function* () {
    const t = yield* Metrics.totals
    const more = yield* extra
    yield* Effect.logInfo(`in=${t.in} out=${t.out} dead-lettered=${t.deadLettered}${more ? ` ${more}` : ""}`)
  }).pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.delay("5 seconds"))

/**
 * Runs a topology with progress lines beside it. A signal interrupts both at once, so no line is logged while the
 * topology stops and its clients disconnect (by then its partitions' counters are gone, and a line would read in=0).
 */
export const withProgress =
  (extra?: Effect.Effect<string>) =>
  <A, E, R>(run: Effect.Effect<A, E, R>) =>
    Effect.raceFirst(run, Effect.andThen(progress(extra), Effect.never))

const userEvents = Flags.command("user-events", common, (o) =>
  Effect.gen(function* () {
    const counts = yield* UserEvents.EventCounts
    const show = Effect.map(Ref.get(counts), (c) => `login=${c.login} purchase=${c.purchase} logout=${c.logout}`)
    const topics = UserEvents.named(o.prefix)
    const topology = UserEvents.topology(topics)
    const options = runOptions(o, topology.name)
    yield* Effect.logInfo(
      `running user-events (${o.guarantee}) on ${o.brokers} in group ${options.groupId}: ${topics.events.name} -> ${topics.activity.name} (dead letters: ${topology.deadLetterTopic})`
    )
    return yield* Runner.run(topology, options).pipe(
      withProgress(show),
      Effect.onInterrupt(() => Effect.flatMap(show, (s) => Console.log(`counts: ${s}`)))
    )
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }),
        UserEvents.EventCounts.layer,
        httpLayer(o)
      )
    )
  )
).pipe(describedWithExitCodes("Consume user-events: a handler per event type, counts per type, activity records out"))

const clickEnrichment = Flags.command(
  "click-enrichment",
  {
    ...common,
    strategy: Strategy.flag,
    print: Flag.Boolean("print").pipe(
      Flag.withDescription("log each enriched event like the lab did"),
      Flag.withDefault(false)
    ),
    unknownUsers: Flag.Literals("unknown-users", ["null", "dead-letter"]).pipe(
      Flag.withDescription(
        "what happens to a click whose user has no profile: enrich with nulls, or dead-letter it (default null)"
      ),
      Flag.withDefault("null")
    ),
    provenance: Flag.Boolean("provenance").pipe(
      Flag.withDescription(
        "write headers sluice.click.source (partition:offset of the click) and sluice.click.produced-at on every enriched click (off by default: they cost throughput)"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named(o.prefix)
      const topology = ClickEnrichment.topology({
        unknownUsers: o.unknownUsers,
        print: o.print,
        topics,
        provenance: o.provenance
      })
      const options = runOptions(o, topology.name)
      yield* Effect.logInfo(
        `running click-enrichment (${o.guarantee}) on ${o.brokers} in group ${options.groupId} with the ${o.strategy} strategy: ${topics.clicks.name} + ${topics.profiles.name} -> ${topics.enriched.name}`
      )
      return yield* Runner.run(topology, options).pipe(withProgress())
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          Strategy.layer(o.strategy, ClickEnrichment.named(o.prefix)).pipe(
            Layer.provideMerge(Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }))
          ),
          httpLayer(o)
        )
      )
    )
).pipe(describedWithExitCodes("Enrich clicks with user profiles; the join strategy is a layer (table, rescan, redis)"))

const stateDir = Flag.Directory("state-dir").pipe(
  Flag.withDescription(
    "keep each task's stores in SQLite files under DIR, so a restart restores only the changelog's tail (default: in memory, restored in full from the changelog)"
  ),
  Flag.optional
)

/** Where a run keeps its tasks' stores: SQLite files under `--state-dir`, else memory (restored in full). */
export const stateStore = (stateDir: Option.Option<string>): Store.BackendFactory =>
  Option.isSome(stateDir) ? Store.sqlite({ dir: stateDir.value }) : Store.memory

/** What names this process in its outputs: `--worker-id`, else `<host>:<pid>`. */
export const workerId = (flag: Option.Option<string>): string =>
  Option.getOrElse(flag, () => `${hostname()}:${process.pid}`)

const counts = Flags.command(
  "counts",
  {
    ...common,
    stateDir,
    workerId: Flag.String("worker-id").pipe(
      Flag.withDescription("the worker's name in every output record (default: <host>:<pid>)"),
      Flag.optional
    )
  },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topics = Counting.named(o.prefix)
      // The output gets the input's partition count, so that task i can write its partition i.
      const { partitions } = yield* kafka.describeTopic(topics.input.name)
      const worker = workerId(o.workerId)
      const topology = Counting.topology({ topics, worker, partitions })
      const options: Runner.RunOptions = { ...runOptions(o, topology.name), stateStore: stateStore(o.stateDir) }
      const where = Option.match(o.stateDir, { onNone: () => "in memory", onSome: (dir) => `in SQLite under ${dir}` })
      yield* Effect.logInfo(
        `running counts (${o.guarantee}) on ${o.brokers} in group ${options.groupId} as worker ${worker}: ${topics.input.name} (${partitions} partitions) -> ${topics.output.name}, store counts ${where}`
      )
      return yield* Runner.run(topology, options).pipe(withProgress())
    }).pipe(Effect.provide(Layer.mergeAll(Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }), httpLayer(o))))
).pipe(
  describedWithExitCodes(
    "Count records per key in a changelog-backed store (word count): each output names its worker, task and offset",
    "Reads --topic-prefix + count-input (fill it with `sluice produce counts`), writes count-output; the store's",
    "changelog is <group>-counts-changelog. At-least-once (the default), a count can exceed the truth by records",
    "re-delivered after a crash, never fall below it; with --guarantee exactly_once, every count is exact."
  )
)

const sensorPipeline = Flags.command(
  "sensor-pipeline",
  {
    ...common,
    stateDir,
    warningAt: Flags.finite("warning-at", {
      description: "temperature from which a reading's status is warning",
      min: -1_000,
      max: 1_000,
      default: Sensors.defaultThresholds.warning
    }),
    criticalAt: Flags.finite("critical-at", {
      description: "temperature from which a reading's status is critical (above --warning-at)",
      min: -1_000,
      max: 1_000,
      default: Sensors.defaultThresholds.critical
    }),
    alertCount: Flags.int("alert-count", {
      description: "the threshold timer logs the sensors with more readings than this",
      min: 0,
      default: Sensors.defaultAlert.count
    }),
    alertEveryMs: Flags.int("alert-every-ms", {
      description: "how often the threshold timer runs, in each task",
      min: 1,
      max: 86_400_000,
      default: 10_000
    }),
    graceMs: Flags.int("grace-ms", {
      description: "how far out of order (in event time) a reading may come and still count in its 60 s window",
      min: 0,
      max: 86_400_000,
      default: Sensors.defaultGraceMs
    }),
    closeOnWallClockMs: Flags.int("close-on-wall-clock-ms", {
      description:
        "every MS, also close the windows whose grace has passed by the wall clock, so a quiet sensor's last window is emitted; for live readings only (older ones become late)",
      min: 1,
      max: 86_400_000,
      whenAbsent: "off: windows close as event time passes"
    })
  },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topics = Sensors.named(o.prefix)
      const thresholds = { warning: o.warningAt, critical: o.criticalAt }
      const problem = Sensors.checkThresholds(thresholds)
      if (problem !== undefined) return yield* new ConfigInvalid({ reason: `--warning-at, --critical-at: ${problem}` })
      const { partitions } = yield* kafka.describeTopic(topics.readings.name)
      const topology = Sensors.topology({
        topics,
        partitions,
        thresholds,
        alert: { count: o.alertCount, every: `${o.alertEveryMs} millis` },
        graceMs: o.graceMs,
        ...Option.match(o.closeOnWallClockMs, {
          onNone: () => ({}),
          onSome: (ms) => ({ closeOnWallClock: `${ms} millis` })
        })
      })
      const options: Runner.RunOptions = { ...runOptions(o, topology.name), stateStore: stateStore(o.stateDir) }
      yield* Effect.logInfo(
        `running sensor-pipeline on ${o.brokers} in group ${options.groupId} (${o.guarantee}): ${topics.readings.name} (${partitions} partitions) -> ${topics.enriched.name}, ${topics.aggregates.name} (60 s windows, grace ${o.graceMs} ms; late: ${topics.late}); dead letters: ${topics.deadLetters}; stores sensor-counts, sensor-windows`
      )
      return yield* Runner.run(topology, options).pipe(withProgress())
    }).pipe(Effect.provide(Layer.mergeAll(Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }), httpLayer(o))))
).pipe(
  describedWithExitCodes(
    "The sensor metrics pipeline: validate, enrich with a status, count per sensor, 60 s tumbling windows",
    "Reads --topic-prefix + sensor-readings (fill it with `sluice produce sensors`); writes enriched-readings,",
    "window-aggregates (count, min, max, mean temperature per sensor and window, once, after the grace), sensor-late",
    "(readings after their window closed) and sensor-dead-letter (malformed readings, with the reason). Stores:",
    "sensor-counts (readings per sensor, at /tables/sensor-counts with --http) and sensor-windows (open windows)."
  )
)

/** `sluice run ./topology.ts`: a user's topology (RunModule.ts) with the flags of the built-in ones. */
const runModule = (
  path: string,
  o: Command.Command.Config.Infer<typeof common> & { readonly stateDir: Option.Option<string> }
) =>
  Effect.gen(function* () {
    const topology = yield* RunModule.load(path, { prefix: o.prefix })
    const options: Runner.RunOptions = { ...runOptions(o, topology.name), stateStore: stateStore(o.stateDir) }
    yield* Effect.logInfo(
      `running ${topology.name} from ${path} (${o.guarantee}) on ${o.brokers} in group ${options.groupId}: ` +
        `${topology.inputs.map((i) => i.topic).join(", ")}`
    )
    return yield* Runner.run(topology, options).pipe(withProgress())
  }).pipe(Effect.provide(Layer.mergeAll(Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }), httpLayer(o))))

const builtIn = ["user-events", "click-enrichment", "counts", "sensor-pipeline"]

export const command = Flags.command(
  "run",
  {
    module: Argument.String("topology").pipe(
      Argument.withDescription(
        "a module that exports a topology (`export default Topology.make(...)`), e.g. ./topology.ts; or one of the built-in topologies below"
      ),
      Argument.optional
    ),
    ...common,
    // Optional here, so that --pipeline can tell a broker given from none (the file's bootstrap_servers then).
    brokers: Flag.String("brokers").pipe(
      Flag.withDescription(
        "Kafka bootstrap servers (host:port,...), or 'memory' for the in-memory broker (default: SLUICE_BROKERS, else the pipeline's bootstrap_servers with --pipeline, else 127.0.0.1:9092)"
      ),
      Flag.withFallbackConfig(Config.String("SLUICE_BROKERS")),
      Flag.optional
    ),
    stateDir,
    pipeline: Flag.String("pipeline").pipe(
      Flag.withDescription("run the pipeline declared in this JSON file (its format: sluice pipeline --help)"),
      Flag.optional
    )
  },
  (o) =>
    Option.match(o.pipeline, {
      onSome: (file) =>
        Option.isSome(o.module)
          ? Effect.fail(new ConfigInvalid({ reason: "give a topology or --pipeline FILE, not both" }))
          : // Loaded when used: a pipeline brings the Redis, ClickHouse and Postgres clients.
            Effect.flatMap(
              Effect.promise(() => import("./RunPipeline.ts")),
              (m) => m.run(file, o)
            ),
      onNone: () => runTopology(o.module, { ...o, brokers: Option.getOrElse(o.brokers, () => Flags.defaultBrokers) })
    })
).pipe(
  describedWithExitCodes(
    "Run a topology against Kafka until SIGINT or SIGTERM (graceful: drain, commit, leave)",
    "The topology is a built-in one (below) or a module of yours: sluice run ./topology.ts runs what it exports",
    "(default or `topology`) with the same flags; sluice run --pipeline FILE runs a pipeline declared in JSON",
    "(seed 004's request; the format and its checks: sluice pipeline --help).",
    "Each run joins the consumer group --group; by default that is --topic-prefix followed by the topology's name",
    "(staging-user-events for --topic-prefix staging-), so deployments under different prefixes never share a group;",
    "a pipeline's is --topic-prefix followed by its group_id. With --pipeline and a Postgres output without an",
    "aggregation, --guarantee exactly_once writes rows and offsets in one Postgres transaction (sluice_offsets) and",
    "tasks start from there, as events-to-postgres does; with an aggregation it is Kafka's (sluice pipeline --help)."
  ),
  Command.withSubcommands([
    userEvents,
    clickEnrichment,
    counts,
    sensorPipeline,
    RunEvents.command(),
    RunClickstream.command()
  ])
)

/** A module path, or nothing: what `sluice run` does without --pipeline. */
function runTopology(
  module: Option.Option<string>,
  o: Command.Command.Config.Infer<typeof common> & { readonly stateDir: Option.Option<string> }
) {
  return Option.match(module, {
    onNone: () =>
      Effect.fail(
        new ConfigInvalid({
          reason: `name a topology: a module path (./topology.ts), --pipeline FILE, or one of ${builtIn.join(", ")} (sluice run --help)`
        })
      ),
    onSome: (path) =>
      RunModule.isModulePath(path)
        ? runModule(path, o)
        : Effect.fail(
            new ConfigInvalid({
              reason: `unknown topology ${path}: expected a module path (starting with ./ or /, or ending in .ts/.js) or one of ${builtIn.join(", ")}`
            })
          )
  })
}
