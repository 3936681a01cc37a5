/**
 * The state operations of a windowed aggregation, per kind of window (Windows.ts does the rest: stream time, late
 * records, emitting). Each kind adds a record to its windows, reads a window's current aggregate, and carries out
 * an index entry that fell due (see windowState for the bytes):
 *
 * - **fixed** (tumbling, hopping): an accumulator per window, keyed by start so that the windows due are a range
 *   (no index). The windows records touch are kept decoded in a `Memory` (Windows.ts keeps it across steps while the
 *   store holds what it was read from), and a step's changes are written to the store once, by `flush`: decoding
 *   and writing a window for each of its records cost more than the aggregation itself.
 * - **sliding**: an accumulator per key and record timestamp (a *bucket*); the window ending at a timestamp merges
 *   the buckets of its `size` ms when it is read. Each bucket has two index entries: the close of its own window,
 *   at `t + 1 + grace`, and its drop, at `t + size + grace`, when the last window that can hold it (the one ending
 *   at `t + size - 1`) has closed: a record that could create a later window would be late.
 * - **session**: an accumulator per session, with the session's end; a record merges the sessions it joins (read
 *   as a range over the key's sessions), whose entries and index entries are deleted, and the session's index entry
 *   moves with its end.
 *
 * An `add` encodes everything it writes before it writes anything, so a record whose accumulator does not encode
 * leaves the state as it was.
 */
import { Result } from "effect"
import type { Aggregator } from "../Aggregator.ts"
import { type KeyValueStore, StoreDecodeError, StoreEncodeError } from "../Store.ts"
import * as Window from "../Window.ts"
import { toBinary } from "./storeBytes.ts"
import * as State from "./windowState.ts"

export interface Env<I, A> {
  /** The store's name, for errors. */
  readonly store: string
  readonly kv: KeyValueStore<Uint8Array, Uint8Array>
  readonly aggregator: Aggregator<I, A, unknown>
  readonly grace: number
  /** Whether `add` reports every window whose aggregate it changed (emit changes); it costs sliding windows a range. */
  readonly track: boolean
  /** Fixed windows as last read or written, decoded; what `flush` writes. */
  readonly memory: Memory<A>
}

/** A fixed window in memory: decoded, and its encoding when a record changed it since the last flush. */
interface Remembered<A> {
  /** The grouping key's bytes. */
  readonly key: Uint8Array
  readonly storeKey: Uint8Array
  accumulator: A
  /** Changed since the last flush. */
  dirty: boolean
  /** The accumulator's encoding, when it was encoded to check it (an aggregator without `check`). */
  encoded: Uint8Array | null
  /** Whether the store has it (a flush wrote it, or it was read from there): closing it deletes it there. */
  inStore: boolean
}

/** How to take back one change of a step to the memory. */
type Undo<A> =
  | { readonly _tag: "Created"; readonly start: number; readonly id: string; readonly window: Remembered<A> }
  | {
      readonly _tag: "Updated"
      readonly window: Remembered<A>
      readonly accumulator: A
      readonly dirty: boolean
      readonly encoded: Uint8Array | null
    }
  | { readonly _tag: "Closed"; readonly start: number; readonly id: string; readonly window: Remembered<A> }

/** Fixed windows in memory, by start, then by the key's bytes as a binary string (storeBytes). */
export interface Memory<A> {
  readonly windows: Map<number, Map<string, Remembered<A>>>
  size: number
  /**
   * Whether every fixed window of the store is in memory (read once, when the memory is made), so that a window
   * not in memory does not exist and closing needs no range over the store; `undefined` until it is read.
   */
  complete: boolean | undefined
  /**
   * Whether changes stay in memory between steps, written to the store only by `flush` (Windows.ts calls it when
   * the runtime takes the store's writes for the changelog), rather than at the end of every step. Only while the
   * memory is complete.
   */
  readonly defer: boolean
  /** The windows changed since the last flush. */
  readonly dirty: Array<Remembered<A>>
  /** The changes of the step in progress (or the last one), newest last: `revert` takes them back. */
  readonly undo: Array<Undo<A>>
}

