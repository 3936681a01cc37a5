/** `sluice pipeline validate` and `sluice run --pipeline` (src/Pipeline.ts, src/RunPipeline.ts) on good and bad files. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Main from "@sluice/core/Main"
import * as PipelineSpec from "@sluice/processors/PipelineSpec"
import { Cause, Effect, Exit, Option, Predicate, Result } from "effect"
import { TestConsole } from "effect/testing"
import { afterAll } from "vitest"
import { main } from "../src/main.ts"
import * as RunPipeline from "../src/RunPipeline.ts"

const seedFile = "examples/seed-004-pipeline.json"
const dir = mkdtempSync(join(tmpdir(), "sluice-pipeline-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

/** What `sluice <argv>` printed on stdout and stderr, and its exit code. */
const sluice = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const out = (yield* TestConsole.logLines).length
    const err = (yield* TestConsole.errorLines).length
    const exit = yield* Effect.exit(main(argv))
    const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.none()
    const code = Exit.isSuccess(exit)
      ? Main.exitCodes.ok
      : Option.isSome(error) && Predicate.hasProperty(error.value, "exitCode")
        ? Number(error.value.exitCode)
        : Main.exitCodes.failed
    return {
      stdout: (yield* TestConsole.logLines).slice(out).join("\n"),
      stderr: (yield* TestConsole.errorLines).slice(err).join("\n"),
      code
    }
  })

const bad = JSON.stringify({
  pipeline_name: "clickstream_analytics",
  type: "kafka_consumer",
  config: { bootstrap_servers: "localhost:9092", topics: ["clickstream"], enable_auto_commit: true },
  processing: { aggregation: { window_size_seconds: 60, metrics: ["event_count", "sessions"] } },
  output: { type: "clickhouse", table: "aggregates", batch_szie: 1000 }
})

