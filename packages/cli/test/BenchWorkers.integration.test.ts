/**
 * `sluice bench join --workers N` against the real broker (SLUICE_BROKERS, default 127.0.0.1:9092), run as a user
 * types it: N `sluice run click-enrichment` processes in one group on a backlog, every output verified, the
 * partitions shared between the workers.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"

const repo = fileURLToPath(new URL("../../..", import.meta.url))
const brokers = process.env.SLUICE_BROKERS ?? "127.0.0.1:9092"

describe("sluice bench join --workers (real broker)", () => {
  it("two workers share the partitions of the backlog and every output is verified", { timeout: 180_000 }, () => {
    const run = spawnSync(
      `${repo}node_modules/.bin/node`,
      [
        "--conditions=@sluice/source",
        `${repo}packages/cli/src/bin.ts`,
        "bench",
        "join",
        "--workers",
        "2",
        "--partitions",
        "4",
        "--events",
        "20000",
        "--users",
        "500",
        "--brokers",
        brokers,
        "--json"
      ],
      { cwd: repo, encoding: "utf8", timeout: 170_000, env: { ...process.env, NO_COLOR: "1" } }
    )
    assert.strictEqual(run.status, 0, run.stderr)
    const line = JSON.parse(run.stdout.trim().split("\n").pop() ?? "")
    assert.isTrue(line.correct, run.stderr)
    assert.strictEqual(line.events, 20_000)
    assert.strictEqual(line.workers, 2)
    assert.strictEqual(line.partitions, 4)
    // One group: between them the workers' last assignments hold every partition exactly once.
    assert.lengthOf(line.assignments, 2)
    assert.deepStrictEqual(
      line.assignments.flat().toSorted((a: number, b: number) => a - b),
      [0, 1, 2, 3]
    )
    assert.isAbove(line.eventsPerSec, 0)
    assert.isAbove(line.firstOutputMs, 0)
    assert.lengthOf(line.workerCpuMs, 2)
  })
})
