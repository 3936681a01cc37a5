/**
 * The bytes of a windowed aggregation's store (Windows.ts). One store holds everything, under three prefixes:
 *
 * ```
 * 0x00                                                  → u64 stream time, u8 format (the operator's own)
 * 0x01 | u32 key length | key | u64 start               → a sliding bucket or a session: flag, [u64 end], accumulator
 * 0x02 | u64 time | u8 what | u32 key length | key | u64 start → 0x01  (an index entry: what is due at `time`)
 * 0x03 | u64 start | u32 key length | key               → a tumbling or hopping window: flag, accumulator
 * ```
 *
 * Times are fixed-width big-endian, so byte order is time order. Sliding buckets and sessions are ranged by key
 * (a key's windows ascending by start), so when they fall due comes from the index under 0x02: everything due by
 * stream time `t` is the range below `0x02 | t + 1`, in the order it falls due. The key's length comes before it so
 * that a key's range never takes in a longer key that starts with the same bytes. For sliding windows, `start` is
 * the record timestamp a window ends at, and the entries under 0x01 are the accumulators of the records at each
 * timestamp. A fixed window closes at `start + size + grace`, in the order of its start, so fixed windows are keyed
 * by start first and need no index: what is due is a range of them (one changelog record fewer to write, and one
 * fewer to delete, per window).
 */
import { Result } from "effect"
import type { Codec } from "../Codec.ts"
import { type KeyValueStore, StoreDecodeError } from "../Store.ts"
import { toBinary } from "./storeBytes.ts"

/** The store's keys and values are its bytes. */
export const bytes: Codec<Uint8Array> = {
  decode: (input) => (input === null ? Result.fail("absent") : Result.succeed(input)),
  encode: (value) => Result.succeed(value)
}

const META = 0x00
const WINDOW = 0x01
const DUE = 0x02
const FIXED = 0x03

/**
 * The layout above. The first one (Sluice before 0.1.0) kept fixed windows under 0x01 with an index, and their
 * accumulators as JSON; its stream time is 8 bytes, with no format byte.
 */
export const format = 2

/** What an index entry says is due. The window closes before a sliding record bucket due at the same time goes. */
export const CLOSE = 0
export const DROP = 1

const high = 2 ** 32

const putU64 = (view: DataView, at: number, n: number): void => {
  view.setUint32(at, Math.floor(n / high))
  view.setUint32(at + 4, n % high)
}

const getU64 = (view: DataView, at: number): number => view.getUint32(at) * high + view.getUint32(at + 4)

const viewOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)

export const metaKey: Uint8Array = Uint8Array.of(META)

/** The operator's stream time, -1 before its first record. State in another layout is refused, saying what to do. */
export const readStreamTime = (store: string, kv: KeyValueStore<Uint8Array, Uint8Array>): number => {
  const stored = kv.get(metaKey)
  if (stored === undefined) return -1
  const found = stored.length === 8 ? 1 : stored.length === 9 ? stored[8]! : undefined
  if (found !== format) {
    throw new StoreDecodeError({
      store,
      part: "value",
      issue:
        `the window state is in ${found === undefined ? "an unknown layout" : `layout ${found}`}, this Sluice ` +
        `reads layout ${format}: reset the application (delete its group's offsets and its changelog topics) to ` +
        "rebuild the state from the input"
    })
  }
  return getU64(viewOf(stored), 0)
}

export const writeStreamTime = (kv: KeyValueStore<Uint8Array, Uint8Array>, streamTime: number): void => {
  const b = new Uint8Array(9)
  putU64(viewOf(b), 0, streamTime)
  b[8] = format
  kv.put(metaKey, b)
}

/** The key of `key`'s fixed window at `start`. */
export const fixedKey = (key: Uint8Array, start: number): Uint8Array => {
  const b = new Uint8Array(1 + 8 + 4 + key.length)
  const view = viewOf(b)
  b[0] = FIXED
  putU64(view, 1, start)
  view.setUint32(9, key.length)
  b.set(key, 13)
  return b
}

export const parseFixedKey = (b: Uint8Array): { readonly start: number; readonly key: Uint8Array } => {
  const view = viewOf(b)
  return { start: getU64(view, 1), key: b.subarray(13, 13 + view.getUint32(9)) }
}

export const fixedFrom: Uint8Array = Uint8Array.of(FIXED)

/** The bound above every fixed window. */
export const fixedEnd: Uint8Array = Uint8Array.of(FIXED + 1)

/** The bound below every fixed window that starts before `start`. */
export const fixedBelow = (start: number): Uint8Array => {
  const b = new Uint8Array(9)
  b[0] = FIXED
  putU64(viewOf(b), 1, start)
  return b
}

/** The key of `key`'s window (or sliding bucket) at `start`; also the bounds of ranges over a key's windows. */
export const windowKey = (key: Uint8Array, start: number): Uint8Array => {
  const b = new Uint8Array(1 + 4 + key.length + 8)
  const view = viewOf(b)
  b[0] = WINDOW
  view.setUint32(1, key.length)
  b.set(key, 5)
  putU64(view, 5 + key.length, start)
  return b
}

/** A window's key as a Map key. */
export const toBinaryKey = (key: Uint8Array, start: number): string => toBinary(windowKey(key, start))

/** The start of a window key. */
export const startOf = (windowKey: Uint8Array): number => getU64(viewOf(windowKey), windowKey.length - 8)

export interface Due {
  readonly time: number
  readonly what: number
  readonly key: Uint8Array
  readonly start: number
}

export const dueKey = (time: number, what: number, key: Uint8Array, start: number): Uint8Array => {
  const b = new Uint8Array(1 + 8 + 1 + 4 + key.length + 8)
  const view = viewOf(b)
  b[0] = DUE
  putU64(view, 1, time)
  b[9] = what
  view.setUint32(10, key.length)
  b.set(key, 14)
  putU64(view, 14 + key.length, start)
  return b
}

export const parseDue = (b: Uint8Array): Due => {
  const view = viewOf(b)
  const length = view.getUint32(10)
  return { time: getU64(view, 1), what: b[9]!, key: b.subarray(14, 14 + length), start: getU64(view, 14 + length) }
}

/** An index entry's value: a byte, so that it is never mistaken for a deletion. */
export const marker: Uint8Array = Uint8Array.of(1)

export const dueFrom: Uint8Array = Uint8Array.of(DUE)

/** The bound below every index entry due at `streamTime` or before. */
export const dueUpTo = (streamTime: number): Uint8Array => {
  const b = new Uint8Array(9)
  b[0] = DUE
  putU64(viewOf(b), 1, streamTime + 1)
  return b
}

// A window's value: a flag (1: the accumulator encoded to no bytes), the end for sessions, then the accumulator.

export const windowValue = (accumulator: Uint8Array | null, end?: number): Uint8Array => {
  const head = end === undefined ? 1 : 9
  const b = new Uint8Array(head + (accumulator?.length ?? 0))
  b[0] = accumulator === null ? 1 : 0
  if (end !== undefined) putU64(viewOf(b), 1, end)
  if (accumulator !== null) b.set(accumulator, head)
  return b
}

export const parseWindowValue = (
  store: string,
  b: Uint8Array,
  session: boolean
): { readonly end: number; readonly accumulator: Uint8Array | null } => {
  const head = session ? 9 : 1
  if (b.length < head) throw new StoreDecodeError({ store, part: "value", issue: `a window of ${b.length} bytes` })
  return {
    end: session ? getU64(viewOf(b), 1) : 0,
    accumulator: b[0] === 1 ? null : b.subarray(head)
  }
}
