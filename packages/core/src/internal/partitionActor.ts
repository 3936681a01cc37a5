/**
 * One actor per assigned partition: a fiber with a bounded mailbox of fetched batches, processed in offset order.
 *
 * Each step takes every batch waiting in the mailbox and handles them as one: decode in a plain loop, run the
 * topology's processor once, check that every output fits its topic, hand outputs and dead letters to the delivery
 * path, record the next offset. When the mailbox is full the runner pauses the partition at the fetcher, so a slow
 * partition never buffers without bound and never stalls the others.
 *
 * An output the broker cannot take (over its topic's `max.message.bytes`) must never stop the partition: its input
 * record is dead-lettered instead, with all of that record's outputs, so a record is either fully emitted or
 * dead-lettered. A dead letter over its own topic's limit is truncated to fit (DeadLetter.ts).
 */
import { type Cause, Clock, Effect, Fiber, Metric, Queue, Result, type Schedule } from "effect"
import * as Batch from "../Batch.ts"
import * as DeadLetter from "../DeadLetter.ts"
import type { PartitionDelivery } from "../Delivery.ts"
import { isRetryable, KafkaError, MessageTooLarge, messageOf, type SinkError } from "../Errors.ts"
import * as Metrics from "../Metrics.ts"
import {
  type ConsumerRecord,
  defaultMaxMessageBytes,
  type ProducerRecord,
  type RecordBatch,
  sizeOf,
  type TopicPartition
} from "../Record.ts"
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
  /** When the batch in progress started (epoch ms), or `undefined` while the actor waits for work. */
  readonly busySince: () => number | undefined
}

export interface ActorOptions {
  readonly capacity: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Called when the mailbox has drained to half its capacity (to resume a paused partition). */
  readonly onDrained: Effect.Effect<void>
  /** The largest record a topic accepts (`Kafka.maxRecordBytes`). */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
}

const isTooLarge = (e: unknown): e is KafkaError => e instanceof KafkaError && e.reason._tag === "MessageTooLarge"

