/**
 * Sluice against the hand-written kafkajs loop of issue #13, side by side on the same input: fresh topics, the
 * profiles and every click produced before either contender starts (backlog), then each contender in its own
 * process (loop.ts, sluice.ts), alternating which goes first in every round, each writing to an output topic of its
 * own. Every run's output is read back and verified against the generator's truth before it counts: every click
 * present, with its user's name and city (a missing or wrong record fails the benchmark).
 *
 * `node scripts/perf/compare.ts [--events 100000] [--users 10000] [--rounds 3] [--contenders loop,loop-patched,sluice]
 *   [--brokers 127.0.0.1:9092] [--out benchmarks/perf/run.jsonl] [--keep]`
 *
 * One JSON line per run on stdout (and in --out), then the median of each contender.
 */
import { spawn } from "node:child_process"
import { appendFileSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Reader from "@sluice/core/Reader"
import * as Topic from "@sluice/core/Topic"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Effect, Result, Stream } from "effect"
import { args, type ContenderResult, parseResult } from "./measure.ts"

const options = args(process.argv.slice(2))
const events = Number(options.get("events") ?? "100000")
const users = Number(options.get("users") ?? "10000")
const rounds = Number(options.get("rounds") ?? "3")
const contenders = (options.get("contenders") ?? "loop,sluice").split(",")
const brokers = options.get("brokers") ?? "127.0.0.1:9092"
const outFile = options.get("out")
const extra = (options.get("extra") ?? "").split(" ").filter((s) => s.length > 0)
const here = import.meta.dirname

const runChild = (script: string, argv: ReadonlyArray<string>) =>
  Effect.callback<ContenderResult, Error>((resume) => {
    const child = spawn(
      process.execPath,
      [...(options.get("node-flags") ?? "").split(" ").filter((s) => s), join(here, script), ...argv],
      {
        stdio: ["ignore", "pipe", "inherit"]
      }
    )
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.on("exit", (code) => {
      const lines = stdout.split("\n")
      // What the child logged besides its result (with --node-flags "--trace-gc", say) goes to stderr.
      const other = lines.filter((l) => !l.startsWith("{") && l.length > 0)
      if (other.length > 0) process.stderr.write(`${other.join("\n")}\n`)
      const line = lines.filter((l) => l.startsWith("{")).pop() ?? ""
      if (code !== 0 || line === "") resume(Effect.fail(new Error(`${script} exited with ${code}: ${stdout}`)))
      else resume(Effect.try({ try: () => parseResult(line), catch: (e) => new Error(`${script}: ${String(e)}`) }))
    })
  })

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0
    ? 0
    : s.length % 2 === 1
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const program = Effect.gen(function* () {
  const kafka = yield* Kafka
  const prefix = `perf-${Date.now().toString(36)}-`
  const topics = ClickEnrichment.named(prefix)
  yield* kafka.createTopics([ClickEnrichment.profilesSpec(topics), { name: topics.clicks.name, partitions: 3 }])
  yield* kafka.send(ClickData.generateProfiles(users, topics))
  const clicks = ClickData.generateClicks({ count: events, users, seed: 7, topics })
  for (let i = 0; i < clicks.length; i += 5_000) yield* kafka.send(clicks.slice(i, i + 5_000))
  // Every generated click has its own timestamp: the identity a contender's output is matched by.
  const truth = new Map<string, ClickEnrichment.Click>()
  for (const c of clicks) {
    const decoded = topics.clicks.value.decode(c.value)
    if (Result.isSuccess(decoded)) truth.set(String(decoded.success.timestamp), decoded.success)
  }
  yield* Effect.sync(() => process.stderr.write(`compare: ${events} clicks, ${users} profiles in ${prefix}*\n`))

  const results: Array<ContenderResult & { readonly round: number; readonly correct: boolean }> = []
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse()
    for (const contender of order) {
      const out = `${prefix}${contender}-${round}-out`
      // Sluice creates its outputs itself (the topology declares them); the loop needs its topic made.
      if (contender !== "sluice") yield* kafka.createTopics([{ name: out, partitions: 3 }])
      const result = yield* runChild(`${contender}.ts`, [
        "--brokers",
        brokers,
        "--profiles",
        topics.profiles.name,
        "--clicks",
        topics.clicks.name,
        "--out",
        out,
        "--group",
        `${out}-group`,
        "--events",
        String(events),
        ...extra
      ])
      const outputs: Array<{ source: string; value: ClickEnrichment.EnrichedClick }> = []
      const enriched = ClickEnrichment.enrichedTopic(out)
      yield* Reader.readToEnd(out).pipe(
        Stream.runForEach((records) =>
          Effect.sync(() => {
            for (const record of records) {
              const decoded = Topic.decode(enriched, record)
              if (Result.isSuccess(decoded))
                outputs.push({ source: String(decoded.success.value.timestamp), value: decoded.success.value })
            }
          })
        )
      )
      const verification = ClickData.verify(truth, outputs)
      const line = {
        round,
        ...result,
        contender,
        correct: ClickData.isCorrect(verification),
        duplicates: verification.duplicates
      }
      results.push(line)
      const text = JSON.stringify(line)
      yield* Effect.sync(() => {
        process.stdout.write(`${text}\n`)
        if (outFile !== undefined) {
          mkdirSync(dirname(outFile), { recursive: true })
          appendFileSync(outFile, `${text}\n`)
        }
      })
      if (!line.correct)
        return yield* Effect.die(new Error(`${contender} round ${round}: ${verification.problems.join("; ")}`))
      yield* kafka.deleteTopics([out])
    }
  }
  for (const contender of contenders) {
    const mine = results.filter((r) => r.contender === contender)
    const summary = {
      summary: contender,
      runs: mine.length,
      eventsPerSec: median(mine.map((r) => r.eventsPerSec)),
      cpuMsPer1k: median(mine.map((r) => r.cpuMsPer1k)),
      peakRssMb: median(mine.map((r) => r.peakRssMb))
    }
    yield* Effect.sync(() => process.stdout.write(`${JSON.stringify(summary)}\n`))
  }
  if (!options.has("keep")) yield* kafka.deleteTopics([topics.profiles.name, topics.clicks.name])
})

Effect.runPromise(
  program.pipe(Effect.provide(KafkaJs.layer({ brokers: brokers.split(","), clientId: "perf-compare" })))
).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`compare failed: ${String(error)}\n`)
    process.exit(1)
  }
)
