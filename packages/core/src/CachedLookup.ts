/**
 * A bounded local cache in front of a `Lookup` (Lookup.ts): a batch asks the cache first, and the keys it misses go
 * to the lookup in one call (one MGET for Redis), distinct keys only. Entries live for `ttl`, measured on Effect's
 * `Clock` (so `TestClock` drives expiry in tests), and the least recently used entry is evicted past `maxEntries`.
 *
 * A key the lookup does not find is cached too (as absent), so a batch full of unknown users does not go back to
 * the lookup for each of them; `ttl` bounds how long a value created meanwhile stays unseen. The cache is per
 * process and shared by its tasks: a value is a pure function of its key, whichever task asks.
 */
import { Clock, Duration, Effect, Metric } from "effect"
import type { Lookup } from "./Lookup.ts"

export interface Options {
  /** Entries kept at most; the least recently used goes first. */
  readonly maxEntries: number
  /** How long an entry (found or absent) is served before the lookup is asked again. */
  readonly ttl: Duration.Input
}

export interface Stats {
  readonly hits: number
  readonly misses: number
  readonly size: number
}

export interface CachedLookup<K, V> extends Lookup<K, V> {
  /** Keys answered from the cache and keys asked of the lookup since the start, and the entries held now. */
  readonly stats: () => Stats
}

const hitsCounter = Metric.counter("sluice_lookup_cache_hits", {
  description: "keys answered from a lookup's local cache",
  incremental: true
})
const missesCounter = Metric.counter("sluice_lookup_cache_misses", {
  description: "keys a lookup's local cache sent on to the lookup",
  incremental: true
})

interface Entry<V> {
  readonly value: V | undefined
  readonly expires: number
}

export const make = <K, V>(lookup: Lookup<K, V>, options: Options): CachedLookup<K, V> => {
  if (!(options.maxEntries >= 1)) throw new Error(`CachedLookup: maxEntries must be at least 1 (${options.maxEntries})`)
  const ttlMs = Duration.toMillis(Duration.fromInputUnsafe(options.ttl))
  // A Map keeps insertion order: re-inserting an entry on a hit makes the first key the least recently used.
  const entries = new Map<K, Entry<V>>()
  let hits = 0
  let misses = 0
  const hitMetric = Metric.withAttributes(hitsCounter, { strategy: lookup.strategy })
  const missMetric = Metric.withAttributes(missesCounter, { strategy: lookup.strategy })

  const remember = (key: K, entry: Entry<V>) => {
    entries.delete(key)
    entries.set(key, entry)
    while (entries.size > options.maxEntries) {
      const oldest = entries.keys().next()
      if (oldest.done === true) break
      entries.delete(oldest.value)
    }
  }

  return {
    strategy: `${lookup.strategy}+cache`,
    stats: () => ({ hits, misses, size: entries.size }),
    getMany: (keys) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const answers = new Map<K, V | undefined>()
        const missing: Array<K> = []
        const asked = new Set<K>()
        let batchHits = 0
        for (const key of keys) {
          if (answers.has(key) || asked.has(key)) continue
          const entry = entries.get(key)
          if (entry !== undefined && entry.expires > now) {
            answers.set(key, entry.value)
            remember(key, entry)
            batchHits++
          } else {
            missing.push(key)
            asked.add(key)
          }
        }
        if (missing.length > 0) {
          // One call for every key the cache does not have; a failure leaves the cache as it was.
          const found = yield* lookup.getMany(missing)
          const expires = now + ttlMs
          for (let i = 0; i < missing.length; i++) {
            answers.set(missing[i]!, found[i])
            remember(missing[i]!, { value: found[i], expires })
          }
        }
        hits += batchHits
        misses += missing.length
        if (batchHits > 0) yield* Metric.update(hitMetric, batchHits)
        if (missing.length > 0) yield* Metric.update(missMetric, missing.length)
        return keys.map((key) => answers.get(key))
      })
  }
}
