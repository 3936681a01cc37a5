/**
 * A topology: one or more input topics, a batch processor for each, the state stores and timers its tasks use, and
 * where rejected records go. A processor is an Effect over a whole batch of decoded records of one input (lookups,
 * store updates and window aggregates happen once per batch), given the task's context; its error type says what
 * can fail. Retryable errors are retried on a Schedule; any other failure is narrowed down to the records that cause
 * it, which are dead-lettered.
 *
 * All inputs of a topology must have the same partition count (checked at startup): task i reads partition i of
 * each, so records with the same key on co-partitioned inputs meet in one task.
 *
 * The one-input form (`input` + `process`) keeps simple topologies short; `inputs: [Topology.input(topic, process),
 * ...]` declares several.
 */
import { Effect, Result } from "effect"
import type { BatchResult } from "./Batch.ts"
import * as DeadLetter from "./DeadLetter.ts"
import type { TopicSpec } from "./Kafka.ts"
import type { ConsumerRecord, TopicPartition, TopicPartitionOffset } from "./Record.ts"
import type { SinkSpec } from "./Sink.ts"
import type * as Store from "./Store.ts"
import type { TaskContext, Timer } from "./Task.ts"
import * as Topic from "./Topic.ts"

/**
 * Hooks into each task's life, per input partition: run before its first batch (after its stores are restored)
 * and after its last. A defect in one fails the worker.
 */
export interface PartitionLifecycle<R> {
  readonly onAssigned?: (tp: TopicPartition) => Effect.Effect<void, never, R>
  readonly onRevoked?: (tp: TopicPartition) => Effect.Effect<void, never, R>
}

