/**
 * The peers benchmark of issue #13: Sluice's click-enrichment join against the same join written as a hand-written
 * kafkajs loop, a Kafka Streams GlobalKTable application and a Faust agent, on the same broker and the same input.
 *
 * Per round: fresh topics (profiles compacted, clicks, one output topic per contender with
 * message.timestamp.type=LogAppendTime so that the broker stamps every output when it is appended, whoever wrote it),
 * the profiles and then the clicks produced once (the repo's generators, so the truth is `ClickData.profileFor`), the
 * clicks read back to know each one's partition:offset, then each contender in turn (the order rotates by round),
 * started as its own process on the backlog with a fresh consumer group, stopped with SIGTERM once its output topic
 * holds as many records as there are clicks, and its whole output read back and verified: one record per click (no
 * missing, no duplicates), key, timestamp, user_id and url equal to the click's, user_name and user_city equal to the
 * truth. A contender's round counts only if every output is right.
 *
 * Figures per contender and round (see README.md):
 * - steadyEventsPerSec: outputs between the 10% and the 90% mark (by broker append time) divided by the time between
 *   them.
 * - firstOutputMs: process start (spawn) to the broker's append time of the first output; includes runtime start,
 *   connecting, loading the 10,000 profiles, the group join and the first batch.
 * - lastOutputMs: process start to the last output's append time; eventsPerSecOverall = clicks / (last - first).
 * - cpuMs: utime+stime (children included: cutime+cstime, and every live descendant) from /proc/<pid>/stat, from
 *   start until the run is complete (before the stop); cpuMsPer1k = cpuMs / (clicks / 1000); steadyCpuMsPer1k: the
 *   CPU between the 10% and 90% marks (sampled every 50 ms, interpolated) per 1,000 events of that span.
 * - peakRssMb: VmHWM from /proc/<pid>/status (summed over the process tree), read when the run is complete.
 *
 * Run `node benchmarks/peers/run.ts --help`. Install the peers first (README.md).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { type Admin, Kafka, logLevel, type Message, Partitioners, type Producer } from "kafkajs"

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, "../..")

// ---------------------------------------------------------------------------------------------------- arguments

const usage = `usage: node benchmarks/peers/run.ts [options]

The click-enrichment join, verified, against its peers (issue #13). Each round produces the same profiles and
clicks once, into fresh topics, then runs every contender in turn (order rotated per round) on that backlog.

options:
  --rounds N             rounds, interleaved (default 5)
  --clicks N             clicks per round (default 100000)
  --profiles N           user profiles; clicks pick users among them (default 10000)
  --partitions N         partitions of every topic (default 3)
  --seed N               click generator seed (default 7)
  --contenders LIST      comma-separated, from: loop, streams, streams-memory, faust, sluice
                         (default loop,streams,faust,sluice)
  --sluice-dir NAME=DIR  one more Sluice contender NAME, run from the checkout DIR (its node_modules/.bin/sluice);
                         repeatable, e.g. --sluice-dir sluice-main=/tmp/sluice-main
  --sluice-args "ARGS"   more flags for every Sluice contender's \`sluice run click-enrichment\`, e.g. "--provenance"
  --brokers LIST         bootstrap servers (default SLUICE_BROKERS, else 127.0.0.1:9092)
  --timeout-s N          give up on one contender's run after N s (default 300)
  --json                 print the whole result (every run and the summary) as one JSON document on stdout;
                         otherwise a table. Progress always goes to stderr.
  --keep                 keep each round's topics and groups (default: deleted after the round)
  --help                 this text

Install the peers first (benchmarks/peers/README.md):
  mvn -B -q -f benchmarks/peers/streams/pom.xml package
  python3 -m venv benchmarks/peers/faust/.venv && benchmarks/peers/faust/.venv/bin/pip install -r benchmarks/peers/faust/requirements.txt
`

interface Options {
  rounds: number
  clicks: number
  profiles: number
  partitions: number
  seed: number
  contenders: Array<string>
  sluiceDirs: Map<string, string>
  sluiceArgs: Array<string>
  brokers: Array<string>
  timeoutS: number
  json: boolean
  keep: boolean
}

const fail = (message: string): never => {
  console.error(`peers: ${message}`)
  process.exit(2)
}

const parseArgs = (argv: ReadonlyArray<string>): Options => {
  const o: Options = {
    rounds: 5,
    clicks: 100_000,
    profiles: 10_000,
    partitions: 3,
    seed: 7,
    contenders: ["loop", "streams", "faust", "sluice"],
    sluiceDirs: new Map(),
    sluiceArgs: [],
    brokers: (process.env.SLUICE_BROKERS ?? "127.0.0.1:9092").split(","),
    timeoutS: 300,
    json: false,
    keep: false
  }
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v)
    if (v === undefined || !Number.isSafeInteger(n) || n < min) fail(`${flag} must be an integer >= ${min} (got ${v})`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const next = () => argv[++i]
    switch (a) {
      case "--help":
      case "-h":
        process.stdout.write(usage)
        process.exit(0)
        break
      case "--rounds":
        o.rounds = int(a, next(), 1)
        break
      case "--clicks":
        o.clicks = int(a, next(), 10)
        break
      case "--profiles":
        o.profiles = int(a, next(), 1)
        break
      case "--partitions":
        o.partitions = int(a, next(), 1)
        break
      case "--seed":
        o.seed = int(a, next(), 0)
        break
      case "--timeout-s":
        o.timeoutS = int(a, next(), 1)
        break
      case "--contenders":
        o.contenders = (next() ?? "").split(",").filter((s) => s !== "")
        break
      case "--sluice-dir": {
        const v = next() ?? ""
        const eq = v.indexOf("=")
        if (eq <= 0) fail(`--sluice-dir takes NAME=DIR (got ${v})`)
        o.sluiceDirs.set(v.slice(0, eq), resolve(v.slice(eq + 1)))
        break
      }
      case "--sluice-args":
        o.sluiceArgs = (next() ?? "").split(" ").filter((s) => s !== "")
        break
      case "--brokers":
        o.brokers = (next() ?? "").split(",")
        break
      case "--json":
        o.json = true
        break
      case "--keep":
        o.keep = true
        break
      default:
        fail(`unknown argument ${a} (see --help)`)
    }
  }
  for (const name of o.sluiceDirs.keys()) if (!o.contenders.includes(name)) o.contenders.push(name)
  for (const c of o.contenders)
    if (!["loop", "streams", "streams-memory", "faust", "sluice"].includes(c) && !o.sluiceDirs.has(c))
      fail(`unknown contender ${c} (see --help)`)
  if (o.contenders.length === 0) fail("--contenders is empty")
  return o
}

// ---------------------------------------------------------------------------------------------------- contenders

const streamsJar = join(here, "streams/target/streams-join.jar")
const faustPython = join(here, "faust/.venv/bin/python")
const sluiceBin = (dir: string) => join(dir, "node_modules/@sluice/cli/bin/sluice.js")

interface Topics {
  readonly prefix: string
  readonly profiles: string
  readonly clicks: string
}

interface Launch {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly output: string
  readonly cwd?: string
}

/**
 * Sluice's CLI derives every topic name from --topic-prefix, so every Sluice contender (this checkout's and any
 * --sluice-dir one) writes <prefix>clicks.enriched, one after the other; a run's outputs are the records appended
 * after its start. The peers get an output topic each beside it.
 */
