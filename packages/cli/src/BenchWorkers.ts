/**
 * `sluice bench join --workers N`: the click-enrichment join run by N worker processes that share one consumer
 * group, as it is deployed to scale out: each worker is `sluice run click-enrichment` (the same binary and Node as
 * this process), started at the same moment on a backlog in a topic of `--partitions` partitions (default 12).
 *
 * What one run does: fresh topics; the profiles, then every click, produced before any worker starts (so the
 * workers do not share the cores with the producer); the N workers spawned; once the output topic holds one record
 * per click, the workers' peak RSS and CPU time are read from /proc (Linux), they are stopped with SIGTERM (each must
 * exit 0), and every output is read back and verified like every other join run (`ClickData.verify`: each click
 * present with its user's name and city; duplicates, which at-least-once allows across a rebalance, are counted).
 *
 * Timing (every time is a record's timestamp, which the workers' producers set when they encode it, or this
 * process's clock; one machine):
 * - elapsedMs / eventsPerSec: first output to last output, the whole group's throughput, the rebalances while the
 *   workers join included.
 * - firstOutputMs: the workers' spawn to the first output: start-up (Node, modules, connecting, the table load, the
 *   group join, the first step), the first worker's.
 * - settledMs / steadyEventsPerSec: the moment the last worker logged its last assignment (from then on the group
 *   did not change), from the first output; and the outputs after it per second until the last, the rate of all N
 *   workers at once.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { loadavg } from "node:os"
import { Kafka } from "@sluice/core/Kafka"
import * as Reader from "@sluice/core/Reader"
import * as Topic from "@sluice/core/Topic"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as JoinRun from "@sluice/processors/JoinRun"
import { Effect, Option, Result, Stream } from "effect"
import * as BenchReport from "./BenchReport.ts"
import type * as Strategy from "./Strategy.ts"

export interface WorkersOptions {
  readonly strategy: Strategy.Strategy
  readonly events: number
  readonly users: number
  readonly workers: number
  readonly partitions: number
  readonly brokers: string
  /** How to start `sluice`: the executable and the arguments before the command, e.g. [node, ".../bin/sluice.js"]. */
  readonly sluice: ReadonlyArray<string>
  readonly prefix: string
  readonly onProgress?: (done: number, total: number) => Effect.Effect<void>
  /** Give up (and fail the run) after this long. Default 30 minutes. */
  readonly timeoutMs?: number
}

export interface WorkersReport extends JoinRun.JoinReport {
  readonly workers: number
  readonly partitions: number
  readonly firstOutputMs: number
  readonly settledMs: number
  readonly steadyEventsPerSec: number
  /** CPU time (user + system) of every worker, from its start until the last output was seen. */
  readonly workerCpuMs: ReadonlyArray<number>
  /** Peak RSS (VmHWM) of each worker. */
  readonly workerPeakRssMb: ReadonlyArray<number>
  /** The partitions of each worker's last "assigned" line: together, every partition of the input once. */
  readonly assignments: ReadonlyArray<ReadonlyArray<number>>
  /** How busy the machine's CPUs were, all processes (the broker's too), from the workers' start to the last output. */
  readonly machineBusyPct: number
  /** The machine's load averages (1, 5, 15 min) when the workers started: other work on the machine shows here. */
  readonly loadAvg: ReadonlyArray<number>
}

/** `sluice` as this process was started: the same Node (and its flags, e.g. the source condition) and entry. */
export const thisSluice = (): ReadonlyArray<string> => [process.execPath, ...process.execArgv, process.argv[1] ?? ""]

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences are control characters
const ansi = /\u001b\[[0-9;]*m/g
const assignedLine = /assigned \d+ partition\(s\): ([\d,]*) of /g

/** The partitions of the last "assigned N partition(s): ..." line of a worker's log. */
export const lastAssignment = (log: string): ReadonlyArray<number> => {
  let last: ReadonlyArray<number> = []
  for (const match of log.replace(ansi, "").matchAll(assignedLine))
    last = match[1] === "" ? [] : match[1]!.split(",").map(Number)
  return last
}

/** utime + stime of a process in ms, and its VmHWM in MB (Linux /proc; undefined elsewhere or once it is gone). */
const procStats = (pid: number): { readonly cpuMs: number; readonly peakRssMb: number } | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The fields after the command name (which may hold spaces), from field 3 (state) on: utime and stime are 14, 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const ticks = Number(fields[11]) + Number(fields[12])
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ on every architecture Node supports).
    return { cpuMs: ticks * 10, peakRssMb: hwm === null ? 0 : Math.round(Number(hwm[1]) / 1024) }
  } catch {
    return undefined
  }
}