describe("sluice pipeline validate", () => {
  it.effect("says OK and what the seed's pipeline will do", () =>
    Effect.gen(function* () {
      const { stdout, code } = yield* sluice(["pipeline", "validate", seedFile])
      assert.strictEqual(code, 0)
      assert.include(stdout, `OK: ${seedFile} is a valid pipeline, clickstream_analytics:`)
      assert.include(stdout, "read     clickstream from localhost:9092 in group clickstream_processor")
      assert.include(stdout, "looked up in Redis at user:profile:<user_id> (a string of JSON or a hash")
      assert.include(stdout, "60 s tumbling windows of event time (timestamp) per record key")
      assert.include(stdout, "write    ClickHouse clickstream_aggregates (created if absent: window_start DateTime")
    })
  )

  it.effect("--json: the resolved pipeline, its table and columns", () =>
    Effect.gen(function* () {
      const { stdout, code } = yield* sluice(["pipeline", "validate", seedFile, "--json"])
      assert.strictEqual(code, 0)
      const doc = JSON.parse(stdout)
      assert.strictEqual(doc.ok, true)
      assert.strictEqual(doc.pipeline.groupId, "clickstream_processor")
      assert.strictEqual(doc.table, "clickstream_aggregates")
      assert.strictEqual(doc.late_topic, "clickstream_analytics.late")
      assert.deepStrictEqual(
        doc.columns.map((c: { readonly name: string }) => c.name),
        ["window_start", "window_end", "key", "event_count", "unique_users", "session_duration_ms", "enriched_events"]
      )
    })
  )

  const postgres = (name: string, processing?: unknown) => {
    const seed = JSON.parse(readFileSync(seedFile, "utf8"))
    return file(
      name,
      JSON.stringify({
        ...seed,
        ...(processing === undefined ? {} : { processing }),
        output: { type: "postgres", table: "clickstream_aggregates", schema: "analytics" }
      })
    )
  }

  it.effect("a Postgres output: its table, columns and key, and what each guarantee means for it", () =>
    Effect.gen(function* () {
      const windows = yield* sluice(["pipeline", "validate", postgres("pg.json")])
      assert.strictEqual(windows.code, 0, windows.stderr)
      assert.include(
        windows.stdout,
        "write    Postgres analytics.clickstream_aggregates (DATABASE_URL; created if absent: window_start timestamptz not null, window_end timestamptz not null, key text not null, event_count int8 not null"
      )
      assert.include(windows.stdout, "primary key (key, window_start)); 1000 rows per insert")
      assert.match(
        windows.stdout,
        /deliver +at_least_once \(the default\): .*a row written again inserts nothing \(primary key, ON CONFLICT DO NOTHING\)/
      )
      assert.match(
        windows.stdout,
        /exactly_once \(--guarantee exactly_once\): the windows' state, late events, dead letters and input offsets in one Kafka transaction per commit/
      )
      const example = yield* sluice(["pipeline", "validate", "examples/pipeline-postgres.json"])
      assert.strictEqual(example.code, 0, example.stderr)
      assert.include(example.stdout, "write    Postgres public.clickstream_aggregates (DATABASE_URL;")
      const events = yield* sluice(["pipeline", "validate", postgres("pg-events.json", {}), "--json"])
      const doc = JSON.parse(events.stdout)
      assert.strictEqual(doc.database, "Postgres")
      assert.strictEqual(doc.table, "analytics.clickstream_aggregates")
      assert.deepStrictEqual(doc.key, ["source_topic", "source_partition", "source_offset"])
      assert.deepStrictEqual(doc.columns[1], { name: "key", type: "text", nullable: true })
      const text = yield* sluice(["pipeline", "validate", postgres("pg-events2.json", {})])
      assert.include(
        text.stdout,
        "exactly_once (--guarantee exactly_once): rows and the consumed offsets in one Postgres transaction (analytics.sluice_offsets); tasks start from those offsets"
      )
    })
  )

  it.effect("an invalid file: every error with its path, exit code 2", () =>
    Effect.gen(function* () {
      const path = file("bad.json", bad)
      const { stderr, code } = yield* sluice(["pipeline", "validate", path])
      assert.strictEqual(code, Main.exitCodes.usage)
      assert.include(stderr, `error: ${path} is not a valid pipeline (3 errors):`)
      assert.include(stderr, "\n  config.enable_auto_commit: found true; expected false (or leave it out)")
      assert.include(stderr, '\n  processing.aggregation.metrics[1]: found "sessions"')
      assert.include(stderr, "\n  output.batch_szie: unknown field (found 1000); the fields allowed here: type, table")
    })
  )

  it.effect("--json on an invalid file: {ok: false, errors}, exit code 2", () =>
    Effect.gen(function* () {
      const { stdout, code } = yield* sluice(["pipeline", "validate", file("bad2.json", bad), "--json"])
      assert.strictEqual(code, Main.exitCodes.usage)
      const doc = JSON.parse(stdout)
      assert.strictEqual(doc.ok, false)
      assert.deepStrictEqual(
        doc.errors.map((e: { readonly path: string }) => e.path),
        ["config.enable_auto_commit", "processing.aggregation.metrics[1]", "output.batch_szie"]
      )
    })
  )

  it.effect("a file that is not JSON, or not there, says so", () =>
    Effect.gen(function* () {
      const broken = yield* sluice(["pipeline", "validate", file("broken.json", '{\n  "pipeline_name": "x",,\n}')])
      assert.strictEqual(broken.code, Main.exitCodes.usage)
      assert.include(broken.stderr, "not JSON: Expected double-quoted property name at line 2, column 24")
      const missing = yield* sluice(["pipeline", "validate", join(dir, "absent.json")])
      assert.strictEqual(missing.code, Main.exitCodes.usage)
      assert.include(missing.stderr, "cannot read")
      assert.include(missing.stderr, "ENOENT")
    })
  )

  it.effect("--help explains the format with the seed's example", () =>
    Effect.gen(function* () {
      for (const argv of [["pipeline"], ["pipeline", "validate"]]) {
        const { stdout } = yield* sluice([...argv, "--help"])
        assert.include(stdout, '{"pipeline_name": "clickstream_analytics", "type": "kafka_consumer",')
        assert.match(stdout, /auto_offset_reset +earliest \| latest: where a group without committed offsets starts/)
        assert.match(stdout, /enable_auto_commit +false or absent: Sluice commits offsets itself/)
        assert.include(stdout, "every one is\n  reported, with its JSON path")
        assert.include(stdout, '{"type": "postgres", "table": T, "schema": S, ...}')
        assert.include(stdout, "--guarantee exactly_once with a Postgres output and no\n  aggregation writes the rows")
        assert.include(stdout, "a string of JSON or a hash")
      }
    })
  )
})

