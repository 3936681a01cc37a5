/**
 * The state operations of a windowed aggregation, per kind of window (Windows.ts does the rest: stream time, late
 * records, emitting). Each kind adds a record to its windows, reads a window's current aggregate, and carries out
 * an index entry that fell due (see windowState for the bytes):
 *
 * - **fixed** (tumbling, hopping): an accumulator per window; its index entry is written with the window, at
 *   `end + grace`.
 * - **sliding**: an accumulator per key and record timestamp (a *bucket*); the window ending at a timestamp merges
 *   the buckets of its `size` ms when it is read. Each bucket has two index entries: the close of its own window,
 *   at `t + 1 + grace`, and its drop, at `t + size + grace`, when the last window that can hold it (the one ending
 *   at `t + size - 1`) has closed: a record that could create a later window would be late.
 * - **session**: an accumulator per session, with the session's end; a record merges the sessions it joins (read
 *   as a range over the key's sessions), whose entries and index entries are deleted, and the session's index entry
 *   moves with its end.
 *
 * An `add` encodes everything it writes before it writes anything, so a record whose accumulator does not encode
 * leaves the store as it was.
 */
import { Result } from "effect"
import type { Aggregator } from "../Aggregator.ts"
import { type KeyValueStore, StoreDecodeError, StoreEncodeError } from "../Store.ts"
import * as Window from "../Window.ts"
import * as State from "./windowState.ts"

export interface Env<I, A> {
  /** The store's name, for errors. */
  readonly store: string
  readonly kv: KeyValueStore<Uint8Array, Uint8Array>
  readonly aggregator: Aggregator<I, A, unknown>
  readonly grace: number
  /** Whether `add` reports every window whose aggregate it changed (emit changes); it costs sliding windows a range. */
  readonly track: boolean
}

export interface Added {
  /** The windows the record missed, closed already: it is late for them (and counts in no window when it is all). */
  readonly missed: ReadonlyArray<Window.Window>
  /** When the record became late, in stream time: the close of the last window it missed, or `t + 1 + grace`. */
  readonly lateSince: number
  /** The windows (by start) whose aggregate changed, when `track`. */
  readonly updated: ReadonlyArray<number>
  /** The windows (by start) merged into another, which no longer exist. */
  readonly gone: ReadonlyArray<number>
}

export interface Aggregate<A> {
  readonly window: Window.Window
  readonly accumulator: A
}

export interface Ops<I, A> {
  /** Adds a record at `timestamp` of `key` (encoded), with `streamTime` already moved by it. */
  readonly add: (
    key: Uint8Array,
    timestamp: number,
    input: I,
    streamTime: number
  ) => Result.Result<Added, StoreEncodeError>
  /** The window of `key` at `start` as it is now, if it exists. */
  readonly current: (key: Uint8Array, start: number) => Aggregate<A> | undefined
  /** Carries out the index entry `due` (stored under `dueKey`): the window that closed, its state deleted. */
  readonly due: (due: State.Due, dueKey: Uint8Array) => Aggregate<A> | undefined
}

type Write = readonly [key: Uint8Array, value: Uint8Array | null]

const none: ReadonlyArray<number> = []

