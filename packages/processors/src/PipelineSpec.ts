/**
 * A pipeline declared in JSON (seed 004's request): what the file may say, checked with Schema, and what it means
 * once its defaults are filled in. `Pipeline.ts` builds the topology from the result.
 *
 * ```json
 * { "pipeline_name": "clickstream_analytics", "type": "kafka_consumer",
 *   "config": { "bootstrap_servers": "localhost:9092", "topics": ["clickstream"], "group_id": "clickstream_processor",
 *               "auto_offset_reset": "earliest", "enable_auto_commit": false, "max_poll_records": 500 },
 *   "processing": { "enrichment": { "type": "redis_lookup", "key_field": "user_id", "cache_prefix": "user:profile:" },
 *                   "aggregation": { "window_size_seconds": 60,
 *                                    "metrics": ["event_count", "unique_users", "session_duration"] } },
 *   "output": { "type": "clickhouse", "table": "clickstream_aggregates", "batch_size": 1000,
 *               "flush_interval_ms": 5000 } }
 * ```
 *
 * or `"output": { "type": "postgres", "table": "clickstream_aggregates", "schema": "analytics", ... }`.
 *
 * Liberal where users of the seed differ for no harm: `topics` and `bootstrap_servers` may be one string
 * (comma-separated for servers) or an array; optional fields have the defaults in `defaults`; `processing` and
 * each of its stages may be left out. Strict where it matters: an unknown field is an error (a misspelt
 * `batch_szie` is not ignored), so are a wrong type, a number out of range, an unknown metric, stage or output type,
 * and `enable_auto_commit: true` (Sluice commits offsets itself, after the rows they caused are written). Every
 * error names its JSON path, what was found and what is allowed, and all of a file's errors are reported at once.
 */
import * as ClickHouse from "@sluice/core/ClickHouse"
import * as Kafka from "@sluice/core/Kafka"
import { Predicate, Result, Schema, SchemaAST, SchemaIssue } from "effect"

// ---------------------------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------------------------

export const metrics = ["event_count", "unique_users", "session_duration"] as const
export type Metric = (typeof metrics)[number]

const message = (text: string) => ({ message: text })

const Name = (what: string) =>
  Schema.String.check(
    Schema.isPattern(/^[A-Za-z0-9._-]{1,249}$/, message(`${what} of 1 to 249 of the characters A-Z a-z 0-9 . _ -`))
  )

const NonEmpty = Schema.String.check(Schema.isNonEmpty(message("a non-empty string")))

const Int = (minimum: number, maximum: number, unit = "") =>
  Schema.Int.check(
    Schema.isBetween({ minimum, maximum }, message(`a whole number from ${minimum} to ${maximum}${unit}`))
  )

const Servers = Schema.String.check(
  Schema.makeFilter((s: string) => Result.isSuccess(Kafka.parseBrokers(s)), {
    message: "host:port with a port from 1 to 65535, several separated by commas (e.g. localhost:9092)"
  })
)

const Config = Schema.Struct({
  /** `host:port`, several comma-separated or as an array. Default: `--brokers` / `SLUICE_BROKERS`. */
  bootstrap_servers: Schema.optionalKey(
    Schema.Union([
      Servers,
      Schema.Array(Servers).check(Schema.isMinLength(1, message("at least one server")))
    ]).annotate(message("host:port, several separated by commas, or an array of them"))
  ),
  topics: Schema.Union([
    Name("a topic"),
    Schema.Array(Name("a topic")).check(
      Schema.isMinLength(1, message("at least one topic")),
      Schema.isUnique(message("each topic once"))
    )
  ]).annotate({ expected: "a topic name or an array of them" }),
  group_id: Schema.optionalKey(NonEmpty),
  auto_offset_reset: Schema.optionalKey(Schema.Literals(["earliest", "latest"])),
  enable_auto_commit: Schema.optionalKey(
    Schema.Literal(false).annotate(
      message(
        "false (or leave it out): Sluice commits offsets itself, only once the rows they caused are in the output " +
          "(auto-commit would commit records whose rows a crash then loses); for exactly-once use --guarantee exactly_once"
      )
    )
  ),
  max_poll_records: Schema.optionalKey(Int(1, 100_000))
})

