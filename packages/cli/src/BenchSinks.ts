/**
 * `sluice bench sinks`: rows/s into each registered store at several batch sizes, under at-least-once and
 * exactly-once, in one run, every run verified (SinkBench.ts has the method). A store is a `SinkBench.Target`:
 * ClickHouse's joins Postgres's in `targets` below.
 */
import { ConfigInvalid } from "@sluice/core/Errors"
import { Console, Effect, FileSystem, Option, Path } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as SinkBench from "./SinkBench.ts"
import * as SinkBenchClickHouse from "./SinkBenchClickHouse.ts"
import * as SinkBenchPostgres from "./SinkBenchPostgres.ts"

/** Every store the benchmark can measure, in the order they run. */
export const targets: ReadonlyArray<SinkBench.Target> = [SinkBenchPostgres.target, SinkBenchClickHouse.target]

/** The issue's goal for Postgres, rows/s with batching. */
const postgresGoal = 50_000

const parseBatchSizes = (text: string): ReadonlyArray<number> | undefined => {
  const sizes = text.split(",").map((s) => Number(s.trim()))
  return sizes.length > 0 && sizes.every((s) => Number.isSafeInteger(s) && s >= 1 && s <= 100_000) ? sizes : undefined
}

export const command = Flags.command(
  "sinks",
  {
    target: Flag.Literals("target", [...targets.map((t) => t.name), "all"]).pipe(
      Flag.withDescription("store to measure, or all of them (default all)"),
      Flag.withDefault("all")
    ),
    rows: Flags.int("rows", {
      description: "rows per run (batch size 1 writes --rows-at-one)",
      min: 1,
      default: 200_000
    }),
    rowsAtOne: Flags.int("rows-at-one", {
      description: "rows of the batch-size-1 runs (one statement per row)",
      min: 1,
      default: 2_000
    }),
    rounds: Flags.int("rounds", {
      description: "measure every run this many times, alternating the modes; the median is reported",
      min: 1,
      max: 100,
      default: 1
    }),
    batchSizes: Flag.String("batch-sizes").pipe(
      Flag.withDescription("rows per write, comma-separated, each 1..100000 (default 1,100,1000,10000)"),
      Flag.withDefault("1,100,1000,10000")
    ),
    brokers: Flag.String("brokers").pipe(
      Flag.withDescription(
        "where the input comes from: 'memory' (default: the in-memory broker, so the figure is the sink's) or host:port,... of a Kafka cluster"
      ),
      Flag.withDefault("memory")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("one JSON object per run on stdout; progress on stderr"),
      Flag.withDefault(false)
    ),
    out: Flag.Directory("out").pipe(
      Flag.withDescription("also write results.json here (created if missing)"),
      Flag.optional
    )
  },
  (o) =>
    Effect.gen(function* () {
      const batchSizes = parseBatchSizes(o.batchSizes)
      if (batchSizes === undefined)
        return yield* new ConfigInvalid({ reason: `--batch-sizes must list integers 1..100000 (got ${o.batchSizes})` })
      const chosen = targets.filter((t) => o.target === "all" || t.name === o.target)
      const runId = Date.now().toString(36)
      const results: Array<SinkBench.Result> = []
      for (const [i, run] of SinkBench.plan(chosen, {
        batchSizes,
        rows: o.rows,
        rowsAtOne: o.rowsAtOne,
        rounds: o.rounds
      }).entries()) {
        const target = chosen.find((t) => t.name === run.target)!
        yield* Console.error(
          `bench: round ${run.round + 1}/${o.rounds} ${run.target} ${run.mode} batch ${run.batchSize}: ${run.rows} rows ...`
        )
        const result = yield* target.run(run, `bench-${runId}-${i}-`)
        results.push(result)
        yield* Console.error(
          `bench: ${run.target} ${run.mode} batch ${run.batchSize}: ${result.rowsPerSec} rows/s (${result.elapsedMs} ms), ${result.verified}`
        )
        if (o.json) yield* Console.log(SinkBench.jsonLine(result))
      }
      const summaries = SinkBench.summarise(results)
      const summary = [
        ...SinkBench.costOfExactlyOnce(summaries),
        ...[SinkBench.goal(summaries, "postgres", postgresGoal)].filter((g) => g !== undefined)
      ]
      if (!o.json) yield* Console.log(`${SinkBench.formatTable(summaries)}\n\n${summary.join("\n")}`)
      else yield* Console.error(summary.join("\n"))
      if (Option.isSome(o.out)) {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        yield* fs.makeDirectory(o.out.value, { recursive: true })
        const file = path.resolve(o.out.value, "results.json")
        yield* fs.writeFileString(
          file,
          `${JSON.stringify({ runId, brokers: o.brokers, batchSizes, rows: o.rows, rounds: o.rounds, summaries, summary, results }, null, 2)}\n`
        )
        yield* Console.error(`wrote ${file}`)
      }
      const wrong = results.filter((r) => !r.correct)
      if (wrong.length > 0)
        return yield* new SinkBench.SinkBenchFailed({
          reason: `${wrong.length} run(s) did not verify: ${wrong.map((r) => `${r.target} ${r.mode} batch ${r.batchSize}: ${r.verified}`).join("; ")}`
        })
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription(
    "Benchmark sinks: rows/s into each store (postgres, clickhouse) at batch sizes 1, 100, 1,000 and 10,000, at-least-once and exactly-once, every run verified (one row per input offset)"
  ),
  Command.withExamples([
    {
      command: "sluice bench sinks",
      description: "every store, every batch size, both modes (Postgres: DATABASE_URL)"
    },
    {
      command: "sluice bench sinks --target postgres --batch-sizes 1000,10000 --rows 500000 --json",
      description: "two batch sizes, more rows, one JSON object per run"
    }
  ])
)
