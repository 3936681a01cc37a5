/** A JSON pipeline's ClickHouse table (src/PipelineClickHouse.ts): its DDL, and the check of one that exists. */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as PipelineClickHouse from "../src/PipelineClickHouse.ts"
import * as Spec from "../src/PipelineSpec.ts"
import * as PipelineTable from "../src/PipelineTable.ts"

const seedText = readFileSync(new URL("../../../examples/seed-004-pipeline.json", import.meta.url), "utf8")
const seed = Result.getOrThrow(Spec.parse(seedText))

describe("the ClickHouse table", () => {
  it("is created with the pipeline's columns, ordered by key and window", () => {
    const ddl = PipelineClickHouse.ddl(seed, "aggregates")
    assert.include(ddl, "CREATE TABLE IF NOT EXISTS aggregates (")
    assert.include(ddl, "  session_duration_ms UInt64,\n  enriched_events UInt64\n)")
    assert.include(
      ddl,
      "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(window_start)\nORDER BY (key, window_start)"
    )
  })

  it("of events: the Kafka timestamp in seconds and its milliseconds, ordered by the source position", () => {
    const p = Result.getOrThrow(Spec.decode({ ...JSON.parse(seedText), processing: {} }))
    assert.deepStrictEqual(PipelineTable.columns(p, PipelineTable.clickhouse), [
      { name: "kafka_timestamp", type: "DateTime" },
      { name: "kafka_timestamp_ms", type: "UInt16" },
      { name: "key", type: "Nullable(String)" },
      { name: "event", type: "String" },
      { name: "source_topic", type: "String" },
      { name: "source_partition", type: "UInt32" },
      { name: "source_offset", type: "UInt64" }
    ])
    assert.include(
      PipelineClickHouse.ddl(p, "events"),
      "PARTITION BY toYYYYMM(kafka_timestamp)\nORDER BY (source_topic, source_partition, source_offset)"
    )
  })

  it("that exists with columns that do not fit is refused, naming them", () => {
    const fits = PipelineTable.columns(seed, PipelineTable.clickhouse)
    assert.isUndefined(PipelineClickHouse.mismatch(seed, "t", [...fits, { name: "extra", type: "String" }]))
    const problem = PipelineClickHouse.mismatch(seed, "t", [
      ...fits.filter((c) => c.name !== "unique_users" && c.name !== "event_count"),
      { name: "event_count", type: "String" }
    ])
    assert.include(problem, "ClickHouse table t exists with columns that do not fit the pipeline")
    assert.include(problem, "unique_users is missing (the pipeline writes UInt64)")
    assert.include(problem, "event_count is String (the pipeline writes UInt64)")
  })
})
