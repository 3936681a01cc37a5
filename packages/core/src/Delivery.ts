/**
 * The commit path: how a partition actor's outputs become durable and its input offsets committed.
 *
 * At-least-once (the default): the actor hands over a batch's outputs, they are produced with acks=all and
 * awaited, and only then is the batch's next offset recorded as committable. Commits are batched by record count
 * and by interval; before committing, the extra sinks are flushed, so an offset is committed only when every output
 * it caused is durable. A crash between "outputs durable" and "offset committed" re-processes the batch: duplicates,
 * never loss.
 *
 * The actors only see `PartitionDelivery.complete`, so an exactly-once mode (outputs and the consumed offset in one
 * Kafka transaction, one transactional id per input partition) is a second implementation of this interface, not a
 * change to the actors.
 */
import { Cause, Deferred, Duration, Effect, Metric, Schedule, type Scope, Semaphore } from "effect"
import { isRetryable, type KafkaError, type SinkError } from "./Errors.ts"
import type { GroupConsumer, KafkaShape } from "./Kafka.ts"
import * as Metrics from "./Metrics.ts"
import { type ProducerRecord, type TopicPartition, type TopicPartitionOffset, tpKey } from "./Record.ts"

export interface PartitionDelivery {
  /** Makes `outputs` and `deadLetters` durable (one send), recording no offset. */
  readonly send: (
    outputs: ReadonlyArray<ProducerRecord>,
    deadLetters: ReadonlyArray<ProducerRecord>
  ) => Effect.Effect<void, KafkaError | SinkError>
  /**
   * Makes `outputs` and `deadLetters` durable (one send), then records `nextOffset` (last processed offset + 1) as
   * committable: never before the send is acknowledged.
   */
  readonly complete: (
    outputs: ReadonlyArray<ProducerRecord>,
    deadLetters: ReadonlyArray<ProducerRecord>,
    nextOffset: number,
    records: number
  ) => Effect.Effect<void, KafkaError | SinkError>
}

export interface Delivery {
  readonly open: (tp: TopicPartition) => Effect.Effect<PartitionDelivery>
  /** The partition was revoked or is shutting down: commit what it completed, then forget it. */
  readonly release: (tp: TopicPartition) => Effect.Effect<void>
  /** Flushes sinks and commits every completed offset not yet committed. */
  readonly commit: Effect.Effect<void, KafkaError | SinkError>
  /** Fails (with the defect) if the periodic commit fiber ever dies; never succeeds. */
  readonly failed: Effect.Effect<never>
}

export interface AtLeastOnceOptions {
  /** Commit once this many records were completed since the last commit. Default 10,000. */
  readonly commitEveryRecords?: number
  /** Commit at least this often while records complete. Default 1 s. */
  readonly commitInterval?: Duration.Input
  /** Makes buffered sink writes durable; runs before every commit. */
  readonly flush?: Effect.Effect<void, SinkError>
  /** How produce failures that are retryable are retried before the partition fails. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

/** Capped exponential backoff for retryable infrastructure errors: 100 ms doubling to 5 s, for about 2 minutes. */
export const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(5)))),
  Schedule.upTo({ duration: "2 minutes" })
)

export const atLeastOnce = Effect.fnUntraced(function* (
  kafka: KafkaShape,
  consumer: GroupConsumer,
  options: AtLeastOnceOptions = {}
): Effect.fn.Return<Delivery, never, Scope.Scope> {
  const commitEvery = options.commitEveryRecords ?? 10_000
  const flush = options.flush ?? Effect.void
  const retry = options.retry ?? defaultRetry
  // Completed-but-uncommitted next offsets. Mutated only between suspension points, so plain maps are enough.
  const pending = new Map<string, TopicPartitionOffset>()
  const committed = new Map<string, number>()
  let sinceCommit = 0
  const lock = yield* Semaphore.make(1)

  const commitKeys = (keys: ReadonlyArray<string> | undefined) =>
    lock.withPermits(1)(
      Effect.gen(function* () {
        const snapshot: Array<TopicPartitionOffset> = []
        for (const [key, tpo] of pending) {
          if (keys !== undefined && !keys.includes(key)) continue
          if (committed.get(key) !== tpo.offset) snapshot.push(tpo)
        }
        if (snapshot.length === 0) return
        sinceCommit = 0
        const started = Date.now()
        // Everything in the snapshot was handed to the sinks before the flush starts, so after it, it is durable.
        yield* flush
        yield* consumer.commit(snapshot)
        for (const tpo of snapshot) committed.set(tpKey(tpo.topic, tpo.partition), tpo.offset)
        yield* Metric.update(Metrics.commitLatency, Date.now() - started)
      })
    )

  const commit = commitKeys(undefined)

  // Supervised: a defect in a commit ends the fiber, and that must stop the worker rather than leave it running
  // without ever committing again.
  const periodicDied = yield* Deferred.make<never>()
  yield* Effect.forkScoped(
    commit.pipe(
      Effect.catch((e) => Effect.logWarning(`periodic commit failed, retrying at the next one: ${e.message}`)),
      Effect.repeat(Schedule.spaced(options.commitInterval ?? "1 second")),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Deferred.failCause(periodicDied, cause)
      )
    )
  )

  const open = (tp: TopicPartition) =>
    Effect.sync((): PartitionDelivery => {
      const deadLettered = Metrics.forPartition(tp.topic, tp.partition).deadLettered
      const send = (outputs: ReadonlyArray<ProducerRecord>, deadLetters: ReadonlyArray<ProducerRecord>) =>
        outputs.length === 0 && deadLetters.length === 0
          ? Effect.void
          : Effect.gen(function* () {
              const all =
                deadLetters.length === 0 ? outputs : outputs.length === 0 ? deadLetters : outputs.concat(deadLetters)
              yield* kafka.send(all).pipe(Effect.retry({ schedule: retry, while: isRetryable }))
              // Counted once acknowledged, and apart: a dead letter is not an output.
              yield* Metrics.countOut(outputs)
              if (deadLetters.length > 0) yield* Metric.update(deadLettered, deadLetters.length)
            })
      return {
        send,
        complete: (outputs, deadLetters, nextOffset, records) =>
          Effect.gen(function* () {
            yield* send(outputs, deadLetters)
            pending.set(tpKey(tp.topic, tp.partition), { topic: tp.topic, partition: tp.partition, offset: nextOffset })
            sinceCommit += records
            // A failed commit loses nothing: the offsets stay pending and the next commit carries them.
            if (sinceCommit >= commitEvery) {
              yield* commit.pipe(
                Effect.catch((e) => Effect.logWarning(`commit failed, retrying at the next one: ${e.message}`))
              )
            }
          })
      }
    })

  const release = (tp: TopicPartition) => {
    const key = tpKey(tp.topic, tp.partition)
    return commitKeys([key]).pipe(
      // A revoked partition may already belong to another member; its new owner re-processes from the last
      // successful commit, so a failed commit here means duplicates, not loss.
      Effect.catch((e) =>
        Effect.logWarning(
          `commit on release of ${key} failed (its next owner re-processes from the last commit): ${e.message}`
        )
      ),
      Effect.ensuring(
        Effect.sync(() => {
          pending.delete(key)
          committed.delete(key)
        })
      )
    )
  }

  return { open, release, commit, failed: Deferred.await(periodicDied) } satisfies Delivery
})
