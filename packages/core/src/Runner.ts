/**
 * Runs a topology as a member of a consumer group, until it is interrupted or fails.
 *
 * Fetched batches go to one actor per assigned partition (bounded mailbox, pause when full); actors hand their
 * outputs to the delivery path, which commits an input offset only after every output it caused is durable.
 *
 * Shutdown (interruption, SIGINT/SIGTERM through `Main.runMain`) and revocation follow one order: stop fetching,
 * let the actors drain their mailboxes, flush and commit, then let go of the partitions. The drain is bounded by
 * `shutdownTimeout`; work still in flight after it is abandoned uncommitted, to be re-delivered (at-least-once).
 */
import { Cause, Deferred, Duration, Effect, Exit, Option, Scope } from "effect"
import * as Delivery from "./Delivery.ts"
import type { KafkaError, SinkError } from "./Errors.ts"
import * as PartitionActor from "./internal/partitionActor.ts"
import { type GroupConsumer, Kafka } from "./Kafka.ts"
import { type RecordBatch, type TopicPartition, tpKey } from "./Record.ts"
import type { Topology } from "./Topology.ts"

export interface RunOptions {
  /** The consumer group. Default: the topology's name. */
  readonly groupId?: string
  /** Where a partition without a committed offset starts. Default: the earliest offset. */
  readonly fromBeginning?: boolean
  /** Batches a partition's mailbox holds before the partition is paused. Default 4. */
  readonly mailboxCapacity?: number
  readonly commitEveryRecords?: number
  readonly commitInterval?: Duration.Input
  /** The bound on a graceful stop: drain, flush, commit, leave. Default 5 s. */
  readonly shutdownTimeout?: Duration.Input
  readonly sessionTimeoutMs?: number
  readonly maxWaitMs?: number
  /** Flushes the topology's extra sinks before each commit. */
  readonly flush?: Effect.Effect<void, SinkError>
  /**
   * Called when a stop is not clean: a drain abandoned at the bound, a final commit that failed (`sluice run` passes
   * `Main.markUncleanStop`, so the process exits with code 3).
   */
  readonly onUncleanStop?: (reason: string) => void
}

interface Entry<E> {
  readonly actor: PartitionActor.PartitionActor<E>
  readonly scope: Scope.Closeable
  /** The offset after the last record handed to the actor: kafkajs re-fetches a kept partition from its last
   * commit after every rebalance, and what the actor already has must not be processed twice. */
  next: number
}

