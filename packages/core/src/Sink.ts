/**
 * Sinks: destinations outside Kafka (a Postgres table, a ClickHouse table) that a topology writes rows to, as part
 * of the commit path.
 *
 * A processor writes a row with `out.write(sink, row)` (Batch.ts), beside its Kafka outputs; the row is kept with
 * the input record that caused it. When the step is handed to the delivery path, its rows are staged in the sink's
 * buffer for the task; a buffer is written when it holds `batchSize` rows (in the task's fiber, so only that task
 * waits), every `flushInterval`, and before every commit of input offsets: no offset is committed before the rows
 * it caused are written (at-least-once; a sink should be idempotent, e.g. keyed by the source offset with
 * `on conflict do nothing`). A row with no input record behind it (`Batch.emitting`: a window's final, a timer's
 * output) is written before the step's store changes become durable (at-least-once: before its changelog is sent;
 * exactly-once: before the transaction that carries it commits; Delivery.ts): once the store says a window is
 * closed, nothing would make its row again. With `writeWithOffsets`, each write also stores the positions the
 * written rows reached, in the same database transaction, and `startOffsets` reads them back: tasks then start
 * from the sink's own record of what it wrote (exactly-once into the sink).
 *
 * Failures: a retryable `SinkError` is retried on `retry` (only the task or the commit that needs the write waits;
 * the worker's other tasks go on); a write that still fails after that stops the worker with the error, having
 * committed nothing past what was written. A batch refused for good (a constraint, a value too long) is written
 * again in halves, down to single rows, and each row the store refuses for good becomes a dead letter of its input
 * record, with the store's reason; the other rows are written.
 */
import { Clock, Deferred, Duration, Effect, Metric, Schedule, type Scope, Semaphore } from "effect"
import * as DeadLetter from "./DeadLetter.ts"
import { isRetryable, Rejected, SinkError, Unavailable } from "./Errors.ts"
import type { KafkaShape } from "./Kafka.ts"
import * as Metrics from "./Metrics.ts"
import { type ConsumerRecord, type TopicPartitionOffset, tpKey } from "./Record.ts"

export interface Options<Row, R> {
  /** Names the sink in logs, errors and metrics. */
  readonly name: string
  /** Writes a batch of rows durably; should be idempotent (a crash re-delivers rows written since the last commit). */
  readonly write: (rows: ReadonlyArray<Row>) => Effect.Effect<void, SinkError, R>
  /**
   * Writes rows and the positions they reached (per input partition, the offset of the next record) in one
   * transaction: with it, the sink's positions are where the tasks start (`startOffsets`).
   */
  readonly writeWithOffsets?: (
    rows: ReadonlyArray<Row>,
    positions: ReadonlyArray<TopicPartitionOffset>
  ) => Effect.Effect<void, SinkError, R>
  /** The positions stored by `writeWithOffsets` for a task's input partitions (none stored: left out). */
  readonly readOffsets?: (
    partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>
  ) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, SinkError, R>
  /** A task's buffer is written once it holds this many rows. Default 1,000. */
  readonly batchSize?: number
  /** Buffers are written at least this often. Default 1 s. */
  readonly flushInterval?: Duration.Input
  /** How retryable write failures are retried before the worker stops. Default: 100 ms doubling to 5 s, 2 minutes. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

/** A row waiting in a step's result, bound to its sink; the runtime stages it for a task. */
export interface StagedRow {
  /** The sink's name. */
  readonly sink: string
  /**
   * Whether an input record stands behind the row. One that does not (a window's final, a timer's output) cannot be
   * made again by re-processing once the step's store changes are durable, so it is written before them.
   */
  readonly sourced: boolean
  /** Adds the row to the buffer of `task` in the run identified by `token`. */
  readonly stage: (token: object, task: number) => void
}

/** What the runtime needs of a sink, whatever its row type: `R` is what its writes need. */
export interface SinkSpec<R> {
  readonly name: string
  /** Whether the sink stores the positions it reached (`writeWithOffsets`). */
  readonly hasOffsets: boolean
  /** Starts the sink for one run: its buffers, its interval flush and its failure signal. */
  readonly start: (token: object, env: SinkEnv) => Effect.Effect<SinkRun, never, Scope.Scope | R>
}

export interface SinkEnv {
  readonly kafka: KafkaShape
  readonly application: string
  /** The dead-letter topic of an input topic. */
  readonly deadLetterTopic: (input: string) => string
}

/** One sink in one run. */
export interface SinkRun {
  /**
   * A step of `task` completed with `positions`: stages its rows for this sink (of `rows`, the ones that are this
   * sink's) together with the positions, then writes the task's buffer if it is full.
   */
  readonly stepped: (
    task: number,
    rows: ReadonlyArray<StagedRow>,
    positions: ReadonlyArray<TopicPartitionOffset>
  ) => Effect.Effect<void, SinkError>
  /** Writes every buffered row (with the positions reached, for a sink that stores them). */
  readonly flush: Effect.Effect<void, SinkError>
  /** Writes the buffered rows of one task. */
  readonly flushTask: (task: number) => Effect.Effect<void, SinkError>
  /** The task moved away or stopped: forget its buffer (what it did not write is re-delivered to its next owner). */
  readonly forget: (task: number) => void
  /** Fails when a write fails for good (retries exhausted); never succeeds. */
  readonly failed: Effect.Effect<never, SinkError>
}

export interface Sink<Row, R = never> extends SinkSpec<R> {
  /** A row for `out.write`: staged with the input record it came from. */
  readonly row: (row: Row, source: ConsumerRecord | undefined) => StagedRow
  /** The positions a sink with `writeWithOffsets` stored, for `Topology.make({ startOffsets })`. */
  readonly readOffsets: (
    partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>
  ) => Effect.Effect<ReadonlyArray<TopicPartitionOffset>, SinkError, R>
}

interface Buffered<Row> {
  readonly row: Row
  readonly source: ConsumerRecord | undefined
}

const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(5)))),
  Schedule.upTo({ duration: "2 minutes" })
)

