/**
 * Per-task key-value state stores with changelogs, after Kafka Streams' state stores.
 *
 * A topology declares a store as a value (`Store.make`, like `Topic.make`); every task gets its own instance, and
 * its handlers read and write it synchronously (`KeyValueStore`) in their plain loop over a batch. The store's
 * truth is its changelog, a compacted topic `<application>-<store>-changelog` with one partition per task: a
 * batch's writes become changelog records, and reach the store's backend (memory, or a SQLite file) only once
 * those records are acknowledged. A task that starts restores its store from the changelog, from the backend's
 * checkpoint on (a SQLite store kept from an earlier run needs only the tail).
 *
 * Two sides:
 * - topology authors use `make` and `KeyValueStore`;
 * - the task runtime uses `BackendFactory` (`memory`, `sqlite`), `open`, and a `TaskStore`'s `takeWrites`,
 *   `durable`, `discardWrites` and `restore`.
 *
 * The order of a batch, for the runtime: process the batch (its reads see its own writes), `takeWrites()`, send
 * the writes as changelog records with the batch's outputs, await their acks, `durable(writes, nextOffset)`, then
 * commit the input offsets. A crash anywhere before `durable` leaves the backend as it was before the batch, and
 * the input uncommitted: the batch is processed again against the state it first saw. A crash between `durable`
 * and the commit re-processes the batch against state that already has its writes (at-least-once: the changelog
 * holds the batch's writes twice, which compaction folds). Under exactly-once, call `durable` after the
 * transaction commits, so the backend never holds the writes of an aborted transaction.
 */
import { Effect, Result } from "effect"
import type * as Codec from "./Codec.ts"
import { StoreError } from "./internal/storeErrors.ts"
import * as memoryBackend from "./internal/storeMemory.ts"
import * as sqliteBackend from "./internal/storeSqlite.ts"
import * as taskStore from "./internal/storeTask.ts"
import type { ConsumerRecord, RecordBatch } from "./Record.ts"

export { StoreDecodeError, StoreEncodeError, StoreError } from "./internal/storeErrors.ts"

// ---------------------------------------------------------------------------------------------------------------
// For topology authors
// ---------------------------------------------------------------------------------------------------------------

/** A store as a value: its name (part of its changelog topic and its file) and the codecs of its keys and values. */
/** A store as the runtime sees it, whatever its key and value types: it handles bytes. */
export interface AnyStoreSpec {
  readonly name: string
  /**
   * Opens this store for one task over `backend`, writing its changelog to `changelogTopic`; `ctx.store(spec)` then
   * finds it by `token` (the task's own object).
   */
  readonly bind: (token: object, backend: Backend, changelogTopic: string) => TaskStoreBytes
  /** An entry as JSON, for `/tables`: decoded with the codecs; what does not decode (or is bytes) as base64. */
  readonly toJson: (key: Uint8Array, value: Uint8Array) => { readonly key: unknown; readonly value: unknown }
}

export interface StoreSpec<K, V> extends AnyStoreSpec {
  readonly key: Codec.Codec<K>
  readonly value: Codec.Codec<V>
  /** The store bound to the task with `token`, if any. */
  readonly instance: (token: object) => TaskStore<K, V> | undefined
}

const base64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64")

/** A decoded value as JSON can carry it: bytes as base64, and what does not decode as `{ base64 }`. */
const jsonOf = <A>(codec: Codec.Codec<A>, bytes: Uint8Array): unknown => {
  const decoded = codec.decode(bytes)
  if (Result.isFailure(decoded)) return { base64: base64(bytes) }
  const value: unknown = decoded.success
  return value instanceof Uint8Array ? { base64: base64(value) } : value
}

/**
 * A store: its name (its changelog topic is `<application>-<name>-changelog`) and the codecs of its keys and values.
 * Declare it in a topology's `stores`; each task then has its own, `ctx.store(spec)`.
 */
export const make = <K, V>(
  name: string,
  codecs: { readonly key: Codec.Codec<K>; readonly value: Codec.Codec<V> }
): StoreSpec<K, V> => {
  // The spec keeps its tasks' stores itself, so `instance` returns them with their types.
  const instances = new WeakMap<object, TaskStore<K, V>>()
  const spec: StoreSpec<K, V> = {
    name,
    key: codecs.key,
    value: codecs.value,
    instance: (token) => instances.get(token),
    toJson: (key, value) => ({ key: jsonOf(codecs.key, key), value: jsonOf(codecs.value, value) }),
    bind: (token, backend, changelogTopic) => {
      const store = taskStore.make(spec, backend, changelogTopic)
      instances.set(token, store)
      return store
    }
  }
  return spec
}