/** All CPUs' busy and total time so far (Linux /proc/stat, in clock ticks), undefined elsewhere. */
const machineTicks = (): { readonly busy: number; readonly total: number } | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!
    const ticks = line.trim().split(/\s+/).slice(1).map(Number)
    const total = ticks.reduce((a, b) => a + b, 0)
    // idle and iowait are the 4th and 5th.
    return { busy: total - ticks[3]! - ticks[4]!, total }
  } catch {
    return undefined
  }
}

export const run = (options: WorkersOptions) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const topics = ClickEnrichment.named(options.prefix)
    const group = `${options.prefix}workers`
    yield* kafka.createTopics([
      ClickEnrichment.profilesSpec(topics),
      { name: topics.clicks.name, partitions: options.partitions },
      { name: topics.enriched.name, partitions: options.partitions }
    ])
    yield* kafka.send(ClickData.generateProfiles(options.users, topics))
    const clickOptions = { count: options.events, users: options.users, seed: 7, topics }
    const source = ClickData.clickSource(clickOptions)
    const producedAt = new Float64Array(options.events)
    for (let sent = 0; sent < options.events; sent += 5_000) {
      const now = Date.now()
      const chunk = source.take(5_000).map((r) => ({ ...r, timestamp: now }))
      yield* kafka.send(chunk)
      producedAt.fill(now, sent, sent + chunk.length)
    }

    const [command, ...before] = options.sluice
    const logs: Array<string> = []
    let lastAssignedAt = 0
    const startedAt = Date.now()
    const machineBefore = machineTicks()
    const load = loadavg().map((l) => Math.round(l * 100) / 100)
    const children = yield* Effect.acquireRelease(
      Effect.sync(() =>
        Array.from({ length: options.workers }, (_, i) => {
          const child = spawn(
            command!,
            [
              ...before,
              "run",
              "click-enrichment",
              "--strategy",
              options.strategy,
              "--brokers",
              options.brokers,
              "--topic-prefix",
              options.prefix,
              "--group",
              group
            ],
            { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } }
          )
          logs[i] = ""
          const onData = (chunk: Buffer) => {
            const text = chunk.toString("utf8")
            logs[i] += text
            if (text.includes("assigned ")) lastAssignedAt = Date.now()
          }
          child.stdout.on("data", onData)
          child.stderr.on("data", onData)
          return child
        })
      ),
      // Whatever happened, no worker outlives the run.
      (all) =>
        Effect.sync(() => {
          for (const child of all) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        })
    )
    const exits = children.map((child) =>
      Effect.callback<number | null>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) resume(Effect.succeed(child.exitCode))
        else child.on("exit", (code) => resume(Effect.succeed(code)))
      })
    )

    const deadline = startedAt + (options.timeoutMs ?? 30 * 60_000)
    let lastProgress = Date.now()
    while (true) {
      const done = (yield* kafka.offsets(topics.enriched.name)).reduce((n, p) => n + p.high - p.low, 0)
      if (done >= options.events) break
      const stopped = children.findIndex((child) => child.exitCode !== null || child.signalCode !== null)
      if (stopped >= 0)
        return yield* new JoinRun.JoinRunFailed({
          reason: `worker ${stopped + 1} stopped early (exit ${children[stopped]!.exitCode}): ${logs[stopped]!.slice(-2_000)}`
        })
      if (Date.now() > deadline)
        return yield* new JoinRun.JoinRunFailed({ reason: `timed out with ${done}/${options.events} enriched` })
      if (options.onProgress && Date.now() - lastProgress > 2_000) {
        lastProgress = Date.now()
        yield* options.onProgress(done, options.events)
      }
      yield* Effect.sleep("20 millis")
    }
    const stats = children.map((child) => (child.pid === undefined ? undefined : procStats(child.pid)))
    const machineAfter = machineTicks()
    for (const child of children) child.kill("SIGTERM")
    const codes: Array<number | null> = []
    for (const [i, exit] of exits.entries()) {
      // A worker's graceful stop is bounded by its --shutdown-timeout-ms (5 s) and a 2 s margin.
      const code = yield* Effect.timeoutOption(exit, "30 seconds")
      if (Option.isNone(code))
        return yield* new JoinRun.JoinRunFailed({
          reason: `worker ${i + 1} did not exit within 30 s of SIGTERM: ${logs[i]!.slice(-2_000)}`
        })
      codes.push(code.value)
    }
    const failed = codes.findIndex((code) => code !== 0)
    if (failed >= 0)
      return yield* new JoinRun.JoinRunFailed({
        reason: `worker ${failed + 1} exited with ${codes[failed]} on SIGTERM: ${logs[failed]!.slice(-2_000)}`
      })

    const outputs: Array<{ source: string; value: ClickEnrichment.EnrichedClick }> = []
    const stamps: Array<number> = []
    const latencies: Array<number> = []
    yield* Reader.readToEnd(topics.enriched.name).pipe(
      Stream.runForEach((records) =>
        Effect.sync(() => {
          for (const record of records) {
            stamps.push(record.timestamp)
            const decoded = Topic.decode(topics.enriched, record)
            if (Result.isFailure(decoded)) continue
            const { value } = decoded.success
            outputs.push({ source: String(value.timestamp), value })
            const index = source.indexOf(value.timestamp)
            if (index >= 0) latencies.push(record.timestamp - producedAt[index]!)
          }
        })
      )
    )
    stamps.sort((a, b) => a - b)
    latencies.sort((a, b) => a - b)
    const verification = ClickData.verify(ClickData.sentByTimestamp(clickOptions), outputs)
    const first = stamps[0] ?? startedAt
    const last = stamps[stamps.length - 1] ?? startedAt
    const elapsedMs = Math.max(1, last - first)
    const settledAt = Math.max(first, lastAssignedAt)
    const settledIndex = stamps.findIndex((t) => t >= settledAt)
    const afterSettled = settledIndex < 0 ? 0 : stamps.length - settledIndex
    return {
      ...JoinRun.report({
        strategy: options.strategy,
        events: options.events,
        users: options.users,
        verification,
        loadMs: 0,
        elapsedMs,
        latencies,
        peakRssMb: Math.max(0, ...stats.map((s) => s?.peakRssMb ?? 0)),
        outputs
      }),
      workers: options.workers,
      partitions: options.partitions,
      firstOutputMs: first - startedAt,
      settledMs: settledAt - first,
      steadyEventsPerSec: last > settledAt ? Math.round((afterSettled / (last - settledAt)) * 1000) : 0,
      workerCpuMs: stats.map((s) => s?.cpuMs ?? 0),
      workerPeakRssMb: stats.map((s) => s?.peakRssMb ?? 0),
      assignments: logs.map(lastAssignment),
      loadAvg: load,
      machineBusyPct:
        machineBefore === undefined || machineAfter === undefined || machineAfter.total === machineBefore.total
          ? 0
          : Math.round((100 * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total))
    } satisfies WorkersReport
  }).pipe(Effect.scoped)

