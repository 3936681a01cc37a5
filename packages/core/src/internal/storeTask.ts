/**
 * A task's store over its backend: typed reads and writes, the writes that are not durable yet (so reads see them),
 * and the moves of those writes to the changelog and into the backend.
 *
 * Writes live in layers above the backend until they are durable: `pending` (since the last savepoint), `held`
 * (the earlier steps' since the last `takeWrites`: the runtime takes a task's writes when it commits, not every
 * step, so that a key written by many steps goes to the changelog once), then the taken batches whose changelog
 * records are in flight, newest first. A read looks through the layers and then the backend. Every layer keys its writes by the key's binary string (see storeBytes); a Map keeps the position a
 * key was first set at, which is the order `takeWrites` promises.
 */
import { Result } from "effect"
import type { ConsumerRecord, RecordBatch } from "../Record.ts"
import type { Backend, Change, Savepoint, StoreSpec, TaskStore } from "../Store.ts"
import { compareBytes, toBinary } from "./storeBytes.ts"
import { StoreDecodeError, StoreEncodeError } from "./storeErrors.ts"

/** Writes handed out by `takeWrites` and not yet durable: the very array the runtime got, and its writes by key. */
interface InFlight {
  readonly writes: ReadonlyArray<Change>
  readonly byKey: ReadonlyMap<string, Change>
}

const noWrites: ReadonlyArray<Change> = []

const byBinaryKey = (a: readonly [string, Change], b: readonly [string, Change]): number =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0

interface Point extends Savepoint {
  readonly seq: number
}

/** What changed a store other than its own `put` and `delete`, as counts. */
export interface Changes {
  /** Rollbacks to the last savepoint (the writes of the step since it were dropped). */
  readonly rollbacks: number
  /** Writes discarded (an aborted transaction, a retired task) and restores: the store is what its backend holds. */
  readonly resets: number
}

/** What an operator holds in memory for a store: how to write it there, and how many keys that would write. */
export interface Held {
  readonly write: () => void
  readonly count: () => number
}

interface Internals {
  readonly changes: () => Changes
  readonly beforeTake: Array<Held>
}

const internals = new WeakMap<object, Internals>()

/**
 * For an operator that keeps state decoded in memory over a store (Windows.ts): what changed the store other than
 * its writes, so it can tell whether what it holds still agrees with the store. `undefined` for a store not made
 * here.
 */
export const changesOf = (store: object): Changes | undefined => internals.get(store)?.changes()

/**
 * Runs `held.write` at the start of every `takeWrites`, before the writes are taken: an operator that holds changes
 * in memory between commits writes them to the store there (and `held()` counts them). Returns false for a store
 * not made here.
 */
export const beforeTake = (store: object, held: Held): boolean => {
  const found = internals.get(store)
  found?.beforeTake.push(held)
  return found !== undefined
}