describe("sluice run --pipeline", () => {
  const flags = (over: Partial<RunPipeline.RunFlags> = {}): RunPipeline.RunFlags => ({
    brokers: Option.none(),
    prefix: "",
    group: Option.none(),
    shutdownTimeoutMs: 5_000,
    http: Option.none(),
    metricsPort: Option.none(),
    guarantee: "at_least_once",
    commitIntervalMs: Option.none(),
    stateDir: Option.none(),
    ...over
  })
  const seed = Result.getOrThrow(PipelineSpec.parse(readFileSync(seedFile, "utf8")))

  it("reads where the file says, in its group, from where auto_offset_reset says, max_poll_records a step", () => {
    const r = RunPipeline.resolve(seed, flags())
    assert.strictEqual(r.brokers, "localhost:9092")
    assert.strictEqual(r.group, "clickstream_processor")
    const options = r.options("clickstream_analytics")
    assert.strictEqual(options.groupId, "clickstream_processor")
    assert.strictEqual(options.fromBeginning, true)
    assert.strictEqual(options.maxStepRecords, 500)
    const latest = RunPipeline.resolve({ ...seed, autoOffsetReset: "latest", maxPollRecords: 50_000 }, flags())
    assert.strictEqual(latest.options("x").fromBeginning, false)
    assert.strictEqual(latest.options("x").maxStepRecords, 50_000)
    assert.strictEqual(latest.options("x").maxHeldRecords, 100_000)
  })

  it("--brokers, --group and --topic-prefix change what they say they change", () => {
    const prefixed = RunPipeline.resolve(seed, flags({ prefix: "staging-" }))
    assert.strictEqual(prefixed.group, "staging-clickstream_processor")
    const given = RunPipeline.resolve(
      seed,
      flags({ brokers: Option.some("b:1"), group: Option.some("g"), prefix: "p-" })
    )
    assert.strictEqual(given.brokers, "b:1")
    assert.strictEqual(given.group, "g")
    assert.strictEqual(given.options("x").groupId, "g")
    assert.strictEqual(
      RunPipeline.resolve({ ...seed, brokers: undefined }, flags()).brokers,
      RunPipeline.defaultBrokers
    )
  })

  it("--guarantee exactly_once runs Postgres's transaction without windows, Kafka's with them", () => {
    const guarantee = (p: PipelineSpec.Pipeline) =>
      RunPipeline.resolve(p, flags({ guarantee: "exactly_once" })).options("x").guarantee
    const postgres = { type: "postgres", table: "t", schema: "public", batchSize: 1, flushIntervalMs: 10 } as const
    assert.strictEqual(guarantee(seed), "exactly_once")
    assert.strictEqual(guarantee({ ...seed, output: postgres }), "exactly_once")
    assert.strictEqual(guarantee({ ...seed, output: postgres, aggregation: undefined }), "at_least_once")
    assert.strictEqual(RunPipeline.resolve(seed, flags()).options("x").guarantee, "at_least_once")
  })

  it.effect("refuses an invalid file before connecting to anything, exit code 2", () =>
    Effect.gen(function* () {
      const { stderr, code } = yield* sluice(["run", "--pipeline", file("bad3.json", bad), "--brokers", "memory"])
      assert.strictEqual(code, Main.exitCodes.usage)
      assert.include(stderr, "is not a valid pipeline (3 errors)")
      assert.include(stderr, "output.batch_szie: unknown field")
    })
  )

  it.effect("takes a topology or a pipeline, not both", () =>
    Effect.gen(function* () {
      const { stderr, code } = yield* sluice(["run", "./topology.ts", "--pipeline", seedFile])
      assert.strictEqual(code, Main.exitCodes.usage)
      assert.include(stderr, "give a topology or --pipeline FILE, not both")
    })
  )

  it.effect("--help names --pipeline and where its format is explained", () =>
    Effect.gen(function* () {
      const { stdout } = yield* sluice(["run", "--help"])
      assert.match(
        stdout,
        /--pipeline string +run the pipeline declared in this JSON file \(its format: sluice pipeline --help\)/
      )
      assert.include(stdout, "sluice run --pipeline FILE runs a pipeline declared in JSON")
      assert.include(
        stdout,
        "--guarantee exactly_once writes rows and offsets in one Postgres transaction (sluice_offsets)"
      )
    })
  )
})
