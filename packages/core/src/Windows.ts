/**
 * Windowed aggregations: the stateful operator that aggregates a task's records per key and event-time window
 * (`Window.ts`) with an `Aggregator`, and emits each window's result, after Kafka Streams' windowed aggregations.
 *
 * ```ts
 * const temps = Windows.aggregate({ name: "sensor-windows", windows: Window.tumbling("60 seconds"), grace: "10 seconds",
 *   key: Codec.string, aggregator: Aggregator.mean, lateTopic: "sensor-late",
 *   result: (out, key, window, value) => out.emit(averages, key, { ...window, value }) })
 * // Topology.make({ ..., stores: [...temps.stores], timers: [...temps.timers], process: (records, ctx) =>
 * //   Effect.sync(() => { const w = temps.open(ctx)
 * //     const r = Batch.forEach(records, (rec, out) => w.add(out, rec.record, rec.key, rec.value.t, rec.value.at))
 * //     return Batch.concat([r, w.close()]) }) })
 * ```
 *
 * - **Stream time** is the operator's own: the largest timestamp given to `add` (event time, from the record's
 *   value, not the Kafka timestamp), moved record by record, so whether a record is late does not depend on how the
 *   records were batched. It is kept in the store, so it survives restarts and moves with the task.
 * - **Emit final** (the default): a window's result is emitted exactly once, when stream time passes its close
 *   (Kafka Streams' `suppress(untilWindowCloses)`), and its state is deleted. **Emit changes**: at the end of each
 *   step (`close()`), every window that a record of the step changed emits its current result, once per window
 *   per step; its state is deleted at its close with nothing more emitted. A session merged into another is not
 *   retracted: the merged session's result supersedes it. Changes depend on how records were batched; finals do not.
 * - **Late records** (see Window.ts for the rules) count in no window they missed; they go to `lateTopic`, when
 *   there is one, with their original key, value, headers and timestamp, plus `sluice.late.window` (the windows
 *   missed, `start-end`, comma separated), `sluice.late.ms` (how long after it became late the record came, in
 *   stream time: after the close of the last window it missed, or `t + 1 + grace` for sliding and session windows)
 *   and `sluice.late.stream-time`. They are counted in `sluice_records_late` per input topic and logged at Debug.
 * - **Wall-clock close** (`closeOnWallClock`, off by default): a wall-clock timer that moves the operator's stream
 *   time up to the wall clock and closes what is due, so the windows of a partition that went quiet are emitted.
 *   Records older than the wall clock minus grace are late from then on: use it where event time follows the wall
 *   clock (live sensors), never to reprocess old data.
 * - **Deterministic**: given the records in the same order, the finals and late records are the same, also across a
 *   restart (the store is restored from its changelog). Under at-least-once, a crash re-processes records after the
 *   last commit, so a final can be emitted twice; under exactly-once it is emitted once.
 * - A record with a timestamp that is not a whole number of ms ≥ 0 is dead-lettered (`InvalidTimestamp`).
 *
 * The state is one store per operator (`name`; its changelog is `<group>-<name>-changelog`), in bytes
 * (internal/windowState.ts): the stream time; tumbling and hopping windows' accumulators by start, then key, so
 * closing is a range scan in close order; sliding buckets and sessions by key, then start, with an index by the time
 * they fall due. A task's tumbling and hopping windows are kept decoded in memory across steps (internal/windowOps.ts)
 * and written to the store when the runtime takes its writes for the changelog (with the commits); a step whose
 * store writes are rolled back has its changes to memory taken back too. The operator's store is its own: nothing
 * else may write to it.
 */
import { Clock, type Duration, Effect, Fiber, Metric, Result } from "effect"
import type * as Aggregator from "./Aggregator.ts"
import * as Batch from "./Batch.ts"
import type * as Codec from "./Codec.ts"
import { RecordRejected } from "./Errors.ts"
import { beforeTake, changesOf } from "./internal/storeTask.ts"
import * as Ops from "./internal/windowOps.ts"
import * as State from "./internal/windowState.ts"
import * as Metrics from "./Metrics.ts"
import { type ConsumerRecord, textHeaders } from "./Record.ts"
import * as Store from "./Store.ts"
import * as Task from "./Task.ts"
import * as Topic from "./Topic.ts"
import * as Window from "./Window.ts"

export type Output = Omit<Batch.Emitter, "reject">

