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
 * Every target × batch size × mode the target has; batch size 1 writes `rowsAtOne` rows (one statement per row is
 * slow, and its rate is clear from a few thousand), the others `rows`.
 */
export const plan = (
  targets: ReadonlyArray<Target>,
  settings: { readonly batchSizes: ReadonlyArray<number>; readonly rows: number; readonly rowsAtOne: number }
): ReadonlyArray<Run> =>
  targets.flatMap((t) =>
    t.modes.flatMap((mode) =>
      settings.batchSizes.map((batchSize) => ({
        target: t.name,
        mode,
        batchSize,
        rows: batchSize === 1 ? Math.min(settings.rows, settings.rowsAtOne) : settings.rows
      }))
    )
  )

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

export const formatTable = (results: ReadonlyArray<Result>): string => {
  const header = ["target", "mode", "batch", "rows", "elapsed ms", "rows/s", "verified"]
  const lines = results.map((r) => [
    r.target,
    r.mode,
    n(r.batchSize),
    n(r.rows),
    n(r.elapsedMs),
    n(r.rowsPerSec),
    r.verified
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const row = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  return [row(header), ...lines.map(row)].join("\n")
}

/** Per target and batch size: exactly-once rows/s as a share of at-least-once. */
export const costOfExactlyOnce = (results: ReadonlyArray<Result>): ReadonlyArray<string> =>
  results
    .filter((r) => r.mode === "at_least_once")
    .flatMap((alo) => {
      const eo = results.find(
        (r) => r.mode === "exactly_once" && r.target === alo.target && r.batchSize === alo.batchSize
      )
      if (eo === undefined) return []
      const share = eo.rowsPerSec / Math.max(1, alo.rowsPerSec)
      return [
        `${alo.target} batch ${n(alo.batchSize)}: exactly-once ${n(eo.rowsPerSec)} rows/s vs at-least-once ${n(alo.rowsPerSec)} (${(share * 100).toFixed(0)}%)`
      ]
    })

/** The goal: at least `rowsPerSec` into `target` with batching (batch size above 1), best run. */
export const goal = (results: ReadonlyArray<Result>, target: string, rowsPerSec: number): string | undefined => {
  const batched = results.filter((r) => r.target === target && r.batchSize > 1)
  if (batched.length === 0) return undefined
  const best = batched.reduce((a, b) => (b.rowsPerSec > a.rowsPerSec ? b : a))
  return `goal ${n(rowsPerSec)} rows/s into ${target} with batching: ${best.rowsPerSec >= rowsPerSec ? "met" : "NOT met"} (best ${n(best.rowsPerSec)} rows/s, ${best.mode}, batch ${n(best.batchSize)})`
}
