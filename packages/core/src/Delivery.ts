/**
 * The commit path: how a task's outputs, dead letters and changelog records become durable and its input offsets
 * committed.
 *
 * At-least-once (the default): the task hands over what a step wrote, it is produced with acks=all and awaited,
 * and only then are the step's input positions recorded as committable. A store's changelog records go in the same
 * send, so an input offset is committed only once every output and every state change it caused is durable.
 * Commits are batched by record count and by interval; before committing, the extra sinks are flushed. A crash
 * between "outputs durable" and "offset committed" re-processes the step: duplicates (and state updates applied
 * again), never loss.
 *
 * Tasks only see `TaskDelivery`, so an exactly-once mode (the step's records and the consumed offsets in one Kafka
 * transaction, one transactional id per task) is a second implementation of this interface, not a change to tasks. */
import { Cause, Deferred, Duration, Effect, Metric, Schedule, type Scope, Semaphore } from "effect"
import { isRetryable, type KafkaError, type SinkError } from "./Errors.ts"
import type { GroupConsumer, KafkaShape } from "./Kafka.ts"
import * as Metrics from "./Metrics.ts"
import {
  type ProducerRecord,
  type RecordMetadata,
  type TopicPartition,
  type TopicPartitionOffset,
  tpKey
} from "./Record.ts"

/** What one step of a task writes: outputs, dead letters and the changelog records of its stores. */
export interface Outgoing {
  readonly outputs: ReadonlyArray<ProducerRecord>
  readonly deadLetters: ReadonlyArray<ProducerRecord>
  readonly changelog: ReadonlyArray<ProducerRecord>
}

export const nothing: Outgoing = { outputs: [], deadLetters: [], changelog: [] }

export interface TaskDelivery {
  /**
   * Makes `outgoing` durable (one send), recording no offset; succeeds with where each changelog record was
   * written, in order.
   */
  readonly send: (outgoing: Outgoing) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError | SinkError>
  /**
   * Makes `outgoing` durable, then records `positions` (per input partition, the offset after the last record
   * processed) as committable: never before the send is acknowledged.
   */
  readonly complete: (
    outgoing: Outgoing,
    positions: ReadonlyArray<TopicPartitionOffset>,
    records: number
  ) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError | SinkError>
}

export interface Delivery {
  /** The delivery path of one task; `metricsTopic` names the input its dead letters are counted under. */
  readonly open: (metricsTopic: string, task: number) => Effect.Effect<TaskDelivery>
  /** The task's partitions were revoked or are shutting down: commit what they completed, then forget them. */
  readonly release: (tps: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
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

  const open = (metricsTopic: string, task: number) =>
    Effect.sync((): TaskDelivery => {
      const deadLettered = Metrics.forPartition(metricsTopic, task).deadLettered
      const send = (outgoing: Outgoing): Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError | SinkError> => {
        const { outputs, deadLetters, changelog } = outgoing
        if (outputs.length === 0 && deadLetters.length === 0 && changelog.length === 0) return Effect.succeed([])
        return Effect.gen(function* () {
          // One send: the changelog first, so its metadata is the head of the answer.
          const all = changelog.length === 0 ? outputs : changelog.concat(outputs)
          const metadata = yield* kafka
            .send(deadLetters.length === 0 ? all : all.concat(deadLetters))
            .pipe(Effect.retry({ schedule: retry, while: isRetryable }))
          // Counted once acknowledged, and apart: a dead letter is not an output.
          yield* Metrics.countOut(outputs)
          if (deadLetters.length > 0) yield* Metric.update(deadLettered, deadLetters.length)
          return changelog.length === 0 ? [] : metadata.slice(0, changelog.length)
        })
      }
      return {
        send,
        complete: (outgoing, positions, records) =>
          Effect.gen(function* () {
            const changelog = yield* send(outgoing)
            for (const p of positions) pending.set(tpKey(p.topic, p.partition), p)
            sinceCommit += records
            // A failed commit loses nothing: the offsets stay pending and the next commit carries them.
            if (sinceCommit >= commitEvery) {
              yield* commit.pipe(
                Effect.catch((e) => Effect.logWarning(`commit failed, retrying at the next one: ${e.message}`))
              )
            }
            return changelog
          })
      }
    })

  const release = (tps: ReadonlyArray<TopicPartition>) => {
    const keys = tps.map((tp) => tpKey(tp.topic, tp.partition))
    return commitKeys(keys).pipe(
      // A revoked partition may already belong to another member; its new owner re-processes from the last
      // successful commit, so a failed commit here means duplicates, not loss.
      Effect.catch((e) =>
        Effect.logWarning(
          `commit on release of ${keys.join(", ")} failed (their next owner re-processes from the last commit): ${e.message}`
        )
      ),
      Effect.ensuring(
        Effect.sync(() => {
          for (const key of keys) {
            pending.delete(key)
            committed.delete(key)
          }
        })
      )
    )
  }

  return { open, release, commit, failed: Deferred.await(periodicDied) } satisfies Delivery
})