export interface Options<K, I, A, O> {
  /** The store's name: its changelog topic is `<group>-<name>-changelog`. Also names the wall-clock timer. */
  readonly name: string
  readonly windows: Window.Kind
  /** How far out of order a record may come and still count. Default 0. */
  readonly grace?: Duration.Input | undefined
  /** How the grouping key is stored. */
  readonly key: Codec.Codec<K>
  readonly aggregator: Aggregator.Aggregator<I, A, O>
  /** `final` (default): once per window, when it closes. `changes`: each step's changed windows, at its end. */
  readonly emit?: "final" | "changes" | undefined
  /** Where late records go; without one they are only counted and logged. */
  readonly lateTopic?: string | undefined
  /** How often a wall-clock timer closes what is due by the wall clock (see the module comment). Off by default. */
  readonly closeOnWallClock?: Duration.Input | undefined
  /** How a window's result becomes outputs; `final` is false for an emitted change. */
  readonly result: (out: Output, key: K, window: Window.Window, value: O, final: boolean) => void
}

/**
 * A step's view of the operator, for one task: open it once per step, `add` records, then `close()` once. A step
 * that does not call `close()` leaves the state as it was.
 */
export interface Open<K, I> {
  /** The operator's stream time: the largest timestamp added so far (-1 before the first). */
  readonly streamTime: () => number
  /**
   * Adds `input`, of `key` at event time `timestamp` (epoch ms), to its windows; `record` is the input record it
   * came from (what goes to the late topic). A record late for all its windows counts in none.
   */
  readonly add: (out: Batch.Emitter, record: ConsumerRecord, key: K, input: I, timestamp: number) => void
  /**
   * Ends the step: emits what it changed (emit changes) and the finals of the windows now closed, deleting their
   * state.
   */
  readonly close: () => Batch.BatchResult
}

export interface WindowedAggregation<K, I> {
  readonly name: string
  /** The operator's store; declare `stores` in the topology. */
  readonly store: Store.StoreSpec<Uint8Array, Uint8Array>
  readonly stores: ReadonlyArray<Store.AnyStoreSpec>
  /** The wall-clock close timer, if `closeOnWallClock`; declare `timers` in the topology. */
  readonly timers: ReadonlyArray<Task.Timer<never, never>>
  readonly open: (ctx: Task.TaskContext) => Open<K, I>
}

interface Handle<K, I> extends Open<K, I> {
  /** Moves stream time up to `to` (the wall clock). */
  readonly advance: (to: number) => void
}

/** At most this many late records are named in a step's log line. */
const logged = 3