const outputTopic = (topics: Topics, contender: string) =>
  contenderKind(contender) === "sluice"
    ? `${topics.prefix}clicks.enriched`
    : `${topics.prefix}clicks.enriched.${contender}`

let sluiceDirsOf: Map<string, string> = new Map()
const contenderKind = (c: string) => (c === "sluice" || sluiceDirsOf.has(c) ? "sluice" : c)

const stateRoot = join(here, ".state")

const launch = (contender: string, topics: Topics, o: Options): Launch => {
  const output = outputTopic(topics, contender)
  const group = `${topics.prefix}${contender}`
  const base = { BROKERS: o.brokers.join(","), PROFILES: topics.profiles, CLICKS: topics.clicks, OUTPUT: output }
  const state = join(stateRoot, group)
  switch (contenderKind(contender)) {
    case "loop":
      return {
        command: process.execPath,
        args: [join(here, "loop/loop.ts")],
        env: { ...base, GROUP: group },
        output
      }
    case "streams":
    case "streams-memory":
      return {
        command: "java",
        args: ["-jar", streamsJar],
        env: {
          ...base,
          APP_ID: group,
          STATE_DIR: state,
          STORE: contender === "streams-memory" ? "memory" : "rocksdb"
        },
        output
      }
    case "faust":
      return {
        command: faustPython,
        args: [join(here, "faust/app.py"), "worker", "-l", "warn"],
        env: { ...base, APP_ID: group, DATA_DIR: state },
        output,
        cwd: join(here, "faust")
      }
    default: {
      // Sluice: the repo's CLI (or another checkout's), as a user runs it. Its group is <prefix>click-enrichment.
      const dir = sluiceDirsOf.get(contender) ?? repo
      const groupFlag = contender === "sluice" ? [] : ["--group", group]
      return {
        command: process.execPath,
        args: [
          sluiceBin(dir),
          "run",
          "click-enrichment",
          "--strategy",
          "table",
          "--topic-prefix",
          topics.prefix,
          ...groupFlag,
          ...o.sluiceArgs
        ],
        env: { SLUICE_BROKERS: o.brokers.join(",") },
        output,
        cwd: dir
      }
    }
  }
}

