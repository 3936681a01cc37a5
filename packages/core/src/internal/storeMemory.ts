/**
 * The in-memory store backend: a Map from key to value, both as binary strings (see storeBytes), and a sorted
 * index of the keys that is rebuilt only for a range after the set of keys changed.
 *
 * Values are strings rather than Uint8Arrays because a Uint8Array costs ~200 bytes beyond its contents and one
 * ArrayBuffer for the garbage collector to track: measured with 1,000,000 keys, strings took 96 MB of heap against
 * 278 MB and made random gets twice as fast (2.3 µs against 4.5 µs), although every read makes a Uint8Array again.
 * A string is also a copy: a value that is a view into a fetch buffer does not keep that buffer alive.
 */
import type { Backend, Change } from "../Store.ts"
import { lowerBound } from "./sorted.ts"
import { fromBinary, toBinary } from "./storeBytes.ts"

export const make = (): Backend => {
  let entries = new Map<string, string>()
  let checkpoint: number | undefined
  // The keys in byte order, once `dirty` is false. New keys are appended and deleted ones left in place; the next
  // range sorts (TimSort merges a sorted run with a short unsorted tail in about linear time) and then drops
  // duplicates (a key deleted and added again) and keys no longer present.
  let sorted: Array<string> = []
  let dirty = false

  const index = (): ReadonlyArray<string> => {
    if (!dirty) return sorted
    sorted.sort()
    let n = 0
    for (let i = 0; i < sorted.length; i++) {
      const key = sorted[i]!
      if ((n === 0 || sorted[n - 1] !== key) && entries.has(key)) sorted[n++] = key
    }
    sorted.length = n
    dirty = false
    return sorted
  }

  function* range(from?: Uint8Array, to?: Uint8Array): Generator<readonly [Uint8Array, Uint8Array]> {
    const keys = index()
    const end = to === undefined ? undefined : toBinary(to)
    for (let i = from === undefined ? 0 : lowerBound(keys, toBinary(from)); i < keys.length; i++) {
      const key = keys[i]!
      if (end !== undefined && key >= end) return
      // Applied changes may have removed the key since the index was built (a range consumed across batches).
      const value = entries.get(key)
      if (value !== undefined) yield [fromBinary(key), fromBinary(value)]
    }
  }

  return {
    get: (key) => {
      const value = entries.get(toBinary(key))
      return value === undefined ? undefined : fromBinary(value)
    },
    range,
    size: () => entries.size,
    apply: (changes: ReadonlyArray<Change>, next: number) => {
      for (const [key, value] of changes) {
        const k = toBinary(key)
        if (value === null) {
          // The index keeps the key until the next rebuild drops it.
          if (entries.delete(k)) dirty = true
        } else {
          if (!entries.has(k)) {
            sorted.push(k)
            dirty = true
          }
          entries.set(k, toBinary(value))
        }
      }
      checkpoint = next
    },
    checkpoint: () => checkpoint,
    closedCleanly: true,
    wipe: () => {
      entries = new Map()
      sorted = []
      dirty = false
      checkpoint = undefined
    },
    close: () => {
      entries = new Map()
      sorted = []
      checkpoint = undefined
    }
  }
}
