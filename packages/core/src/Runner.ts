/**
 * Runs a topology as a member of a consumer group, until it is interrupted or fails.
 *
 * Fetched batches go to one actor per assigned partition (bounded mailbox, pause when full); actors hand their
 * outputs to the delivery path, which commits an input offset only after every output it caused is durable.
 *
 * Shutdown (interruption, SIGINT/SIGTERM through `Main.runMain`) and revocation follow one order: stop fetching,
 * let the actors drain their mailboxes, flush and commit, then let go of the partitions. The whole stop is bounded
 * by `shutdownTimeout`; work still in flight at the bound is abandoned uncommitted, to be re-delivered
 * (at-least-once), and the stop is reported as unclean.
 *
 * Nothing stalls silently: a partition that fails for good, the client leaving its group for good, the commit fiber
 * dying, or a part of the worker registered with `Health` (a global table, a Redis loader) dying ends the worker
 * with that cause. A partition busy on one batch for longer than `stuckAfter` makes `/health` fail.
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Option, Scope } from "effect"
import * as DeadLetter from "./DeadLetter.ts"
import * as Delivery from "./Delivery.ts"
import type { KafkaError, SinkError } from "./Errors.ts"
import { type ComponentFailed, Health } from "./Health.ts"
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
  /** The bound on a graceful stop: drain, flush, commit. Default 5 s. */
  readonly shutdownTimeout?: Duration.Input
  /** A partition busy on one batch for longer than this is reported stuck by `/health`. Default 60 s. */
  readonly stuckAfter?: Duration.Input
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
): Effect.Effect<never, E | KafkaError | SinkError | ComponentFailed, R | Kafka> =>
  Effect.scoped(
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const health = yield* Health
      const context = yield* Effect.context<R>()
      const shutdownMs = Duration.toMillis(Duration.fromInputUnsafe(options.shutdownTimeout ?? "5 seconds"))
      const stuckMs = Duration.toMillis(Duration.fromInputUnsafe(options.stuckAfter ?? "60 seconds"))
      const capacity = options.mailboxCapacity ?? 4
      const groupId = options.groupId ?? topology.name
      const inputTopic = topology.input.name

      const input = yield* kafka.describeTopic(inputTopic)
      // Room for a dead letter of any record the input accepts, with its error headers. A dead-letter topic that
      // already exists keeps its config; dead letters over its limit are truncated (DeadLetter.ts).
      const inputLimit = yield* kafka.maxRecordBytes(inputTopic)
      yield* kafka.createTopics([
        {
          name: topology.deadLetterTopic,
          partitions: input.partitions,
          config: { "max.message.bytes": String(inputLimit + DeadLetter.headroom) }
        },
        ...topology.outputs
      ])

      const failed = yield* Deferred.make<never, E | KafkaError | SinkError>()
      const ready = yield* Deferred.make<{ consumer: GroupConsumer; delivery: Delivery.Delivery }>()
      const actors = new Map<string, Entry<E>>()
      const paused = new Set<string>()
      // Not a child of the run's scope: actors must outlive the fetcher's shutdown so they can drain.
      const actorsScope = yield* Scope.make()
      let phase: "joining" | "running" | "stopping" = "joining"
      let assignments = 0

      yield* health.register(
        `worker ${topology.name} (group ${groupId})`,
        Effect.map(Clock.currentTimeMillis, (now) => {
          const stuck: Array<string> = []
          for (const [key, entry] of actors) {
            const since = entry.actor.busySince()
            if (since !== undefined && now - since > stuckMs)
              stuck.push(`${key} for ${Math.round((now - since) / 1000)} s`)
          }
          const live = phase !== "stopping" && stuck.length === 0
          const detail =
            phase === "stopping"
              ? "stopping"
              : stuck.length > 0
                ? `partitions stuck on one batch: ${stuck.join(", ")}`
                : assignments === 0
                  ? "joining the group"
                  : `${actors.size} partition(s) of ${inputTopic} assigned`
          return { live, ready: phase === "running" && assignments > 0, detail }
        })
      )

      const start = Effect.fnUntraced(function* (tp: TopicPartition) {
        const { consumer, delivery } = yield* Deferred.await(ready)
        const key = tpKey(tp.topic, tp.partition)
        const scope = yield* Scope.fork(actorsScope)
        const partitionDelivery = yield* delivery.open(tp)
        const actor = yield* PartitionActor.make(tp, topology, partitionDelivery, {
          capacity,
          retry: Delivery.defaultRetry,
          onDrained: Effect.suspend(() => (paused.delete(key) ? consumer.resume([tp]) : Effect.void)),
          maxRecordBytes: kafka.maxRecordBytes
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
        const drained = yield* Effect.exit(entry.actor.await).pipe(Effect.timeoutOption(shutdownMs))
        if (Option.isNone(drained))
          yield* Effect.logWarning(`revoked ${key}: drain timed out; in-flight work is re-delivered`)
        yield* Scope.close(entry.scope, Exit.void)
        yield* delivery.release(entry.actor.tp)
      })

      const onAssignment = (assignment: ReadonlyArray<TopicPartition>) =>
        Effect.gen(function* () {
          const { consumer, delivery } = yield* Deferred.await(ready)
          if (phase === "stopping") return
          // A group shared with members that read other topics (the same --group with another --topic-prefix)
          // may hand this member their partitions: it must not decode them as its own input. They stay paused
          // and unprocessed, so say so loudly.
          const foreign = assignment.filter((tp) => tp.topic !== inputTopic)
          const own = foreign.length === 0 ? assignment : assignment.filter((tp) => tp.topic === inputTopic)
          if (foreign.length > 0) {
            yield* consumer.pause(foreign)
            yield* Effect.logWarning(
              `group ${groupId} assigned this member partitions of topics ${topology.name} does not read ` +
                `(${[...new Set(foreign.map((tp) => tp.topic))].join(", ")}): another member of the group subscribes ` +
                "to other topics, so those partitions are not processed by anyone. Give each topology its own group."
            )
          }
          const keys = new Set(own.map((tp) => tpKey(tp.topic, tp.partition)))
          const revoked = [...actors].filter(([key]) => !keys.has(key))
          yield* Effect.forEach(revoked, ([key, entry]) => retire(key, entry), { concurrency: "unbounded" })
          // Partitions kept across the rebalance: commit what completed (records the actors already hold are
          // filtered out in onBatch if the client re-fetches them).
          yield* delivery.commit.pipe(
            Effect.catch((e) =>
              Effect.logWarning(`commit after rebalance failed (retried at the next commit): ${e.message}`)
            )
          )
          for (const tp of own) {
            if (!actors.has(tpKey(tp.topic, tp.partition))) yield* start(tp)
          }
          assignments++
          phase = "running"
          if (own.length === 0) {
            yield* Effect.logWarning(
              `assigned no partition of ${inputTopic} (${input.partitions} partition(s)) in group ${groupId}: ` +
                "the group has more members than partitions, or its other members take them all"
            )
          } else {
            yield* Effect.logInfo(
              `assigned ${own.length} partition(s): ${own.map((tp) => tp.partition).join(",")} of ${inputTopic}`
            )
          }
        })

      const onBatch = (batch: RecordBatch) =>
        Effect.gen(function* () {
          const { consumer } = yield* Deferred.await(ready)
          if (phase === "stopping" || batch.topic !== inputTopic) return
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
          groupId,
          topics: [inputTopic],
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

      // Registered after the consumer, so it runs before the consumer leaves the group. The whole stop fits in
      // `shutdownTimeout`: a stuck partition (retrying an outage) must not keep the process from committing what is
      // done and leaving. The drain gets 60% of it, the final commit what is left.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const started = Date.now()
          const remaining = () => Math.max(0, shutdownMs - (Date.now() - started))
          const unclean = (reason: string) =>
            Effect.suspend(() => {
              options.onUncleanStop?.(reason)
              return Effect.logWarning(`shutdown: ${reason}`)
            })
          phase = "stopping"
          const entries = [...actors.values()]
          // Ending the mailboxes first lets a fetcher parked in `offer` finish as its actor drains.
          yield* Effect.forEach(entries, (e) => e.actor.end, { discard: true })
          const drained = yield* Effect.all(
            [consumer.stop, Effect.forEach(entries, (e) => Effect.exit(e.actor.await), { discard: true })],
            { concurrency: "unbounded" }
          ).pipe(Effect.timeoutOption(shutdownMs * 0.6))
          if (Option.isNone(drained)) yield* unclean("the drain timed out; in-flight batches are re-delivered")
          // Interrupts actors still busy; their mailboxes shut down, which releases any fetcher still in `offer`.
          yield* Scope.close(actorsScope, Exit.void)
          yield* consumer.stop.pipe(Effect.timeoutOption(Math.min(1_000, remaining() * 0.25)))
          const committed = yield* delivery.commit.pipe(
            Effect.timeoutOption(remaining()),
            Effect.catch((e) => Effect.as(unclean(`the final commit failed: ${e.message}`), Option.some(undefined)))
          )
          if (Option.isNone(committed)) yield* unclean("the final commit timed out")
          yield* Effect.logInfo(`stopped ${topology.name} in ${Date.now() - started} ms`)
        })
      )
      // A partition failing for good, the client leaving the group for good, the commit fiber dying or a part of
      // the worker dying ends the worker.
      return yield* Effect.raceAllFirst([Deferred.await(failed), consumer.failed, delivery.failed, health.failures])
    })
  )
