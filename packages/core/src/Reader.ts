/**
 * Bounded reads of whole topics: from the earliest offset up to the high-water mark each partition had when the
 * read started. The profile table's bootstrap, the rescan join strategy and `sluice inspect` use it.
 */
import { Effect, Stream } from "effect"
import type { KafkaError } from "./Errors.ts"
import { Kafka } from "./Kafka.ts"
import type { ConsumerRecord, RecordBatch } from "./Record.ts"

/**
 * The end offsets to read up to, and a function telling whether a batch reaches them.
 * Partitions that are empty (`high <= low`) are done from the start.
 */
export const endTracker = (
  ends: ReadonlyArray<{ readonly partition: number; readonly low: number; readonly high: number }>
) => {
  const remaining = new Map<number, number>()
  for (const e of ends) if (e.high > e.low) remaining.set(e.partition, e.high)
  return {
    done: () => remaining.size === 0,
    /** Records of the batch below the end offsets; marks partitions that reached their end. */
    take: (batch: RecordBatch): ReadonlyArray<ConsumerRecord> => {
      const end = remaining.get(batch.partition)
      if (end === undefined) return []
      const lastRecord = batch.records[batch.records.length - 1]?.offset ?? -1
      // A partition that ends in a transaction marker has no record at `end - 1`; the fetch still covered it.
      if (Math.max(lastRecord, batch.lastOffset ?? -1) >= end - 1) remaining.delete(batch.partition)
      return lastRecord < end ? batch.records : batch.records.filter((r) => r.offset < end)
    }
  }
}

/** Reads a topic from the beginning to the end offsets it has now, as batches of records, then ends. */
export const readToEnd = (topic: string): Stream.Stream<ReadonlyArray<ConsumerRecord>, KafkaError, Kafka> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const tracker = endTracker(yield* kafka.offsets(topic))
      if (tracker.done()) return Stream.empty
      return kafka.read({ topics: [topic], from: "earliest" }).pipe(
        // One batch per chunk: `map` runs over a whole chunk before `takeUntil` looks, so with several batches in a
        // chunk the tracker would be done after the first and the others would be dropped.
        Stream.rechunk(1),
        Stream.map(tracker.take),
        Stream.takeUntil(() => tracker.done()),
        Stream.filter((records) => records.length > 0)
      )
    })
  )

/** Folds every record of a topic, from the beginning to its current end, into an accumulator. */
export const foldToEnd = <A>(
  topic: string,
  initial: A,
  f: (acc: A, record: ConsumerRecord) => A
): Effect.Effect<A, KafkaError, Kafka> =>
  Stream.runFold(
    readToEnd(topic),
    () => initial,
    (acc, records) => {
      let next = acc
      for (const r of records) next = f(next, r)
      return next
    }
  )
