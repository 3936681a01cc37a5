/**
 * One actor per assigned partition: a fiber with a bounded mailbox of fetched batches, processed in offset order.
 *
 * Each step takes every batch waiting in the mailbox and handles them as one: decode in a plain loop, run the
 * topology's processor once, hand outputs and dead letters to the delivery path, record the next offset. When the
 * mailbox is full the runner pauses the partition at the fetcher, so a slow partition never buffers without bound
 * and never stalls the others.
 */
import { type Cause, Clock, Effect, Fiber, Metric, Queue, Result, type Schedule } from "effect"
import * as Batch from "../Batch.ts"
import * as DeadLetter from "../DeadLetter.ts"
import type { PartitionDelivery } from "../Delivery.ts"
import { isRetryable, type KafkaError, messageOf, type SinkError } from "../Errors.ts"
import * as Metrics from "../Metrics.ts"
import type { ConsumerRecord, RecordBatch, TopicPartition } from "../Record.ts"
import * as Topic from "../Topic.ts"
import type { Topology } from "../Topology.ts"

export interface PartitionActor<E> {
  readonly tp: TopicPartition
  /** Suspends while the mailbox is full. */
  readonly offer: (batch: RecordBatch) => Effect.Effect<void>
  readonly isFull: () => boolean
  /** Lets the actor finish what is in its mailbox, then stop. */
  readonly end: Effect.Effect<void>
  /** Completes when the actor has stopped: after `end` and the drain, or on failure. */
  readonly await: Effect.Effect<void, E | KafkaError | SinkError>
}

export interface ActorOptions {
  readonly capacity: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Called when the mailbox has drained to half its capacity (to resume a paused partition). */
  readonly onDrained: Effect.Effect<void>
}

export const make = Effect.fnUntraced(function* <K, V, E, R>(
  tp: TopicPartition,
  topology: Topology<K, V, E, R>,
  delivery: PartitionDelivery,
  options: ActorOptions
) {
  const mailbox = yield* Queue.bounded<RecordBatch, Cause.Done>(options.capacity)
  const metrics = Metrics.forPartition(tp.topic, tp.partition)
  const retryable = { schedule: options.retry, while: isRetryable }

  // Non-retryable failure of a whole batch: run the records one by one so only the ones that fail are
  // dead-lettered and the rest of the batch is processed normally.
  const processIsolated = (decoded: ReadonlyArray<Topic.Decoded<K, V>>) =>
    Effect.forEach(decoded, (d) =>
      topology.process([d]).pipe(
        Effect.retry(retryable),
        Effect.catchIf(
          (e) => !isRetryable(e),
          (error): Effect.Effect<Batch.BatchResult> =>
            Effect.succeed({ outputs: [], rejected: [{ record: d.record, error }] })
        )
      )
    ).pipe(Effect.map(Batch.concat))

  const handle = Effect.fnUntraced(function* (batches: ReadonlyArray<RecordBatch>) {
    const started = Date.now()
    const decoded: Array<Topic.Decoded<K, V>> = []
    const rejected: Array<DeadLetter.Rejection> = []
    let last: ConsumerRecord | undefined
    let highWatermark = 0
    for (const batch of batches) {
      highWatermark = batch.highWatermark
      for (const record of batch.records) {
        last = record
        const result = Topic.decode(topology.input, record)
        if (Result.isSuccess(result)) decoded.push(result.success)
        else rejected.push({ record, error: result.failure })
      }
    }
    if (last === undefined) return
    const count = decoded.length + rejected.length

    const processed: Batch.BatchResult =
      decoded.length === 0
        ? Batch.empty
        : yield* topology.process(decoded).pipe(
            Effect.retry(retryable),
            Effect.catchIf(
              (e) => !isRetryable(e),
              () => processIsolated(decoded)
            )
          )

    for (const r of processed.rejected) rejected.push(r)
    let outputs = processed.outputs
    if (rejected.length > 0) {
      const now = yield* Clock.currentTimeMillis
      outputs = outputs.concat(
        rejected.map((r) => DeadLetter.toRecord(topology.deadLetterTopic, topology.name, r, now))
      )
      yield* Metric.update(metrics.deadLettered, rejected.length)
      yield* Effect.logWarning(
        `dead-lettered ${rejected.length} record(s) of ${tp.topic}[${tp.partition}] to ${topology.deadLetterTopic}`,
        rejected.slice(0, 3).map((r) => `@${r.record.offset}: ${messageOf(r.error)}`)
      )
    }
    yield* delivery.complete(outputs, last.offset + 1, count)
    yield* Metric.update(metrics.in, count)
    yield* Metric.update(metrics.lag, Math.max(0, highWatermark - last.offset - 1))
    yield* Metric.update(Metrics.batchLatency, Date.now() - started)
  })

  const loop = Effect.gen(function* () {
    while (true) {
      const taken = yield* Effect.result(Queue.takeAll(mailbox))
      if (Result.isFailure(taken)) return
      if (Queue.sizeUnsafe(mailbox) <= options.capacity / 2) yield* options.onDrained
      yield* handle(taken.success)
    }
  })

  if (topology.lifecycle.onAssigned) yield* topology.lifecycle.onAssigned(tp)
  const fiber = yield* Effect.forkScoped(
    loop.pipe(
      // A failed actor must not leave the fetcher suspended in `offer`: shutting the mailbox down releases it.
      Effect.ensuring(Queue.shutdown(mailbox)),
      Effect.ensuring(topology.lifecycle.onRevoked ? topology.lifecycle.onRevoked(tp) : Effect.void)
    )
  )

  const actor: PartitionActor<E> = {
    tp,
    offer: (batch) => Queue.offer(mailbox, batch).pipe(Effect.asVoid),
    isFull: () => Queue.isFullUnsafe(mailbox),
    end: Queue.end(mailbox).pipe(Effect.asVoid),
    await: Fiber.join(fiber)
  }
  return actor
})