/**
 * `defer`: see `Memory.defer`. Without it, the memory is made for one step: a cache over the store that does not
 * read it all first.
 */
export const memory = <A>(defer: boolean): Memory<A> => ({
  windows: new Map(),
  size: 0,
  complete: defer ? undefined : false,
  defer,
  dirty: [],
  undo: []
})

/**
 * At most this many fixed windows are kept in memory; past it, memory is a cache over the store, written at the end
 * of every step, and the windows that start first are forgotten (read again from the store when a record comes).
 */
export const remembered = 100_000

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
  /** A step starts: its changes to memory can be taken back (`revert`) until the next `begin` or `flush`. */
  readonly begin: () => void
  /** Takes back the changes to memory of the last step (its store writes were rolled back, or it never ended). */
  readonly revert: () => void
  /** The step ended: writes its changes to the store now, unless the memory holds them until `flush`. */
  readonly end: () => void
  /** Writes every change the memory holds to the store. */
  readonly flush: () => void
  /** How many windows `flush` would write. */
  readonly held: () => number
  /** The windows due by `streamTime`, in the order they fell due, with their state deleted (after a `flush`). */
  readonly closeDue: (streamTime: number) => ReadonlyArray<Closed<A>>
}

export interface Closed<A> extends Aggregate<A> {
  readonly key: Uint8Array
}

type Write = readonly [key: Uint8Array, value: Uint8Array | null]

