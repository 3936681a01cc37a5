/**
 * `sluice bench state`: what state costs the counting topology (processors/Counting.ts), measured and verified.
 *
 * - Throughput: the topology counting --keys records (one per key) with its changelog-backed store, against the
 *   same topology counting in a plain Map (no changelog, no restore): the state overhead.
 * - Restore: a task runtime that takes over the --keys-key store restores it from its changelog: into fresh SQLite
 *   files, in memory, and into the SQLite files kept from the first (a restart: only the changelog's tail, which a
 *   memory-backed worker wrote in between by counting --tail more records).
 *
 * Restore time and records read are the runtime's own ("restored ... in N ms", per task): a case's restoreMs runs
 * from the first task's restore start to the last one's end. Every case is verified: the throughput cases read
 * every output back and compare each key's last count with the recomputation from the input; each restore case
 * then counts one probe record for each of up to 600 keys spread over every task, whose outputs must be the
 * truth plus one, so a store restored wrong fails the run. Progress goes to stderr, results to stdout.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Kafka } from "@sluice/core/Kafka"
import * as Metrics from "@sluice/core/Metrics"
import * as Reader from "@sluice/core/Reader"
import { bytes, type ProducerRecord, type RecordMetadata } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Store from "@sluice/core/Store"
import * as Topology from "@sluice/core/Topology"
import * as Counting from "@sluice/processors/Counting"
import { Console, Effect, Fiber, Logger, Result, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"

export class StateBenchFailed extends Schema.TaggedError<StateBenchFailed>()("StateBenchFailed", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

export type Case = "count" | "restore"
export type StoreKind = "none" | "memory" | "sqlite" | "sqlite-restart"

/** One measured case: one JSON line with `--json`. */
export interface CaseResult {
  readonly case: Case
  readonly store: StoreKind
  readonly keys: number
  /** Records the case read: input records (count), changelog records (restore). */
  readonly recordsRead: number
  /** The first task's restore start to the last one's end; 0 for a count, which starts with an empty changelog. */
  readonly restoreMs: number
  /** Count: first batch to last output acknowledged. Restore: restoreMs. */
  readonly elapsedMs: number
  readonly recordsPerSec: number
  /** Restore: from starting the runtime (joining the group included) to the last task restored. */
  readonly readyMs?: number
  /** Count: keys whose final count is the truth, of `keys`. Restore: probe outputs that are the truth plus one. */
  readonly verified: string
  readonly correct: boolean
}

export const rate = (records: number, ms: number): number => Math.round((records / Math.max(1, ms)) * 1000)

