/**
 * `sluice bench join`: measured, verified runs of the click-enrichment join, one per strategy (table, rescan,
 * redis). Each run is `JoinRun.run` on fresh topics: a wrong or missing enriched record fails the benchmark, because
 * a fast wrong answer is not a result. Reports elapsed time, throughput, latency percentiles, peak RSS and load
 * time as a table or JSON lines, the ratios between strategies, and with `--out` a sweep over sizes drawn as an SVG.
 *
 * The rescan strategy re-reads the whole profile topic per click, so it runs on fewer events (`--rescan-events`)
 * and is compared per event (elapsed / events), which the output says wherever it happens.
 *
 * This module runs the command; the pure parts (plan, ratios, JSON line, table, outcome, chart) are in
 * BenchReport.ts.
 */
import { ConfigInvalid, messageOf } from "@sluice/core/Errors"
import { Kafka } from "@sluice/core/Kafka"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as JoinRun from "@sluice/processors/JoinRun"
import { Console, Effect, FileSystem, Option, Path } from "effect"
import { Command, Flag } from "effect/cli"
import * as BenchEos from "./BenchEos.ts"
import * as BenchReport from "./BenchReport.ts"
import * as BenchSinks from "./BenchSinks.ts"
import * as BenchState from "./BenchState.ts"
import * as BenchTable from "./BenchTable.ts"
import * as BenchWindows from "./BenchWindows.ts"
import * as BenchWorkers from "./BenchWorkers.ts"
import * as Flags from "./Flags.ts"
import * as Strategy from "./Strategy.ts"

interface Completed {
  readonly run: BenchReport.PlannedRun
  readonly report: JoinRun.JoinReport
}

const runOne = (run: BenchReport.PlannedRun, settings: BenchReport.Settings, runId: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const prefix = `bench-${runId}-${run.strategy}-${run.events}-`
    const topics = ClickEnrichment.named(prefix)
    yield* Console.error(
      `bench: ${run.strategy} starting: ${run.events} events, ${settings.users} users (topics ${prefix}*)`
    )
    let last = { at: Date.now(), done: 0 }
    const report = yield* JoinRun.run({
      strategy: run.strategy,
      events: run.events,
      users: settings.users,
      topics,
      lookup: Strategy.layer(run.strategy, topics),
      backlog: settings.backlog,
      ...(settings.rate === undefined ? {} : { ratePerSec: settings.rate }),
      onProgress: (done, total) =>
        Effect.suspend(() => {
          const now = Date.now()
          const perSec = ((done - last.done) * 1000) / Math.max(1, now - last.at)
          last = { at: now, done }
          return Console.error(BenchReport.progressLine(run.strategy, done, total, perSec))
        })
    }).pipe(
      Effect.tapError((e) => Console.error(`bench: ${run.strategy} (${run.events} events) failed: ${messageOf(e)}`)),
      // The topics are throwaway: dropping them keeps a shared broker tidy and frees the in-memory broker's heap
      // before the next run. The prefix also catches the dead-letter topic the runner creates.
      Effect.ensuring(
        kafka.listTopics.pipe(
          Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith(prefix)))),
          Effect.ignore
        )
      )
    )
    yield* Console.error(BenchReport.endLine(report))
    return report
  })

const writeOut = (
  dir: string,
  settings: BenchReport.Settings,
  context: { readonly brokers: string; readonly runId: string; readonly json: boolean },
  done: ReadonlyArray<Completed>
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { brokers, runId, json } = context
    const reports = done.map((c) => c.report)
    yield* fs.makeDirectory(dir, { recursive: true })
    const svgPath = path.resolve(dir, "join-elapsed.svg")
    const jsonPath = path.resolve(dir, "results.json")
    yield* fs.writeFileString(svgPath, BenchReport.chart(reports, { users: settings.users, brokers }))
    const results = {
      runId,
      brokers,
      settings,
      note:
        settings.rescanEvents < settings.events && BenchReport.strategiesFor(settings.strategy).includes("rescan")
          ? `rescan ran at most ${settings.rescanEvents} events: compare it per event (perEventMs, vsTable)`
          : null,
      runs: done.map((c) => ({
        headline: c.run.headline,
        ...BenchReport.jsonLine(c.report, c.run.requested, BenchReport.tableFor(c.run.requested, reports))
      }))
    }
    yield* fs.writeFileString(jsonPath, `${JSON.stringify(results, null, 2)}\n`)
    // With --json, stdout is reserved for the JSON lines.
    const say = json ? Console.error : Console.log
    yield* say(`wrote ${svgPath}\nwrote ${jsonPath}`)
  })

