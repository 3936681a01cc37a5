/**
 * Global tables: every instance reads every partition of a (compacted) topic into a map held in a Ref, so a lookup
 * is O(1) with no I/O. At startup the table reads from the earliest offset up to the high-water mark each partition
 * had then, and reports ready only after that; it then keeps applying updates, and a tombstone (null value)
 * deletes the key.
 *
 * The Ref holds one mutable Map that only the loader fiber writes. Copying a map of a million profiles on every
 * batch would make loading quadratic; each batch is applied synchronously, so readers never see half a batch.
 */
import { Effect, Metric, Ref, Result, type Scope } from "effect"
import type { KafkaError } from "./Errors.ts"
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

/**
 * Starts a global table over `topic` (values `null` are tombstones) in the current scope. Use `ready` before
 * serving lookups; `makeReady` does both. The loader is supervised (internal/loader.ts): after a failure a fresh
 * load fills a new map while the old one keeps serving, and replaces it once caught up, so readers never see
 * older values come back; a loader that gives up stops the worker through `Health`.
 */
export const make = Effect.fnUntraced(function* <K, V>(
  topic: Topic.Topic<K, V | null>
): Effect.fn.Return<GlobalTable<K, V>, never, Kafka | Scope.Scope> {
  const ref = yield* Ref.make<ReadonlyMap<K, V>>(new Map())
  let skipped = 0
  const applied = Metric.withAttributes(tableRecords, { topic: topic.name })

  const loader = yield* Loader.start({
    name: `table ${topic.name}`,
    topic: topic.name,
    begin: Effect.sync((): Loader.Load<never> => {
      const map = new Map<K, V>()
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
              if (value === null) map.delete(key)
              else map.set(key, value)
            }
            yield* Metric.update(applied, batch.records.length)
          }),
        // From here on readers see this load's map, which the loader keeps updating in place.
        caughtUp: Ref.set(ref, map)
      }
    })
  })

  return {
    topic: topic.name,
    ready: loader.ready,
    get: (key) => Effect.map(Ref.get(ref), (m) => m.get(key)),
    getMany: (keys) =>
      Effect.map(Ref.get(ref), (m) => {
        const out = new Array<V | undefined>(keys.length)
        for (let i = 0; i < keys.length; i++) out[i] = m.get(keys[i]!)
        return out
      }),
    size: Effect.map(Ref.get(ref), (m) => m.size),
    skipped: Effect.sync(() => skipped)
  }
})

/** `make` and wait until the table is loaded. */
export const makeReady = <K, V>(topic: Topic.Topic<K, V | null>) => Effect.tap(make(topic), (table) => table.ready)
