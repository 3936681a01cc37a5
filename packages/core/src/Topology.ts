/**
 * A topology: one input topic, a batch processor, and where rejected records go. The processor is an Effect over a
 * whole batch of decoded records (lookups, table updates and window aggregates happen once per batch); its error
 * type says what can fail. Retryable errors are retried on a Schedule; any other failure is narrowed down to the
 * records that cause it, which are dead-lettered.
 */
import type { Effect } from "effect"
import type { BatchResult } from "./Batch.ts"
import * as DeadLetter from "./DeadLetter.ts"
import type { TopicSpec } from "./Kafka.ts"
import type { TopicPartition } from "./Record.ts"
import type { Decoded, Topic } from "./Topic.ts"

/**
 * Hooks into each partition's life: restore partitioned state (changelog tables, windows) when a partition is
 * assigned, flush it when the partition is revoked or the worker stops. Called by the partition's actor, before its
 * first batch and after its last.
 */
export interface PartitionLifecycle<R> {
  readonly onAssigned?: (tp: TopicPartition) => Effect.Effect<void, never, R>
  readonly onRevoked?: (tp: TopicPartition) => Effect.Effect<void, never, R>
}

export interface Topology<K, V, E, R> {
  readonly name: string
  readonly input: Topic<K, V>
  readonly deadLetterTopic: string
  /** Topics the topology writes to, created at startup when missing. */
  readonly outputs: ReadonlyArray<TopicSpec>
  readonly process: (records: ReadonlyArray<Decoded<K, V>>) => Effect.Effect<BatchResult, E, R>
  readonly lifecycle: PartitionLifecycle<R>
}

export const make = <K, V, E, R>(definition: {
  readonly name: string
  readonly input: Topic<K, V>
  readonly process: (records: ReadonlyArray<Decoded<K, V>>) => Effect.Effect<BatchResult, E, R>
  readonly deadLetterTopic?: string
  readonly outputs?: ReadonlyArray<TopicSpec>
  readonly lifecycle?: PartitionLifecycle<R>
}): Topology<K, V, E, R> => ({
  name: definition.name,
  input: definition.input,
  process: definition.process,
  deadLetterTopic: definition.deadLetterTopic ?? DeadLetter.topicFor(definition.input.name),
  outputs: definition.outputs ?? [],
  lifecycle: definition.lifecycle ?? {}
})