const bench = (
  settings: BenchReport.Settings,
  o: { readonly brokers: string; readonly json: boolean; readonly out: Option.Option<string> }
) =>
  Effect.gen(function* () {
    const runId = Date.now().toString(36)
    const done: Array<Completed> = []
    const headlines = () => done.filter((c) => c.run.headline).map((c) => c.report)
    yield* Effect.gen(function* () {
      for (const run of BenchReport.plan(settings)) {
        const report = yield* runOne(run, settings, runId)
        done.push({ run, report })
        if (o.json && run.headline) {
          yield* Console.log(
            BenchReport.jsonText(report, run.requested, BenchReport.tableFor(run.requested, headlines()))
          )
        }
      }
    }).pipe(
      // Also when a later strategy errors or the run is interrupted: what was measured is still worth showing.
      Effect.ensuring(
        Effect.suspend(() =>
          o.json || done.length === 0
            ? Effect.void
            : Console.log(BenchReport.formatSummary(headlines(), settings.events))
        )
      )
    )
    if (Option.isSome(o.out)) yield* writeOut(o.out.value, settings, { brokers: o.brokers, runId, json: o.json }, done)
    yield* Effect.fromResult(BenchReport.outcome(done.map((c) => c.report)))
  }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))

interface WorkersFlags {
  readonly strategy: BenchReport.StrategyChoice
  readonly events: number
  readonly users: number
  readonly workers: number
  readonly partitions: number
  readonly rate: Option.Option<number>
  readonly out: Option.Option<string>
  readonly brokers: string
  readonly json: boolean
}

/** `--workers N`: N `sluice run click-enrichment` processes in one group on a backlog (BenchWorkers.ts). */
const benchWorkers = (o: WorkersFlags) =>
  Effect.gen(function* () {
    // Checked before anything connects.
    const strategy = o.strategy
    if (strategy === "all")
      return yield* new ConfigInvalid({ reason: "--workers runs one strategy: give --strategy table, rescan or redis" })
    if (Option.isSome(o.rate) || Option.isSome(o.out))
      return yield* new ConfigInvalid({
        reason: "--workers measures a backlog shared by worker processes: it takes neither --rate nor --out"
      })
    if (o.brokers === "memory")
      return yield* new ConfigInvalid({
        reason: "--workers starts worker processes, which cannot reach this process's in-memory broker: give a Kafka"
      })
    return yield* runWorkers(strategy, o)
  })

const runWorkers = (strategy: Strategy.Strategy, o: WorkersFlags) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const prefix = `bench-${Date.now().toString(36)}-workers${o.workers}-`
    yield* Console.error(
      `bench: ${o.workers} worker(s), ${strategy}: ${o.events} events over ${o.partitions} partitions, ${o.users} users (topics ${prefix}*)`
    )
    let last = { at: Date.now(), done: 0 }
    const report = yield* BenchWorkers.run({
      strategy,
      events: o.events,
      users: o.users,
      workers: o.workers,
      partitions: o.partitions,
      brokers: o.brokers,
      sluice: BenchWorkers.thisSluice(),
      prefix,
      onProgress: (done, total) =>
        Effect.suspend(() => {
          const now = Date.now()
          const perSec = ((done - last.done) * 1000) / Math.max(1, now - last.at)
          last = { at: now, done }
          return Console.error(BenchReport.progressLine(strategy, done, total, perSec))
        })
    }).pipe(
      Effect.ensuring(
        kafka.listTopics.pipe(
          Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith(prefix)))),
          Effect.ignore
        )
      )
    )
    yield* Console.error(BenchReport.endLine(report))
    yield* o.json
      ? Console.log(JSON.stringify(BenchWorkers.jsonLine(report)))
      : Console.log(BenchWorkers.summary(report))
    yield* Effect.fromResult(BenchReport.outcome([report]))
  }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))