/** Runs `topology` until interrupted; fails when a partition fails for good (retries exhausted). */
export const run = <K, V, E, R>(
  topology: Topology<K, V, E, R>,
  options: RunOptions = {}
): Effect.Effect<never, E | KafkaError | SinkError, R | Kafka> =>
  Effect.scoped(
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const context = yield* Effect.context<R>()
      const shutdownTimeout = Duration.fromInputUnsafe(options.shutdownTimeout ?? "5 seconds")
      const capacity = options.mailboxCapacity ?? 4

      const input = yield* kafka.describeTopic(topology.input.name)
      yield* kafka.createTopics([{ name: topology.deadLetterTopic, partitions: input.partitions }, ...topology.outputs])

      const failed = yield* Deferred.make<never, E | KafkaError | SinkError>()
      const ready = yield* Deferred.make<{ consumer: GroupConsumer; delivery: Delivery.Delivery }>()
      const actors = new Map<string, Entry<E>>()
      const paused = new Set<string>()
      // Not a child of the run's scope: actors must outlive the fetcher's shutdown so they can drain.
      const actorsScope = yield* Scope.make()

      const start = Effect.fnUntraced(function* (tp: TopicPartition) {
        const { consumer, delivery } = yield* Deferred.await(ready)
        const key = tpKey(tp.topic, tp.partition)
        const scope = yield* Scope.fork(actorsScope)
        const partitionDelivery = yield* delivery.open(tp)
        const actor = yield* PartitionActor.make(tp, topology, partitionDelivery, {
          capacity,
          retry: Delivery.defaultRetry,
          onDrained: Effect.suspend(() => (paused.delete(key) ? consumer.resume([tp]) : Effect.void))
        }).pipe(Scope.provide(scope), Effect.provideContext(context))
        // A partition that fails for good (an error or a defect) fails the worker: its offsets stay uncommitted.
        yield* Effect.forkIn(
          actor.await.pipe(
            Effect.catchCause((cause) =>
              Cause.hasInterruptsOnly(cause) ? Effect.void : Deferred.failCause(failed, cause)
            )
          ),
          scope
        )
        const entry: Entry<E> = { actor, scope, next: 0 }
        actors.set(key, entry)
        return entry
      })

      // Revocation: finish what the mailbox holds, within the shutdown bound (the group waits for this member),
      // then commit what completed. Work cut off by the bound is re-delivered to the partition's next owner.
      const retire = Effect.fnUntraced(function* (key: string, entry: Entry<E>) {
        const { delivery } = yield* Deferred.await(ready)
        actors.delete(key)
        paused.delete(key)
        yield* entry.actor.end
        const drained = yield* Effect.exit(entry.actor.await).pipe(Effect.timeoutOption(shutdownTimeout))
        if (Option.isNone(drained))
          yield* Effect.logWarning(`revoked ${key}: drain timed out; in-flight work is re-delivered`)
        yield* Scope.close(entry.scope, Exit.void)
        yield* delivery.release(entry.actor.tp)
      })

      let stopping = false

      const onAssignment = (assignment: ReadonlyArray<TopicPartition>) =>
        Effect.gen(function* () {
          const { delivery } = yield* Deferred.await(ready)
          if (stopping) return
          const keys = new Set(assignment.map((tp) => tpKey(tp.topic, tp.partition)))
          const revoked = [...actors].filter(([key]) => !keys.has(key))
          yield* Effect.forEach(revoked, ([key, entry]) => retire(key, entry), { concurrency: "unbounded" })
          // Partitions kept across the rebalance: commit what completed (records the actors already hold are
          // filtered out in onBatch if the client re-fetches them).
          yield* delivery.commit.pipe(
            Effect.catch((e) => Effect.logDebug(`commit after rebalance failed: ${e.message}`))
          )
          for (const tp of assignment) {
            if (!actors.has(tpKey(tp.topic, tp.partition))) yield* start(tp)
          }
          yield* Effect.logInfo(
            `assigned ${assignment.length} partition(s): ${assignment.map((tp) => tp.partition).join(",")}`
          )
        })

      const onBatch = (batch: RecordBatch) =>
        Effect.gen(function* () {
          const { consumer } = yield* Deferred.await(ready)
          if (stopping) return
          const key = tpKey(batch.topic, batch.partition)
          const entry = actors.get(key) ?? (yield* start({ topic: batch.topic, partition: batch.partition }))
          const last = batch.records[batch.records.length - 1]
          if (last === undefined || last.offset < entry.next) return
          const fresh =
            batch.records[0]!.offset >= entry.next
              ? batch
              : { ...batch, records: batch.records.filter((r) => r.offset >= entry.next) }
          entry.next = last.offset + 1
          if (entry.actor.isFull() && !paused.has(key)) {
            paused.add(key)
            yield* consumer.pause([{ topic: batch.topic, partition: batch.partition }])
          }
          yield* entry.actor.offer(fresh)
        })

      const consumer = yield* kafka.consume(
        {
          groupId: options.groupId ?? topology.name,
          topics: [topology.input.name],
          fromBeginning: options.fromBeginning ?? true,
          ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
          ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs })
        },
        { onBatch, onAssignment }
      )
      const delivery = yield* Delivery.atLeastOnce(kafka, consumer, {
        ...(options.commitEveryRecords === undefined ? {} : { commitEveryRecords: options.commitEveryRecords }),
        ...(options.commitInterval === undefined ? {} : { commitInterval: options.commitInterval }),
        ...(options.flush === undefined ? {} : { flush: options.flush })
      })

      yield* Deferred.succeed(ready, { consumer, delivery })

      // Registered after the consumer, so it runs before the consumer leaves the group. Every step is bounded:
      // a stuck partition (retrying an outage) must not keep the process from committing what is done and leaving.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const started = Date.now()
          stopping = true
          const entries = [...actors.values()]
          // Ending the mailboxes first lets a fetcher parked in `offer` finish as its actor drains.
          yield* Effect.forEach(entries, (e) => e.actor.end, { discard: true })
          const drained = yield* Effect.all(
            [consumer.stop, Effect.forEach(entries, (e) => Effect.exit(e.actor.await), { discard: true })],
            { concurrency: "unbounded" }
          ).pipe(Effect.timeoutOption(Duration.times(shutdownTimeout, 0.6)))
          if (Option.isNone(drained)) {
            options.onUncleanStop?.("the drain timed out; in-flight batches are re-delivered")
            yield* Effect.logWarning("shutdown: drain timed out; in-flight batches will be re-delivered")
          }
          // Interrupts actors still busy; their mailboxes shut down, which releases any fetcher still in `offer`.
          yield* Scope.close(actorsScope, Exit.void)
          yield* consumer.stop.pipe(Effect.timeoutOption("1 second"))
          yield* delivery.commit.pipe(
            Effect.timeout(Duration.times(shutdownTimeout, 0.3)),
            Effect.catch((e) =>
              Effect.suspend(() => {
                options.onUncleanStop?.(`the final commit failed: ${e.message}`)
                return Effect.logWarning(`shutdown: final commit failed: ${e.message}`)
              })
            )
          )
          yield* Effect.logInfo(`stopped ${topology.name} in ${Date.now() - started} ms`)
        })
      )
      // A partition failing for good, or the client leaving the group for good, ends the worker.
      return yield* Effect.raceFirst(Deferred.await(failed), consumer.failed)
    })
  )