/** The compacted topic that holds a store's changes, one partition per task (Kafka Streams' naming). */
export const changelogTopic = (application: string, spec: { readonly name: string }): string =>
  `${application}-${spec.name}-changelog`

/**
 * A task's store as a handler sees it. Synchronous: handlers run in a plain loop over a batch.
 *
 * - Reads see every write made before them, also the ones of the current batch that are not durable yet.
 * - Order is the byte order of the *encoded* key (unsigned lexicographic, like RocksDB), not the order of `K`:
 *   with `Codec.intString`, `"10"` sorts before `"9"`. Choose a key codec whose bytes sort the way ranges need.
 * - `put` of a value that encodes to no bytes (`null`, with `Codec.nullable`) deletes the key: it is a tombstone.
 * - A key or value that does not encode throws `StoreEncodeError` (the record is dead-lettered, and the write is
 *   not made); stored bytes that do not decode throw `StoreDecodeError`. A backend failure throws `StoreError`.
 * - The writes of a record that is dead-lettered after them stay in the batch (a store has no per-record undo).
 */
export interface KeyValueStore<K, V> {
  readonly get: (key: K) => V | undefined
  readonly put: (key: K, value: V) => void
  readonly delete: (key: K) => void
  /**
   * The entries with `from <= key < to` (either bound may be left out), ascending by encoded key. Consume it within
   * the handler: writes made while iterating may or may not be seen.
   */
  readonly range: (from?: K, to?: K) => Iterable<readonly [K, V]>
  /** Every entry, ascending by encoded key. */
  readonly all: () => Iterable<readonly [K, V]>
  /** The number of keys. Costs a backend lookup per key written and not yet durable. */
  readonly size: () => number
}

// ---------------------------------------------------------------------------------------------------------------
// For the task runtime
// ---------------------------------------------------------------------------------------------------------------

/** A change to a store's bytes: a key and its new value, `null` to delete it (a changelog tombstone). */
export type Change = readonly [key: Uint8Array, value: Uint8Array | null]

/**
 * Where a task's store keeps its bytes. Synchronous, like the store; a failure throws `StoreError` (run calls in
 * an Effect with `attempt`). Keys are ordered by their bytes, unsigned lexicographic.
 */
export interface Backend {
  readonly get: (key: Uint8Array) => Uint8Array | undefined
  /** `from <= key < to`, ascending; either bound may be left out. */
  readonly range: (from?: Uint8Array, to?: Uint8Array) => Iterable<readonly [Uint8Array, Uint8Array]>
  readonly size: () => number
  /**
   * Applies `changes` in order (a later change to a key wins) and records `checkpoint`, the changelog offset to
   * restore from next time, atomically: after a crash the backend has both or neither.
   */
  readonly apply: (changes: ReadonlyArray<Change>, checkpoint: number) => void
  /** The last recorded checkpoint; `undefined` for a new (or wiped) backend, which restores from the beginning. */
  readonly checkpoint: () => number | undefined
  /**
   * Whether the previous user of this backend closed it (`close`): `false` after a crash or kill -9 of the process
   * that had it open (or while another connection still has it open). A new backend counts as closed cleanly.
   * Kafka Streams' rule, for the runtime: under exactly-once, a backend that was not closed cleanly is wiped and
   * restored in full, because it may hold writes of a transaction that was then aborted.
   */
  readonly closedCleanly: boolean
  /** Drops every entry and the checkpoint: the store will be restored in full. */
  readonly wipe: () => void
  readonly close: () => void
}

/** Which task's store a backend is for. Names are path segments of a persistent store: `[A-Za-z0-9._-]+`. */
export interface Location {
  readonly application: string
  readonly task: number
  readonly store: string
}

export interface BackendFactory {
  readonly open: (location: Location) => Effect.Effect<Backend, StoreError>
  /**
   * Deletes what a persistent backend keeps for `location` (its files), for a store that cannot be opened: the
   * runtime removes it and restores the store from its changelog. Nothing to do for memory.
   */
  readonly remove: (location: Location) => Effect.Effect<void, StoreError>
}