const none: ReadonlyArray<number> = []
/** Sliding buckets and sessions are written to the store by every record: nothing held, nothing to take back. */
const stepless = { begin: () => {}, revert: () => {}, end: () => {}, flush: () => {}, held: () => 0 }
/** What `add` says of a record in time for all its windows, when nobody asks which windows it changed. */
const notLate: Result.Result<Added, never> = Result.succeed({ missed: [], lateSince: 0, updated: none, gone: none })

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
  const invalid = (issue: string) => new StoreEncodeError({ store: env.store, part: "value", issue })
  const encode = (accumulator: A, end?: number): Result.Result<Uint8Array, StoreEncodeError> =>
    Result.match(aggregator.codec.encode(accumulator), {
      onSuccess: (bytes) => Result.succeed(State.windowValue(bytes, end)),
      onFailure: (issue) => Result.fail(invalid(issue))
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

  /** The index entries due by `streamTime`, each carried out by `due`; collected first, as `due` deletes. */
  const closeIndexed = (
    streamTime: number,
    due: (entry: State.Due, dueKey: Uint8Array) => Aggregate<A> | undefined
  ): ReadonlyArray<Closed<A>> => {
    const closed: Array<Closed<A>> = []
    for (const [dueKey] of [...kv.range(State.dueFrom, State.dueUpTo(streamTime))]) {
      const entry = State.parseDue(dueKey)
      const aggregate = due(entry, dueKey)
      if (aggregate !== undefined) closed.push({ key: entry.key, ...aggregate })
    }
    return closed
  }

  /** Reads every fixed window of the store into `memory`, unless there are more than `remembered`. */
  const load = (memory: Memory<A>) => {
    for (const [storeKey, stored] of kv.range(State.fixedFrom, State.fixedEnd)) {
      if (memory.size === remembered) {
        // Too many: memory starts empty, as a cache over the store.
        memory.windows.clear()
        memory.size = 0
        memory.complete = false
        return
      }
      const { start, key } = State.parseFixedKey(storeKey)
      const byKey = memory.windows.get(start) ?? new Map<string, Remembered<A>>()
      memory.windows.set(start, byKey)
      byKey.set(toBinary(key), {
        key,
        storeKey,
        accumulator: decode(stored).accumulator,
        dirty: false,
        encoded: null,
        inStore: true
      })
      memory.size++
    }
    memory.complete = true
  }

  switch (kind._tag) {
    case "Tumbling":
    case "Hopping": {
      const memory = env.memory
      const touched = memory.windows
      if (memory.complete === undefined) load(memory)
      const remember = (id: string, start: number, window: Remembered<A>) => {
        const byKey = touched.get(start) ?? new Map<string, Remembered<A>>()
        if (byKey.size === 0) touched.set(start, byKey)
        byKey.set(id, window)
        memory.size++
      }
      const forget = (start: number, id: string) => {
        const byKey = touched.get(start)
        if (byKey === undefined || !byKey.delete(id)) return
        memory.size--
        if (byKey.size === 0) touched.delete(start)
      }
      const updated: Array<{
        readonly start: number
        readonly window: Remembered<A> | undefined
        readonly inStore: boolean
        readonly storeKey: Uint8Array | undefined
        readonly accumulator: A
        readonly encoded: Uint8Array | null
      }> = []
      const check = aggregator.check
      const bounds = (start: number): Window.Window => ({ start, end: start + kind.size })
      const advance = Window.advanceOf(kind)
      const deferring = () => memory.defer && memory.complete === true

      /** The changed windows into the store. */
      const write = () => {
        for (const window of memory.dirty) {
          if (!window.dirty) continue
          let encoded = window.encoded
          if (encoded === null) {
            // `check` passed it: a codec that refuses it all the same fails the step.
            const result = encode(window.accumulator)
            if (Result.isFailure(result)) throw result.failure
            encoded = result.success
          }
          kv.put(window.storeKey, encoded)
          window.dirty = false
          window.encoded = null
          window.inStore = true
        }
        memory.dirty.length = 0
      }

      const flush = () => {
        write()
        // The store's writes are being taken: the step before can no longer be rolled back.
        memory.undo.length = 0
        if (memory.size <= remembered) return
        // Too many to hold: from now on memory is a cache over the store, and the windows that start first go.
        memory.complete = false
        for (const [start, byKey] of touched) {
          if (memory.size <= remembered) break
          touched.delete(start)
          memory.size -= byKey.size
        }
      }

      return {
        begin: () => {
          memory.undo.length = 0
        },
        revert: () => {
          for (let i = memory.undo.length - 1; i >= 0; i--) {
            const undo = memory.undo[i]!
            switch (undo._tag) {
              case "Created":
                undo.window.dirty = false
                forget(undo.start, undo.id)
                break
              case "Updated":
                undo.window.accumulator = undo.accumulator
                undo.window.dirty = undo.dirty
                undo.window.encoded = undo.encoded
                break
              case "Closed":
                remember(undo.id, undo.start, undo.window)
                break
            }
          }
          memory.undo.length = 0
        },
        end: () => {
          if (!deferring()) write()
        },
        flush,
        held: () => memory.dirty.length,
        add: (key, timestamp, input, streamTime) => {
          const id = toBinary(key)
          updated.length = 0
          let missed: Array<Window.Window> | undefined
          // The windows of Window.assign, without making them: this runs for every record.
          const first = Window.firstStart(kind, timestamp)
          // Everything checked before anything changes: a record whose accumulator does not encode changes nothing.
          for (let start = first; start <= timestamp; start += advance) {
            if (streamTime >= start + kind.size + grace) {
              missed ??= []
              missed.push(bounds(start))
              continue
            }
            const window = touched.get(start)?.get(id)
            let before: A
            let storeKey: Uint8Array | undefined
            let inStore = false
            if (window !== undefined) before = window.accumulator
            else if (memory.complete === true) before = aggregator.initial()
            else {
              storeKey = State.fixedKey(key, start)
              const stored = kv.get(storeKey)
              inStore = stored !== undefined
              before = stored === undefined ? aggregator.initial() : decode(stored).accumulator
            }
            const accumulator = aggregator.add(before, input)
            let encoded: Uint8Array | null = null
            if (check === undefined) {
              const result = encode(accumulator)
              if (Result.isFailure(result)) return Result.fail(result.failure)
              encoded = result.success
            } else {
              const problem = check(accumulator)
              if (problem !== undefined) return Result.fail(invalid(problem))
            }
            updated.push({ start, window, inStore, storeKey, accumulator, encoded })
          }
          for (const u of updated) {
            let window = u.window
            if (window === undefined) {
              const storeKey = u.storeKey ?? State.fixedKey(key, u.start)
              window = { key, storeKey, accumulator: u.accumulator, dirty: false, encoded: null, inStore: u.inStore }
              remember(id, u.start, window)
              memory.undo.push({ _tag: "Created", start: u.start, id, window })
            } else {
              memory.undo.push({
                _tag: "Updated",
                window,
                accumulator: window.accumulator,
                dirty: window.dirty,
                encoded: window.encoded
              })
              window.accumulator = u.accumulator
            }
            if (!window.dirty) memory.dirty.push(window)
            window.dirty = true
            window.encoded = u.encoded
          }
          if (missed === undefined && !env.track) return notLate
          const lateSince = missed === undefined ? 0 : Window.closesAt(kind, missed[missed.length - 1]!, grace)
          return Result.succeed({
            missed: missed ?? [],
            lateSince,
            updated: updated.map((u) => u.start),
            gone: none
          })
        },
        current: (key, start) => {
          const window = touched.get(start)?.get(toBinary(key))
          if (window !== undefined) return { window: bounds(start), accumulator: window.accumulator }
          if (memory.complete === true) return undefined
          const stored = kv.get(State.fixedKey(key, start))
          return stored === undefined ? undefined : { window: bounds(start), accumulator: decode(stored).accumulator }
        },
        closeDue: (streamTime) => {
          // Due when `start + size + grace <= streamTime`: the windows that start before `streamTime - size - grace + 1`.
          const below = streamTime - kind.size - grace + 1
          if (below <= 0) return []
          const closed: Array<Closed<A>> = []
          if (memory.complete === true) {
            // Every window is in memory: in the store's order, by start, then by the key's bytes.
            const starts = [...touched.keys()].filter((start) => start < below).sort((a, b) => a - b)
            for (const start of starts) {
              const byKey = touched.get(start)!
              for (const id of [...byKey.keys()].sort()) {
                const window = byKey.get(id)!
                // Written to the store: deleted there. Only in memory: it never reaches the changelog at all.
                if (window.inStore) kv.delete(window.storeKey)
                window.dirty = false
                forget(start, id)
                memory.undo.push({ _tag: "Closed", start, id, window })
                closed.push({ key: window.key, window: bounds(start), accumulator: window.accumulator })
              }
            }
            return closed
          }
          // A cache over the store, written at the end of every step (`end` ran before this).
          for (const [storeKey, stored] of [...kv.range(State.fixedFrom, State.fixedBelow(below))]) {
            const { start, key } = State.parseFixedKey(storeKey)
            kv.delete(storeKey)
            const id = toBinary(key)
            const window = touched.get(start)?.get(id)
            if (window !== undefined) {
              forget(start, id)
              memory.undo.push({ _tag: "Closed", start, id, window })
            }
            const accumulator = window === undefined ? decode(stored).accumulator : window.accumulator
            closed.push({ key, window: bounds(start), accumulator })
          }
          return closed
        }
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
        ...stepless,
        closeDue: (streamTime) =>
          closeIndexed(streamTime, (due, dueKey) => {
            if (due.what === State.DROP) {
              take(due.key, due.start, dueKey)
              return undefined
            }
            kv.delete(dueKey)
            return current(due.key, due.start)
          })
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
        ...stepless,
        closeDue: (streamTime) =>
          closeIndexed(streamTime, (due, dueKey) => {
            const taken = take(due.key, due.start, dueKey)
            return taken === undefined
              ? undefined
              : { window: { start: due.start, end: taken.end }, accumulator: taken.accumulator }
          })
      }
  }
}