/** The window the restores of one start cover: from the first one's start (end minus its time) to the last end. */
export const restoreWindow = (
  restores: ReadonlyArray<{ readonly at: number; readonly ms: number; readonly records: number }>
): { readonly ms: number; readonly records: number; readonly end: number } => {
  if (restores.length === 0) return { ms: 0, records: 0, end: 0 }
  const start = Math.min(...restores.map((r) => r.at - r.ms))
  const end = Math.max(...restores.map((r) => r.at))
  return { ms: end - start, records: restores.reduce((n, r) => n + r.records, 0), end }
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

/** The results as a table, with the state overhead when both count cases ran. */
export const summary = (results: ReadonlyArray<CaseResult>): string => {
  const lines = [
    `${"case".padEnd(8)}${"store".padEnd(16)}${pad("keys", 10)}${pad("read", 10)}${pad("ms", 9)}${pad("records/s", 12)}  verified`,
    ...results.map(
      (r) =>
        `${r.case.padEnd(8)}${r.store.padEnd(16)}${pad(r.keys, 10)}${pad(r.recordsRead, 10)}${pad(r.elapsedMs, 9)}${pad(r.recordsPerSec, 12)}  ${r.verified}${r.correct ? "" : " WRONG"}`
    )
  ]
  const plain = results.find((r) => r.case === "count" && r.store === "none")
  const stored = results.find((r) => r.case === "count" && r.store === "memory")
  if (plain !== undefined && stored !== undefined) {
    // Small runs are noise, and can come out faster with the store.
    const slower = Math.round((1 - stored.recordsPerSec / plain.recordsPerSec) * 100)
    lines.push(
      `state overhead: ${stored.recordsPerSec} records/s with the store, ${plain.recordsPerSec} without ` +
        `(${slower >= 0 ? `${slower}% slower` : `${-slower}% faster`})`
    )
  }
  return lines.join("\n")
}

interface Settings {
  readonly keys: number
  readonly partitions: number
  readonly tail: number
  readonly json: boolean
}

const chunk = 10_000

/** Produces `records`, adding them to `truth`, with progress on stderr; returns where each was written. */
const produce = Effect.fnUntraced(function* (
  records: (from: number, count: number) => ReadonlyArray<ProducerRecord>,
  total: number,
  truth: Map<string, number>,
  label: string
) {
  const kafka = yield* Kafka
  const written: Array<RecordMetadata> = []
  let reported = Date.now()
  for (let from = 0; from < total; from += chunk) {
    const part = records(from, Math.min(chunk, total - from))
    for (const m of yield* kafka.send(part)) written.push(m)
    Counting.recompute(part, truth)
    if (Date.now() - reported > 2_000) {
      reported = Date.now()
      yield* Console.error(`bench state: ${label}: produced ${from + part.length}/${total}`)
    }
  }
  return written
})

/** Polls `check` until it holds; fails if the runner stops first or after `timeoutMs`. */
const awaitOrFail = Effect.fnUntraced(function* <E, R>(
  what: string,
  runner: Fiber.Fiber<never, unknown>,
  check: Effect.Effect<boolean, E, R>,
  onProgress: Effect.Effect<void> = Effect.void,
  timeoutMs = 30 * 60_000
) {
  const deadline = Date.now() + timeoutMs
  let reported = Date.now()
  while (!(yield* check)) {
    if (runner.pollUnsafe() !== undefined) {
      const exit = yield* Fiber.await(runner)
      return yield* new StateBenchFailed({ reason: `the topology stopped before ${what}: ${String(exit)}` })
    }
    if (Date.now() > deadline) return yield* new StateBenchFailed({ reason: `timed out waiting until ${what}` })
    if (Date.now() - reported > 2_000) {
      reported = Date.now()
      yield* onProgress
    }
    yield* Effect.sleep("5 millis")
  }
})

const committedToEnd = (group: string, topic: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(topic)
    const committed = new Map((yield* kafka.committedOffsets(group, topic)).map((c) => [c.partition, c.offset]))
    return highs.every((h) => (committed.get(h.partition) ?? 0) >= h.high)
  })

