/**
 * The commit path: how a task's outputs, dead letters and changelog records become durable and its input offsets
 * committed, under one of two guarantees.
 *
 * At-least-once (the default): the task hands over what a step wrote, it is produced with acks=all and awaited,
 * and only then are the step's input positions recorded as committable, so an input offset is committed only once
 * every output and every state change it caused is durable. The state changes (changelog records) are sent only
 * after the step's outputs and dead letters are acknowledged: a store must never be durably ahead of the outputs
 * it stands for. The other way round, a crash between the two would lose outputs for good: a window deleted at its
 * close whose result was never written is not emitted again when the step is re-processed, since the restored
 * state says it is done. In this order a crash re-emits instead. Sink rows follow the same rule when no input
 * record stands behind them (a window's final written to a table): the task's sink buffers are written before the
 * step's changelog; rows of input records wait in the buffers, since re-processing their records makes them again.
 * Commits are batched by record count and by interval; before committing, the extra sinks are flushed. A crash between "durable" and "offset committed"
 * re-processes the step: duplicates (and state updates applied again), never loss.
 *
 * Exactly-once (`exactlyOnce`): each task has its own transactional producer (`transactional.id`
 * `<group>-<task>`; opening it fences the task's previous owner and aborts its open transaction). Steps accumulate
 * in the task until a commit is due (by record count and by interval); then one Kafka transaction carries every
 * output, dead letter and changelog record of those steps and the task's input offsets (sendOffsetsToTransaction),
 * and commits. Read_committed readers see all of it or none of it; the stores' writes become durable (locally) only
 * after the commit, so an aborted transaction leaves them as they were at the last commit. A retryable failure
 * aborts and runs the same transaction again (equivalent to re-processing from the last committed position: the
 * steps are deterministic given the state they started from); a fenced producer (the task moved to another member)
 * fails the task with reason `Fenced`, which the runner treats as the task's retirement, not the worker's failure.
 *
 * Tasks only see `TaskDelivery`; the runner only sees `Delivery`.
 */
import { Cause, Clock, Deferred, Duration, Effect, Metric, Schedule, type Scope, Semaphore } from "effect"
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
import type { SinkRun, StagedRow } from "./Sink.ts"

/** What one step of a task writes: outputs, dead letters, the changelog records of its stores, rows for sinks. */
export interface Outgoing {
  readonly outputs: ReadonlyArray<ProducerRecord>
  readonly deadLetters: ReadonlyArray<ProducerRecord>
  readonly changelog: ReadonlyArray<ProducerRecord>
  readonly rows?: ReadonlyArray<StagedRow> | undefined
}

export const nothing: Outgoing = { outputs: [], deadLetters: [], changelog: [] }

export type Guarantee = "at_least_once" | "exactly_once"

export const guarantees: ReadonlyArray<Guarantee> = ["at_least_once", "exactly_once"]

/** One step of a task, handed to the delivery path. */
export interface Step {
  readonly outgoing: Outgoing
  /** Per input partition, the offset after the last record processed (the task's position after the step). */
  readonly positions: ReadonlyArray<TopicPartitionOffset>
  /** Input records the step processed (0 for a timer). */
  readonly records: number
  /**
   * Runs once the step's records are durable (and, under exactly-once, committed), with where each changelog
   * record was written, in order; in the task's fiber, during this `complete` or a later `complete` or `flush`.
   * Never runs if the step's records do not become durable (the call that would have made them so fails).
   */
  readonly onDurable: (changelog: ReadonlyArray<RecordMetadata>) => void
  /**
   * The task holds the state this step led to (its stores' writes go with a later step), and `positions` are those
   * of that state. Exactly-once never commits with such a step: the task sends the state and flushes when due.
   */
  readonly stateHeld?: boolean | undefined
}

export interface TaskDelivery {
  /**
   * Hands over one step. At-least-once: produces its records, awaits the acknowledgement, runs `onDurable` and
   * records its positions as committable. Exactly-once: adds it to the open transaction, and commits that when due.
   */
  readonly complete: (step: Step) => Effect.Effect<void, KafkaError | SinkError>
  /** Makes every step handed over durable now (exactly-once: commits the open transaction). */
  readonly flush: Effect.Effect<void, KafkaError | SinkError>
  /**
   * When steps handed over must be made durable at the latest (epoch ms, on the Effect `Clock`): the task calls
   * `flush` then, if nothing else did. `undefined` while nothing waits.
   */
  readonly due: () => number | undefined
  /**
   * Whether handing over a step of `records` input records at `now` (epoch ms) makes it durable together with the
   * steps before it (exactly-once: it commits the open transaction): a task must then send its stores' held writes
   * with it, since the commit carries the step's positions. At-least-once: when the step brings the records since
   * the last commit to `commitEveryRecords` (the periodic commit carries what was handed on by then).
   */
  readonly commitsWith: (records: number, now: number) => boolean
}

