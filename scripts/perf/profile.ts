/**
 * Where a contender's CPU went: reads a `.cpuprofile` (`node --cpu-prof`), optionally only the samples inside the
 * measured window that measure.ts prints with `PERF_MARKS=1` (`window <first µs> <done µs>`), and prints the share of
 * each category (the first rule, in order, that some frame of a sample's stack matches) and the top functions by
 * self time.
 *
 * `node scripts/perf/profile.ts PROFILE.cpuprofile [--window FIRST DONE] [--top 30]`
 */
import { readFileSync } from "node:fs"
import { Schema } from "effect"

const CallFrame = Schema.Struct({ functionName: Schema.String, url: Schema.String, lineNumber: Schema.Finite })
const Profile = Schema.Struct({
  nodes: Schema.Array(
    Schema.Struct({
      id: Schema.Finite,
      callFrame: CallFrame,
      children: Schema.optional(Schema.Array(Schema.Finite))
    })
  ),
  startTime: Schema.Finite,
  samples: Schema.Array(Schema.Finite),
  timeDeltas: Schema.Array(Schema.Finite)
})

const categories: ReadonlyArray<readonly [string, RegExp]> = [
  ["GC", /^\(garbage collector\)/],
  ["idle (waiting on the broker)", /^\(idle\)/],
  ["startup: module loading, type stripping", /node:internal\/modules|amaro|compileSourceTextModule/],
  [
    "kafkajs: produce request encoding (records, CRC)",
    /kafkajs\/src\/protocol\/(requests\/produce|recordBatch\/v0\/index|recordBatch\/record\/v0\/index|recordBatch\/crc32C)|encodeRecord/
  ],
  [
    "kafkajs: fetch response decoding",
    /kafkajs\/src\/protocol\/(requests\/fetch|recordBatch\/v0\/decoder|recordBatch\/record\/v0\/decoder)/
  ],
  ["kafkajs: grouping a send per partition", /groupMessagesPerPartition/],
  ["decode: bytes → typed record (Codec, Schema)", /^decode .*core\/src\/Topic\.ts/],
  ["encode: typed record → bytes (Codec, Schema)", /^encode .*core\/src\/Topic\.ts/],
  ["kafkajs: other (network, metadata, consumer)", /kafkajs\//],
  ["topology code (processors)", /packages\/processors\/src/],
  ["Sluice runtime (core)", /packages\/core\/src/],
  ["Effect runtime", /effect\/dist/]
]

const options = process.argv.slice(2)
const file = options[0]
if (file === undefined) throw new Error("usage: profile.ts PROFILE.cpuprofile [--window FIRST DONE] [--top N]")
const windowAt = options.indexOf("--window")
const window = windowAt < 0 ? undefined : [Number(options[windowAt + 1]), Number(options[windowAt + 2])]
const topAt = options.indexOf("--top")
const top = topAt < 0 ? 30 : Number(options[topAt + 1])

const profile = Schema.decodeUnknownSync(Schema.fromJsonString(Profile))(readFileSync(file, "utf8"))
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
const label = (id: number) => {
  const f = byId.get(id)!.callFrame
  return `${f.functionName || "(anonymous)"} ${f.url.replace(/.*node_modules\//, "").replace(/.*wt-[a-z]+\//, "")}:${f.lineNumber}`
}

const self = new Map<string, number>()
const byCategory = new Map<string, number>()
let total = 0
let at = profile.startTime
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0
  at += dt
  if (window !== undefined && (at < window[0]! || at > window[1]!)) continue
  total += dt
  const leaf = profile.samples[i]!
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt)
  const stack: Array<string> = []
  for (let id: number | undefined = leaf; id !== undefined; id = parentOf.get(id)) stack.push(label(id))
  const category = categories.find(([, rule]) => stack.some((frame) => rule.test(frame)))?.[0] ?? "other"
  byCategory.set(category, (byCategory.get(category) ?? 0) + dt)
}

const pct = (t: number) => `${((100 * t) / Math.max(1, total)).toFixed(1).padStart(5)}%`
console.log(`${(total / 1000).toFixed(0)} ms of samples${window === undefined ? "" : " in the window"}`)
console.log("\nby category:")
for (const [name, t] of [...byCategory].sort((a, b) => b[1] - a[1])) console.log(`${pct(t)}  ${name}`)
console.log("\ntop functions by self time:")
for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${name}`)