export const make = Effect.fnUntraced(function* <K, V, E, R>(
  tp: TopicPartition,
  topology: Topology<K, V, E, R>,
  delivery: PartitionDelivery,
  options: ActorOptions
) {
  const mailbox = yield* Queue.bounded<RecordBatch, Cause.Done>(options.capacity)
  const metrics = Metrics.forPartition(tp.topic, tp.partition)
  const retryable = { schedule: options.retry, while: isRetryable }

  // Topic limits, asked of the Kafka service once per topic (it caches too); cleared when the broker disagrees.
  const limits = new Map<string, number>()
  const limitOf = (topic: string): Effect.Effect<number, KafkaError> => {
    const known = limits.get(topic)
    return known !== undefined
      ? Effect.succeed(known)
      : Effect.retry(options.maxRecordBytes(topic), retryable).pipe(
          Effect.tap((limit) => Effect.sync(() => limits.set(topic, limit))),
          // A topic that does not exist yet is created with the broker's defaults by the send (where the broker
          // allows it; otherwise the send fails and says so): check against the default, and read it again later.
          Effect.catchIf(
            (e) => e.reason._tag === "UnknownTopic",
            () => Effect.succeed(defaultMaxMessageBytes)
          )
        )
  }
  /** Makes sure the limit of every topic written to is known, so the per-record check is a plain loop. */
  const knowLimits = (records: ReadonlyArray<ProducerRecord>): Effect.Effect<void, KafkaError> => {
    const missing = new Set<string>()
    for (const r of records) if (!limits.has(r.topic)) missing.add(r.topic)
    return missing.size === 0 ? Effect.void : Effect.forEach(missing, limitOf, { discard: true })
  }

  // Non-retryable failure of a whole batch: run the records one by one so only the ones that fail are
  // dead-lettered and the rest of the batch is processed normally. Each result is attributed to its record.
  const processIsolated = (decoded: ReadonlyArray<Topic.Decoded<K, V>>) =>
    Effect.forEach(decoded, (d) =>
      Effect.suspend(() => topology.process([d])).pipe(
        Effect.retry(retryable),
        Effect.map((result) => Batch.from(d.record, result)),
        Effect.catchIf(
          (e) => !isRetryable(e),
          (error): Effect.Effect<Batch.BatchResult> =>
            Effect.succeed({ outputs: [], rejected: [{ record: d.record, error }] })
        )
      )
    ).pipe(Effect.map(Batch.concat))

  const processBatch = (decoded: ReadonlyArray<Topic.Decoded<K, V>>) =>
    decoded.length === 0
      ? Effect.succeed(Batch.empty)
      : // Suspended, so that a retry calls the processor again rather than re-running the Effect it returned once.
        Effect.suspend(() => topology.process(decoded)).pipe(
          Effect.retry(retryable),
          Effect.catchIf(
            (e) => !isRetryable(e),
            () => processIsolated(decoded)
          )
        )

  /**
   * Drops the outputs of every input record one of whose outputs is over its topic's limit, and rejects that
   * record. Results without sources are first re-made record by record, which attributes every output.
   */
  const fit = Effect.fnUntraced(function* (
    result: Batch.BatchResult,
    decoded: ReadonlyArray<Topic.Decoded<K, V>>
  ): Effect.fn.Return<Batch.BatchResult, E | KafkaError, R> {
    const tooLarge = new Map<ConsumerRecord, MessageTooLarge>()
    let unattributed = false
    yield* knowLimits(result.outputs)
    for (let i = 0; i < result.outputs.length; i++) {
      const output = result.outputs[i]!
      const limit = limits.get(output.topic) ?? defaultMaxMessageBytes
      const size = sizeOf(output)
      if (size <= limit) continue
      const source = result.sources?.[i]
      if (source === undefined) {
        unattributed = true
        break
      }
      if (!tooLarge.has(source)) {
        tooLarge.set(
          source,
          new MessageTooLarge({
            message: `an output for ${output.topic} is ${size} bytes, over the topic's limit of ${limit} bytes (max.message.bytes)`,
            topic: output.topic,
            size,
            limit
          })
        )
      }
    }
    if (unattributed) return yield* fit(yield* processIsolated(decoded), decoded)
    if (tooLarge.size === 0) return result
    const outputs: Array<ProducerRecord> = []
    const sources: Array<ConsumerRecord> = []
    for (let i = 0; i < result.outputs.length; i++) {
      const source = result.sources![i]!
      if (tooLarge.has(source)) continue
      outputs.push(result.outputs[i]!)
      sources.push(source)
    }
    const rejected = [...result.rejected]
    for (const [record, error] of tooLarge) rejected.push({ record, error })
    return { outputs, sources, rejected }
  })

  const deadLettersOf = Effect.fnUntraced(function* (rejected: ReadonlyArray<DeadLetter.Rejection>) {
    if (rejected.length === 0) return []
    const now = yield* Clock.currentTimeMillis
    const limit = yield* limitOf(topology.deadLetterTopic)
    yield* Effect.logWarning(
      `dead-lettered ${rejected.length} record(s) of ${tp.topic}[${tp.partition}] to ${topology.deadLetterTopic}`,
      rejected.slice(0, 3).map((r) => `@${r.record.offset}: ${messageOf(r.error)}`)
    )
    return rejected.map((r) => DeadLetter.toRecord(topology.deadLetterTopic, topology.name, r, now, limit))
  })

  /**
   * The broker refused a send as too large although every record fit the limits as read (a limit lowered since,
   * a broker-wide limit): send input by input, dead-letter the inputs whose outputs it refuses, and halve a dead
   * letter that is still refused until it fits. Slow, and only ever on this path.
   */
  const deliverOneByOne = Effect.fnUntraced(function* (
    result: Batch.BatchResult,
    decodeRejected: ReadonlyArray<DeadLetter.Rejection>,
    nextOffset: number,
    count: number
  ) {
    const groups = new Map<ConsumerRecord, Array<ProducerRecord>>()
    const outputs = result.outputs
    for (let i = 0; i < outputs.length; i++) {
      const source = result.sources![i]!
      const group = groups.get(source)
      if (group === undefined) groups.set(source, [outputs[i]!])
      else group.push(outputs[i]!)
    }
    const rejected = decodeRejected.concat(result.rejected)
    for (const [source, group] of groups) {
      yield* delivery
        .send(group, [])
        .pipe(Effect.catchIf(isTooLarge, (e) => Effect.sync(() => rejected.push({ record: source, error: e.reason }))))
    }
    const now = yield* Clock.currentTimeMillis
    for (const r of rejected) {
      let limit = yield* limitOf(topology.deadLetterTopic)
      while (true) {
        const record = DeadLetter.toRecord(topology.deadLetterTopic, topology.name, r, now, limit)
        const sent = yield* delivery.send([], [record]).pipe(
          Effect.as(true),
          Effect.catchIf(
            (e) => isTooLarge(e) && limit > 1,
            () => Effect.succeed(false)
          )
        )
        if (sent) break
        limit = Math.floor(Math.min(limit, sizeOf(record)) / 2)
      }
    }
    yield* delivery.complete([], [], nextOffset, count)
  })

  const deliver = (
    processed: Batch.BatchResult,
    decodeRejected: ReadonlyArray<DeadLetter.Rejection>,
    decoded: ReadonlyArray<Topic.Decoded<K, V>>,
    nextOffset: number,
    count: number
  ) =>
    Effect.gen(function* () {
      const fitted = yield* fit(processed, decoded)
      const deadLetters = yield* deadLettersOf(decodeRejected.concat(fitted.rejected))
      yield* delivery.complete(fitted.outputs, deadLetters, nextOffset, count)
    })

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
    const nextOffset = last.offset + 1

    const processed = yield* processBatch(decoded)
    yield* deliver(processed, rejected, decoded, nextOffset, count).pipe(
      // The limits we read are stale (or the broker's are lower): read them again and try once more, then go
      // input by input.
      Effect.catchIf(isTooLarge, () =>
        Effect.suspend(() => {
          limits.clear()
          return deliver(processed, rejected, decoded, nextOffset, count)
        })
      ),
      Effect.catchIf(isTooLarge, () =>
        Effect.gen(function* () {
          yield* Effect.logWarning(
            `${tp.topic}[${tp.partition}]: the broker refused records within the limits read; sending input by input`
          )
          const attributed = processed.sources === undefined ? yield* processIsolated(decoded) : processed
          yield* deliverOneByOne(attributed, rejected, nextOffset, count)
        })
      )
    )
    yield* Metric.update(metrics.in, count)
    yield* Metric.update(metrics.lag, Math.max(0, highWatermark - nextOffset))
    yield* Metric.update(Metrics.batchLatency, Date.now() - started)
  })

  let busySince: number | undefined = yield* Clock.currentTimeMillis
  const loop = Effect.gen(function* () {
    // In the actor's fiber, so a defect in the hook fails the actor (and the worker), never stalls the partition.
    if (topology.lifecycle.onAssigned) yield* topology.lifecycle.onAssigned(tp)
    while (true) {
      busySince = undefined
      const taken = yield* Effect.result(Queue.takeAll(mailbox))
      if (Result.isFailure(taken)) return
      busySince = yield* Clock.currentTimeMillis
      if (Queue.sizeUnsafe(mailbox) <= options.capacity / 2) yield* options.onDrained
      yield* handle(taken.success)
    }
  })

  const fiber = yield* Effect.forkScoped(
    loop.pipe(
      // A failed actor must not leave the fetcher suspended in `offer`: shutting the mailbox down releases it.
      Effect.ensuring(Queue.shutdown(mailbox)),
      Effect.ensuring(topology.lifecycle.onRevoked ? topology.lifecycle.onRevoked(tp) : Effect.void),
      // A revoked partition's lag is no longer this member's to report.
      Effect.ensuring(Metric.remove(metrics.lag))
    )
  )

  const actor: PartitionActor<E> = {
    tp,
    offer: (batch) => Queue.offer(mailbox, batch).pipe(Effect.asVoid),
    isFull: () => Queue.isFullUnsafe(mailbox),
    end: Queue.end(mailbox).pipe(Effect.asVoid),
    await: Fiber.join(fiber),
    busySince: () => busySince
  }
  return actor
})
