/**
 * A JSON pipeline's Postgres table (src/PipelinePostgres.ts): its DDL (types, NOT NULL, the primary key), and the
 * check of one that exists: types, nullability, columns it would have to write, and its unique keys.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as PipelinePostgres from "../src/PipelinePostgres.ts"
import * as Spec from "../src/PipelineSpec.ts"
import * as PipelineTable from "../src/PipelineTable.ts"

const seedFile: Record<string, unknown> = JSON.parse(
  readFileSync(new URL("../../../examples/seed-004-pipeline.json", import.meta.url), "utf8")
)
const pipeline = (processing: unknown) =>
  Result.getOrThrow(
    Spec.decode({ ...seedFile, processing, output: { type: "postgres", table: "aggregates", schema: "analytics" } })
  )
const windows = pipeline(seedFile.processing)
const events = pipeline({ enrichment: (seedFile.processing as Record<string, unknown>).enrichment })
const relations = PipelinePostgres.relations("analytics", "aggregates")

/** The table as the DDL makes it, as the catalog would describe it. */
const asCreated = (p: Spec.Pipeline): PipelinePostgres.Existing => ({
  columns: PipelineTable.fields(p).map((f) => ({
    name: f.name,
    type: PipelineTable.postgres.type(f),
    notNull: !f.nullable,
    hasDefault: false
  })),
  uniqueKeys: [[...PipelineTable.identity(p)].sort()]
})

describe("the Postgres table", () => {
  it("of windows: timestamptz bounds, int8 metrics, every column NOT NULL, primary key (key, window_start)", () => {
    assert.strictEqual(
      PipelinePostgres.ddl(windows, relations),
      [
        'CREATE TABLE IF NOT EXISTS "analytics"."aggregates" (',
        '  "window_start" timestamptz NOT NULL,',
        '  "window_end" timestamptz NOT NULL,',
        '  "key" text NOT NULL,',
        '  "event_count" int8 NOT NULL,',
        '  "unique_users" int8 NOT NULL,',
        '  "session_duration_ms" int8 NOT NULL,',
        '  "enriched_events" int8 NOT NULL,',
        '  PRIMARY KEY ("key", "window_start")',
        ")"
      ].join("\n")
    )
    assert.deepStrictEqual(relations, {
      schema: "analytics",
      name: "aggregates",
      table: "analytics.aggregates",
      offsets: "analytics.sluice_offsets"
    })
  })

  it("of events: jsonb event and profile, a nullable key, primary key the source position", () => {
    const ddl = PipelinePostgres.ddl(events, relations)
    assert.include(ddl, '  "kafka_timestamp" timestamptz NOT NULL,\n  "key" text,\n  "event" jsonb NOT NULL,')
    assert.include(ddl, '  "profile" jsonb,\n  "profile_found" bool NOT NULL,')
    assert.include(ddl, '  PRIMARY KEY ("source_topic", "source_partition", "source_offset")')
  })

  it("that exists as the DDL makes it fits, with more columns that need not be written too", () => {
    assert.isUndefined(PipelinePostgres.mismatch(windows, "t", asCreated(windows)))
    assert.isUndefined(PipelinePostgres.mismatch(events, "t", asCreated(events)))
    const created = asCreated(windows)
    assert.isUndefined(
      PipelinePostgres.mismatch(windows, "t", {
        columns: [
          ...created.columns,
          { name: "note", type: "text", notNull: false, hasDefault: false },
          { name: "id", type: "int8", notNull: true, hasDefault: true }
        ],
        uniqueKeys: [...created.uniqueKeys, ["id"].concat(PipelineTable.identity(windows))]
      })
    )
  })

  it("that does not fit is refused, naming each column and key at fault", () => {
    const created = asCreated(events)
    const problem = PipelinePostgres.mismatch(events, "analytics.t", {
      columns: [
        ...created.columns.flatMap((c) =>
          c.name === "profile_found"
            ? []
            : c.name === "source_offset"
              ? [{ ...c, type: "int4" }]
              : c.name === "key"
                ? [{ ...c, notNull: true }]
                : [c]
        ),
        { name: "id", type: "int8", notNull: true, hasDefault: false }
      ],
      uniqueKeys: [["lookup_key"]]
    })
    assert.include(problem, "Postgres table analytics.t exists with columns that do not fit the pipeline: ")
    assert.include(problem, "profile_found is missing (the pipeline writes bool)")
    assert.include(problem, "source_offset is int4 (the pipeline writes int8)")
    assert.include(problem, "key is NOT NULL (the pipeline writes null there)")
    assert.include(problem, "id is NOT NULL without a default (the pipeline does not write it)")
    assert.include(
      problem,
      "no primary key or unique constraint on (source_topic, source_partition, source_offset) (a row written again would be a second row)"
    )
    assert.include(problem, "the unique key on (lookup_key) would refuse rows the pipeline writes")
    assert.include(problem, "Drop it (it is created at startup), or name another table in output.table")

    // A unique key on more columns than the identity lets a window's row written again be a second row.
    const wider = PipelinePostgres.mismatch(windows, "t", {
      columns: [...asCreated(windows).columns, { name: "id", type: "int8", notNull: true, hasDefault: true }],
      uniqueKeys: [["id", "key", "window_start"]]
    })
    assert.include(wider, "no primary key or unique constraint on (key, window_start)")
  })
})
