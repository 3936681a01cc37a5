/**
 * Helpers for tests on the in-memory broker: records from text, a group member that queues what it gets, and
 * waiting for held sends.
 */
import { assert } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { Kafka } from "../../src/Kafka.ts"
import type { MemoryBrokerShape } from "../../src/MemoryBroker.ts"
import { bytes, type ConsumerRecord, type RecordBatch, type TopicPartition, text } from "../../src/Record.ts"

export const record = (topic: string, key: string | null, value: string | null, partition?: number) => ({
  topic,
  key: key === null ? null : bytes(key),
  value: value === null ? null : bytes(value),
  ...(partition === undefined ? {} : { partition })
})

export const keyText = (r: ConsumerRecord) => (r.key === null ? null : text(r.key))
export const valueText = (r: ConsumerRecord) => (r.value === null ? null : text(r.value))

/** A group member that queues every batch and assignment it gets. */
export const member = Effect.fnUntraced(function* (
  groupId: string,
  topics: ReadonlyArray<string>,
  fromBeginning = true
) {
  const kafka = yield* Kafka
  const batches = yield* Queue.unbounded<RecordBatch>()
  const assignments = yield* Queue.unbounded<ReadonlyArray<TopicPartition>>()
  const consumer = yield* kafka.consume(
    { groupId, topics, fromBeginning },
    {
      onBatch: (batch) => Queue.offer(batches, batch).pipe(Effect.asVoid),
      onAssignment: (assignment) => Queue.offer(assignments, assignment).pipe(Effect.asVoid)
    }
  )
  return { consumer, batches, assignments }
})

/** Takes batches until `n` records have arrived. */
export const takeRecords = Effect.fnUntraced(function* (batches: Queue.Queue<RecordBatch>, n: number) {
  const records: Array<ConsumerRecord> = []
  while (records.length < n) records.push(...(yield* Queue.take(batches)).records)
  return records
})

/** Yields until `n` sends are held (they run in forked fibers). */
export const untilHeld = (broker: MemoryBrokerShape, n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000 && (yield* broker.heldSends) !== n; i++) yield* Effect.yieldNow
    assert.strictEqual(yield* broker.heldSends, n)
  })
