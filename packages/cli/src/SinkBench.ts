/**
 * `sluice bench sinks`, the part every target shares: the plan (batch sizes × delivery modes per target), one timed
 * run of a sink topology, and the report (table, JSON lines, the cost of exactly-once, the goal).
 *
 * A target (SinkBenchPostgres.ts; ClickHouse registers one beside it in BenchSinks.ts) owns its tables and its
 * verification; `timed` owns the clock. A run produces its input first (a backlog on fresh topics), then runs the
 * topology with commits and interval flushes out of the way (every 30 s), so that rows are written when a task's
 * buffer holds `batchSize` rows, and once more by the stop that follows the last input record: elapsed is the
 * first batch processed → the last row written. A run whose rows do not verify fails the benchmark.
 */
import type { KafkaError } from "@sluice/core/Errors"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import type { ProducerRecord } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Topology from "@sluice/core/Topology"
import { Clock, Effect, Fiber, Metric, Schema } from "effect"

export type Mode = "at_least_once" | "exactly_once"

export class SinkBenchFailed extends Schema.TaggedError<SinkBenchFailed>()("SinkBenchFailed", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/** One planned run. */
export interface Run {
  /** Runs of the same target, mode and batch size are repeated in rounds (their median is reported). */
  readonly round: number
  readonly target: string
  readonly mode: Mode
  /** Rows per write (statement), and when a task's buffer is written. */
  readonly batchSize: number
  readonly rows: number
}

/** One measured run: one JSON line with `--json`. */
export interface Result extends Run {
  readonly elapsedMs: number
  readonly rowsPerSec: number
  /** What the target checked after the run: "50000 rows, one per input offset", or why it failed. */
  readonly verified: string
  readonly correct: boolean
}

/** A store `sluice bench sinks` writes to. */
export interface Target {
  readonly name: string
  readonly modes: ReadonlyArray<Mode>
  /** One run on fresh tables (dropped afterwards), its input on fresh topics under `prefix`. */
  readonly run: (run: Run, prefix: string) => Effect.Effect<Result, SinkBenchFailed, Kafka>
}

export const rate = (rows: number, ms: number): number => Math.round((rows / Math.max(1, ms)) * 1000)

/**
 * `rounds` rounds of every target × batch size × mode the target has, the modes of one batch size one after the
 * other (so that both see the machine in the same state), taking turns going first; batch size 1 writes `rowsAtOne` rows (one statement per
 * row is slow, and its rate is clear from a few thousand), the others `rows`.
 */
export const plan = (
  targets: ReadonlyArray<Target>,
  settings: {
    readonly batchSizes: ReadonlyArray<number>
    readonly rows: number
    readonly rowsAtOne: number
    readonly rounds: number
  }
): ReadonlyArray<Run> =>
  Array.from({ length: settings.rounds }, (_, round) =>
    targets.flatMap((t) =>
      settings.batchSizes.flatMap((batchSize) =>
        // The modes take turns going first, so that neither always runs on the machine the other left.
        (round % 2 === 0 ? t.modes : [...t.modes].reverse()).map((mode) => ({
          round,
          target: t.name,
          mode,
          batchSize,
          rows: batchSize === 1 ? Math.min(settings.rows, settings.rowsAtOne) : settings.rows
        }))
      )
    )
  ).flat()

/** The runs of one target, mode and batch size, summarised: the median rate and the range. */
export interface Summary {
  readonly target: string
  readonly mode: Mode
  readonly batchSize: number
  readonly rows: number
  readonly runs: number
  readonly medianRowsPerSec: number
  readonly minRowsPerSec: number
  readonly maxRowsPerSec: number
  readonly correct: boolean
  readonly verified: string
}

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2)
}

export const summarise = (results: ReadonlyArray<Result>): ReadonlyArray<Summary> => {
  const groups = new Map<string, Array<Result>>()
  for (const r of results) {
    const key = `${r.target}|${r.mode}|${r.batchSize}`
    const group = groups.get(key) ?? []
    group.push(r)
    groups.set(key, group)
  }
  return [...groups.values()].map((group) => {
    const rates = group.map((r) => r.rowsPerSec)
    const first = group[0]!
    const wrong = group.find((r) => !r.correct)
    return {
      target: first.target,
      mode: first.mode,
      batchSize: first.batchSize,
      rows: first.rows,
      runs: group.length,
      medianRowsPerSec: median(rates),
      minRowsPerSec: Math.min(...rates),
      maxRowsPerSec: Math.max(...rates),
      correct: wrong === undefined,
      verified: (wrong ?? first).verified
    }
  })
}

/** Rows a sink has written so far (Sink.ts counts them per sink name). */
export const rowsWritten = (sink: string) =>
  Effect.map(Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink })), (s) => Number(s.count))

