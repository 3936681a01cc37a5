/**
 * Markdown tables from one or more results JSON files of run.ts (the tables of BENCHMARKS.md's "Peers" section):
 * per contender the median and min–max over the rounds that verified, then the ratios of medians to the loop.
 * With several files, their runs are pooled (each file's rounds are still interleaved within it).
 *
 *   node benchmarks/peers/report.ts benchmarks/peers/results-2026-12-01.json [more.json ...]
 */
import { readFileSync } from "node:fs"

interface Run {
  readonly contender: string
  readonly ok: boolean
  readonly [metric: string]: unknown
}

const files = process.argv.slice(2)
if (files.length === 0 || files.includes("--help")) {
  console.log("usage: node benchmarks/peers/report.ts RESULTS.json [MORE.json ...]")
  process.exit(files.length === 0 ? 2 : 0)
}
const docs = files.map(
  (f) => JSON.parse(readFileSync(f, "utf8")) as { runs: Array<Run>; settings: { contenders: Array<string> } }
)
const runs = docs.flatMap((d) => d.runs)
const contenders = [...new Set(docs.flatMap((d) => d.settings.contenders))]

const columns: ReadonlyArray<readonly [string, string, number]> = [
  ["steadyEventsPerSec", "steady events/s", 0],
  ["eventsPerSecOverall", "events/s first→last output", 0],
  ["firstOutputMs", "time to first output, ms", 0],
  ["lastOutputMs", "start → last output, ms", 0],
  ["cpuMsPer1k", "CPU ms / 1k events (whole run)", 1],
  ["steadyCpuMsPer1k", "CPU ms / 1k events (steady)", 1],
  ["peakRssMb", "peak RSS, MB", 0]
]

const median = (s: ReadonlyArray<number>) => {
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const values = (c: string, metric: string) =>
  runs
    .filter((r) => r.contender === c && r.ok)
    .map((r) => r[metric])
    .filter((v): v is number => typeof v === "number")
    .sort((a, b) => a - b)
const num = (v: number, digits: number) =>
  v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

console.log(`| contender | verified | ${columns.map((c) => c[1]).join(" | ")} |`)
console.log(`|---|---|${columns.map(() => "---").join("|")}|`)
for (const c of contenders) {
  const all = runs.filter((r) => r.contender === c)
  const cells = columns.map(([metric, , digits]) => {
    const v = values(c, metric)
    return v.length === 0 ? "–" : `${num(median(v), digits)} (${num(v[0]!, digits)}–${num(v[v.length - 1]!, digits)})`
  })
  console.log(`| ${c} | ${all.filter((r) => r.ok).length}/${all.length} | ${cells.join(" | ")} |`)
}
console.log("")
const others = contenders.filter((c) => c !== "loop")
console.log(`| ratio of medians, X / loop | ${others.join(" | ")} |`)
console.log(`|---|${others.map(() => "---").join("|")}|`)
for (const [metric, label] of columns) {
  const loop = values("loop", metric)
  const cells = others.map((c) => {
    const v = values(c, metric)
    return v.length === 0 || loop.length === 0 ? "–" : `${(median(v) / median(loop)).toFixed(2)}×`
  })
  console.log(`| ${label} | ${cells.join(" | ")} |`)
}
