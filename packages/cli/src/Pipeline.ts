/**
 * `sluice pipeline validate FILE [--json]`: checks a pipeline declared in JSON (processors' PipelineSpec.ts)
 * without running it, and prints what it will do or every error, each with its JSON path; and `load`, which
 * `sluice run --pipeline FILE` uses too. An invalid pipeline exits with code 2, like any invalid argument.
 */
import { readFileSync } from "node:fs"
import { ConfigInvalid } from "@sluice/core/Errors"
import * as Main from "@sluice/core/Main"
import * as Pipeline from "@sluice/processors/Pipeline"
import * as PipelineSpec from "@sluice/processors/PipelineSpec"
import * as PipelineSummary from "@sluice/processors/PipelineSummary"
import { Console, Effect, Result } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Report from "./Report.ts"

/** The format, for `--help`: effect/cli indents only a description's first line, so the rest is indented here. */
export const formatHelp = [
  "A pipeline file is one JSON object (seed 004's request):",
  "",
  '  {"pipeline_name": "clickstream_analytics", "type": "kafka_consumer",',
  '   "config": {"bootstrap_servers": "localhost:9092", "topics": ["clickstream"], "group_id": "clickstream_processor",',
  '              "auto_offset_reset": "earliest", "enable_auto_commit": false, "max_poll_records": 500},',
  '   "processing": {"enrichment": {"type": "redis_lookup", "key_field": "user_id", "cache_prefix": "user:profile:"},',
  '                  "aggregation": {"window_size_seconds": 60,',
  '                                  "metrics": ["event_count", "unique_users", "session_duration"]}},',
  '   "output": {"type": "clickhouse", "table": "clickstream_aggregates", "batch_size": 1000, "flush_interval_ms": 5000}}',
  "",
  "  pipeline_name        names the topology and the late-events topic <pipeline_name>.late (topic characters)",
  '  type                 "kafka_consumer"',
  "  config",
  "    bootstrap_servers  host:port[,host:port] or an array; --brokers or SLUICE_BROKERS override it",
  "    topics             a topic or an array of them (co-partitioned: the same partition count)",
  "    group_id           the consumer group (default pipeline_name); --group overrides it",
  `    auto_offset_reset  earliest | latest: where a group without committed offsets starts (default ${PipelineSpec.defaults.auto_offset_reset})`,
  "    enable_auto_commit false or absent: Sluice commits offsets itself, once their rows are written",
  `    max_poll_records   the most records a task processes in one step, 1..100000 (default ${PipelineSpec.defaults.max_poll_records})`,
  "  processing           optional, and so is each stage",
  '    enrichment         {"type": "redis_lookup", "key_field": F, "cache_prefix": P}: the profile at Redis key',
  `                       P + event[F] (default P "${PipelineSpec.defaults.cache_prefix}"), a string of JSON or a hash; one MGET per batch`,
  "                       (HGETALL for the keys that are not strings), cached 60 s",
  '    aggregation        {"window_size_seconds": N, "metrics": [...], "grace_seconds": G, "timestamp_field": T,',
  '                       "user_field": U}: N s tumbling windows of event time T (ISO 8601 or epoch s/ms; default',
  `                       "${PipelineSpec.defaults.timestamp_field}") per record key, each written once after G s of grace (default ${PipelineSpec.defaults.grace_seconds});`,
  `                       metrics event_count, unique_users (distinct U, default "${PipelineSpec.defaults.user_field}"), session_duration (ms, last`,
  "                       minus first event time); without aggregation each event is a row",
  '  output               {"type": "clickhouse", "table": T, "batch_size": B, "flush_interval_ms": I}: rows into',
  `                       ClickHouse (CLICKHOUSE_URL) table T, created if absent; B rows per insert (default ${PipelineSpec.defaults.batch_size}), at`,
  `                       least every I ms (default ${PipelineSpec.defaults.flush_interval_ms}); or {"type": "postgres", "table": T, "schema": S, ...}:`,
  `                       rows into Postgres (DATABASE_URL) table S.T (default S "${PipelineSpec.defaults.schema}"; lowercase names), created`,
  "                       if absent, its primary key the row's identity: a row written again inserts nothing",
  "",
  "An input offset is committed once its rows are written. --guarantee exactly_once with a Postgres output and no",
  "aggregation writes the rows and the consumed offsets in one Postgres transaction (S.sluice_offsets), and tasks",
  "start from there; with an aggregation the windows' state is in Kafka, so the transaction is Kafka's (state, late",
  "events, dead letters, offsets) and a window's row emitted again after an abort inserts nothing.",
  "",
  "Unknown fields, wrong types, numbers out of range and unknown metrics or types are errors: every one is",
  "reported, with its JSON path. --topic-prefix P prefixes the topics, the group, the Redis keys and the table."
]

