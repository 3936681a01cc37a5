/**
 * The counting topology, the classic word count over a changelog-backed store: each record of
 * `<prefix>count-input` adds one to its key's count in the task's `counts` store, and the new count goes to
 * `<prefix>count-output` as `{ key, count, worker, task, offset }`.
 *
 * It is the runtime's acceptance test for state and ownership. Every output names the worker that wrote it and
 * what the store held, and task i writes to output partition i, so a partition of the output is the history of one
 * task in the order it was written: `handoffs` checks that it changes worker only at a handoff and never goes
 * back and forth (two owners at once), and `verify` checks the last count of each key against `recompute`.
 *
 * Delivery, by default at-least-once: a batch's counts reach the changelog in the same send as its outputs, and its input
 * offsets are committed only after that send is acknowledged. A record whose send was acknowledged but whose
 * offset was not committed (a kill -9 between the two, a handoff that abandons its drain) is counted again by the
 * next owner, which restores the store with that record's write in it: a count exceeds the truth by one for each
 * such re-delivery, and is never below it. That holds only with one owner per task at a time: two owners would
 * both write the key's changelog from what each had restored, and the next restore could get the smaller count.
 *
 * Under exactly-once (`guarantee: "exactly_once"`) the outputs, the changelog records and the input offsets of a
 * task's steps commit in one transaction: a read_committed reader sees each input offset once in the output, and
 * each key's counts as 1, 2, 3, ... with no repeat.
 */
import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import { bytes, type ConsumerRecord, type ProducerRecord } from "@sluice/core/Record"
import * as Store from "@sluice/core/Store"
import type { TaskContext } from "@sluice/core/Task"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Effect, Result, Schema } from "effect"

export const CountOutput = Schema.Struct({
  key: Schema.String,
  count: Schema.Int,
  worker: Schema.String,
  task: Schema.Int,
  offset: Schema.Int
})
export type CountOutput = typeof CountOutput.Type

export const inputTopic = (name: string) => Topic.make(name, { key: Codec.string, value: Codec.raw })
export const outputTopic = (name: string) => Topic.make(name, { key: Codec.string, value: Codec.json(CountOutput) })

/** The topics of a deployment; `named(prefix)` gives fresh ones (tests, parallel environments). */
export const named = (prefix = "") => ({
  input: inputTopic(`${prefix}count-input`),
  output: outputTopic(`${prefix}count-output`)
})
export type Topics = ReturnType<typeof named>

/** Key → count. Counts as decimal text: small changelog records, readable with `sluice inspect`. */
export const counts = Store.make("counts", { key: Codec.string, value: Codec.intString })

/** What the processor needs of its counts: a store has it, and so does a Map behind `plainCounts`. */
type Counts = Pick<Store.KeyValueStore<string, number>, "get" | "put">

const plainCounts = (): Counts => {
  const map = new Map<string, number>()
  return {
    get: (key) => map.get(key),
    put: (key, count) => {
      map.set(key, count)
    }
  }
}

export interface Options {
  readonly topics?: Topics
  /** Written into every output, so a test can tell who processed what. */
  readonly worker: string
  /** Partitions of the output topic when it is created: the input's, so task i can write to partition i. */
  readonly partitions: number
  /**
   * `"none"`: counts in a plain Map per task, neither changelogged nor restored: the same work without a store,
   * the benchmark's baseline. Correct only for one uninterrupted run that reads the input from its beginning.
   */
  readonly state?: "store" | "none"
}

export const topology = (options: Options) => {
  const topics = options.topics ?? named()
  const { worker } = options
  const local = new Map<number, Counts>()
  /** The counts of a task: its store, or with `state: "none"` a Map of this process. */
  const countsOf = (ctx: TaskContext): Counts => {
    if (options.state !== "none") return ctx.store(counts)
    let plain = local.get(ctx.task)
    if (plain === undefined) {
      plain = plainCounts()
      local.set(ctx.task, plain)
    }
    return plain
  }
  return Topology.make({
    name: "counts",
    input: topics.input,
    outputs: [{ name: topics.output.name, partitions: options.partitions }],
    stores: options.state === "none" ? [] : [counts],
    process: (records, ctx) =>
      Effect.sync(() => {
        const store = countsOf(ctx)
        // Task i writes to partition i whatever partitioner produced the input, so one output partition holds
        // exactly one task's history, in the order its owners wrote it.
        const partition = { partition: ctx.task }
        return Batch.forEach(records, ({ key, record }, out) => {
          const count = (store.get(key) ?? 0) + 1
          store.put(key, count)
          out.emit(topics.output, key, { key, count, worker, task: ctx.task, offset: record.offset }, partition)
        })
      })
  })
}