export const aggregate = <K, I, A, O>(options: Options<K, I, A, O>): WindowedAggregation<K, I> => {
  const kind = options.windows
  const grace = Window.graceMillis(options.grace ?? 0)
  const emitFinal = (options.emit ?? "final") === "final"
  const aggregator = options.aggregator
  const store = Store.make(options.name, { key: State.bytes, value: State.bytes })
  const lateTopic = options.lateTopic === undefined ? undefined : Topic.raw(options.lateTopic)

  const keyBytes = (key: K): Result.Result<Uint8Array, Store.StoreEncodeError> => {
    const encoded = options.key.encode(key)
    if (Result.isSuccess(encoded) && encoded.success !== null) return Result.succeed(encoded.success)
    const issue = Result.isFailure(encoded) ? encoded.failure : "a key must have bytes"
    return Result.fail(new Store.StoreEncodeError({ store: options.name, part: "key", issue }))
  }
  const keyOf = (bytes: Uint8Array): K => {
    const decoded = options.key.decode(bytes)
    if (Result.isFailure(decoded)) {
      throw new Store.StoreDecodeError({ store: options.name, part: "key", issue: decoded.failure })
    }
    return decoded.success
  }

  // Per task store: the operations over it, with fixed windows held in memory across steps (until the runtime takes
  // the store's writes for the changelog). The memory is made again when the store is reset (writes discarded, a
  // restore), and the last step's changes to it are taken back when its store writes were rolled back.
  interface Memo {
    readonly ops: Ops.Ops<I, A>
    readonly resets: number
    rollbacks: number
    /** A step began and has not closed. */
    open: boolean
  }
  const memos = new WeakMap<object, Memo>()
  const opsOf = (kv: Store.KeyValueStore<Uint8Array, Uint8Array>, defer: boolean) =>
    Ops.make(kind, { store: options.name, kv, aggregator, grace, track: !emitFinal, memory: Ops.memory<A>(defer) })
  const memoOf = (kv: Store.KeyValueStore<Uint8Array, Uint8Array>): Memo => {
    const changes = changesOf(kv)
    // A store of someone else's making: a memory for this step only, written at its end.
    if (changes === undefined) return { ops: opsOf(kv, false), resets: 0, rollbacks: 0, open: true }
    let memo = memos.get(kv)
    if (memo === undefined) {
      beforeTake(kv, {
        write: () => memos.get(kv)?.ops.flush(),
        count: () => memos.get(kv)?.ops.held() ?? 0
      })
    }
    if (memo === undefined || memo.resets !== changes.resets) {
      memo = { ops: opsOf(kv, true), resets: changes.resets, rollbacks: changes.rollbacks, open: false }
      memos.set(kv, memo)
    } else if (memo.open || memo.rollbacks !== changes.rollbacks) {
      // The last step did not close, or its writes were rolled back: so are its changes to memory.
      memo.ops.revert()
      memo.rollbacks = changes.rollbacks
    }
    memo.open = true
    memo.ops.begin()
    return memo
  }

  const open = (ctx: Task.TaskContext): Handle<K, I> => {
    const kv = ctx.store(store)
    const memo = memoOf(kv)
    const ops = memo.ops
    let streamTime = State.readStreamTime(options.name, kv)
    const storedStreamTime = streamTime
    // Emit changes: the windows the step changed, by key and start, in the order they first changed.
    const changed = new Map<string, { readonly key: Uint8Array; readonly start: number }>()
    const lateCounts = new Map<string, number>()
    const lateSeen: Array<string> = []

    // Written to the store once, by `close`.
    const advance = (to: number) => {
      if (to > streamTime) streamTime = to
    }

    const late = (out: Batch.Emitter, record: ConsumerRecord, added: Ops.Added) => {
      lateCounts.set(record.topic, (lateCounts.get(record.topic) ?? 0) + 1)
      if (lateSeen.length < logged) lateSeen.push(`${record.topic}[${record.partition}]@${record.offset}`)
      if (lateTopic === undefined) return
      const headers = textHeaders({
        "sluice.late.window": added.missed.map(Window.format).join(","),
        "sluice.late.ms": String(streamTime - added.lateSince),
        "sluice.late.stream-time": String(streamTime)
      })
      out.emit(lateTopic, record.key, record.value, {
        headers: { ...record.headers, ...headers },
        timestamp: record.timestamp
      })
    }

    const add = (out: Batch.Emitter, record: ConsumerRecord, key: K, input: I, timestamp: number) => {
      if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
        out.reject(
          new RecordRejected({
            tag: "InvalidTimestamp",
            reason: `window ${options.name}: the timestamp ${timestamp} is not a whole number of epoch ms >= 0`
          })
        )
        return
      }
      const encodedKey = keyBytes(key)
      if (Result.isFailure(encodedKey)) return out.reject(encodedKey.failure)
      const seen = Math.max(streamTime, timestamp)
      const added = ops.add(encodedKey.success, timestamp, input, seen)
      if (Result.isFailure(added)) return out.reject(added.failure)
      advance(seen)
      if (!emitFinal) {
        for (const start of added.success.gone) changed.delete(State.toBinaryKey(encodedKey.success, start))
        for (const start of added.success.updated) {
          changed.set(State.toBinaryKey(encodedKey.success, start), { key: encodedKey.success, start })
        }
      }
      if (added.success.missed.length > 0) late(out, record, added.success)
    }

    const report = () => {
      if (lateCounts.size === 0) return
      // Handlers are synchronous: the metric and the log line go through the services of the fiber running the step.
      const fiber = Fiber.getCurrent()
      const total = [...lateCounts.values()].reduce((a, b) => a + b, 0)
      const counts = [...lateCounts]
      const named = lateSeen.join(", ")
      lateCounts.clear()
      lateSeen.length = 0
      if (fiber === undefined) return
      Effect.runSyncWith(fiber.context)(
        Effect.forEach(counts, ([topic, n]) => Metric.update(Metrics.lateFor(topic), n), { discard: true }).pipe(
          Effect.andThen(
            Effect.logDebug(
              `window ${options.name}: ${total} late record(s) (stream time ${streamTime}, grace ${grace} ms)` +
                `${lateTopic === undefined ? "" : ` to ${lateTopic.name}`}: ${named}`
            )
          )
        )
      )
    }

    const emit = (out: Output, key: Uint8Array, aggregate: Ops.Aggregate<A>, final: boolean) =>
      options.result(out, keyOf(key), aggregate.window, aggregator.result(aggregate.accumulator), final)

    const close = (): Batch.BatchResult => {
      report()
      return Batch.emitting((out) => {
        for (const { key, start } of changed.values()) {
          const current = ops.current(key, start)
          if (current !== undefined) emit(out, key, current, false)
        }
        changed.clear()
        ops.end()
        if (streamTime >= 0) {
          for (const closed of ops.closeDue(streamTime)) if (emitFinal) emit(out, closed.key, closed, true)
          if (streamTime !== storedStreamTime) State.writeStreamTime(kv, streamTime)
        }
        memo.open = false
      })
    }

    return { streamTime: () => streamTime, add, close, advance }
  }

  const timers =
    options.closeOnWallClock === undefined
      ? []
      : [
          Task.wallClock(`${options.name}-close`, options.closeOnWallClock, (ctx) =>
            Effect.map(Clock.currentTimeMillis, (now) => {
              const handle = open(ctx)
              handle.advance(now)
              return handle.close()
            })
          )
        ]

  return { name: options.name, store, stores: [store], timers, open }
}
