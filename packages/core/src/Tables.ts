/**
 * Stores, readable from outside the topology (Kafka Streams' interactive queries): the worker's HTTP server answers
 * `GET /tables/<store>` (the entries of this worker's tasks) and `GET /tables/<store>/<key>` from here.
 *
 * A key belongs to one task: the partition its input records land on, with the same partitioner (murmur2 of the
 * key's bytes, as Kafka's clients compute it). Only the worker that owns that task can answer; another worker says
 * which partition the key is in and which member owns it, rather than answering wrongly. Reads see what is durable
 * (the backend), between the task's steps.
 *
 * A `Context.Reference`, like `Health`: the runner registers its stores, the HTTP server reads them.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { KafkaError } from "./Errors.ts"
import { partitionForKey } from "./Partitioner.ts"
import type * as Store from "./Store.ts"

/** One store of one running topology, as the HTTP server reads it. */
export interface Queryable {
  readonly store: string
  readonly group: string
  /** Partitions of the inputs: a key's task is its partition. */
  readonly taskCount: number
  /** This worker's tasks, with their store. */
  readonly local: () => ReadonlyMap<number, Store.TaskStoreBytes>
  /** The key and value as JSON (decoded with the store's codecs; bytes that do not decode as base64). */
  readonly toJson: (key: Uint8Array, value: Uint8Array) => { readonly key: unknown; readonly value: unknown }
  /** Who owns `task` now: the member and the host it runs on, when the group says. */
  readonly ownerOf: (task: number) => Effect.Effect<string | undefined, KafkaError>
}

export type Lookup =
  | { readonly _tag: "Found"; readonly partition: number; readonly key: unknown; readonly value: unknown }
  | { readonly _tag: "Missing"; readonly partition: number }
  | { readonly _tag: "Elsewhere"; readonly partition: number; readonly owner: string | undefined }
  | { readonly _tag: "NoSuchStore" }

export interface TablesShape {
  readonly register: (queryable: Queryable) => Effect.Effect<void, never, Scope.Scope>
  readonly stores: () => ReadonlyArray<Queryable>
  readonly lookup: (store: string, key: Uint8Array) => Effect.Effect<Lookup, KafkaError>
  /** Up to `limit` entries of each local task, ascending by key bytes. */
  readonly entries: (
    store: string,
    limit: number
  ) =>
    | {
        readonly tasks: ReadonlyArray<number>
        readonly entries: ReadonlyArray<{ readonly partition: number; readonly key: unknown; readonly value: unknown }>
        readonly truncated: boolean
      }
    | undefined
}

const noSuchStore: Lookup = { _tag: "NoSuchStore" }

export const make = (): TablesShape => {
  const registered = new Map<string, Queryable>()
  return {
    register: (queryable) =>
      Effect.acquireRelease(
        Effect.sync(() => registered.set(queryable.store, queryable)),
        () => Effect.sync(() => registered.delete(queryable.store))
      ).pipe(Effect.asVoid),
    stores: () => [...registered.values()],
    lookup: (store, key) =>
      Effect.gen(function* () {
        const q = registered.get(store)
        if (q === undefined) return noSuchStore
        const partition = partitionForKey(key, q.taskCount)
        const local = q.local().get(partition)
        if (local === undefined) {
          const elsewhere: Lookup = { _tag: "Elsewhere", partition, owner: yield* q.ownerOf(partition) }
          return elsewhere
        }
        const value = local.backend.get(key)
        const found: Lookup =
          value === undefined ? { _tag: "Missing", partition } : { _tag: "Found", partition, ...q.toJson(key, value) }
        return found
      }),
    entries: (store, limit) => {
      const q = registered.get(store)
      if (q === undefined) return undefined
      const tasks = [...q.local().keys()].sort((a, b) => a - b)
      const entries: Array<{ partition: number; key: unknown; value: unknown }> = []
      let truncated = false
      for (const task of tasks) {
        for (const [k, v] of q.local().get(task)!.backend.range()) {
          if (entries.length >= limit) {
            truncated = true
            break
          }
          entries.push({ partition: task, ...q.toJson(k, v) })
        }
      }
      return { tasks, entries, truncated }
    }
  }
}

/** The process's registry of queryable stores; `layer` gives a test its own. */
export const Tables: Context.Reference<TablesShape> = Context.Reference<TablesShape>("@sluice/core/Tables", {
  defaultValue: make
})

export const layer: Layer.Layer<never> = Layer.sync(Tables, make)