/** The JSON line of a workers run: the join bench's line and what only such a run has. */
export const jsonLine = (report: WorkersReport) => ({
  ...BenchReport.jsonLine(report, report.events, undefined),
  workers: report.workers,
  partitions: report.partitions,
  firstOutputMs: report.firstOutputMs,
  settledMs: report.settledMs,
  steadyEventsPerSec: report.steadyEventsPerSec,
  workerCpuMs: report.workerCpuMs,
  workerPeakRssMb: report.workerPeakRssMb,
  assignments: report.assignments,
  machineBusyPct: report.machineBusyPct,
  loadAvg: report.loadAvg
})

/** The text summary of a workers run. */
export const summary = (report: WorkersReport): string =>
  [
    BenchReport.formatTable([report], report.events),
    "",
    `${report.workers} worker process(es) in one group, ${report.partitions} partitions; their last assignments: ${report.assignments.map((a) => `[${a.join(",")}]`).join(" ")}`,
    `first output ${report.firstOutputMs} ms after the workers started; the group settled ${report.settledMs} ms after the first output; ${report.steadyEventsPerSec} events/s from then on`,
    `worker CPU ms: ${report.workerCpuMs.join(", ")}; worker peak RSS MB: ${report.workerPeakRssMb.join(", ")}; the machine's CPUs ${report.machineBusyPct}% busy meanwhile (every process, the broker's too), load average ${report.loadAvg.join(" ")} at the start`,
    "elapsed: first enriched record -> last (producer timestamps), the backlog produced before the workers started;",
    "peak RSS: the largest worker's (VmHWM); CPU and RSS from /proc (0 where it is not available)"
  ].join("\n")