export interface Delivery {
  readonly guarantee: Guarantee
  /**
   * The delivery path of one task, open until the scope closes; `metricsTopic` names the input its dead letters are
   * counted under. Exactly-once: opening it fences the task's previous owner.
   */
  readonly open: (metricsTopic: string, task: number) => Effect.Effect<TaskDelivery, KafkaError, Scope.Scope>
  /** The task's partitions were revoked or are shutting down: commit what they completed, then forget them. */
  readonly release: (tps: ReadonlyArray<TopicPartition>) => Effect.Effect<void>
  /** Flushes sinks and commits every completed offset not yet committed (exactly-once: tasks commit their own). */
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
  /** The topology's sinks: a step's rows are staged in them, and they are written before every commit. */
  readonly sinks?: ReadonlyArray<SinkRun>
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
  const flush = flushAll(options.sinks, options.flush)
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
      const durably = (records: ReadonlyArray<ProducerRecord>) =>
        records.length === 0
          ? Effect.succeed<ReadonlyArray<RecordMetadata>>([])
          : kafka.send(records).pipe(Effect.retry({ schedule: retry, while: isRetryable }))
      return {
        complete: (step) =>
          Effect.gen(function* () {
            const { outputs, deadLetters, changelog, rows } = step.outgoing
            yield* durably(deadLetters.length === 0 ? outputs : outputs.concat(deadLetters))
            // The rows are staged before the positions become committable: a commit writes them first. Rows no
            // input record stands behind (a window's final) are written before the changelog, like outputs: once
            // the store says the window is closed, re-processing the step would not make them again.
            const early = changelog.length > 0 && rows !== undefined && rows.some((r) => !r.sourced)
            if (early) yield* writeNow(options.sinks, task, step)
            step.onDurable(yield* durably(changelog))
            yield* countDelivered(step.outgoing, deadLettered)
            if (!early) yield* staged(options.sinks, task, step)
            for (const p of step.positions) pending.set(tpKey(p.topic, p.partition), p)
            sinceCommit += step.records
            // A failed commit loses nothing: the offsets stay pending and the next commit carries them.
            if (sinceCommit >= commitEvery) {
              yield* commit.pipe(
                Effect.catch((e) => Effect.logWarning(`commit failed, retrying at the next one: ${e.message}`))
              )
            }
          }),
        // Durable at every `complete`; the offsets are committed by the runner (periodically, and before revokes).
        flush: Effect.void,
        due: () => undefined,
        // A commit by count follows this step: the held state must go with it, or the commit carries none of it.
        commitsWith: (records) => records > 0 && sinceCommit + records >= commitEvery
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

  return {
    guarantee: "at_least_once",
    open,
    release,
    commit,
    failed: Deferred.await(periodicDied)
  } satisfies Delivery
})

/** A step's records in one transaction: the changelog first (its metadata is the head), then outputs, dead letters. */
const recordsOf = (outgoing: Outgoing): ReadonlyArray<ProducerRecord> => {
  const { outputs, deadLetters, changelog } = outgoing
  const all = changelog.length === 0 ? outputs : changelog.concat(outputs)
  return deadLetters.length === 0 ? all : all.concat(deadLetters)
}

/** Every sink's buffered rows, then the extra flush. */
const flushAll = (
  sinks: ReadonlyArray<SinkRun> | undefined,
  extra: Effect.Effect<void, SinkError> | undefined
): Effect.Effect<void, SinkError> => {
  const all = sinks === undefined ? [] : sinks.map((s) => s.flush)
  if (extra !== undefined) all.push(extra)
  return all.length === 0 ? Effect.void : Effect.all(all, { concurrency: "unbounded", discard: true })
}

/** Stages a step's rows in the sinks (which write a full buffer at once). */
const staged = (sinks: ReadonlyArray<SinkRun> | undefined, task: number, step: Step): Effect.Effect<void, SinkError> =>
  sinks === undefined || sinks.length === 0
    ? Effect.void
    : Effect.forEach(sinks, (s) => s.stepped(task, step.outgoing.rows ?? [], step.positions), { discard: true })

/** Stages a step's rows and writes the task's buffers at once. */
const writeNow = (
  sinks: ReadonlyArray<SinkRun> | undefined,
  task: number,
  step: Step
): Effect.Effect<void, SinkError> =>
  sinks === undefined || sinks.length === 0
    ? Effect.void
    : Effect.andThen(
        staged(sinks, task, step),
        Effect.forEach(sinks, (s) => s.flushTask(task), { concurrency: "unbounded", discard: true })
      )