export const make = <K, V>(spec: StoreSpec<K, V>, backend: Backend, changelogTopic: string): TaskStore<K, V> => {
  const store = spec.name
  let pending = new Map<string, Change>()
  let held = new Map<string, Change>()
  let inFlight: Array<InFlight> = []
  let rollbacks = 0
  let resets = 0
  const hooks: Array<Held> = []

  const encodeKey = (key: K): Uint8Array => {
    const encoded = spec.key.encode(key)
    if (Result.isFailure(encoded)) throw new StoreEncodeError({ store, part: "key", issue: encoded.failure })
    if (encoded.success === null) throw new StoreEncodeError({ store, part: "key", issue: "a key must have bytes" })
    return encoded.success
  }
  const encodeValue = (value: V): Uint8Array | null => {
    const encoded = spec.value.encode(value)
    if (Result.isFailure(encoded)) throw new StoreEncodeError({ store, part: "value", issue: encoded.failure })
    return encoded.success
  }
  const decodeKey = (bytes: Uint8Array): K => {
    const decoded = spec.key.decode(bytes)
    if (Result.isFailure(decoded)) throw new StoreDecodeError({ store, part: "key", issue: decoded.failure })
    return decoded.success
  }
  const decodeValue = (bytes: Uint8Array): V => {
    const decoded = spec.value.decode(bytes)
    if (Result.isFailure(decoded)) throw new StoreDecodeError({ store, part: "value", issue: decoded.failure })
    return decoded.success
  }
  const entry = (key: Uint8Array, value: Uint8Array): readonly [K, V] => [decodeKey(key), decodeValue(value)]

  /** The newest write of `key` that is not durable yet, if any. */
  const buffered = (key: Uint8Array): Change | undefined => {
    // When every write is durable, reads go straight to the backend, without making a Map key.
    if (pending.size === 0 && held.size === 0 && inFlight.length === 0) return undefined
    const k = toBinary(key)
    const write = pending.get(k) ?? held.get(k)
    if (write !== undefined) return write
    for (let i = inFlight.length - 1; i >= 0; i--) {
      const taken = inFlight[i]!.byKey.get(k)
      if (taken !== undefined) return taken
    }
    return undefined
  }

  /** The newest write of each key not durable yet, with `from <= key < to` (binary strings). */
  const bufferedIn = (from: string | undefined, to: string | undefined): Map<string, Change> => {
    const latest = new Map<string, Change>()
    const add = (layer: ReadonlyMap<string, Change>) => {
      for (const [k, write] of layer) {
        if ((from === undefined || k >= from) && (to === undefined || k < to)) latest.set(k, write)
      }
    }
    for (const taken of inFlight) add(taken.byKey)
    add(held)
    add(pending)
    return latest
  }

  /** `base` (from the backend) with the buffered writes laid over it; both ascending by key bytes. */
  function* merge(
    base: Iterable<readonly [Uint8Array, Uint8Array]>,
    over: ReadonlyArray<Change>
  ): Generator<readonly [K, V]> {
    let i = 0
    for (const [key, value] of base) {
      let shadowed = false
      for (; i < over.length; i++) {
        const [k, v] = over[i]!
        const order = compareBytes(k, key)
        if (order > 0) break
        if (order === 0) shadowed = true
        if (v !== null) yield entry(k, v)
      }
      if (!shadowed) yield entry(key, value)
    }
    for (; i < over.length; i++) {
      const [k, v] = over[i]!
      if (v !== null) yield entry(k, v)
    }
  }

  const range = (from?: K, to?: K): Iterable<readonly [K, V]> => {
    // Encoded now, not when iteration starts, so a key that does not encode throws at the call.
    const lo = from === undefined ? undefined : encodeKey(from)
    const hi = to === undefined ? undefined : encodeKey(to)
    const base = backend.range(lo, hi)
    if (pending.size === 0 && held.size === 0 && inFlight.length === 0) return merge(base, noWrites)
    const over = bufferedIn(lo === undefined ? undefined : toBinary(lo), hi === undefined ? undefined : toBinary(hi))
    return merge(
      base,
      [...over].sort(byBinaryKey).map(([, write]) => write)
    )
  }

  const restoreUpTo = (records: ReadonlyArray<ConsumerRecord>, next: number): void => {
    const changes: Array<Change> = []
    for (const record of records) if (record.key !== null) changes.push([record.key, record.value])
    backend.apply(changes, next)
  }

  /** The step's writes join the earlier ones: a savepoint starts an empty `pending`, so it costs nothing to take. */
  const hold = () => {
    for (const [k, write] of pending) held.set(k, write)
    pending = new Map()
  }
  let savepoints = 0
  const savepoint = (): Savepoint => {
    hold()
    const point: Point = { _brand: "Savepoint", seq: ++savepoints }
    return point
  }
  const isPoint = (point: Savepoint): point is Point => "seq" in point

  const taskStore: TaskStore<K, V> = {
    spec,
    backend,
    name: store,
    changelogTopic,
    savepoint,
    rollback: (point) => {
      // Only to the last one: the writes before it have joined `held`.
      if (!isPoint(point) || point.seq !== savepoints) {
        throw new Error(`store ${store}: a rollback to a savepoint that is not this store's last one`)
      }
      pending = new Map()
      rollbacks++
    },
    get: (key) => {
      const k = encodeKey(key)
      const write = buffered(k)
      const value = write === undefined ? backend.get(k) : write[1]
      return value === null || value === undefined ? undefined : decodeValue(value)
    },
    put: (key, value) => {
      const k = encodeKey(key)
      pending.set(toBinary(k), [k, encodeValue(value)])
    },
    delete: (key) => {
      const k = encodeKey(key)
      pending.set(toBinary(k), [k, null])
    },
    range,
    all: () => range(),
    size: () => {
      let n = backend.size()
      if (pending.size === 0 && held.size === 0 && inFlight.length === 0) return n
      for (const [key, value] of bufferedIn(undefined, undefined).values()) {
        const stored = backend.get(key) !== undefined
        if (value !== null && !stored) n++
        else if (value === null && stored) n--
      }
      return n
    },
    held: () => {
      let n = pending.size + held.size
      for (const hook of hooks) n += hook.count()
      return n
    },
    takeWrites: () => {
      for (const hook of hooks) hook.write()
      hold()
      if (held.size === 0) return noWrites
      const byKey = held
      held = new Map()
      // A key deleted that no layer below has (written and deleted since the last take) leaves nothing to say.
      for (const [k, [key, value]] of byKey) {
        if (value === null && inFlight.every((taken) => !taken.byKey.has(k)) && backend.get(key) === undefined) {
          byKey.delete(k)
        }
      }
      if (byKey.size === 0) return noWrites
      const writes = [...byKey.values()]
      inFlight.push({ writes, byKey })
      return writes
    },
    durable: (writes, nextOffset) => {
      const at = inFlight.findIndex((taken) => taken.writes === writes)
      // Applying a later batch first would let the earlier one overwrite its keys in the backend afterwards.
      if (at > 0) throw new Error(`store ${store}: writes made durable out of order (${at} earlier batches pending)`)
      backend.apply(writes, nextOffset)
      if (at === 0) inFlight.shift()
    },
    discardWrites: () => {
      pending = new Map()
      held = new Map()
      inFlight = []
      resets++
    },
    restore: (records) => {
      resets++
      if (records.length > 0) restoreUpTo(records, records[records.length - 1]!.offset + 1)
    },
    restoreBatch: (batch: RecordBatch) => {
      resets++
      const last = Math.max(batch.records.at(-1)?.offset ?? -1, batch.lastOffset ?? -1)
      if (last >= 0) restoreUpTo(batch.records, last + 1)
    },
    checkpoint: () => backend.checkpoint()
  }
  internals.set(taskStore, { changes: () => ({ rollbacks, resets }), beforeTake: hooks })
  return taskStore
}