/**
 * Stores in memory: a backend starts empty every time it is opened (so it is restored from the changelog in
 * full), and is gone when closed. Entries are kept as bytes in a Map; `range` sorts the keys when the set of keys
 * changed since the last range (O(n + k log k) for k new keys; O(n log n) after a delete), then binary-searches.
 */
export const memory: BackendFactory = {
  open: () => Effect.sync(memoryBackend.make),
  remove: () => Effect.void
}

/**
 * Stores in SQLite files (`node:sqlite`), one database per task and store at
 * `<dir>/<application>/<task>/<store>.sqlite`. The checkpoint is written in the same transaction as the data, so
 * a process that restarts with the same `dir` restores only the changelog's tail.
 */
export const sqlite = (options: { readonly dir: string }): BackendFactory => ({
  open: (location) => sqliteBackend.open(options.dir, location),
  remove: (location) => sqliteBackend.remove(options.dir, location)
})

/** A task's store as the runtime sees it: the handler's view, plus what moves its writes to the changelog. */
/** Where a step's writes were: `rollback` returns to it (a record dead-lettered leaves no state change behind). */
export interface Savepoint {
  readonly _brand: "Savepoint"
}

/** A task's store as the runtime drives it, in bytes: writes, changelog, durability, restore. */
export interface TaskStoreBytes {
  readonly name: string
  readonly changelogTopic: string
  /**
   * The writes since the last call, as changelog records to send: the last write of each key (`null`: delete), in
   * the order the keys were first written. They are still read until `durable` (or `discardWrites`).
   */
  readonly takeWrites: () => ReadonlyArray<Change>
  /** How many keys were written since the last `takeWrites` (what it would take, at most). */
  readonly held: () => number
  /**
   * The changelog records of `writes` (from `takeWrites`) were acknowledged, and `nextOffset` is the offset after
   * the last of them: applies them to the backend with that checkpoint. Writes taken by several `takeWrites` calls
   * must be made durable in the order they were taken.
   */
  readonly durable: (writes: ReadonlyArray<Change>, nextOffset: number) => void
  /** Drops every write not yet durable (the batch was abandoned): reads see the backend again. */
  readonly discardWrites: () => void
  /**
   * Applies changelog records read back from Kafka (a `null` value deletes; records without a key are skipped)
   * and sets the checkpoint to the last record's offset + 1. Restore before the first batch.
   */
  readonly restore: (records: ReadonlyArray<ConsumerRecord>) => void
  /**
   * `restore` for a fetched batch: the checkpoint is `batch.lastOffset + 1` when the batch has one (transaction
   * markers take offsets after the last record), so a restore that reached the end of the partition says so.
   */
  readonly restoreBatch: (batch: RecordBatch) => void
  /** The backend's checkpoint: where a restore starts; `undefined` means from the beginning. */
  readonly checkpoint: () => number | undefined
  /** Where the writes are now, to come back to with `rollback`. */
  readonly savepoint: () => Savepoint
  /** Forgets the writes made since `savepoint`, which must be the last one taken (and nothing taken in between). */
  readonly rollback: (point: Savepoint) => void
  /** The backend itself (to close it, or to wipe it). */
  readonly backend: Backend
}

export interface TaskStore<K, V> extends KeyValueStore<K, V>, TaskStoreBytes {
  readonly spec: StoreSpec<K, V>
}

/** A task's store over an opened backend (tests; the runtime binds stores through their spec). */
export const open = <K, V>(spec: StoreSpec<K, V>, backend: Backend, changelog?: string): TaskStore<K, V> =>
  taskStore.make(spec, backend, changelog ?? spec.name)

/**
 * Runs a store or backend call in an Effect: a thrown `StoreError` fails it; anything else thrown is a defect
 * (`StoreEncodeError` and `StoreDecodeError` belong to record handlers, which catch them per record).
 */
export const attempt = <A>(f: () => A): Effect.Effect<A, StoreError> =>
  Effect.try({ try: f, catch: (cause) => cause }).pipe(
    Effect.catch((cause) => (cause instanceof StoreError ? Effect.fail(cause) : Effect.die(cause)))
  )
