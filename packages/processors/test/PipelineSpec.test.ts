/** The pipeline file's schema (src/PipelineSpec.ts): the seed's request, the defaults, and every kind of error. */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as Spec from "../src/PipelineSpec.ts"

export const seedFile = new URL("../../../examples/seed-004-pipeline.json", import.meta.url)
const seedText = readFileSync(seedFile, "utf8")
const seed: Record<string, unknown> = JSON.parse(seedText)

const problems = (input: unknown) => {
  const result = Spec.decode(input)
  assert.isTrue(Result.isFailure(result), "expected the file to be invalid")
  return Result.isFailure(result) ? result.failure : []
}

const valid = (input: unknown) => {
  const result = Spec.decode(input)
  if (Result.isFailure(result)) assert.fail(Spec.formatProblems(result.failure))
  return Result.getOrThrow(result)
}

/** The seed's request with `path` set to `value` (`undefined` deletes it). */
const edit = (path: ReadonlyArray<string>, value: unknown): Record<string, unknown> => {
  const copy: Record<string, unknown> = structuredClone(seed)
  let at: Record<string, unknown> = copy
  for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>
  const last = path[path.length - 1]!
  if (value === undefined) delete at[last]
  else at[last] = value
  return copy
}

describe("the seed's request", () => {
  it("is the file as the seed makes it, byte for byte", () => {
    assert.strictEqual(
      createHash("sha256").update(seedText).digest("hex"),
      "b9562cf5b763513964dfe2f118255b076689886cc39aa654319b64bef8eebcc5"
    )
  })

  it("validates, and means what it says", () => {
    const parsed = Spec.parse(seedText)
    assert.isTrue(Result.isSuccess(parsed))
    assert.deepStrictEqual(Result.getOrThrow(parsed), {
      name: "clickstream_analytics",
      brokers: ["localhost:9092"],
      topics: ["clickstream"],
      groupId: "clickstream_processor",
      autoOffsetReset: "earliest",
      maxPollRecords: 500,
      enrichment: { keyField: "user_id", cachePrefix: "user:profile:" },
      aggregation: {
        windowSeconds: 60,
        metrics: ["event_count", "unique_users", "session_duration"],
        graceSeconds: 10,
        timestampField: "timestamp",
        userField: "user_id"
      },
      output: { table: "clickstream_aggregates", type: "clickhouse", batchSize: 1000, flushIntervalMs: 5000 }
    })
  })
})

describe("what a file may leave out or write its own way", () => {
  it("optional fields take the documented defaults", () => {
    const p = valid({
      pipeline_name: "minimal",
      type: "kafka_consumer",
      config: { topics: ["t"] },
      output: { type: "clickhouse", table: "t" }
    })
    assert.deepStrictEqual(p, {
      name: "minimal",
      brokers: undefined,
      topics: ["t"],
      groupId: "minimal",
      autoOffsetReset: Spec.defaults.auto_offset_reset,
      maxPollRecords: Spec.defaults.max_poll_records,
      enrichment: undefined,
      aggregation: undefined,
      output: {
        table: "t",
        type: "clickhouse",
        batchSize: Spec.defaults.batch_size,
        flushIntervalMs: Spec.defaults.flush_interval_ms
      }
    })
    assert.deepStrictEqual(valid(edit(["processing", "enrichment", "cache_prefix"], undefined)).enrichment, {
      keyField: "user_id",
      cachePrefix: ""
    })
  })

  it("topics may be one string, servers a comma-separated string or an array", () => {
    assert.deepStrictEqual(valid(edit(["config", "topics"], "clickstream")).topics, ["clickstream"])
    assert.deepStrictEqual(valid(edit(["config", "bootstrap_servers"], "a:1, b:2")).brokers, ["a:1", "b:2"])
    assert.deepStrictEqual(valid(edit(["config", "bootstrap_servers"], ["a:1", "b:2,c:3"])).brokers, [
      "a:1",
      "b:2",
      "c:3"
    ])
  })

  it("a Postgres output: its table in the schema output.schema, public by default", () => {
    assert.deepStrictEqual(valid(edit(["output"], { type: "postgres", table: "aggregates" })).output, {
      type: "postgres",
      table: "aggregates",
      schema: Spec.defaults.schema,
      batchSize: Spec.defaults.batch_size,
      flushIntervalMs: Spec.defaults.flush_interval_ms
    })
    assert.strictEqual(Spec.defaults.schema, "public")
    assert.deepStrictEqual(
      valid(
        edit(["output"], {
          type: "postgres",
          table: "aggregates",
          schema: "analytics",
          batch_size: 500,
          flush_interval_ms: 200
        })
      ).output,
      { type: "postgres", table: "aggregates", schema: "analytics", batchSize: 500, flushIntervalMs: 200 }
    )
  })

  it("each processing stage is optional, and so is processing", () => {
    assert.isUndefined(valid(edit(["processing"], undefined)).aggregation)
    const raw = valid(edit(["processing"], {}))
    assert.isUndefined(raw.enrichment)
    assert.isUndefined(raw.aggregation)
    const enrichedOnly = valid(edit(["processing", "aggregation"], undefined))
    assert.isDefined(enrichedOnly.enrichment)
    assert.isUndefined(enrichedOnly.aggregation)
  })
})