/** One input's batch, decoded: what the runtime needs to process it, with the record types kept inside. */
export interface Prepared<E, R> {
  /** Records that did not decode, with their `DecodeError`. */
  readonly rejected: ReadonlyArray<DeadLetter.Rejection>
  /** The records that decoded, in order. */
  readonly records: ReadonlyArray<ConsumerRecord>
  /** Processes every decoded record as one batch. */
  readonly process: (ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
  /** Processes the `i`th decoded record alone (to narrow a failure down to the records that cause it). */
  readonly processOne: (i: number, ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
}

/** An input topic and its processor. */
export interface Input<E, R> {
  readonly topic: string
  readonly deadLetterTopic: string
  readonly prepare: (records: ReadonlyArray<ConsumerRecord>) => Prepared<E, R>
}

export interface Topology<E, R> {
  readonly name: string
  readonly inputs: ReadonlyArray<Input<E, R>>
  /** The dead-letter topic of the first input. */
  readonly deadLetterTopic: string
  /** Topics the topology writes to, created at startup when missing. */
  readonly outputs: ReadonlyArray<TopicSpec>
  /** Stores each task has, restored from their changelog topics before the task's first batch. */
  readonly stores: ReadonlyArray<Store.AnyStoreSpec>
  readonly timers: ReadonlyArray<Timer<E, R>>
  readonly lifecycle: PartitionLifecycle<R>
  readonly startOffsets: StartOffsets<E, R> | undefined
  /** Sinks the topology writes rows to (`out.write`); written before every commit. */
  readonly sinks: ReadonlyArray<SinkSpec<R>>
}

/**
 * Where a task starts, when its position is kept outside Kafka (say, offsets written to Postgres in the same
 * transaction as the rows they produced): per input partition of the task, the offset of the next record to
 * process. A partition left out starts from the group's committed offset. Called when the task starts on this
 * member, before its first batch; retryable failures are retried, others fail the worker.
 */
export type StartOffsets<E, R> = (
  task: number,
  partitions: ReadonlyArray<TopicPartition>
) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, E, R>

/** An input: `topic`'s records decoded with its codecs, processed a batch at a time by `process`. */
export const input = <K, V, E, R>(
  topic: Topic.Topic<K, V>,
  process: (records: ReadonlyArray<Topic.Decoded<K, V>>, ctx: TaskContext) => Effect.Effect<BatchResult, E, R>,
  options: { readonly deadLetterTopic?: string } = {}
): Input<E, R> => ({
  topic: topic.name,
  deadLetterTopic: options.deadLetterTopic ?? DeadLetter.topicFor(topic.name),
  prepare: (records) => {
    const decoded: Array<Topic.Decoded<K, V>> = []
    const raw: Array<ConsumerRecord> = []
    const rejected: Array<DeadLetter.Rejection> = []
    for (const record of records) {
      const result = Topic.decode(topic, record)
      if (Result.isSuccess(result)) {
        decoded.push(result.success)
        raw.push(record)
      } else rejected.push({ record, error: result.failure })
    }
    return {
      rejected,
      records: raw,
      process: (ctx) => process(decoded, ctx),
      processOne: (i, ctx) => process([decoded[i]!], ctx)
    }
  }
})

interface Common<E, R> {
  readonly name: string
  readonly outputs?: ReadonlyArray<TopicSpec>
  /** The stores each task has (`Store.make`); the runtime handles their bytes, `ctx.store(spec)` their types. */
  readonly stores?: ReadonlyArray<Store.AnyStoreSpec>
  readonly timers?: ReadonlyArray<Timer<E, R>>
  readonly lifecycle?: PartitionLifecycle<R>
  /** Positions kept outside Kafka, where tasks start instead of the group's committed offsets. */
  readonly startOffsets?: StartOffsets<E, R>
  /** Sinks the topology writes rows to with `out.write(sink, row)` (Sink.ts). */
  readonly sinks?: ReadonlyArray<SinkSpec<R>>
}

export interface OneInput<K, V, E, R> extends Common<E, R> {
  readonly input: Topic.Topic<K, V>
  readonly process: (records: ReadonlyArray<Topic.Decoded<K, V>>, ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
  readonly deadLetterTopic?: string
}

export interface SeveralInputs<E, R> extends Common<E, R> {
  readonly inputs: ReadonlyArray<Input<E, R>>
}

export function make<K, V, E, R>(definition: OneInput<K, V, E, R>): Topology<E, R>
export function make<E, R>(definition: SeveralInputs<E, R>): Topology<E, R>
export function make<K, V, E, R>(definition: OneInput<K, V, E, R> | SeveralInputs<E, R>): Topology<E, R> {
  const inputs =
    "inputs" in definition
      ? definition.inputs
      : [
          input(
            definition.input,
            definition.process,
            definition.deadLetterTopic === undefined ? {} : { deadLetterTopic: definition.deadLetterTopic }
          )
        ]
  if (inputs.length === 0) throw new Error(`topology ${definition.name} has no input`)
  const topics = inputs.map((i) => i.topic)
  if (new Set(topics).size !== topics.length) throw new Error(`topology ${definition.name} reads a topic twice`)
  return {
    name: definition.name,
    inputs,
    deadLetterTopic: inputs[0]!.deadLetterTopic,
    outputs: definition.outputs ?? [],
    stores: definition.stores ?? [],
    timers: definition.timers ?? [],
    lifecycle: definition.lifecycle ?? {},
    startOffsets: definition.startOffsets,
    sinks: definition.sinks ?? []
  }
}

/**
 * `topology` with `f` run before each batch of every input is processed (with the batch's decoded records): a
 * hook for measurements and tests, not for work that must be retried with the batch.
 */
export const tapBatches = <E, R, E2, R2>(
  topology: Topology<E, R>,
  f: (records: ReadonlyArray<ConsumerRecord>) => Effect.Effect<void, E2, R2>
): Topology<E | E2, R | R2> => ({
  ...topology,
  inputs: topology.inputs.map(
    (input): Input<E | E2, R | R2> => ({
      ...input,
      prepare: (records) => {
        const prepared = input.prepare(records)
        return {
          ...prepared,
          process: (ctx) => Effect.andThen(f(prepared.records), prepared.process(ctx))
        }
      }
    })
  ),
  timers: topology.timers
})
