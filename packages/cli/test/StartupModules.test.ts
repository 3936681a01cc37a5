/**
 * What `sluice` loads: a command loads what it uses and not the clients, benchmarks or other commands it does not
 * (start-up time, issue #13). The CLI runs in a child process (the TypeScript sources, as in the repository) under
 * a hook that records every module it loads.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"

const repo = fileURLToPath(new URL("../../..", import.meta.url))

/** The modules `sluice <args>` loaded, as paths relative to the repository. */
const modulesOf = (
  args: ReadonlyArray<string>
): { readonly modules: ReadonlyArray<string>; readonly output: string } => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-modules-"))
  try {
    const file = join(dir, "modules.txt")
    const run = spawnSync(
      join(repo, "node_modules/.bin/node"),
      [
        "--conditions=@sluice/source",
        "--import",
        join(repo, "packages/cli/test/fixtures/record-modules.ts"),
        join(repo, "packages/cli/src/bin.ts"),
        ...args
      ],
      { cwd: repo, env: { ...process.env, SLUICE_RECORD_MODULES: file, NO_COLOR: "1" }, timeout: 60_000 }
    )
    const modules = readFileSync(file, "utf8")
      .split("\n")
      .filter((url) => url.startsWith("file://"))
      .map((url) => fileURLToPath(url).slice(repo.length))
    return { modules, output: `${run.stdout}${run.stderr}` }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Modules the table strategy's worker never uses. */
const unused = [
  /node_modules\/ioredis\//,
  /node_modules\/redis\//,
  /node_modules\/@redis\//,
  /node_modules\/@clickhouse\//,
  /node_modules\/@effect\/sql-pg\//,
  /node_modules\/pg\//,
  /NodeHttpServer/,
  /packages\/core\/src\/(Http|Postgres|PostgresSink|ClickHouse|ClickHouseSink)\.ts$/,
  /packages\/cli\/src\/(Bench\w*|SinkBench\w*|Produce\w*|Admin|Inspect|Demo|RunEventsWorker|RunClickstreamWorker)\.ts$/,
  /packages\/processors\/src\/(EventsToPostgres|ClickstreamSessions|ClickstreamTables)\.ts$/
]

describe("sluice loads what a command uses", () => {
  it("run click-enrichment --strategy table: Kafka, the runner and its topology, no other client or command", () => {
    // On the in-memory broker the table's topic does not exist: the run fails once its table starts loading, by
    // which time it has loaded everything a table-strategy worker does.
    const { modules, output } = modulesOf(["run", "click-enrichment", "--strategy", "table", "--brokers", "memory"])
    assert.match(output, /user_profiles does not exist/)
    for (const used of ["packages/cli/src/Run.ts", "packages/core/src/Runner.ts", "packages/core/src/KafkaJs.ts"])
      assert.include(modules, used)
    assert.include(modules, "packages/processors/src/ClickEnrichment.ts")
    const loadedButUnused = modules.filter((m) => unused.some((pattern) => pattern.test(m)))
    assert.deepStrictEqual(loadedButUnused, [])
  })

  it("sluice --help still loads and lists every subcommand", () => {
    const { modules, output } = modulesOf(["--help"])
    for (const name of ["demo", "produce", "run", "inspect", "topics", "groups", "bench"])
      assert.match(output, new RegExp(`\\n +${name} +\\S`))
    assert.include(modules, "packages/cli/src/Bench.ts")
  })
})