const checkInstalled = (o: Options) => {
  const missing: Array<string> = []
  for (const c of o.contenders) {
    const kind = contenderKind(c)
    if ((kind === "streams" || kind === "streams-memory") && !existsSync(streamsJar))
      missing.push(`${c}: ${streamsJar} is missing; build it: mvn -B -q -f benchmarks/peers/streams/pom.xml package`)
    if (kind === "faust" && !existsSync(faustPython))
      missing.push(
        `${c}: ${faustPython} is missing; python3 -m venv benchmarks/peers/faust/.venv && benchmarks/peers/faust/.venv/bin/pip install -r benchmarks/peers/faust/requirements.txt`
      )
    if (kind === "sluice" && !existsSync(sluiceBin(sluiceDirsOf.get(c) ?? repo)))
      missing.push(`${c}: ${sluiceBin(sluiceDirsOf.get(c) ?? repo)} is missing (npm ci in that checkout)`)
  }
  if (missing.length > 0) fail(`not installed:\n  ${missing.join("\n  ")}`)
}

// ---------------------------------------------------------------------------------------------------- /proc

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100
  } catch {
    return 100
  }
})()

interface ProcStat {
  readonly pid: number
  readonly ppid: number
  /** utime + stime + cutime + cstime, in ms. */
  readonly cpuMs: number
}

const readStat = (pid: number): ProcStat | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ")
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    const f = (n: number) => Number(rest[n - 3])
    return { pid, ppid: f(4), cpuMs: ((f(14) + f(15) + f(16) + f(17)) * 1000) / clockTicks }
  } catch {
    return undefined
  }
}

/** The process and every live descendant. */
const tree = (root: number): Array<ProcStat> => {
  const all: Array<ProcStat> = []
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const s = readStat(Number(name))
    if (s !== undefined) all.push(s)
  }
  const byParent = new Map<number, Array<ProcStat>>()
  for (const s of all) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s])
  const out: Array<ProcStat> = []
  const rootStat = all.find((s) => s.pid === root)
  if (rootStat === undefined) return out
  const queue = [rootStat]
  while (queue.length > 0) {
    const s = queue.shift()!
    out.push(s)
    queue.push(...(byParent.get(s.pid) ?? []))
  }
  return out
}

const hwmKb = (pid: number): number => {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

// ---------------------------------------------------------------------------------------------------- kafka

const toMessage = (r: { key: Uint8Array | null; value: Uint8Array | null }): Message => ({
  key: r.key === null ? null : Buffer.from(r.key),
  value: r.value === null ? null : Buffer.from(r.value)
})

const produceAll = async (producer: Producer, topic: string, messages: ReadonlyArray<Message>) => {
  const started = Date.now()
  for (let i = 0; i < messages.length; i += 5_000)
    await producer.sendBatch({ topicMessages: [{ topic, messages: messages.slice(i, i + 5_000) }], acks: -1 })
  return Date.now() - started
}

/**
 * Admin calls about a topic just created can fail on stale metadata (kafkajs asks Metadata v0, which answers "does
 * not host this topic-partition" until the topic has settled, tulios/kafkajs#1563): retry for up to ~15 s.
 */
const retrying = async <A>(label: string, f: () => Promise<A>): Promise<A> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await f()
    } catch (error) {
      if (attempt >= 30) throw error
      if (attempt === 1)
        console.error(`peers: ${label}: ${error instanceof Error ? error.message : String(error)}; retrying`)
      await sleep(500)
    }
  }
}

const highWaterMarks = async (admin: Admin, topic: string) => {
  const offsets = await retrying(`offsets of ${topic}`, () => admin.fetchTopicOffsets(topic))
  return offsets.map((p) => ({ partition: p.partition, low: Number(p.low), high: Number(p.high) }))
}

interface ReadRecord {
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly key: string | null
  readonly value: string | null
  readonly headers: Record<string, string>
}