/**
 * Produces `records` to `input` (3 partitions), runs `topology` until `written` has grown by `expected` and returns
 * the milliseconds from its first batch to then. The run stops once every record was handed to the topology; its
 * stop writes what the sinks hold.
 */
export const timed = <E, R>(options: {
  readonly topology: Topology.Topology<E, R>
  readonly input: string
  readonly records: ReadonlyArray<ProducerRecord>
  readonly written: Effect.Effect<number>
  readonly expected: number
  readonly groupId: string
}): Effect.Effect<number, E | Runner.RunError<E> | KafkaError | SinkBenchFailed, R | Kafka> =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: options.input, partitions: 3 }])
    for (let i = 0; i < options.records.length; i += 10_000) yield* kafka.send(options.records.slice(i, i + 10_000))
    const baseline = yield* options.written
    let firstBatch: number | undefined
    let handed = 0
    const topology = Topology.tapBatches(options.topology, (records) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        firstBatch ??= now
        handed += records.length
      })
    )
    const fiber = yield* Effect.forkChild(
      Runner.run(topology, {
        groupId: options.groupId,
        commitInterval: "30 seconds",
        commitEveryRecords: Number.MAX_SAFE_INTEGER,
        shutdownTimeout: "60 seconds"
      })
    )
    const wait = Effect.fnUntraced(function* (what: string, done: () => Effect.Effect<boolean>) {
      const deadline = Date.now() + 600_000
      while (!(yield* done())) {
        const exited = fiber.pollUnsafe()
        if (exited !== undefined) return yield* Fiber.join(fiber).pipe(Effect.andThen(Effect.never))
        if (Date.now() > deadline) return yield* new SinkBenchFailed({ reason: `timed out waiting until ${what}` })
        yield* Effect.sleep("5 millis")
      }
    })
    yield* wait("every record was processed", () => Effect.succeed(handed >= options.records.length))
    // The stop drains the tasks and writes every sink's buffer before its last commit.
    const stopping = yield* Effect.forkChild(Fiber.interrupt(fiber))
    yield* wait(`${options.expected} rows were written`, () =>
      Effect.map(options.written, (n) => n - baseline >= options.expected)
    )
    const end = yield* Clock.currentTimeMillis
    yield* Fiber.join(stopping)
    return end - (firstBatch ?? end)
  })

// ---------------------------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------------------------

const n = (x: number) => x.toLocaleString("en-US")

export const jsonLine = (r: Result): string => JSON.stringify(r)

export const formatTable = (summaries: ReadonlyArray<Summary>): string => {
  const header = ["target", "mode", "batch", "rows", "runs", "rows/s (median)", "min - max", "verified"]
  const lines = summaries.map((r) => [
    r.target,
    r.mode,
    n(r.batchSize),
    n(r.rows),
    String(r.runs),
    n(r.medianRowsPerSec),
    `${n(r.minRowsPerSec)} - ${n(r.maxRowsPerSec)}`,
    r.verified
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const row = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd()
  return [row(header), ...lines.map(row)].join("\n")
}

/** Per target and batch size: exactly-once's median rows/s as a share of at-least-once's. */
export const costOfExactlyOnce = (summaries: ReadonlyArray<Summary>): ReadonlyArray<string> =>
  summaries
    .filter((r) => r.mode === "at_least_once")
    .flatMap((alo) => {
      const eo = summaries.find(
        (r) => r.mode === "exactly_once" && r.target === alo.target && r.batchSize === alo.batchSize
      )
      if (eo === undefined) return []
      const share = eo.medianRowsPerSec / Math.max(1, alo.medianRowsPerSec)
      return [
        `${alo.target} batch ${n(alo.batchSize)}: exactly-once ${n(eo.medianRowsPerSec)} rows/s vs at-least-once ${n(alo.medianRowsPerSec)} (${(share * 100).toFixed(0)}%)`
      ]
    })

/** The goal: at least `rowsPerSec` into `target` with batching (batch size above 1), by the best median. */
export const goal = (summaries: ReadonlyArray<Summary>, target: string, rowsPerSec: number): string | undefined => {
  const batched = summaries.filter((r) => r.target === target && r.batchSize > 1)
  if (batched.length === 0) return undefined
  const best = batched.reduce((a, b) => (b.medianRowsPerSec > a.medianRowsPerSec ? b : a))
  return `goal ${n(rowsPerSec)} rows/s into ${target} with batching: ${best.medianRowsPerSec >= rowsPerSec ? "met" : "NOT met"} (best median ${n(best.medianRowsPerSec)} rows/s, ${best.mode}, batch ${n(best.batchSize)}, ${best.runs} run(s))`
}