const describe = (...lines: ReadonlyArray<string>) => lines.join("\n").replace(/\n(?=.)/g, "\n  ")

/** The problems of `path`, or its pipeline. */
export const read = (path: string): Result.Result<PipelineSpec.Pipeline, ReadonlyArray<PipelineSpec.Problem>> => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (e) {
    return Result.fail([{ path: "", message: `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}` }])
  }
  return PipelineSpec.parse(text)
}

/** Every problem of the file at `path`, as one error (exit code 2). */
const invalid = (path: string, problems: ReadonlyArray<PipelineSpec.Problem>) =>
  new ConfigInvalid({
    reason: `${path} is not a valid pipeline (${problems.length} error${problems.length === 1 ? "" : "s"}):\n${PipelineSpec.formatProblems(
      problems
    ).replace(/^/gm, "  ")}`
  })

/** The pipeline of `path`, or a `ConfigInvalid` listing every problem. */
export const load = (path: string): Effect.Effect<PipelineSpec.Pipeline, ConfigInvalid> =>
  Effect.fromResult(Result.mapError(read(path), (problems) => invalid(path, problems)))

const validate = Flags.command(
  "validate",
  {
    file: Argument.String("file").pipe(Argument.withDescription("the pipeline's JSON file")),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "print one JSON document: {ok: true, pipeline, database, table, columns, key, late_topic} or {ok: false, errors: [{path, message}]}"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    Effect.gen(function* () {
      const result = read(o.file)
      if (Result.isSuccess(result)) {
        const p = result.success
        const names = Pipeline.named(p)
        const table = PipelineSummary.table(p, names)
        if (o.json)
          return yield* Console.log(
            JSON.stringify({
              ok: true,
              file: o.file,
              pipeline: p,
              database: table.database,
              table: table.name,
              columns: table.columns,
              key: table.key,
              late_topic: p.aggregation === undefined ? null : names.late
            })
          )
        return yield* Console.log(
          [
            `OK: ${o.file} is a valid pipeline, ${p.name}:`,
            ...PipelineSummary.summary(p, names).map((l) => `  ${l}`)
          ].join("\n")
        )
      }
      const problems = result.failure
      if (o.json) yield* Console.log(JSON.stringify({ ok: false, file: o.file, errors: problems }))
      else yield* Console.error(`error: ${invalid(o.file, problems).message}`)
      return yield* new Report.Reported({
        message: `${o.file} is not a valid pipeline`,
        exitCode: Main.exitCodes.usage
      })
    })
).pipe(
  Command.withDescription(
    describe(
      "Check a pipeline file without running it: print what it will do, or every error with its JSON path (exit code 2)",
      "",
      ...formatHelp
    )
  ),
  Command.withShortDescription("Check a pipeline file without running it")
)

export const command = Command.make("pipeline").pipe(
  Command.withDescription(
    describe(
      "Pipelines declared in JSON: `sluice pipeline validate FILE` checks one, `sluice run --pipeline FILE` runs it",
      "",
      ...formatHelp
    )
  ),
  Command.withShortDescription("Pipelines declared in JSON: validate one (run it with sluice run --pipeline)"),
  Command.withSubcommands([validate])
)
