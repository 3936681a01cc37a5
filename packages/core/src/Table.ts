/**
 * Global tables: every instance reads every partition of a (compacted) topic into memory, so a lookup is O(1) with
 * no I/O. At startup the table reads from the earliest offset up to the high-water mark each partition had then,
 * and reports ready only after that; it then keeps applying updates, and a tombstone (null value) deletes the key.
 *
 * The table keeps each key's latest value as the record's bytes in a compact store (internal/compactStore.ts: one
 * byte arena, a typed-array index), not as decoded objects: a million profiles take ~70 MB outside the V8 heap
 * instead of ~145 MB of heap objects. Every record is decoded once as it is applied, so that one that does not
 * decode is skipped (the previous value stays); a lookup decodes the stored bytes again, and keeps the decoded
 * values of the most recently looked-up keys in a small cache (`cacheSize`), so that hot keys cost one `Map` lookup.
 * Keys are matched by their encoded bytes (the key codec's encoding of the decoded key).
 *
 * The Ref holds the current load's view, which only the loader fiber writes. Each batch is applied synchronously,
 * so readers never see half a batch.
 */
import { Effect, Metric, Ref, Result, type Scope } from "effect"
import type { KafkaError } from "./Errors.ts"
import * as CompactStore from "./internal/compactStore.ts"
import * as Loader from "./internal/loader.ts"
import type { Kafka } from "./Kafka.ts"
import * as Topic from "./Topic.ts"

export interface GlobalTable<K, V> {
  readonly topic: string
  /** Completes once the table holds everything the topic had when the table started. */
  readonly ready: Effect.Effect<void, KafkaError>
  /** O(1), no I/O. */
  readonly get: (key: K) => Effect.Effect<V | undefined>
  /** One read of the Ref for a whole batch of keys. */
  readonly getMany: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyArray<V | undefined>>
  readonly size: Effect.Effect<number>
  /** Records that did not decode and were skipped (logged). */
  readonly skipped: Effect.Effect<number>
}

const tableRecords = Metric.counter("sluice_table_records_applied", {
  description: "records applied to global tables",
  incremental: true
})

export interface TableOptions {
  /** Decoded values of the most recently looked-up keys kept for the next lookups. Default 10,000. */
  readonly cacheSize?: number
}

/** One load's contents: the store, and the cache of decoded values in front of it. */
interface View<K, V> {
  readonly store: CompactStore.CompactStore
  readonly get: (key: K) => V | undefined
  /** Forgets a key's cached value (it was updated or deleted). */
  readonly forget: (key: K) => void
}

const noKey = new Uint8Array(0)

const makeView = <K, V>(topic: Topic.Topic<K, V | null>, cacheSize: number): View<K, V> => {
  const store = CompactStore.make()
  const cache = new Map<K, V>()
  return {
    store,
    get: (key) => {
      const cached = cache.get(key)
      if (cached !== undefined) return cached
      const bytes = topic.key.encode(key)
      if (Result.isFailure(bytes)) return undefined
      const position = store.find(bytes.success ?? noKey)
      if (position < 0) return undefined
      const value = topic.value.decode(store.valueAt(position))
      // The bytes decoded when they were applied: a failure here cannot happen, and would read as absent.
      if (Result.isFailure(value) || value.success === null) return undefined
      if (cache.size >= cacheSize) {
        const oldest = cache.keys().next()
        if (oldest.done !== true) cache.delete(oldest.value)
      }
      if (cacheSize > 0) cache.set(key, value.success)
      return value.success
    },
    forget: (key) => {
      cache.delete(key)
    }
  }
}

/**
 * Starts a global table over `topic` (values `null` are tombstones) in the current scope. Use `ready` before
 * serving lookups; `makeReady` does both. The loader is supervised (internal/loader.ts): after a failure a fresh
 * load fills a new store while the old one keeps serving, and replaces it once caught up, so readers never see
 * older values come back; a loader that gives up stops the worker through `Health`.
 */
export const make = Effect.fnUntraced(function* <K, V>(
  topic: Topic.Topic<K, V | null>,
  options: TableOptions = {}
): Effect.fn.Return<GlobalTable<K, V>, never, Kafka | Scope.Scope> {
  const cacheSize = options.cacheSize ?? 10_000
  const ref = yield* Ref.make<View<K, V>>(makeView(topic, cacheSize))
  let skipped = 0
  const applied = Metric.withAttributes(tableRecords, { topic: topic.name })

  const loader = yield* Loader.start({
    name: `table ${topic.name}`,
    topic: topic.name,
    begin: Effect.sync((): Loader.Load<never> => {
      const view = makeView(topic, cacheSize)
      return {
        apply: (batch) =>
          Effect.gen(function* () {
            for (const record of batch.records) {
              const decoded = Topic.decode(topic, record)
              if (Result.isFailure(decoded)) {
                skipped++
                yield* Effect.logWarning(`table ${topic.name}: skipped a record: ${decoded.failure.message}`)
                continue
              }
              const { key, value } = decoded.success
              // The key as the codec encodes it, so that lookups (which encode the key they are given) find it.
              const encoded = topic.key.encode(key)
              const keyBytes = (Result.isSuccess(encoded) ? encoded.success : record.key) ?? noKey
              view.forget(key)
              if (value === null || record.value === null) view.store.delete(keyBytes)
              else view.store.set(keyBytes, record.value)
            }
            yield* Metric.update(applied, batch.records.length)
          }),
        // From here on readers see this load's store, which the loader keeps updating in place.
        caughtUp: Ref.set(ref, view)
      }
    })
  })

  return {
    topic: topic.name,
    ready: loader.ready,
    get: (key) => Effect.map(Ref.get(ref), (view) => view.get(key)),
    getMany: (keys) =>
      Effect.map(Ref.get(ref), (view) => {
        const out = new Array<V | undefined>(keys.length)
        for (let i = 0; i < keys.length; i++) out[i] = view.get(keys[i]!)
        return out
      }),
    size: Effect.map(Ref.get(ref), (view) => view.store.size()),
    skipped: Effect.sync(() => skipped)
  }
})

/** `make` and wait until the table is loaded. */
export const makeReady = <K, V>(topic: Topic.Topic<K, V | null>, options: TableOptions = {}) =>
  Effect.tap(make(topic, options), (table) => table.ready)