/** Every record of a topic up to its current high-water marks (from `from`, by partition), through a throwaway group. */
const readTopic = async (
  kafka: Kafka,
  admin: Admin,
  topic: string,
  groupId: string,
  from: ReadonlyMap<number, number> = new Map()
): Promise<Array<ReadRecord>> => {
  const ends = await highWaterMarks(admin, topic)
  const remaining = new Map(ends.filter((p) => p.high > p.low).map((p) => [p.partition, p.high]))
  const out: Array<ReadRecord> = []
  if (remaining.size === 0) return out
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, maxBytes: 16 * 1024 * 1024 })
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise<void>((done, reject) => {
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const high = remaining.get(batch.partition)
            for (const m of batch.messages) {
              if (high === undefined || Number(m.offset) >= high) break
              if (Number(m.offset) < (from.get(batch.partition) ?? 0)) continue
              const headers: Record<string, string> = {}
              for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(v)
              out.push({
                partition: batch.partition,
                offset: Number(m.offset),
                timestamp: Number(m.timestamp),
                key: m.key === null ? null : m.key.toString(),
                value: m.value === null ? null : m.value.toString(),
                headers
              })
            }
            if (high !== undefined && Number(batch.lastOffset()) + 1 >= high) remaining.delete(batch.partition)
            if (remaining.size === 0) done()
          }
        })
        .catch(reject)
    })
  } finally {
    await consumer.disconnect()
  }
  return out
}

// ---------------------------------------------------------------------------------------------------- verify

interface Verification {
  readonly expected: number
  readonly records: number
  readonly present: number
  readonly correct: number
  readonly duplicates: number
  readonly problems: ReadonlyArray<string>
  readonly ok: boolean
}

/**
 * A click is identified by the `sluice.click.source` header (`partition:offset`) when the output has one, else by its
 * own `timestamp` field, which the generator makes unique (start + 10 ms × i).
 */
const verify = (
  clicks: ReadonlyMap<string, ClickEnrichment.Click>,
  outputs: ReadonlyArray<ReadRecord>
): Verification => {
  const byTimestamp = new Map<number, string>()
  for (const [source, click] of clicks) byTimestamp.set(click.timestamp, source)
  const seen = new Set<string>()
  let correct = 0
  let duplicates = 0
  const problems: Array<string> = []
  const problem = (p: string) => {
    if (problems.length < 5) problems.push(p)
  }
  for (const r of outputs) {
    let value: Record<string, unknown> | undefined
    try {
      value = JSON.parse(r.value ?? "null") as Record<string, unknown>
    } catch {
      value = undefined
    }
    const source =
      r.headers[ClickEnrichment.clickHeaders.source] ??
      (typeof value?.timestamp === "number" ? byTimestamp.get(value.timestamp) : undefined)
    const click = source === undefined ? undefined : clicks.get(source)
    if (source === undefined || click === undefined) {
      problem(`an output without a known source click (${source ?? "no header"}) at ${r.partition}:${r.offset}`)
      continue
    }
    if (seen.has(source)) {
      duplicates++
      continue
    }
    seen.add(source)
    const truth = ClickData.profileFor(click.user_id)
    const ok =
      value !== undefined &&
      value !== null &&
      r.key === String(click.user_id) &&
      value.timestamp === click.timestamp &&
      value.user_id === click.user_id &&
      value.url === click.url &&
      value.user_name === truth.name &&
      value.user_city === truth.city &&
      Object.keys(value).length === 5
    if (ok) correct++
    else problem(`click ${source}: got key ${r.key} ${r.value}, expected user ${click.user_id} ${truth.name}`)
  }
  if (seen.size < clicks.size) problem(`${clicks.size - seen.size} click(s) have no output`)
  if (duplicates > 0) problem(`${duplicates} duplicate output(s)`)
  const ok = seen.size === clicks.size && correct === clicks.size && duplicates === 0
  return { expected: clicks.size, records: outputs.length, present: seen.size, correct, duplicates, problems, ok }
}

// ---------------------------------------------------------------------------------------------------- one run

interface RunResult {
  readonly contender: string
  readonly round: number
  readonly position: number
  readonly ok: boolean
  readonly failure: string | null
  readonly verification: Verification | null
  readonly firstOutputMs: number | null
  readonly lastOutputMs: number | null
  readonly steadyEventsPerSec: number | null
  readonly eventsPerSecOverall: number | null
  readonly cpuMs: number | null
  readonly cpuMsPer1k: number | null
  readonly steadyCpuMsPer1k: number | null
  readonly peakRssMb: number | null
  readonly processes: number
  readonly stopMs: number | null
  readonly exitCode: number | null
  readonly exitSignal: string | null
  readonly outputValueBytesAvg: number | null
  /** The machine's 1-minute load average when the run started (other work on the shared box). */
  readonly loadAverage1m: number | null
  readonly log: string
}