const bench = (settings: Settings) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const runId = Date.now().toString(36)
    const prefix = `bench-state-${runId}-`
    const topics = Counting.named(prefix)
    const { keys, partitions } = settings
    const group = `${prefix}counts`
    const say = (line: string) => Console.error(`bench state: ${line}`)
    const results: Array<CaseResult> = []
    const report = (result: CaseResult) =>
      Effect.suspend(() => {
        results.push(result)
        return settings.json
          ? Console.log(JSON.stringify(result))
          : say(`${result.case} ${result.store}: ${result.recordsPerSec} records/s, ${result.verified}`)
      })
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "sluice-bench-state-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    const restores: Array<Counting.Restore & { readonly at: number }> = []
    const capture = Logger.make(({ message }) => {
      for (const part of Array.isArray(message) ? message : [message]) {
        const restore = Counting.restoreOf(String(part))
        if (restore !== undefined) restores.push({ ...restore, at: Date.now() })
      }
    })

    yield* kafka.createTopics([{ name: topics.input.name, partitions }])
    const truth = new Map<string, number>()
    yield* say(`producing ${keys} records, one per key, to ${topics.input.name} (${partitions} partitions)`)
    yield* produce(
      (from, count) => Counting.generate({ count, keys, from, topic: topics.input.name }),
      keys,
      truth,
      topics.input.name
    )

    /** Counts the whole input once, timed; then reads every output back and checks each key's last count. */
    const count = Effect.fnUntraced(function* (store: "none" | "memory") {
      const output = Counting.outputTopic(`${prefix}${store}-count-output`)
      const caseTopics = { input: topics.input, output }
      const caseGroup = store === "none" ? `${prefix}plain` : group
      let firstAt = 0
      const topology = Topology.tapBatches(
        Counting.topology({
          topics: caseTopics,
          worker: "bench",
          partitions,
          state: store === "none" ? "none" : "store"
        }),
        () =>
          Effect.sync(() => {
            if (firstAt === 0) firstAt = Date.now()
          })
      )
      const before = (yield* Metrics.totals).out
      const done = Effect.map(Metrics.totals, (t) => t.out - before)
      yield* say(`count, store ${store}: counting ${keys} records`)
      const runner = yield* Effect.forkScoped(Runner.run(topology, { groupId: caseGroup }))
      yield* awaitOrFail(
        `${keys} outputs`,
        runner,
        Effect.map(done, (n) => n >= keys),
        Effect.flatMap(done, (n) => say(`count, store ${store}: ${n}/${keys} outputs`))
      )
      const elapsedMs = Math.max(1, Date.now() - firstAt)
      yield* awaitOrFail("every input record is committed", runner, committedToEnd(caseGroup, topics.input.name))
      yield* Fiber.interrupt(runner)
      yield* say(`count, store ${store}: reading the outputs back to verify them`)
      const last = yield* Reader.foldToEnd(output.name, new Map<string, Counting.Written>(), (acc, record) =>
        Counting.lastOutputs(Counting.decodeOutputs([record], caseTopics), acc)
      )
      const v = Counting.verify(truth, Counting.countsOf(last))
      yield* report({
        case: "count",
        store,
        keys,
        recordsRead: keys,
        restoreMs: 0,
        elapsedMs,
        recordsPerSec: rate(keys, elapsedMs),
        verified: `${v.exact}/${v.keys} keys exact`,
        correct: v.exact === v.keys && v.unexpected.length === 0
      })
    })

    /**
     * Starts the topology over `backend` in the group that counted the input, so every task restores its store;
     * `before` runs first (records for the runtime to count once restored). Then counts the probes and checks them.
     */
    const restore = Effect.fnUntraced(function* (
      store: "memory" | "sqlite" | "sqlite-restart",
      backend: Store.BackendFactory,
      before: Effect.Effect<unknown, unknown, Kafka> = Effect.void
    ) {
      yield* before
      // One record for each of up to 600 keys spread over all of them, and so over every task.
      const probes = Math.min(keys, 600)
      const probeKeys = Array.from({ length: probes }, (_, i) => Counting.keyOf(Math.floor((i * keys) / probes)))
      const expected = new Map(probeKeys.map((k) => [k, (truth.get(k) ?? 0) + 1]))
      const probeRecords = probeKeys.map((k, i) => ({
        topic: topics.input.name,
        key: bytes(k),
        value: bytes(`probe ${i}`)
      }))
      const written = yield* produce((from, n) => probeRecords.slice(from, from + n), probes, truth, "probes")
      const at = new Set(written.map((m) => `${m.partition}@${m.offset}`))
      const seen = new Map<string, number>()
      const topology = tapOutputs(Counting.topology({ topics, worker: `bench-${store}`, partitions }), (outputs) => {
        for (const o of outputs) {
          const value = topics.output.value.decode(o.value)
          if (Result.isSuccess(value) && at.has(`${value.success.task}@${value.success.offset}`))
            seen.set(value.success.key, value.success.count)
        }
      })
      restores.length = 0
      const started = Date.now()
      yield* say(`restore, ${store}: starting the topology over the ${keys}-key store's changelog`)
      const runner = yield* Effect.forkScoped(
        Runner.run(topology, { groupId: group, stateStore: backend }).pipe(
          Effect.provide(Logger.layer([capture], { mergeWithExisting: true }))
        )
      )
      yield* awaitOrFail(
        "every probe is counted",
        runner,
        Effect.sync(() => seen.size >= probes),
        Effect.suspend(() => say(`restore, ${store}: ${restores.length} task(s) restored so far`))
      )
      yield* awaitOrFail("every input record is committed", runner, committedToEnd(group, topics.input.name))
      yield* Fiber.interrupt(runner)
      const window = restoreWindow(restores)
      const right = probeKeys.filter((k) => seen.get(k) === expected.get(k)).length
      yield* report({
        case: "restore",
        store,
        keys,
        recordsRead: window.records,
        restoreMs: window.ms,
        elapsedMs: window.ms,
        recordsPerSec: rate(window.records, window.ms),
        readyMs: window.end === 0 ? 0 : window.end - started,
        verified: `${right}/${probes} probes right`,
        correct: right === probes
      })
    })

    yield* count("none")
    yield* count("memory")
    const sqlite = Store.sqlite({ dir })
    yield* restore("sqlite", sqlite)
    // The memory-backed run counts --tail more records: changelog records the SQLite files have not seen.
    const tail = Math.min(settings.tail, keys)
    yield* restore(
      "memory",
      Store.memory,
      produce((from, n) => Counting.generate({ count: n, keys, from, topic: topics.input.name }), tail, truth, "tail")
    )
    yield* restore("sqlite-restart", sqlite)

    if (!settings.json) yield* Console.log(summary(results))
    const wrong = results.filter((r) => !r.correct)
    if (wrong.length > 0) {
      return yield* new StateBenchFailed({
        reason: `wrong results: ${wrong.map((r) => `${r.case} ${r.store} (${r.verified})`).join(", ")}`
      })
    }
  }).pipe(
    Effect.scoped,
    // The topics are throwaway: dropping them keeps a shared broker tidy. The prefix covers the changelog and the
    // dead-letter topic too (the group's name starts with it).
    Effect.ensuring(
      Kafka.use((kafka) =>
        kafka.listTopics.pipe(
          Effect.flatMap((names) => kafka.deleteTopics(names.filter((n) => n.startsWith("bench-state-"))))
        )
      ).pipe(Effect.ignore)
    )
  )

