/**
 * Start-up of `sluice run click-enrichment --strategy table` (issue #13, target 2): the time from the process's
 * spawn to its first enriched record, against the hand-written kafkajs loop (benchmarks/peers/loop/loop.ts), on a
 * backlog, every output verified.
 *
 * Per round and contender: fresh topics (profiles compacted, clicks, an output topic with
 * message.timestamp.type=LogAppendTime so the broker stamps every output whoever wrote it), the profiles and clicks
 * produced before the contender starts, then the contender spawned as a process of its own with a fresh group; once
 * its output topic holds one record per click the whole output is read back and verified (every click once, with
 * its user's name and city), the process is stopped with SIGTERM. The contenders alternate in every round.
 *
 * - firstOutputMs: spawn → the broker's append time of the first output record: Node's start, loading the modules,
 *   connecting, loading the table, the group join, the first fetch and the first step, its produce acknowledged.
 * - lastOutputMs: spawn → the append time of the last output.
 *
 * `node scripts/perf/startup.ts [--rounds 5] [--profiles 10000] [--clicks 20000]
 *   [--contenders sluice,sluice-source,loop] [--brokers 127.0.0.1:9092] [--out benchmarks/perf/startup.jsonl] [--verbose]
 *   [--sluice before=/tmp/sluice-before]`
 *
 * Contenders: `sluice` is the `sluice` binary (packages/cli/bin/sluice.js: the built JavaScript when dist/ exists,
 * `npm run build`); `sluice-source` runs the TypeScript sources (`node --conditions=@sluice/source
 * packages/cli/src/bin.ts`), the repository's development path; `loop` the peers' kafkajs loop. One JSON line per
 * run (with the load averages when it ran), then the median and range of each contender. `--sluice NAME=DIR[,...]`
 * adds contenders that run the `sluice` binary of another checkout (list them in --contenders too).
 */
import { spawn } from "node:child_process"
import { appendFileSync, mkdirSync } from "node:fs"
import { loadavg } from "node:os"
import { dirname, join } from "node:path"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Reader from "@sluice/core/Reader"
import * as Topic from "@sluice/core/Topic"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Effect, Result, Stream } from "effect"
import { args } from "./measure.ts"

const options = args(process.argv.slice(2))
const rounds = Number(options.get("rounds") ?? "5")
const users = Number(options.get("profiles") ?? "10000")
const clicks = Number(options.get("clicks") ?? "20000")
const contenders = (options.get("contenders") ?? "sluice,sluice-source,loop").split(",")
const brokers = options.get("brokers") ?? "127.0.0.1:9092"
const outFile = options.get("out")
const repo = join(import.meta.dirname, "../..")
const node = process.execPath
/** `--verbose`: the contenders' stderr on this one's, each chunk with its time since the spawn. */
const verbose = options.has("verbose")

/** `--sluice NAME=DIR`: one more contender NAME, the `sluice` binary of the checkout DIR (e.g. the code before). */
const others = new Map(
  (options.get("sluice") ?? "")
    .split(",")
    .filter((s) => s.includes("="))
    .map((s) => [s.slice(0, s.indexOf("=")), s.slice(s.indexOf("=") + 1)] as const)
)