const failedRun = (contender: string, round: number, position: number, error: unknown): RunResult => ({
  contender,
  round,
  position,
  ok: false,
  failure: `harness error: ${error instanceof Error ? error.message : String(error)}`,
  verification: null,
  firstOutputMs: null,
  lastOutputMs: null,
  steadyEventsPerSec: null,
  eventsPerSecOverall: null,
  cpuMs: null,
  cpuMsPer1k: null,
  steadyCpuMsPer1k: null,
  peakRssMb: null,
  processes: 0,
  stopMs: null,
  exitCode: null,
  exitSignal: null,
  outputValueBytesAvg: null,
  loadAverage1m: null,
  log: ""
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: string | null }>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) done({ code: child.exitCode, signal: child.signalCode })
    else child.once("exit", (code, signal) => done({ code, signal }))
  })

const cpuAt = (samples: ReadonlyArray<{ at: number; cpuMs: number }>, at: number): number => {
  if (samples.length === 0) return 0
  if (at <= samples[0]!.at) return samples[0]!.cpuMs
  for (let i = 1; i < samples.length; i++) {
    const b = samples[i]!
    if (b.at >= at) {
      const a = samples[i - 1]!
      return a.cpuMs + ((b.cpuMs - a.cpuMs) * (at - a.at)) / Math.max(1, b.at - a.at)
    }
  }
  return samples[samples.length - 1]!.cpuMs
}