const join = Flags.command(
  "join",
  {
    strategy: Flag.Literals("strategy", [...Strategy.strategies, "all"]).pipe(
      Flag.withDescription(
        "join strategy to measure: table (in-memory, loaded once), rescan (re-reads the profile topic per click), redis (MGET per batch), or all (in that order); default table"
      ),
      Flag.withDefault("table")
    ),
    events: Flags.int("events", {
      description: "clicks to produce, enrich and verify per strategy",
      alias: "n",
      min: 1,
      default: 1_000
    }),
    users: Flags.int("users", {
      description: "user profiles, i.e. distinct users the clicks come from",
      min: 1,
      default: 100
    }),
    rescanEvents: Flags.int("rescan-events", {
      description:
        "clicks for the rescan strategy, which re-reads every profile per click, capped at --events; rescan is then compared per event",
      min: 1,
      whenAbsent: "min(--events, 200)"
    }),
    backlog: Flag.Boolean("backlog").pipe(
      Flag.withDescription(
        "produce all clicks before the topology starts, to measure its throughput; by default clicks are produced while it runs, so latency is the pipeline's"
      ),
      Flag.withDefault(false)
    ),
    rate: Flags.int("rate", {
      description:
        "live mode: produce the clicks at this many per second (in small sends every 10 ms), to measure latency under a steady load",
      min: 1,
      whenAbsent: "as fast as the producer goes"
    }),
    workers: Flags.int("workers", {
      description:
        "run the join as this many `sluice run click-enrichment` processes in one consumer group, on a backlog in a topic of --partitions partitions (produced before they start); reports first output to last, the rate once the group settled, and each worker's assignment, CPU and peak RSS",
      min: 1,
      max: 64,
      whenAbsent: "the topology runs in this process"
    }),
    partitions: Flags.int("partitions", {
      description: "partitions of the clicks and enriched topics of a --workers run",
      min: 1,
      max: 1_000,
      default: 12
    }),
    brokers: Flags.brokers,
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("print one JSON object per strategy, one per line, on stdout; progress stays on stderr"),
      Flag.withDefault(false)
    ),
    out: Flag.Directory("out").pipe(
      Flag.withDescription(
        "also sweep sizes (1/10, 1/4, 1/2 and all of the events) and write join-elapsed.svg and results.json here (created if missing)"
      ),
      Flag.optional
    )
  },
  (o) =>
    Option.isSome(o.workers)
      ? benchWorkers({ ...o, workers: o.workers.value })
      : bench(
          BenchReport.settings({
            strategy: o.strategy,
            events: o.events,
            users: o.users,
            rescanEvents: o.rescanEvents,
            sweep: Option.isSome(o.out),
            backlog: o.backlog,
            rate: o.rate
          }),
          o
        )
).pipe(
  Command.withDescription(
    "Benchmark the click-enrichment join per strategy on fresh topics (deleted afterwards): verify every output, report elapsed, throughput, latency p50/p99, peak RSS, load time and ratios; a wrong output fails the run"
  ),
  Command.withExamples([
    {
      command: "sluice bench join --strategy table --events 1000 --users 100 --brokers memory",
      description: "the table strategy on the in-memory broker: nothing to install"
    },
    {
      command: "sluice bench join --strategy all --events 10000 --users 1000",
      description: "all strategies against Kafka on 127.0.0.1:9092; rescan runs 200 events and is compared per event"
    },
    {
      command: "sluice bench join --strategy all --json > bench.jsonl",
      description: "one JSON object per strategy per line, for scripts"
    },
    {
      command: "sluice bench join --workers 3 --events 600000 --users 10000 --json",
      description: "three worker processes sharing a 12-partition backlog: the group's throughput and start-up"
    },
    {
      command: "sluice bench join --strategy all --events 20000 --out bench-results",
      description: "a sweep of sizes, charted in bench-results/join-elapsed.svg, every run in results.json"
    }
  ])
)

export const command = Command.make("bench").pipe(
  Command.withDescription("Benchmarks whose outputs are verified, not just timed"),
  Command.withSubcommands([
    join,
    BenchTable.command,
    BenchState.command,
    BenchEos.command,
    BenchSinks.command,
    BenchWindows.command
  ])
)