/** `topology` with `f` called with the outputs of every batch it processes (before they are sent). */
const tapOutputs = <E, R>(
  topology: Topology.Topology<E, R>,
  f: (outputs: ReadonlyArray<ProducerRecord>) => void
): Topology.Topology<E, R> => ({
  ...topology,
  inputs: topology.inputs.map((input) => ({
    ...input,
    prepare: (records) => {
      const prepared = input.prepare(records)
      return {
        ...prepared,
        process: (ctx) => Effect.tap(prepared.process(ctx), (result) => Effect.sync(() => f(result.outputs))),
        processOne: (i, ctx) =>
          Effect.tap(prepared.processOne(i, ctx), (result) => Effect.sync(() => f(result.outputs)))
      }
    }
  }))
})

export const command = Flags.command(
  "state",
  {
    keys: Flags.int("keys", {
      description: "keys in the store, one input record each",
      min: 1,
      default: 1_000_000
    }),
    partitions: Flags.int("partitions", {
      description: "partitions of the input, i.e. tasks, each with its store",
      min: 1,
      max: 1_000,
      default: 6
    }),
    tail: Flags.int("tail", {
      description: "records counted between the two SQLite restores: the changelog tail a restart restores",
      min: 1,
      default: 10_000
    }),
    brokers: Flags.brokers,
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "one JSON object per case on stdout (case, store, keys, recordsRead, restoreMs, elapsedMs, recordsPerSec, readyMs, verified, correct); progress stays on stderr"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    bench({ keys: o.keys, partitions: o.partitions, tail: o.tail, json: o.json }).pipe(
      Effect.provide(Flags.kafkaLayer(o.brokers))
    )
).pipe(
  Command.withDescription(
    "Benchmark state: restoring a --keys-key store from its changelog (memory, SQLite, SQLite after a restart: the tail only) and the counting topology with its store against without one; every case verified, a wrong count fails the run"
  ),
  Command.withExamples([
    {
      command: "sluice bench state --keys 100000 --brokers memory",
      description: "on the in-memory broker: nothing to install"
    },
    {
      command: "sluice bench state --json > state.jsonl",
      description: "1,000,000 keys against Kafka on 127.0.0.1:9092, one JSON object per case"
    }
  ])
)
