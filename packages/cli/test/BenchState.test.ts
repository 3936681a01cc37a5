/**
 * `sluice bench state` (src/BenchState.ts): its arithmetic, its table, and a whole run on the in-memory broker as
 * a process, whose JSON lines must cover every case, each verified.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as BenchState from "../src/BenchState.ts"

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))

const result = (overrides: Partial<BenchState.CaseResult>): BenchState.CaseResult => ({
  case: "count",
  store: "memory",
  keys: 100,
  recordsRead: 100,
  restoreMs: 0,
  elapsedMs: 50,
  recordsPerSec: 2_000,
  verified: "100/100 keys exact",
  correct: true,
  ...overrides
})

describe("bench state's arithmetic", () => {
  it("a restore window runs from the first task's start to the last one's end", () => {
    // Logged at 100 after 40 ms (started at 60), at 130 after 20 ms (started at 110).
    assert.deepStrictEqual(
      BenchState.restoreWindow([
        { at: 130, ms: 20, records: 5 },
        { at: 100, ms: 40, records: 7 }
      ]),
      { ms: 70, records: 12, end: 130 }
    )
    assert.deepStrictEqual(BenchState.restoreWindow([]), { ms: 0, records: 0, end: 0 })
  })

  it("rates are per second, and never divide by zero", () => {
    assert.strictEqual(BenchState.rate(1_000, 250), 4_000)
    assert.strictEqual(BenchState.rate(5, 0), 5_000)
  })

  it("the table says what is wrong, and the state overhead", () => {
    const text = BenchState.summary([
      result({ store: "none", recordsPerSec: 4_000 }),
      result({ store: "memory", recordsPerSec: 3_000 }),
      result({ case: "restore", store: "sqlite", correct: false, verified: "599/600 probes right" })
    ])
    assert.include(text, "599/600 probes right WRONG")
    assert.include(text, "state overhead: 3000 records/s with the store, 4000 without (25% slower)")
    const noise = BenchState.summary([
      result({ store: "none", recordsPerSec: 1_000 }),
      result({ recordsPerSec: 1_500 })
    ])
    assert.include(noise, "(50% faster)")
  })
})

describe("sluice bench state --brokers memory --json", () => {
  it("prints one verified JSON line per case, with restores in full and of the tail only", () => {
    const run = spawnSync(
      `${repoRoot}node_modules/.bin/node`,
      [
        "--conditions=@sluice/source",
        `${repoRoot}packages/cli/src/bin.ts`,
        "bench",
        "state",
        "--brokers",
        "memory",
        "--keys",
        "3000",
        "--tail",
        "300",
        "--json"
      ],
      { encoding: "utf8", timeout: 60_000 }
    )
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stderr, "bench state: producing 3000 records", "progress goes to stderr")
    const lines = run.stdout.trim().split("\n")
    const cases = lines.map((line) => JSON.parse(line) as BenchState.CaseResult)
    assert.deepStrictEqual(
      cases.map((c) => `${c.case} ${c.store}`),
      ["count none", "count memory", "restore sqlite", "restore memory", "restore sqlite-restart"]
    )
    for (const c of cases) {
      assert.isTrue(c.correct, JSON.stringify(c))
      assert.strictEqual(c.keys, 3000)
      for (const field of ["restoreMs", "recordsPerSec", "recordsRead"] as const) assert.isNumber(c[field])
    }
    const [, stored, sqlite, memory, restart] = cases
    assert.strictEqual(stored?.recordsRead, 3000)
    assert.isAtLeast(sqlite?.recordsRead ?? 0, 3000, "a fresh SQLite store reads the whole changelog")
    assert.isAtLeast(memory?.recordsRead ?? 0, sqlite?.recordsRead ?? 0, "so does memory, which has its probes too")
    // The tail: the memory run's 300 records and 600 probes, at most one changelog record each.
    assert.isAbove(restart?.recordsRead ?? 0, 0)
    assert.isAtMost(restart?.recordsRead ?? 0, 900, "after a restart SQLite reads only the tail")
  }, 60_000)
})