describe("an invalid file", () => {
  const cases: ReadonlyArray<
    readonly [what: string, path: ReadonlyArray<string>, value: unknown, at: string, says: RegExp]
  > = [
    [
      "a misspelt field",
      ["output", "batch_szie"],
      100,
      "output.batch_szie",
      /unknown field \(found 100\); the fields allowed here: type, table, batch_size, flush_interval_ms/
    ],
    [
      "a wrong type",
      ["output", "flush_interval_ms"],
      "5000",
      "output.flush_interval_ms",
      /found "5000"; expected number/
    ],
    [
      "a number out of range",
      ["config", "max_poll_records"],
      0,
      "config.max_poll_records",
      /found 0; expected a whole number from 1 to 100000/
    ],
    [
      "a window that is not whole seconds",
      ["processing", "aggregation", "window_size_seconds"],
      1.5,
      "processing.aggregation.window_size_seconds",
      /found 1.5; expected an integer/
    ],
    [
      "auto-commit",
      ["config", "enable_auto_commit"],
      true,
      "config.enable_auto_commit",
      /found true; expected false \(or leave it out\): Sluice commits offsets itself, only once the rows they caused are in the output/
    ],
    [
      "an unknown metric",
      ["processing", "aggregation", "metrics"],
      ["event_count", "unique_users", "sessions"],
      "processing.aggregation.metrics[2]",
      /found "sessions"; expected "event_count" \| "unique_users" \| "session_duration"/
    ],
    [
      "a metric twice",
      ["processing", "aggregation", "metrics"],
      ["event_count", "event_count"],
      "processing.aggregation.metrics",
      /expected each metric once/
    ],
    [
      "no metric",
      ["processing", "aggregation", "metrics"],
      [],
      "processing.aggregation.metrics",
      /found \[\]; expected at least one metric/
    ],
    [
      "an enrichment that does not exist",
      ["processing", "enrichment", "type"],
      "http_lookup",
      "processing.enrichment.type",
      /found "http_lookup"; expected "redis_lookup"/
    ],
    [
      "an output that does not exist",
      ["output", "type"],
      "mysql",
      "output.type",
      /^found "mysql"; expected "clickhouse" \| "postgres"$/
    ],
    [
      "an output without a type",
      ["output", "type"],
      undefined,
      "output.type",
      /missing: this field is required \("clickhouse" \| "postgres"\)/
    ],
    [
      "an output that is not an object",
      ["output"],
      "postgres",
      "output",
      /found "postgres"; expected an object whose "type" is "clickhouse" \(with table, batch_size, flush_interval_ms\) or "postgres"/
    ],
    [
      "a schema for ClickHouse",
      ["output", "schema"],
      "analytics",
      "output.schema",
      /unknown field \(found "analytics"\); the fields allowed here: type, table, batch_size, flush_interval_ms$/
    ],
    ["a pipeline type that does not exist", ["type"], "http", "type", /expected "kafka_consumer"/],
    [
      "an offset reset Sluice does not have",
      ["config", "auto_offset_reset"],
      "none",
      "config.auto_offset_reset",
      /found "none"; expected "earliest" \| "latest"/
    ],
    ["a missing field", ["output", "table"], undefined, "output.table", /missing: this field is required/],
    [
      "a server without a port",
      ["config", "bootstrap_servers"],
      "localhost",
      "config.bootstrap_servers",
      /found "localhost"; expected host:port with a port from 1 to 65535/
    ],
    [
      "a topic name Kafka refuses",
      ["config", "topics"],
      ["click stream"],
      "config.topics[0]",
      /found "click stream"; expected a topic/
    ],
    ["a topic twice", ["config", "topics"], ["a", "a"], "config.topics", /expected each topic once/],
    [
      "topics of a wrong type",
      ["config", "topics"],
      5,
      "config.topics",
      /found 5; expected a topic name or an array of them/
    ],
    [
      "a table name that is not an identifier",
      ["output", "table"],
      "click-aggregates",
      "output.table",
      /expected a table name/
    ]
  ]

  /** The seed's request with a Postgres output: `t`, with `fields` (`undefined` leaves a field out). */
  const postgres = (fields: Record<string, unknown>) =>
    edit(
      ["output"],
      Object.fromEntries(Object.entries({ type: "postgres", table: "t", ...fields }).filter(([, v]) => v !== undefined))
    )
  const postgresCases: ReadonlyArray<
    readonly [what: string, output: Record<string, unknown>, at: string, says: RegExp]
  > = [
    [
      "a Postgres field misspelt",
      { shema: "analytics" },
      "output.shema",
      /unknown field \(found "analytics"\); the fields allowed here: type, table, schema, batch_size, flush_interval_ms/
    ],
    [
      "a Postgres table with its schema",
      { table: "analytics.aggregates" },
      "output.table",
      /found "analytics.aggregates"; expected a Postgres table name \(its schema goes in output.schema\): lowercase letters, digits and _/
    ],
    [
      "a Postgres table in capitals",
      { table: "Aggregates" },
      "output.table",
      /found "Aggregates"; expected a Postgres table name/
    ],
    ["a Postgres table name too long", { table: "t".repeat(64) }, "output.table", /at most 63 characters/],
    [
      "the offsets table as the output",
      { table: "sluice_offsets" },
      "output.table",
      /found "sluice_offsets"; expected another name than sluice_offsets, the table where Sluice keeps offsets/
    ],
    [
      "a Postgres schema that is not a name",
      { schema: "my schema" },
      "output.schema",
      /found "my schema"; expected a Postgres schema name: lowercase letters/
    ],
    [
      "a Postgres batch out of range",
      { batch_size: 0 },
      "output.batch_size",
      /expected a whole number from 1 to 100000/
    ],
    ["a Postgres output without a table", { table: undefined }, "output.table", /missing: this field is required/]
  ]
  for (const [what, output, at, says] of postgresCases) {
    it(`${what}: names the path, what was found and what is allowed`, () => {
      const found = problems(postgres(output))
      assert.lengthOf(found, 1, Spec.formatProblems(found))
      assert.strictEqual(found[0]!.path, at)
      assert.match(found[0]!.message, says)
    })
  }

  for (const [what, path, value, at, says] of cases) {
    it(`${what}: names the path, what was found and what is allowed`, () => {
      const found = problems(edit(path, value))
      assert.lengthOf(found, 1, Spec.formatProblems(found))
      assert.strictEqual(found[0]!.path, at)
      assert.match(found[0]!.message, says)
    })
  }

  it("reports every error of the file at once", () => {
    const broken = edit(["output"], { type: "postgres", table: "T", batch_szie: 1 })
    const config = broken.config as Record<string, unknown>
    config.enable_auto_commit = true
    config.max_poll_records = -1
    const aggregation = (broken.processing as Record<string, Record<string, unknown>>).aggregation!
    aggregation.metrics = ["event_count", "sessions"]
    const found = problems(broken)
    assert.deepStrictEqual(
      found.map((p) => p.path),
      [
        "config.enable_auto_commit",
        "config.max_poll_records",
        "processing.aggregation.metrics[1]",
        "output.batch_szie",
        "output.table"
      ]
    )
  })

  it("that is not JSON says where the syntax error is", () => {
    const at = (text: string) => {
      const result = Spec.parse(text)
      return Result.isFailure(result) ? result.failure.map((p) => p.message) : []
    }
    assert.deepStrictEqual(at('{\n  "a": 1,\n}'), [
      "not JSON: Expected double-quoted property name at line 3, column 1"
    ])
    assert.deepStrictEqual(at('{\n  "a": tru\n}'), ['not JSON: Unexpected token "\\n" at line 2, column 11'])
    assert.deepStrictEqual(at('{"a": 1'), ["not JSON: Expected ',' or '}' after property value at line 1, column 8"])
    assert.deepStrictEqual(at("  \n"), ["the file is empty: expected a JSON object"])
    assert.deepStrictEqual(at("[1]"), ["found [1]; expected object"])
  })
})

describe("formatPath", () => {
  it("writes paths as people do", () => {
    assert.strictEqual(
      Spec.formatPath(["processing", "aggregation", "metrics", 2]),
      "processing.aggregation.metrics[2]"
    )
    assert.strictEqual(Spec.formatPath(["config", "odd key"]), 'config["odd key"]')
    assert.strictEqual(Spec.formatPath([]), "")
  })
})