export const make = <Row, R = never>(options: Options<Row, R>): Sink<Row, R> => {
  const batchSize = options.batchSize ?? 1_000
  const retry = options.retry ?? defaultRetry
  const runs = new Map<object, Map<number, Array<Buffered<Row>>>>()
  const rowsWritten = Metric.withAttributes(Metrics.sinkRows, { sink: options.name })

  const sink: Sink<Row, R> = {
    name: options.name,
    hasOffsets: options.writeWithOffsets !== undefined,
    row: (row, source) => ({
      sink: options.name,
      sourced: source !== undefined,
      stage: (token, task) => {
        const buffers = runs.get(token)
        if (buffers === undefined)
          throw new Error(`sink ${options.name} is not declared in the topology: add it to \`sinks\``)
        let buffer = buffers.get(task)
        if (buffer === undefined) {
          buffer = []
          buffers.set(task, buffer)
        }
        buffer.push({ row, source })
      }
    }),
    readOffsets: (partitions) =>
      options.readOffsets === undefined ? Effect.succeed([]) : options.readOffsets(partitions),
    start: Effect.fnUntraced(function* (token: object, env: SinkEnv) {
      const buffers = new Map<number, Array<Buffered<Row>>>()
      yield* Effect.acquireRelease(
        Effect.sync(() => runs.set(token, buffers)),
        () => Effect.sync(() => runs.delete(token))
      )
      // Where each task's written rows reached (for `writeWithOffsets`), updated as steps complete.
      const reached = new Map<number, Map<string, TopicPartitionOffset>>()
      // The tasks whose positions moved since their last write (an idle task writes nothing).
      const moved = new Set<number>()
      const failed = yield* Deferred.make<never, SinkError>()
      // One write at a time per task: a task's positions written later must never be overwritten by ones written
      // earlier. Tasks write concurrently (their rows and positions are disjoint: their own partitions), each on a
      // connection of its own, which is what lets a store use more than one core.
      const locks = new Map<number, Semaphore.Semaphore>()
      const lockOf = (task: number) => {
        let lock = locks.get(task)
        if (lock === undefined) {
          lock = Semaphore.makeUnsafe(1)
          locks.set(task, lock)
        }
        return lock
      }

      const deadLetter = Effect.fnUntraced(function* (rejected: ReadonlyArray<Buffered<Row>>, error: SinkError) {
        const now = yield* Clock.currentTimeMillis
        const letters = rejected.flatMap((b) =>
          b.source === undefined
            ? []
            : [
                DeadLetter.toRecord(
                  env.deadLetterTopic(b.source.topic),
                  env.application,
                  { record: b.source, error },
                  now
                )
              ]
        )
        yield* Effect.logWarning(
          `sink ${options.name} refused ${rejected.length} row(s) for good; dead-lettered their input records: ${error.message}`
        )
        if (letters.length > 0) {
          yield* env.kafka.send(letters).pipe(
            Effect.retry({ schedule: retry, while: isRetryable }),
            Effect.mapError((e) => new SinkError({ sink: options.name, reason: e.reason }))
          )
          // Counted under their input topic, like the dead letters the topology itself rejects.
          for (const b of rejected)
            if (b.source !== undefined)
              yield* Metric.update(Metric.withAttributes(Metrics.recordsDeadLettered, { topic: b.source.topic }), 1)
        }
      })

      const writeOnce = (rows: ReadonlyArray<Row>, positions: ReadonlyArray<TopicPartitionOffset> | undefined) =>
        Effect.retry(
          Effect.suspend(() =>
            positions !== undefined && options.writeWithOffsets !== undefined
              ? options.writeWithOffsets(rows, positions)
              : options.write(rows)
          ).pipe(
            // Said once per failed attempt (the backoff spaces them): an outage is visible while it lasts.
            Effect.tapError((e) =>
              isRetryable(e)
                ? Effect.logWarning(
                    `sink ${options.name}: write of ${rows.length} row(s) failed, retrying: ${e.message}`
                  )
                : Effect.void
            )
          ),
          { schedule: retry, while: isRetryable }
        )

      /** Writes rows; a batch refused for good is narrowed to the rows that cause it. */
      const write = Effect.fnUntraced(function* (
        rows: ReadonlyArray<Buffered<Row>>,
        positions: ReadonlyArray<TopicPartitionOffset> | undefined
      ): Effect.fn.Return<void, SinkError, R> {
        if (rows.length === 0 && positions === undefined) return
        const first = yield* Effect.result(
          writeOnce(
            rows.map((b) => b.row),
            positions
          )
        )
        if (first._tag === "Success") {
          yield* Metric.update(rowsWritten, rows.length)
          return
        }
        if (isRetryable(first.failure) || rows.length <= 1) {
          if (rows.length === 1 && !isRetryable(first.failure)) {
            yield* deadLetter(rows, first.failure)
            if (positions !== undefined) yield* writeOnce([], positions)
            return
          }
          return yield* Effect.fail(first.failure)
        }
        // In halves, down to the rows refused: those become dead letters, the others are written (k refused rows of
        // n cost about 2k·log2(n/k) writes, not n); the positions go last.
        const half = Math.ceil(rows.length / 2)
        yield* write(rows.slice(0, half), undefined)
        yield* write(rows.slice(half), undefined)
        if (positions !== undefined) yield* writeOnce([], positions)
      })

      // Set when a write failed for good: every later flush fails too, so that no commit passes the lost rows.
      let broken: SinkError | undefined

      /**
       * Writes the buffer of `task`, after its write in progress if any: when it completes, every row the task staged
       * before it started is written. Rows and positions are taken together, in one synchronous step.
       */
      const flushTask = (task: number): Effect.Effect<void, SinkError> =>
        lockOf(task).withPermits(1)(
          Effect.suspend(() => {
            if (broken !== undefined) return Effect.fail(broken)
            const rows = buffers.get(task) ?? []
            if (rows.length > 0) buffers.set(task, [])
            const positions =
              options.writeWithOffsets === undefined || (!moved.has(task) && rows.length === 0)
                ? undefined
                : [...(reached.get(task)?.values() ?? [])]
            moved.delete(task)
            if (rows.length === 0 && (positions === undefined || positions.length === 0)) return Effect.void
            return write(rows, positions).pipe(
              // A sink that cannot write within its retries stops the worker; nothing past what it wrote is committed.
              Effect.tapError((e) =>
                Effect.andThen(
                  Effect.sync(() => {
                    broken = e
                  }),
                  Deferred.fail(failed, e)
                )
              ),
              Effect.provideContext(context)
            )
          })
        )

      /** Writes the buffers of `tasks` (all when `undefined`), concurrently. */
      const flushTasks = (tasks: ReadonlyArray<number> | undefined): Effect.Effect<void, SinkError> =>
        Effect.suspend(() =>
          Effect.forEach(tasks ?? new Set([...buffers.keys(), ...moved]), flushTask, {
            concurrency: "unbounded",
            discard: true
          })
        )

      const context = yield* Effect.context<R>()

      yield* Effect.forkScoped(
        flushTasks(undefined).pipe(
          Effect.catch(() => Effect.void),
          Effect.repeat(Schedule.spaced(options.flushInterval ?? "1 second"))
        )
      )

      const run: SinkRun = {
        stepped: (task, rows, positions) =>
          Effect.suspend(() => {
            // Rows and positions together, in one synchronous step: a flush never sees one without the other.
            for (const r of rows) if (r.sink === options.name) r.stage(token, task)
            if (options.writeWithOffsets !== undefined && positions.length > 0) {
              let map = reached.get(task)
              if (map === undefined) {
                map = new Map()
                reached.set(task, map)
              }
              for (const p of positions) map.set(tpKey(p.topic, p.partition), p)
              moved.add(task)
            }
            return (buffers.get(task)?.length ?? 0) >= batchSize ? flushTasks([task]) : Effect.void
          }),
        flush: flushTasks(undefined),
        flushTask: (task) => flushTasks([task]),
        forget: (task) => {
          buffers.delete(task)
          reached.delete(task)
          moved.delete(task)
        },
        failed: Deferred.await(failed)
      }
      return run
    })
  }
  return sink
}