const runContender = async (
  contender: string,
  round: number,
  position: number,
  topics: Topics,
  clicks: ReadonlyMap<string, ClickEnrichment.Click>,
  ctx: { kafka: Kafka; admin: Admin; o: Options; logDir: string }
): Promise<RunResult> => {
  const { kafka, admin, o } = ctx
  const spec = launch(contender, topics, o)
  const logPath = join(ctx.logDir, `r${round}-${contender}.log`)
  const log = createWriteStream(logPath)
  const n = clicks.size
  const startHigh = new Map((await highWaterMarks(admin, spec.output)).map((p) => [p.partition, p.high]))
  const startTotal = [...startHigh.values()].reduce((a, b) => a + b, 0)
  const loadAtStart = os.loadavg()[0]!
  const startedAt = Date.now()
  const child = spawn(spec.command, [...spec.args], {
    cwd: spec.cwd ?? repo,
    env: { ...process.env, ...spec.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout!.pipe(log, { end: false })
  child.stderr!.pipe(log, { end: false })
  const pid = child.pid!
  const exit = exited(child)
  let exitedEarly = false
  void exit.then(() => {
    exitedEarly = true
  })

  const samples: Array<{ at: number; cpuMs: number }> = []
  let procs: Array<ProcStat> = []
  const sample = () => {
    const t = tree(pid)
    if (t.length === 0) return
    procs = t
    samples.push({ at: Date.now(), cpuMs: t.reduce((sum, s) => sum + s.cpuMs, 0) })
  }
  const sampler = setInterval(sample, 50)

  let failure: string | null = null
  let doneAt = 0
  const deadline = startedAt + o.timeoutS * 1000
  while (doneAt === 0) {
    await sleep(100)
    if (exitedEarly) {
      failure = `exited before it was done (see ${logPath})`
      break
    }
    if (Date.now() > deadline) {
      failure = `timed out after ${o.timeoutS} s`
      break
    }
    try {
      const total = (await highWaterMarks(admin, spec.output)).reduce((sum, p) => sum + p.high, 0)
      if (total - startTotal >= n) doneAt = Date.now()
    } catch {
      // The output topic is ours and exists; a failed metadata call is retried at the next tick.
    }
  }
  sample()
  clearInterval(sampler)
  const cpuMs = samples.length > 0 ? samples[samples.length - 1]!.cpuMs : null
  const peakKb = procs.reduce((sum, s) => sum + hwmKb(s.pid), 0)
  const processes = procs.length

  // Stop it: SIGTERM (each contender stops gracefully on it), SIGKILL after 30 s.
  const stopStarted = Date.now()
  if (!exitedEarly) child.kill("SIGTERM")
  const killer = setTimeout(() => {
    for (const s of tree(pid).reverse()) {
      try {
        process.kill(s.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  }, 30_000)
  const status = await exit
  clearTimeout(killer)
  const stopMs = Date.now() - stopStarted
  log.end()

  const outputs = await readTopic(kafka, admin, spec.output, `${topics.prefix}verify-${contender}`, startHigh)
  const verification = verify(clicks, outputs)
  if (failure === null && !verification.ok) failure = `wrong output: ${verification.problems.join("; ")}`

  const times = outputs.map((r) => r.timestamp).sort((a, b) => a - b)
  const timing = (() => {
    if (times.length < 10) return null
    const first = times[0]!
    const last = times[times.length - 1]!
    const i10 = Math.floor(times.length * 0.1)
    const i90 = Math.floor(times.length * 0.9)
    const t10 = times[i10]!
    const t90 = times[i90]!
    const span = Math.max(1, t90 - t10)
    const steadyCpu = cpuAt(samples, t90) - cpuAt(samples, t10)
    return {
      firstOutputMs: first - startedAt,
      lastOutputMs: last - startedAt,
      steadyEventsPerSec: Math.round(((i90 - i10) * 1000) / span),
      eventsPerSecOverall: Math.round((times.length * 1000) / Math.max(1, last - first)),
      steadyCpuMsPer1k: Math.round((steadyCpu / ((i90 - i10) / 1000)) * 10) / 10
    }
  })()
  const valueBytes = outputs.reduce((sum, r) => sum + Buffer.byteLength(r.value ?? ""), 0)
  return {
    contender,
    round,
    position,
    ok: failure === null,
    failure,
    verification,
    firstOutputMs: timing?.firstOutputMs ?? null,
    lastOutputMs: timing?.lastOutputMs ?? null,
    steadyEventsPerSec: timing?.steadyEventsPerSec ?? null,
    eventsPerSecOverall: timing?.eventsPerSecOverall ?? null,
    cpuMs: cpuMs === null ? null : Math.round(cpuMs),
    cpuMsPer1k: cpuMs === null ? null : Math.round((cpuMs / (n / 1000)) * 10) / 10,
    steadyCpuMsPer1k: timing?.steadyCpuMsPer1k ?? null,
    peakRssMb: Math.round(peakKb / 1024),
    processes,
    stopMs,
    exitCode: status.code,
    exitSignal: status.signal,
    outputValueBytesAvg: outputs.length === 0 ? null : Math.round(valueBytes / outputs.length),
    loadAverage1m: Math.round(loadAtStart * 100) / 100,
    log: logPath
  }
}

// ---------------------------------------------------------------------------------------------------- summary

const metrics = [
  "steadyEventsPerSec",
  "eventsPerSecOverall",
  "firstOutputMs",
  "lastOutputMs",
  "cpuMsPer1k",
  "steadyCpuMsPer1k",
  "peakRssMb"
] as const

interface Stat {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

const stat = (values: ReadonlyArray<number>): Stat | null => {
  if (values.length === 0) return null
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length }
}

const summarize = (runs: ReadonlyArray<RunResult>, contenders: ReadonlyArray<string>) => {
  const per: Record<string, Record<string, Stat | null> & { okRounds: number; rounds: number }> = {}
  for (const c of contenders) {
    const mine = runs.filter((r) => r.contender === c)
    const ok = mine.filter((r) => r.ok)
    const entry: Record<string, Stat | null> = {}
    for (const m of metrics) entry[m] = stat(ok.map((r) => r[m]).filter((v): v is number => v !== null))
    per[c] = Object.assign(entry, { okRounds: ok.length, rounds: mine.length })
  }
  const ratios: Record<string, Record<string, number | null>> = {}
  const loop = per.loop
  if (loop !== undefined)
    for (const c of contenders) {
      if (c === "loop") continue
      const r: Record<string, number | null> = {}
      for (const m of metrics) {
        const a = per[c]?.[m] as Stat | null | undefined
        const b = loop[m] as Stat | null | undefined
        r[m] = a && b && b.median !== 0 ? Math.round((a.median / b.median) * 100) / 100 : null
      }
      ratios[`${c}/loop`] = r
    }
  return { perContender: per, ratiosOfMedians: ratios }
}

const fmt = (s: Stat | null | undefined) =>
  s === null || s === undefined
    ? "-"
    : `${s.median.toLocaleString("en-US")} (${s.min.toLocaleString("en-US")}–${s.max.toLocaleString("en-US")})`

const table = (summary: ReturnType<typeof summarize>, contenders: ReadonlyArray<string>) => {
  const head: Array<string> = ["contender", "ok", ...metrics]
  const rows = contenders.map((c) => {
    const p = summary.perContender[c]!
    return [c, `${p.okRounds}/${p.rounds}`, ...metrics.map((m) => fmt(p[m] as Stat | null))]
  })
  const ratioRows = Object.entries(summary.ratiosOfMedians).map(([name, r]) => [
    name,
    "",
    ...metrics.map((m) => (r[m] === null ? "-" : `${r[m]}x`))
  ])
  const all = [head, ...rows, ...ratioRows]
  const widths = head.map((_, i) => Math.max(...all.map((row) => row[i]!.length)))
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")).join("\n")
}

// ---------------------------------------------------------------------------------------------------- versions

const tryRun = (command: string, args: ReadonlyArray<string>): string => {
  try {
    return execFileSync(command, [...args], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" }).trim()
  } catch (error) {
    const e = error as { stderr?: string }
    return (e.stderr ?? "").trim() || "unavailable"
  }
}

const versions = (o: Options) => {
  const pkg = (p: string) => {
    try {
      return (JSON.parse(readFileSync(join(repo, "node_modules", p, "package.json"), "utf8")) as { version: string })
        .version
    } catch {
      return "unknown"
    }
  }
  const brokerJar = (() => {
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8")
        if (!cmd.includes("kafka.Kafka")) continue
        const m = /libs-([^/\0]+)/.exec(cmd)
        return m ? `local broker with classpath libs-${m[1]}` : "local broker (kafka.Kafka)"
      } catch {
        // gone
      }
    }
    return "not found in /proc"
  })()
  const cpu = os.cpus()
  return {
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "unknown",
      memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
      kernel: os.release(),
      loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100)
    },
    node: process.version,
    kafkajs: pkg("kafkajs"),
    effect: pkg("effect"),
    sluiceCommit: tryRun("git", ["-C", repo, "rev-parse", "--short", "HEAD"]),
    java: o.contenders.some((c) => c.startsWith("streams"))
      ? (spawnSync("java", ["-version"], { encoding: "utf8" }).stderr ?? "").split("\n")[0]!.trim()
      : null,
    kafkaStreams: "3.9.1 (benchmarks/peers/streams/pom.xml)",
    faust: o.contenders.includes("faust")
      ? tryRun(faustPython, [
          "-c",
          "import sys, faust, aiokafka; print(sys.version.split()[0], faust.__version__, aiokafka.__version__)"
        ])
      : null,
    broker: brokerJar
  }
}

// ---------------------------------------------------------------------------------------------------- main

const main = async () => {
  const o = parseArgs(process.argv.slice(2))
  sluiceDirsOf = o.sluiceDirs
  checkInstalled(o)
  const runId = `${Date.now().toString(36)}`
  const logDir = join(stateRoot, `logs-${runId}`)
  mkdirSync(logDir, { recursive: true })
  const kafka = new Kafka({ clientId: "peers-harness", brokers: o.brokers, logLevel: logLevel.ERROR })
  const info = versions(o)
  console.error(
    `peers: run ${runId}: ${o.rounds} rounds × [${o.contenders.join(", ")}], ${o.clicks} clicks, ${o.profiles} profiles; logs in ${logDir}`
  )

  const runs: Array<RunResult> = []
  const produced: Array<Record<string, number>> = []
  const roundErrors: Array<{ round: number; error: string }> = []
  const snapshot = () => {
    const summary = summarize(runs, o.contenders)
    return {
      runId,
      date: new Date().toISOString(),
      settings: {
        rounds: o.rounds,
        clicks: o.clicks,
        profiles: o.profiles,
        partitions: o.partitions,
        seed: o.seed,
        contenders: o.contenders,
        sluiceArgs: o.sluiceArgs,
        brokers: o.brokers.join(","),
        mode: "backlog: every profile and click is in its topic before a contender starts",
        outputTimestamps: "LogAppendTime on every output topic (the broker's clock)",
        inputProducer: "kafkajs sendBatch of 5,000 records, acks=-1, no compression"
      },
      versions: info,
      produced,
      roundErrors,
      runs,
      summary
    }
  }
  // Written after every run, so that an interrupted benchmark keeps what it measured.
  const partial = join(logDir, "results.json")
  const save = () => writeFileSync(partial, `${JSON.stringify(snapshot(), null, 2)}\n`)
  for (let round = 1; round <= o.rounds; round++) {
    const prefix = `peers-${runId}-r${round}-`
    const topics: Topics = { prefix, profiles: `${prefix}user_profiles`, clicks: `${prefix}clicks` }
    const ordered = o.contenders.map((_, i) => o.contenders[(i + round - 1) % o.contenders.length]!)
    // New clients every round: a kafkajs client keeps asking metadata for every topic it has used, and fails once
    // the previous round's topics are deleted.
    const admin = kafka.admin()
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner
    })
    try {
      await admin.connect()
      await producer.connect()
      await retrying("create topics", () =>
        admin.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic: topics.profiles,
              numPartitions: o.partitions,
              configEntries: [{ name: "cleanup.policy", value: "compact" }]
            },
            { topic: topics.clicks, numPartitions: o.partitions },
            ...[...new Set(o.contenders.map((c) => outputTopic(topics, c)))].map((topic) => ({
              topic,
              numPartitions: o.partitions,
              configEntries: [{ name: "message.timestamp.type", value: "LogAppendTime" }]
            }))
          ]
        })
      )
      for (const t of [topics.profiles, topics.clicks, ...o.contenders.map((c) => outputTopic(topics, c))])
        await highWaterMarks(admin, t)
      await sleep(500)
      const named = ClickEnrichment.named(prefix)
      const profileRecords = ClickData.generateProfiles(o.profiles, named).map(toMessage)
      const clickRecords = ClickData.generateClicks({
        count: o.clicks,
        users: o.profiles,
        seed: o.seed,
        topics: named
      }).map(toMessage)
      const profilesMs = await produceAll(producer, topics.profiles, profileRecords)
      const clicksMs = await produceAll(producer, topics.clicks, clickRecords)
      // The truth: every click as it sits in the topic, by partition:offset.
      const clicks = new Map<string, ClickEnrichment.Click>()
      for (const r of await readTopic(kafka, admin, topics.clicks, `${prefix}truth`))
        clicks.set(`${r.partition}:${r.offset}`, JSON.parse(r.value!) as ClickEnrichment.Click)
      if (clicks.size !== o.clicks) throw new Error(`read back ${clicks.size} clicks, produced ${o.clicks}`)
      const avg = (ms: ReadonlyArray<Message>) =>
        Math.round(ms.reduce((s, m) => s + (m.value as Buffer).length, 0) / Math.max(1, ms.length))
      produced.push({
        round,
        profilesMs,
        clicksMs,
        profileValueBytesAvg: avg(profileRecords),
        clickValueBytesAvg: avg(clickRecords)
      })
      console.error(
        `peers: round ${round}/${o.rounds}: produced ${o.profiles} profiles (${profilesMs} ms) and ${o.clicks} clicks (${clicksMs} ms); order ${ordered.join(", ")}`
      )

      for (const [position, contender] of ordered.entries()) {
        await sleep(2_000) // let the broker settle after the previous contender's stop and reads
        const r = await runContender(contender, round, position + 1, topics, clicks, { kafka, admin, o, logDir }).catch(
          (error: unknown): RunResult => failedRun(contender, round, position + 1, error)
        )
        runs.push(r)
        save()
        console.error(
          r.ok
            ? `peers: round ${round} ${contender}: ok ${r.verification!.correct}/${r.verification!.expected}; steady ${r.steadyEventsPerSec} ev/s, first output ${r.firstOutputMs} ms, last ${r.lastOutputMs} ms, CPU ${r.cpuMsPer1k} ms/1k (steady ${r.steadyCpuMsPer1k}), peak RSS ${r.peakRssMb} MB`
            : `peers: round ${round} ${contender}: FAILED: ${r.failure}`
        )
      }
    } catch (error) {
      // A round that could not be set up is reported and skipped; the others still count.
      const message = error instanceof Error ? error.message : String(error)
      roundErrors.push({ round, error: message })
      console.error(`peers: round ${round} FAILED to set up: ${message}`)
    } finally {
      if (!o.keep) {
        try {
          for (const entry of existsSync(stateRoot) ? readdirSync(stateRoot) : [])
            if (entry.startsWith(prefix)) rmSync(join(stateRoot, entry), { recursive: true, force: true })
          const topicNames = (await admin.listTopics()).filter((t) => t.startsWith(prefix))
          if (topicNames.length > 0) await admin.deleteTopics({ topics: topicNames }).catch(() => {})
          const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix))
          if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {})
        } catch (error) {
          console.error(`peers: round ${round}: cleanup failed (${String(error)}); delete peers-${runId}-* by hand`)
        }
      }
      await producer.disconnect().catch(() => {})
      await admin.disconnect().catch(() => {})
    }
  }

  const result = snapshot()
  const summary = result.summary
  if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  else process.stdout.write(`${table(summary, o.contenders)}\n`)
  process.exit(roundErrors.length === 0 && runs.every((r) => r.ok) ? 0 : 1)
}

main().catch((error: unknown) => {
  console.error(`peers: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
  process.exit(1)
})