/** The key of the `n`th of `keys` keys. */
export const keyOf = (n: number): string => `key-${n}`

/**
 * `count` input records over `keys` keys, round robin: record i (counting from `from`) has key `keyOf(i % keys)`
 * and its own number as its value. With `count` a multiple of `keys`, every key is counted `count / keys` times.
 */
export const generate = (options: {
  readonly count: number
  readonly keys: number
  readonly topic?: string
  readonly from?: number
}): Array<ProducerRecord> => {
  const topic = options.topic ?? named().input.name
  const from = options.from ?? 0
  const out = new Array<ProducerRecord>(options.count)
  for (let i = 0; i < options.count; i++) {
    const n = from + i
    out[i] = { topic, key: bytes(keyOf(n % options.keys)), value: bytes(String(n)) }
  }
  return out
}

/**
 * The truth: how many times each key occurs in `records`, added to `into`. Keys the topology cannot decode (absent,
 * not UTF-8) are dead-lettered there and not counted here either.
 */
export const recompute = (
  records: Iterable<{ readonly key: Uint8Array | null }>,
  into: Map<string, number> = new Map()
): Map<string, number> => {
  for (const record of records) {
    const key = Codec.string.decode(record.key)
    if (Result.isSuccess(key)) into.set(key.success, (into.get(key.success) ?? 0) + 1)
  }
  return into
}

/** An output record decoded, with where and when it was written. */
export interface Written extends CountOutput {
  readonly partition: number
  /** The output's own offset in its partition: the order it was written in. */
  readonly at: number
  readonly timestamp: number
}

/** Decodes output records; one that does not decode is a bug of the topology and throws. */
export const decodeOutputs = (
  records: Iterable<ConsumerRecord>,
  topics: Topics = named(),
  into: Array<Written> = []
): Array<Written> => {
  for (const record of records) {
    const decoded = Topic.decode(topics.output, record)
    if (Result.isFailure(decoded)) throw new Error(`undecodable count output: ${decoded.failure.message}`)
    into.push({ ...decoded.success.value, partition: record.partition, at: record.offset, timestamp: record.timestamp })
  }
  return into
}

/** The last output of each key (by output offset), added to `into`: outputs may come in several reads. */
export const lastOutputs = (
  outputs: Iterable<Written>,
  into: Map<string, Written> = new Map()
): Map<string, Written> => {
  for (const o of outputs) {
    const seen = into.get(o.key)
    if (seen === undefined || o.partition !== seen.partition || o.at > seen.at) into.set(o.key, o)
  }
  return into
}

/** The count of each key's output in `last` (from `lastOutputs`). */
export const countsOf = (last: ReadonlyMap<string, Written>): Map<string, number> =>
  new Map(Array.from(last, ([key, o]) => [key, o.count]))

/** The last count of each key: what the store held when each key was last written. */
export const finalCounts = (outputs: Iterable<Written>): Map<string, number> => countsOf(lastOutputs(outputs))

export interface Verification {
  readonly keys: number
  /** Keys whose last count is the truth. */
  readonly exact: number
  /** How much the counts exceed the truth in all, and in how many keys: records counted twice (at-least-once). */
  readonly excess: number
  readonly keysOver: number
  /** Keys whose last count is below the truth, or missing: counts lost, which must never happen. */
  readonly under: ReadonlyArray<string>
  /** Keys with a count that the input does not have. */
  readonly unexpected: ReadonlyArray<string>
}

/** The last counts against the truth. */
export const verify = (truth: ReadonlyMap<string, number>, final: ReadonlyMap<string, number>): Verification => {
  let exact = 0
  let excess = 0
  let keysOver = 0
  const under: Array<string> = []
  for (const [key, expected] of truth) {
    const got = final.get(key) ?? 0
    if (got === expected) exact++
    else if (got > expected) {
      excess += got - expected
      keysOver++
    } else under.push(`${key}: ${got} < ${expected}`)
  }
  const unexpected = [...final.keys()].filter((key) => !truth.has(key))
  return { keys: truth.size, exact, excess, keysOver, under, unexpected }
}

/** At-least-once: no count lost, none invented; counts over the truth are re-deliveries (see `excess`). */
export const isComplete = (v: Verification): boolean => v.under.length === 0 && v.unexpected.length === 0