/** What a `collector` holds and lets a test do to it. */
export interface Collector<Row> {
  readonly sink: Sink<Row>
  /** Every row written, in write order (rows written twice appear twice: the collector is not idempotent). */
  readonly rows: () => ReadonlyArray<Row>
  /** The positions the last writes stored, per `topic:partition` (a collector made with `offsets: true`). */
  readonly offsets: () => ReadonlyMap<string, number>
  /** The next `n` writes fail, retryable or not, writing nothing. */
  readonly failWrites: (n: number, retryable: boolean) => void
  /** From now on writes wait, unwritten, until `release` (a database that stopped answering). */
  readonly hold: () => void
  readonly release: () => void
  /** Writes waiting in `hold`. */
  readonly held: () => number
}

/**
 * An in-memory sink for tests (the Postgres and ClickHouse layers' stand-in): rows that `refuse` names are refused
 * for good (a constraint), the rest are appended; faults can be injected. With `offsets: true` it stores positions
 * with the rows, like a database transaction would, and `readOffsets` returns them.
 */
export const collector = <Row>(options: {
  readonly name?: string
  readonly batchSize?: number
  readonly flushInterval?: Duration.Input
  readonly retry?: Schedule.Schedule<unknown, unknown>
  readonly offsets?: boolean
  /** Why a row is refused for good, or `undefined` to accept it. */
  readonly refuse?: (row: Row) => string | undefined
}): Collector<Row> => {
  const name = options.name ?? "collector"
  const written: Array<Row> = []
  const stored = new Map<string, number>()
  const faults = { remaining: 0, retryable: false }
  let holding = false
  const waiting: Array<Deferred.Deferred<void>> = []

  const attempt = (rows: ReadonlyArray<Row>, positions: ReadonlyArray<TopicPartitionOffset>) =>
    Effect.gen(function* () {
      while (holding) {
        const turn = Deferred.makeUnsafe<void>()
        waiting.push(turn)
        yield* Deferred.await(turn)
      }
      if (faults.remaining > 0) {
        faults.remaining--
        return yield* Effect.fail(
          new SinkError({
            sink: name,
            reason: faults.retryable
              ? new Unavailable({ message: "injected failure (Sink.collector.failWrites)" })
              : new Rejected({ message: "injected failure (Sink.collector.failWrites)" })
          })
        )
      }
      // All or nothing, like a database transaction.
      for (const row of rows) {
        const why = options.refuse?.(row)
        if (why !== undefined)
          return yield* Effect.fail(new SinkError({ sink: name, reason: new Rejected({ message: why }) }))
      }
      for (const row of rows) written.push(row)
      for (const p of positions) stored.set(tpKey(p.topic, p.partition), p.offset)
    })

  const sink = make<Row>({
    name,
    write: (rows) => attempt(rows, []),
    ...(options.offsets === true
      ? {
          writeWithOffsets: (rows: ReadonlyArray<Row>, positions: ReadonlyArray<TopicPartitionOffset>) =>
            attempt(rows, positions),
          readOffsets: (partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>) =>
            Effect.sync(() =>
              partitions.flatMap((tp) => {
                const offset = stored.get(tpKey(tp.topic, tp.partition))
                return offset === undefined ? [] : [{ ...tp, offset }]
              })
            )
        }
      : {}),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.flushInterval === undefined ? {} : { flushInterval: options.flushInterval }),
    ...(options.retry === undefined ? {} : { retry: options.retry })
  })
  return {
    sink,
    rows: () => written,
    offsets: () => stored,
    failWrites: (n, retryable) => {
      faults.remaining = n
      faults.retryable = retryable
    },
    hold: () => {
      holding = true
    },
    release: () => {
      holding = false
      for (const turn of waiting.splice(0)) Deferred.doneUnsafe(turn, Effect.void)
    },
    held: () => waiting.length
  }
}
