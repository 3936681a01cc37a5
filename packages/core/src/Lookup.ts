/**
 * Join strategies: a Lookup answers "the current value for each of these keys", one call per batch. A topology
 * depends on a Lookup service, so choosing a strategy is a layer swap:
 *
 * - `fromTable`: a global table in memory (Ref), O(1) per key, no I/O. The fast path.
 * - `rescan`: re-reads the whole topic for every key: the N+1 of the lab this came from, kept on purpose as the
 *   baseline that `sluice bench join` measures the others against.
 * - `Redis` (see `RedisLookup.ts`): values kept in Redis by a loader, one MGET per batch.
 */
import { Effect, Result } from "effect"
import { type KafkaError, LookupError } from "./Errors.ts"
import type { Kafka } from "./Kafka.ts"
import * as Reader from "./Reader.ts"
import type { GlobalTable } from "./Table.ts"
import * as Topic from "./Topic.ts"

export interface Lookup<K, V> {
  readonly strategy: string
  readonly getMany: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyArray<V | undefined>, LookupError>
}

export const fromTable = <K, V>(table: GlobalTable<K, V>): Lookup<K, V> => ({
  strategy: "table",
  getMany: table.getMany
})

const fromKafkaError = (strategy: string) => (e: KafkaError) => new LookupError({ strategy, reason: e.reason })

/**
 * For every key, reads the topic from the beginning to its end and keeps the last value seen for that key (a
 * tombstone clears it). Deliberately one full scan per key, in sequence, as the lab's consumer did.
 */
export const rescan = <K, V>(topic: Topic.Topic<K, V | null>) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Kafka>()
    const scanOne = (key: K) =>
      Reader.foldToEnd<V | undefined>(topic.name, undefined, (found, record) => {
        const decoded = Topic.decode(topic, record)
        if (Result.isFailure(decoded) || decoded.success.key !== key) return found
        return decoded.success.value ?? undefined
      })
    const lookup: Lookup<K, V> = {
      strategy: "rescan",
      getMany: (keys) =>
        Effect.forEach(keys, scanOne).pipe(Effect.mapError(fromKafkaError("rescan")), Effect.provideContext(context))
    }
    return lookup
  })