export const describe = (v: Verification): string =>
  `${v.keys} keys: ${v.exact} exact, ${v.keysOver} over by ${v.excess} in all, ${v.under.length} under` +
  `${v.under.length > 0 ? ` (${v.under.slice(0, 5).join(", ")})` : ""}, ${v.unexpected.length} unexpected`

export interface Handoffs {
  /** Per output partition (task), the workers that wrote it, one entry per run of consecutive outputs. */
  readonly owners: ReadonlyMap<number, ReadonlyArray<string>>
  /** Runs of a worker on a partition that another worker had written after it: the second A of A, B, A. */
  readonly returns: number
  /**
   * Outputs of returns that came in the same epoch (between the same two membership changes) as the run they
   * follow: the two workers owned the task at once. Zero for a handoff with one owner at a time.
   */
  readonly interleaved: number
  /** How long those two owners wrote the partition at once, summed over partitions: first of B to last of A. */
  readonly overlapMs: number
  /** The most changes of owner one partition had in one epoch: at most 1 when each change moves a task once. */
  readonly maxChangesPerEpoch: number
}

/**
 * Who wrote each task's outputs, in the order they were written (by output offset), against the times the group's
 * membership changed (`changes`, epoch ms, ascending; none: one epoch). A task moves at most once per membership
 * change, so a worker that writes a partition again in the epoch in which another took it over kept working on
 * it: an overlap. A worker coming back in a later epoch is a second handoff, which a sticky assignor avoids where
 * it can; `returns` counts both.
 */
export const handoffs = (outputs: ReadonlyArray<Written>, changes: ReadonlyArray<number> = []): Handoffs => {
  const epochOf = (timestamp: number) => {
    let epoch = 0
    while (epoch < changes.length && changes[epoch]! <= timestamp) epoch++
    return epoch
  }
  const byPartition = new Map<number, Array<Written>>()
  for (const o of outputs) {
    const list = byPartition.get(o.partition) ?? []
    list.push(o)
    byPartition.set(o.partition, list)
  }
  const owners = new Map<number, ReadonlyArray<string>>()
  let returns = 0
  let interleaved = 0
  let overlapMs = 0
  let maxChangesPerEpoch = 0
  for (const [partition, list] of [...byPartition].sort(([a], [b]) => a - b)) {
    list.sort((a, b) => a.at - b.at)
    const runs: Array<{ readonly worker: string; readonly first: number; last: number; outputs: number }> = []
    for (const o of list) {
      const run = runs[runs.length - 1]
      if (run !== undefined && run.worker === o.worker) {
        run.last = o.timestamp
        run.outputs++
      } else runs.push({ worker: o.worker, first: o.timestamp, last: o.timestamp, outputs: 1 })
    }
    const changesIn = new Map<number, number>()
    for (let k = 1; k < runs.length; k++) {
      const run = runs[k]!
      const previous = runs[k - 1]!
      const epoch = epochOf(run.first)
      changesIn.set(epoch, (changesIn.get(epoch) ?? 0) + 1)
      if (!runs.slice(0, k - 1).some((r) => r.worker === run.worker)) continue
      returns++
      if (epoch === epochOf(previous.first)) {
        interleaved += run.outputs
        overlapMs += Math.max(0, run.last - previous.first)
      }
    }
    for (const n of changesIn.values()) maxChangesPerEpoch = Math.max(maxChangesPerEpoch, n)
    owners.set(
      partition,
      runs.map((r) => r.worker)
    )
  }
  return { owners, returns, interleaved, overlapMs, maxChangesPerEpoch }
}

/** A store restore, as the runtime reports it. */
export interface Restore {
  readonly store: string
  readonly task: number
  /** Changelog records read and applied. */
  readonly records: number
  /** The changelog offset it started from: the backend's checkpoint, 0 for a store restored in full. */
  readonly from: number
  readonly ms: number
}

const restoredLine = /restored (\S+) of task (\d+): (\d+) changelog record\(s\) from offset (\d+) in (\d+) ms/

/**
 * The restore a log message of the task runtime reports ("restored <store> of task <n>: <k> changelog record(s)
 * from offset <o> in <t> ms", logged when a task's store read at least one record), if it is one. Core reports
 * restores only in its log; tests and `sluice bench state` read them from there.
 */
export const restoreOf = (message: string): Restore | undefined => {
  const m = restoredLine.exec(message)
  return m === null
    ? undefined
    : { store: m[1]!, task: Number(m[2]), records: Number(m[3]), from: Number(m[4]), ms: Number(m[5]) }
}