const Enrichment = Schema.Struct({
  type: Schema.Literal("redis_lookup"),
  key_field: NonEmpty,
  cache_prefix: Schema.optionalKey(Schema.String)
})

const Aggregation = Schema.Struct({
  window_size_seconds: Int(1, 604_800, " (seconds, up to 7 days)"),
  metrics: Schema.Array(Schema.Literals(metrics)).check(
    Schema.isMinLength(1, message("at least one metric")),
    Schema.isUnique(message("each metric once"))
  ),
  grace_seconds: Schema.optionalKey(Int(0, 604_800, " (seconds)")),
  timestamp_field: Schema.optionalKey(NonEmpty),
  user_field: Schema.optionalKey(NonEmpty)
})

const batching = {
  batch_size: Schema.optionalKey(Int(1, 100_000)),
  flush_interval_ms: Schema.optionalKey(Int(10, 3_600_000, " (ms)"))
}

const ClickHouseOutput = Schema.Struct({
  type: Schema.Literal("clickhouse"),
  table: Schema.String.check(
    Schema.makeFilter((t: string) => ClickHouse.isIdentifier(t), {
      message: "a table name: letters, digits and _, not starting with a digit, optionally database.table"
    })
  ),
  ...batching
})

/**
 * Lowercase, because Sluice quotes the names it writes: a mixed-case name would then be one that psql finds only
 * when quoted too. 63 characters is Postgres's limit (a longer name is cut silently).
 */
const PostgresName = (what: string) =>
  Schema.String.check(
    Schema.isPattern(
      /^[a-z_][a-z0-9_]{0,62}$/,
      message(`${what}: lowercase letters, digits and _, not starting with a digit, at most 63 characters`)
    )
  )

const PostgresOutput = Schema.Struct({
  type: Schema.Literal("postgres"),
  table: PostgresName("a Postgres table name (its schema goes in output.schema)").check(
    Schema.makeFilter((t: string) => t !== "sluice_offsets", {
      message: "another name than sluice_offsets, the table where Sluice keeps offsets (--guarantee exactly_once)"
    })
  ),
  schema: Schema.optionalKey(PostgresName("a Postgres schema name")),
  ...batching
})

const Output = Schema.Union([ClickHouseOutput, PostgresOutput]).annotate({
  expected:
    'an object whose "type" is "clickhouse" (with table, batch_size, flush_interval_ms) or "postgres" (with table, schema, batch_size, flush_interval_ms)'
})

export const PipelineFile = Schema.Struct({
  /** Names the topology, and the topic of late events (`<name>.late`): a topic name's characters. */
  pipeline_name: Name("a name"),
  type: Schema.Literal("kafka_consumer"),
  config: Config,
  processing: Schema.optionalKey(
    Schema.Struct({ enrichment: Schema.optionalKey(Enrichment), aggregation: Schema.optionalKey(Aggregation) })
  ),
  output: Output
})
export type PipelineFile = typeof PipelineFile.Type

// ---------------------------------------------------------------------------------------------------------------
// What it means
// ---------------------------------------------------------------------------------------------------------------

/** The values of the optional fields when a file leaves them out. */
export const defaults = {
  /** Kafka's own default for a group without committed offsets. */
  auto_offset_reset: "latest",
  /** Kafka's (and kafka-python's) default. */
  max_poll_records: 500,
  cache_prefix: "",
  grace_seconds: 10,
  timestamp_field: "timestamp",
  user_field: "user_id",
  batch_size: 1_000,
  flush_interval_ms: 1_000,
  /** Of a Postgres output: Postgres's own default schema. */
  schema: "public"
} as const

export interface Pipeline {
  readonly name: string
  /** From `bootstrap_servers`; `undefined` when the file names none. */
  readonly brokers: ReadonlyArray<string> | undefined
  readonly topics: readonly [string, ...Array<string>]
  /** `group_id`, or the pipeline's name. */
  readonly groupId: string
  readonly autoOffsetReset: "earliest" | "latest"
  /** The most records a task processes in one step. */
  readonly maxPollRecords: number
  readonly enrichment: { readonly keyField: string; readonly cachePrefix: string } | undefined
  readonly aggregation:
    | {
        readonly windowSeconds: number
        readonly metrics: ReadonlyArray<Metric>
        readonly graceSeconds: number
        readonly timestampField: string
        readonly userField: string
      }
    | undefined
  readonly output: Output
}