export const make = <I, A>(kind: Window.Kind, env: Env<I, A>): Ops<I, A> => {
  const { kv, aggregator, grace } = env
  const isSession = kind._tag === "Session"

  const decode = (stored: Uint8Array): { readonly end: number; readonly accumulator: A } => {
    const value = State.parseWindowValue(env.store, stored, isSession)
    const decoded = aggregator.codec.decode(value.accumulator)
    if (Result.isFailure(decoded))
      throw new StoreDecodeError({ store: env.store, part: "value", issue: decoded.failure })
    return { end: value.end, accumulator: decoded.success }
  }
  const encode = (accumulator: A, end?: number): Result.Result<Uint8Array, StoreEncodeError> =>
    Result.match(aggregator.codec.encode(accumulator), {
      onSuccess: (bytes) => Result.succeed(State.windowValue(bytes, end)),
      onFailure: (issue) => Result.fail(new StoreEncodeError({ store: env.store, part: "value", issue }))
    })
  const apply = (writes: ReadonlyArray<Write>) => {
    for (const [key, value] of writes) {
      if (value === null) kv.delete(key)
      else kv.put(key, value)
    }
  }
  const late = (missed: Window.Window, lateSince: number): Added => ({
    missed: [missed],
    lateSince,
    updated: none,
    gone: none
  })

  /** Adds `input` to the accumulator at `windowKey`: the write, and whether the window is new. */
  const addTo = (windowKey: Uint8Array, input: I, writes: Array<Write>): Result.Result<boolean, StoreEncodeError> => {
    const stored = kv.get(windowKey)
    const before = stored === undefined ? aggregator.initial() : decode(stored).accumulator
    const encoded = encode(aggregator.add(before, input))
    if (Result.isFailure(encoded)) return Result.fail(encoded.failure)
    writes.push([windowKey, encoded.success])
    return Result.succeed(stored === undefined)
  }

  /** Deletes a window (or bucket) and the index entry that was due for it; returns what it held. */
  const take = (key: Uint8Array, start: number, dueKey: Uint8Array) => {
    const windowKey = State.windowKey(key, start)
    const stored = kv.get(windowKey)
    kv.delete(windowKey)
    kv.delete(dueKey)
    return stored === undefined ? undefined : decode(stored)
  }

  switch (kind._tag) {
    case "Tumbling":
    case "Hopping":
      return {
        add: (key, timestamp, input, streamTime) => {
          const { open, missed } = Window.split(kind, timestamp, grace, streamTime)
          const writes: Array<Write> = []
          for (const w of open) {
            const added = addTo(State.windowKey(key, w.start), input, writes)
            if (Result.isFailure(added)) return Result.fail(added.failure)
            if (added.success)
              writes.push([State.dueKey(Window.closesAt(kind, w, grace), State.CLOSE, key, w.start), State.marker])
          }
          apply(writes)
          const lateSince = missed.length === 0 ? 0 : Window.closesAt(kind, missed[missed.length - 1]!, grace)
          return Result.succeed({ missed, lateSince, updated: open.map((w) => w.start), gone: none })
        },
        current: (key, start) => {
          const stored = kv.get(State.windowKey(key, start))
          return stored === undefined
            ? undefined
            : { window: { start, end: start + kind.size }, accumulator: decode(stored).accumulator }
        },
        due: (due, dueKey) => {
          const taken = take(due.key, due.start, dueKey)
          return taken === undefined
            ? undefined
            : { window: { start: due.start, end: due.start + kind.size }, accumulator: taken.accumulator }
        }
      }

    case "Sliding": {
      const current = (key: Uint8Array, at: number): Aggregate<A> | undefined => {
        if (kv.get(State.windowKey(key, at)) === undefined) return undefined
        const window = Window.slidingWindow(kind, at)
        let accumulator = aggregator.initial()
        for (const [, stored] of kv.range(State.windowKey(key, window.start), State.windowKey(key, window.end))) {
          accumulator = aggregator.merge(accumulator, decode(stored).accumulator)
        }
        return { window, accumulator }
      }
      return {
        add: (key, timestamp, input, streamTime) => {
          if (Window.isLate(timestamp, grace, streamTime)) {
            return Result.succeed(late(Window.slidingWindow(kind, timestamp), timestamp + 1 + grace))
          }
          const writes: Array<Write> = []
          const added = addTo(State.windowKey(key, timestamp), input, writes)
          if (Result.isFailure(added)) return Result.fail(added.failure)
          if (added.success) {
            writes.push([State.dueKey(timestamp + 1 + grace, State.CLOSE, key, timestamp), State.marker])
            writes.push([State.dueKey(timestamp + kind.size + grace, State.DROP, key, timestamp), State.marker])
          }
          // The windows of the later timestamps within size hold this record too (all open: it is not late).
          const updated = [timestamp]
          if (env.track) {
            const later = kv.range(State.windowKey(key, timestamp + 1), State.windowKey(key, timestamp + kind.size))
            for (const [k] of later) updated.push(State.startOf(k))
          }
          apply(writes)
          return Result.succeed({ missed: [], lateSince: 0, updated, gone: none })
        },
        current,
        due: (due, dueKey) => {
          if (due.what === State.DROP) {
            take(due.key, due.start, dueKey)
            return undefined
          }
          kv.delete(dueKey)
          return current(due.key, due.start)
        }
      }
    }

    case "Session":
      return {
        add: (key, timestamp, input, streamTime) => {
          if (Window.isLate(timestamp, grace, streamTime)) {
            return Result.succeed(late({ start: timestamp, end: timestamp + 1 }, timestamp + 1 + grace))
          }
          // A session that the record joins starts at most gap after it; earlier ones are filtered by their end.
          const existing = new Map<number, { readonly window: Window.Window; readonly accumulator: A }>()
          for (const [k, stored] of kv.range(State.windowKey(key, 0), State.windowKey(key, timestamp + kind.gap + 1))) {
            const start = State.startOf(k)
            const { end, accumulator } = decode(stored)
            existing.set(start, { window: { start, end }, accumulator })
          }
          const windows = [...existing.values()].map((e) => e.window)
          const { session, merged } = Window.sessionMerge(kind, windows, timestamp)
          let accumulator: A | undefined
          const writes: Array<Write> = []
          for (const m of merged) {
            const previous = existing.get(m.start)!.accumulator
            accumulator = accumulator === undefined ? previous : aggregator.merge(accumulator, previous)
            writes.push([State.windowKey(key, m.start), null])
            writes.push([State.dueKey(Window.closesAt(kind, m, grace), State.CLOSE, key, m.start), null])
          }
          const encoded = encode(aggregator.add(accumulator ?? aggregator.initial(), input), session.end)
          if (Result.isFailure(encoded)) return Result.fail(encoded.failure)
          // Written after the deletes: when the session keeps its start, its new entries win.
          writes.push([State.windowKey(key, session.start), encoded.success])
          writes.push([
            State.dueKey(Window.closesAt(kind, session, grace), State.CLOSE, key, session.start),
            State.marker
          ])
          apply(writes)
          const gone = merged.filter((m) => m.start !== session.start).map((m) => m.start)
          return Result.succeed({ missed: [], lateSince: 0, updated: [session.start], gone })
        },
        current: (key, start) => {
          const stored = kv.get(State.windowKey(key, start))
          if (stored === undefined) return undefined
          const { end, accumulator } = decode(stored)
          return { window: { start, end }, accumulator }
        },
        due: (due, dueKey) => {
          const taken = take(due.key, due.start, dueKey)
          return taken === undefined
            ? undefined
            : { window: { start: due.start, end: taken.end }, accumulator: taken.accumulator }
        }
      }
  }
}
