/**
 * Tasks, as a topology sees them: the unit of ordering, state and ownership. A task is one partition number across
 * all of a topology's inputs (Kafka Streams' task), so a co-partitioned join sees both sides of a key in one task.
 * A task's batches, timer ticks and control messages are handled one at a time, in order, so nothing a topology
 * does for a task ever runs concurrently with anything else of that task.
 *
 * `process(records, ctx)` and timers get a `TaskContext`: the task id, the input the batch came from, the task's
 * stream time (the largest record timestamp seen), its state stores, and a way to schedule timers.
 *
 * Timers (Kafka Streams' punctuation) come in two kinds: wall-clock timers run on a `Schedule` of Effect's `Clock`
 * (so `TestClock` drives them in tests), stream-time timers fire when the task's stream time passes a point. Both
 * arrive as ticks in the task's mailbox; their outputs are committed with the task's current position.
 */
import { Duration, type Effect, Schedule } from "effect"
import type { BatchResult } from "./Batch.ts"
import type * as Store from "./Store.ts"

export interface TaskContext {
  /** The topology's name: the application its changelog topics and group belong to. */
  readonly application: string
  /** The task's number: the partition of every input it reads. */
  readonly task: number
  /** The input topic of the batch being processed; the timer's name in a timer tick. */
  readonly input: string
  /** The largest record timestamp the task has seen (all inputs), -1 before its first record. */
  readonly streamTime: number
  /** The task's instance of a store the topology declares (in `stores`); throws for one it does not declare. */
  readonly store: <K, V>(spec: Store.StoreSpec<K, V>) => Store.KeyValueStore<K, V>
  /**
   * Fires the topology's timer `name` once, when the task's stream time reaches `at.streamTime`, or when the wall
   * clock reaches `at.wallClock` (epoch ms). Not persisted: a task that moves re-schedules from its stores (a timer's
   * own state lives in a store). Scheduling a name again replaces the earlier point.
   */
  readonly schedule: (name: string, at: { readonly streamTime: number } | { readonly wallClock: number }) => void
}

export interface Timer<E, R> {
  readonly name: string
  readonly kind: "wall-clock" | "stream-time"
  /** Wall clock: when it fires again after each tick. */
  readonly schedule?: Schedule.Schedule<unknown> | undefined
  /** Stream time: fires every time stream time has advanced this many ms past the last firing. */
  readonly everyMs?: number | undefined
  /** What a tick does: outputs (and store writes) committed with the task's current position. */
  readonly fire: (ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
}

/**
 * A wall-clock timer: fires on `schedule` (a `Schedule`, or a Duration for a fixed interval) while the task runs,
 * and whenever a `ctx.schedule(name, { wallClock })` point is reached. `undefined` fires only when scheduled.
 */
export const wallClock = <E, R>(
  name: string,
  every: Schedule.Schedule<unknown> | Duration.Input | undefined,
  fire: (ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
): Timer<E, R> => ({
  name,
  kind: "wall-clock",
  schedule: every === undefined ? undefined : Schedule.isSchedule(every) ? every : Schedule.spaced(every),
  fire
})

/**
 * A stream-time timer: fires when the task's stream time has moved `every` past its last firing (the first time
 * at the first record), and whenever a `ctx.schedule(name, { streamTime })` point is passed. `undefined` fires only
 * when scheduled. Stream time only moves with records: an idle task's stream-time timers wait.
 */
export const streamTime = <E, R>(
  name: string,
  every: Duration.Input | undefined,
  fire: (ctx: TaskContext) => Effect.Effect<BatchResult, E, R>
): Timer<E, R> => ({
  name,
  kind: "stream-time",
  everyMs: every === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(every)),
  fire
})