const command = (contender: string, topics: ClickEnrichment.Topics, group: string) => {
  const run = ["run", "click-enrichment", "--strategy", "table", "--brokers", brokers]
  const prefix = topics.clicks.name.slice(0, -"clicks".length)
  const dir = others.get(contender)
  if (dir !== undefined)
    return { args: [join(dir, "packages/cli/bin/sluice.js"), ...run, "--topic-prefix", prefix, "--group", group] }
  switch (contender) {
    case "sluice":
      return { args: [join(repo, "packages/cli/bin/sluice.js"), ...run, "--topic-prefix", prefix, "--group", group] }
    case "sluice-source":
      return {
        args: [
          "--conditions=@sluice/source",
          join(repo, "packages/cli/src/bin.ts"),
          ...run,
          "--topic-prefix",
          prefix,
          "--group",
          group
        ]
      }
    case "loop":
      return {
        args: [join(repo, "benchmarks/peers/loop/loop.ts")],
        env: {
          BROKERS: brokers,
          PROFILES: topics.profiles.name,
          CLICKS: topics.clicks.name,
          OUTPUT: topics.enriched.name,
          GROUP: group
        }
      }
    default:
      throw new Error(`unknown contender ${contender}: sluice, sluice-source or loop`)
  }
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0
    ? 0
    : s.length % 2 === 1
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const runOne = (contender: string, round: number, runId: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const prefix = `startup-${runId}-r${round}-${contender}-`
    const topics = ClickEnrichment.named(prefix)
    yield* kafka.createTopics([
      ClickEnrichment.profilesSpec(topics),
      { name: topics.clicks.name, partitions: 3 },
      { name: topics.enriched.name, partitions: 3, config: { "message.timestamp.type": "LogAppendTime" } }
    ])
    yield* kafka.send(ClickData.generateProfiles(users, topics))
    const generated = ClickData.generateClicks({ count: clicks, users, seed: 7, topics })
    for (let i = 0; i < generated.length; i += 5_000) yield* kafka.send(generated.slice(i, i + 5_000))
    const truth = new Map<string, ClickEnrichment.Click>()
    for (const c of generated) {
      const decoded = topics.clicks.value.decode(c.value)
      if (Result.isSuccess(decoded)) truth.set(String(decoded.success.timestamp), decoded.success)
    }
    const load = loadavg().map((l) => Math.round(l * 100) / 100)
    const spec = command(contender, topics, `${prefix}group`)
    const startedAt = Date.now()
    const child = spawn(node, spec.args, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...spec.env }
    })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
      if (verbose) process.stderr.write(`${contender} +${Date.now() - startedAt} ms: ${chunk.toString()}`)
    })
    const exited = Effect.callback<number | null>((resume) => {
      if (child.exitCode !== null) resume(Effect.succeed(child.exitCode))
      else child.on("exit", (code) => resume(Effect.succeed(code)))
    })
    const deadline = startedAt + 120_000
    while (true) {
      const offsets = yield* kafka.offsets(topics.enriched.name)
      if (offsets.reduce((n, p) => n + p.high - p.low, 0) >= clicks) break
      if (child.exitCode !== null)
        return yield* Effect.die(new Error(`${contender} exited with ${child.exitCode}: ${stderr}`))
      if (Date.now() > deadline) return yield* Effect.die(new Error(`${contender} timed out: ${stderr}`))
      yield* Effect.sleep("20 millis")
    }
    child.kill("SIGTERM")
    const code = yield* exited
    const outputs: Array<{ source: string; value: ClickEnrichment.EnrichedClick }> = []
    let first = Number.POSITIVE_INFINITY
    let last = 0
    yield* Reader.readToEnd(topics.enriched.name).pipe(
      Stream.runForEach((records) =>
        Effect.sync(() => {
          for (const record of records) {
            first = Math.min(first, record.timestamp)
            last = Math.max(last, record.timestamp)
            const decoded = Topic.decode(topics.enriched, record)
            if (Result.isSuccess(decoded))
              outputs.push({ source: String(decoded.success.value.timestamp), value: decoded.success.value })
          }
        })
      )
    )
    const verification = ClickData.verify(truth, outputs)
    yield* kafka.deleteTopics([topics.profiles.name, topics.clicks.name, topics.enriched.name, `${prefix}dead-letter`])
    return {
      contender,
      round,
      clicks,
      profiles: users,
      firstOutputMs: first - startedAt,
      lastOutputMs: last - startedAt,
      exitCode: code,
      correct: ClickData.isCorrect(verification),
      problems: verification.problems.slice(0, 3),
      loadAvg: load
    }
  })

const program = Effect.gen(function* () {
  const runId = Date.now().toString(36)
  const results: Array<{ readonly contender: string; readonly firstOutputMs: number; readonly correct: boolean }> = []
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!)
    for (const contender of order) {
      const line = yield* runOne(contender, round, runId)
      results.push(line)
      const text = JSON.stringify(line)
      yield* Effect.sync(() => {
        process.stdout.write(`${text}\n`)
        if (outFile !== undefined) {
          mkdirSync(dirname(outFile), { recursive: true })
          appendFileSync(outFile, `${text}\n`)
        }
      })
      if (!line.correct) return yield* Effect.die(new Error(`${contender} round ${round}: ${line.problems.join("; ")}`))
    }
  }
  for (const contender of contenders) {
    const mine = results.filter((r) => r.contender === contender).map((r) => r.firstOutputMs)
    const summary = {
      summary: contender,
      runs: mine.length,
      firstOutputMs: median(mine),
      min: Math.min(...mine),
      max: Math.max(...mine)
    }
    const text = JSON.stringify(summary)
    yield* Effect.sync(() => {
      process.stdout.write(`${text}\n`)
      if (outFile !== undefined) appendFileSync(outFile, `${text}\n`)
    })
  }
})

Effect.runPromise(
  program.pipe(Effect.provide(KafkaJs.layer({ brokers: brokers.split(","), clientId: "perf-startup" })))
).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`startup failed: ${String(error)}\n`)
    process.exit(1)
  }
)