/** Counted once durable, and apart: a dead letter is not an output. */
const countDelivered = (outgoing: Outgoing, deadLettered: Metric.Metric<number, Metric.CounterState<number>>) =>
  Effect.gen(function* () {
    yield* Metrics.countOut(outgoing.outputs)
    if (outgoing.deadLetters.length > 0) yield* Metric.update(deadLettered, outgoing.deadLetters.length)
  })

export interface ExactlyOnceOptions {
  /** The consumer group whose offsets the transactions commit; the tasks' transactional ids start with it. */
  readonly groupId: string
  /** Commit the open transaction once its steps processed this many input records. Default 10,000. */
  readonly commitEveryRecords?: number
  /** Commit the open transaction at most this long after its first step. Default 100 ms (Kafka Streams' EOS default). */
  readonly commitInterval?: Duration.Input
  /** Makes buffered sink writes durable; runs before every transaction commits. */
  readonly flush?: Effect.Effect<void, SinkError>
  /** The topology's sinks: written (at-least-once) before every transaction commits. */
  readonly sinks?: ReadonlyArray<SinkRun>
  /** How retryable failures of a transaction (and of opening a producer) are retried before the task fails. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

/** The transactional id of a task's producer: one per task, so that the task's next owner fences this one. */
export const transactionalId = (groupId: string, task: number): string => `${groupId}-${task}`

export const exactlyOnce = (kafka: KafkaShape, options: ExactlyOnceOptions): Delivery => {
  const commitEvery = options.commitEveryRecords ?? 10_000
  const intervalMs = Duration.toMillis(Duration.fromInputUnsafe(options.commitInterval ?? "100 millis"))
  const flushSinks = flushAll(options.sinks, options.flush)
  const retry = options.retry ?? defaultRetry
  const retryable = { schedule: retry, while: isRetryable }

  const open = Effect.fnUntraced(function* (metricsTopic: string, task: number) {
    const deadLettered = Metrics.forPartition(metricsTopic, task).deadLettered
    const producer = yield* kafka.transactional(transactionalId(options.groupId, task)).pipe(Effect.retry(retryable))
    let steps: Array<Step> = []
    let records = 0
    let dueAt: number | undefined
    const positions = new Map<string, TopicPartitionOffset>()

    const flush: Effect.Effect<void, KafkaError | SinkError> = Effect.suspend(() => {
      if (steps.length === 0) return Effect.void
      const taken = steps
      const offsets = [...positions.values()]
      return Effect.gen(function* () {
        const started = Date.now()
        const all: Array<ProducerRecord> = []
        for (const step of taken) {
          for (const r of recordsOf(step.outgoing)) all.push(r)
          yield* staged(options.sinks, task, step)
        }
        yield* flushSinks
        // A retry is a new transaction with the same content: the last one was aborted, so none of it is visible.
        const metadata = yield* Effect.suspend(() =>
          producer.transaction(all, offsets.length === 0 ? undefined : { groupId: options.groupId, offsets })
        ).pipe(Effect.retry(retryable))
        steps = []
        records = 0
        dueAt = undefined
        let at = 0
        for (const step of taken) {
          const { changelog } = step.outgoing
          step.onDurable(changelog.length === 0 ? [] : metadata.slice(at, at + changelog.length))
          at += changelog.length + step.outgoing.outputs.length + step.outgoing.deadLetters.length
          yield* countDelivered(step.outgoing, deadLettered)
        }
        yield* Metric.update(Metrics.commitLatency, Date.now() - started)
      })
    })

    return {
      complete: (step) =>
        Effect.gen(function* () {
          if (steps.length === 0) dueAt = (yield* Clock.currentTimeMillis) + intervalMs
          steps.push(step)
          for (const p of step.positions) positions.set(tpKey(p.topic, p.partition), p)
          records += step.records
          if (step.stateHeld === true) return
          if (records >= commitEvery || (yield* Clock.currentTimeMillis) >= dueAt!) yield* flush
        }),
      flush,
      due: () => dueAt,
      commitsWith: (more, now) =>
        records + more >= commitEvery || (dueAt === undefined ? intervalMs <= 0 : now >= dueAt)
    } satisfies TaskDelivery
  })

  return {
    guarantee: "exactly_once",
    open,
    // Each task commits its own transaction when it suspends or ends; nothing is left for the runner to commit.
    release: () => Effect.void,
    commit: Effect.void,
    failed: Effect.never
  }
}