/** Where rows go: a ClickHouse table (`CLICKHOUSE_URL`), or a Postgres table in `schema` (`DATABASE_URL`). */
export type Output =
  | {
      readonly type: "clickhouse"
      readonly table: string
      readonly batchSize: number
      readonly flushIntervalMs: number
    }
  | {
      readonly type: "postgres"
      readonly table: string
      readonly schema: string
      readonly batchSize: number
      readonly flushIntervalMs: number
    }

const servers = (s: string | ReadonlyArray<string>): ReadonlyArray<string> =>
  (typeof s === "string" ? [s] : s).flatMap((entry) => Result.getOrElse(Kafka.parseBrokers(entry), () => []))

/** The pipeline a valid file declares, its defaults filled in. */
export const resolve = (file: PipelineFile): Pipeline => {
  const { config, processing, output } = file
  const topics = typeof config.topics === "string" ? [config.topics] : config.topics
  const enrichment = processing?.enrichment
  const aggregation = processing?.aggregation
  return {
    name: file.pipeline_name,
    brokers: config.bootstrap_servers === undefined ? undefined : servers(config.bootstrap_servers),
    // The schema has checked that there is at least one.
    topics: [topics[0]!, ...topics.slice(1)],
    groupId: config.group_id ?? file.pipeline_name,
    autoOffsetReset: config.auto_offset_reset ?? defaults.auto_offset_reset,
    maxPollRecords: config.max_poll_records ?? defaults.max_poll_records,
    enrichment:
      enrichment === undefined
        ? undefined
        : { keyField: enrichment.key_field, cachePrefix: enrichment.cache_prefix ?? defaults.cache_prefix },
    aggregation:
      aggregation === undefined
        ? undefined
        : {
            windowSeconds: aggregation.window_size_seconds,
            metrics: aggregation.metrics,
            graceSeconds: aggregation.grace_seconds ?? defaults.grace_seconds,
            timestampField: aggregation.timestamp_field ?? defaults.timestamp_field,
            userField: aggregation.user_field ?? defaults.user_field
          },
    output: {
      table: output.table,
      ...(output.type === "postgres"
        ? { type: "postgres", schema: output.schema ?? defaults.schema }
        : { type: "clickhouse" }),
      batchSize: output.batch_size ?? defaults.batch_size,
      flushIntervalMs: output.flush_interval_ms ?? defaults.flush_interval_ms
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/** One thing wrong with a file: where (a JSON path, `""` for the whole document) and what. */
export interface Problem {
  readonly path: string
  readonly message: string
}

/** A JSON path as people write it: `processing.aggregation.metrics[2]`, `config["odd key"]`. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((p, i) =>
      typeof p === "number"
        ? `[${p}]`
        : /^[A-Za-z_][A-Za-z0-9_]*$/.test(String(p))
          ? `${i === 0 ? "" : "."}${String(p)}`
          : `[${JSON.stringify(String(p))}]`
    )
    .join("")

const shown = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

const found = (issue: { readonly input?: unknown }) => ("input" in issue ? `found ${shown(issue.input)}; ` : "")

/** Each message as `found <value>; expected <what is allowed>`, the value where Schema reports it. */
const formatter = SchemaIssue.makeFormatterStandardSchemaV1({
  leafHook: (issue) => {
    switch (issue._tag) {
      case "UnexpectedKey": {
        const allowed = SchemaAST.isObjects(issue.ast) ? issue.ast.propertySignatures.map((p) => String(p.name)) : []
        return `unknown field (${found(issue).slice(0, -2)}); the fields allowed here: ${allowed.join(", ")}`
      }
      case "MissingKey":
        return "missing: this field is required"
      case "InvalidType": {
        const annotated = issue.ast.annotations?.message
        return typeof annotated === "string"
          ? `${found(issue)}expected ${annotated}`
          : SchemaIssue.defaultLeafHook(issue)
      }
      default:
        return SchemaIssue.defaultLeafHook(issue)
    }
  },
  checkHook: (issue) => {
    const text = SchemaIssue.defaultCheckHook(issue)
    return text === undefined ? undefined : `${found(issue)}expected ${text}`
  }
})

/** Schema's own wording (`Expected "a" | "b", got "c"`), in the same order as the hooks'. */
const reworded = (text: string): string => {
  const m = /^Expected (.*), got (.*)$/s.exec(text)
  return m !== null ? `found ${m[2]}; expected ${m[1]}` : text.replace(/^Expected /, "expected ")
}

const outputTypes = [ClickHouseOutput, PostgresOutput].map((o) => o.fields.type.literal)

/**
 * Schema tells an output's kind by its `type` and reports the fields of that kind; an object of no kind it reports
 * as a whole. Said of its `type` instead, the field that is wrong.
 */
const outputType = (input: unknown, problem: Problem): Problem => {
  const output = Predicate.hasProperty(input, "output") ? input.output : undefined
  if (problem.path !== "output" || !Predicate.isObject(output) || Array.isArray(output)) return problem
  const allowed = outputTypes.map((t) => JSON.stringify(t)).join(" | ")
  return Predicate.hasProperty(output, "type")
    ? { path: "output.type", message: `found ${shown(output.type)}; expected ${allowed}` }
    : { path: "output.type", message: `missing: this field is required (${allowed})` }
}

/** Every problem Schema finds in `input` (already parsed JSON), or the pipeline. */
export const decode = (input: unknown): Result.Result<Pipeline, ReadonlyArray<Problem>> =>
  Result.mapBoth(
    Schema.decodeUnknownResult(PipelineFile, { errors: "all", onExcessProperty: "error", reportInput: true })(input),
    {
      onSuccess: resolve,
      onFailure: (error) =>
        formatter(error.issue).issues.map((i) =>
          outputType(input, {
            path: formatPath((i.path ?? []).map((p) => (typeof p === "object" ? p.key : p))),
            message: reworded(i.message)
          })
        )
    }
  )

/** Line and column (from 1) of a position in `text`. */
const lineColumn = (text: string, position: number) => {
  const before = text.slice(0, position).split("\n")
  return { line: before.length, column: before[before.length - 1]!.length + 1 }
}

/**
 * Where `JSON.parse` fails in `text`: V8 says so in most messages; where it does not (an unexpected token), the
 * longest prefix that is still JSON in the making ends there.
 */
const syntaxErrorAt = (text: string, message: string): number => {
  const at = /at position (\d+)/.exec(message)
  if (at !== null) return Number(at[1])
  if (/Unexpected end of JSON input/.test(message)) return text.length
  // A prefix is JSON in the making when it parses, or fails only at its end.
  const incomplete = (n: number) => {
    try {
      JSON.parse(text.slice(0, n))
      return true
    } catch (e) {
      const why = e instanceof Error ? e.message : ""
      return /Unexpected end of JSON input/.test(why) || /at position (\d+)/.exec(why)?.[1] === String(n)
    }
  }
  let low = 0
  let high = text.length
  while (low < high) {
    const mid = Math.ceil((low + high) / 2)
    if (incomplete(mid)) low = mid
    else high = mid - 1
  }
  return low
}

/** A file's text as a pipeline, or every problem it has (one, with its line and column, if it is not JSON). */
export const parse = (text: string): Result.Result<Pipeline, ReadonlyArray<Problem>> => {
  if (text.trim().length === 0) return Result.fail([{ path: "", message: "the file is empty: expected a JSON object" }])
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e)
    const { line, column } = lineColumn(text, syntaxErrorAt(text, why))
    // V8 adds the position (given here as line and column), or for a bad token the whole text.
    const detail = why
      .replace(/ in JSON at position \d+( \(line \d+ column \d+\))?/, "")
      .replace(/, ".*" is not valid JSON$/s, "")
      .replace(/token '([\s\S])'/, (_, c: string) => `token ${JSON.stringify(c)}`)
    return Result.fail([{ path: "", message: `not JSON: ${detail} at line ${line}, column ${column}` }])
  }
  return decode(json)
}

/** The problems as lines: `path: message` (the whole document's without a path). */
export const formatProblems = (problems: ReadonlyArray<Problem>): string =>
  problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("\n")
