/**
 * Event-time windows, after Kafka Streams' windows: which windows a record belongs to, when a window closes, and
 * when a record is late. Pure functions over epoch milliseconds, with no Kafka and no Effect; `Windows.ts` keeps
 * the windows' aggregates in a task's store, and `Aggregator.ts` says how to aggregate.
 *
 * Every window is half-open, `[start, end)` in epoch ms, whatever its kind:
 * - **tumbling(size)**: `[k·size, (k+1)·size)`, one window per record.
 * - **hopping(size, advance)**: windows of `size` starting at every multiple of `advance` (`advance ≤ size`; size
 *   need not be a multiple of advance); a record is in every window that contains it, `⌈size / advance⌉` or one
 *   fewer. Both are aligned to epoch 0, and no window starts before 0.
 * - **sliding(size)**: one window per distinct timestamp `t` of a key, ending at it inclusive:
 *   `[t - size + 1, t + 1)` (starting at 0 at the earliest: timestamps are never negative). Its aggregate covers every
 *   record of the key with a timestamp in that range, also records that arrive later, out of order within the grace.
 *   Kafka Streams' SlidingWindows also creates, for each record, the window that starts right after it (so that
 *   every distinct set of records within `size` has a window); Sluice keeps only the windows that end at a record,
 *   which are the ones whose aggregate changes when a record enters them.
 * - **session(gap)**: the records of a key whose timestamps are within `gap` of each other (inclusive) form one
 *   session `[first, last + 1)`; a record within `gap` of two sessions merges them (`sessionMerge`).
 *
 * Closing and lateness run on *stream time*, the largest timestamp seen so far, observed record by record
 * (including the record being judged), with a `grace` period for records out of order:
 * - a tumbling, hopping or sliding window closes when stream time ≥ `end + grace`;
 * - a session `[s, e)` closes when stream time ≥ `(e - 1) + gap + grace + 1`: from then on no record that is not late
 *   can join it.
 * - A record is late for a tumbling or hopping window that has closed. A hopping record may miss some of its windows
 *   and still count in the open ones (as in Kafka Streams); it is late for the ones it missed.
 * - For sliding and session windows, a record with timestamp `t` is late when `t + 1 + grace ≤ stream time`, and then
 *   counts nowhere. Kafka Streams differs at the edges: it adds a sliding record to those of its windows that are
 *   still open, and a session record to a session that is still open, even when the record itself is older than
 *   stream time − grace. Sluice holds every record to the same bound: grace is how far out of order a record may be.
 */
import { Duration } from "effect"

/** A window: `[start, end)` in epoch ms. */
export interface Window {
  readonly start: number
  readonly end: number
}

export interface Tumbling {
  readonly _tag: "Tumbling"
  readonly size: number
}

export interface Hopping {
  readonly _tag: "Hopping"
  readonly size: number
  readonly advance: number
}

export interface Sliding {
  readonly _tag: "Sliding"
  readonly size: number
}

export interface Session {
  readonly _tag: "Session"
  readonly gap: number
}

/** Windows fixed in time, whatever the records: `assign` says which a timestamp is in. */
export type Fixed = Tumbling | Hopping
export type Kind = Fixed | Sliding | Session

/** A duration as whole milliseconds, at least `min`; anything else is a configuration error, thrown at startup. */
const millis = (what: string, input: Duration.Input, min: number): number => {
  const ms = Duration.toMillis(Duration.fromInputUnsafe(input))
  if (!Number.isSafeInteger(ms) || ms < min) {
    throw new Error(`${what} must be a whole number of milliseconds, at least ${min}: got ${ms}`)
  }
  return ms
}

/** A grace period in ms: a whole number, 0 or more. */
export const graceMillis = (grace: Duration.Input): number => millis("a window's grace", grace, 0)

export const tumbling = (size: Duration.Input): Tumbling => ({
  _tag: "Tumbling",
  size: millis("a tumbling window's size", size, 1)
})

export const hopping = (size: Duration.Input, advance: Duration.Input): Hopping => {
  const sizeMs = millis("a hopping window's size", size, 1)
  const advanceMs = millis("a hopping window's advance", advance, 1)
  if (advanceMs > sizeMs)
    throw new Error(`a hopping window's advance (${advanceMs} ms) exceeds its size (${sizeMs} ms)`)
  return { _tag: "Hopping", size: sizeMs, advance: advanceMs }
}

export const sliding = (size: Duration.Input): Sliding => ({
  _tag: "Sliding",
  size: millis("a sliding window's size", size, 1)
})

export const session = (gap: Duration.Input): Session => ({
  _tag: "Session",
  gap: millis("a session window's gap", gap, 1)
})

/** How far apart a fixed kind's windows start. */
export const advanceOf = (kind: Fixed): number => (kind._tag === "Tumbling" ? kind.size : kind.advance)

/**
 * The start of the first window of `kind` that contains `timestamp`: the smallest multiple of the advance above
 * `timestamp - size` (Kafka Streams' TimeWindows). The others start every `advanceOf(kind)` up to `timestamp`.
 */
export const firstStart = (kind: Fixed, timestamp: number): number => {
  const advance = advanceOf(kind)
  return Math.max(0, Math.floor((timestamp - kind.size) / advance) + 1) * advance
}

/** Every window of `kind` that contains `timestamp`, ascending by start. */
export const assign = (kind: Fixed, timestamp: number): ReadonlyArray<Window> => {
  const advance = advanceOf(kind)
  const first = firstStart(kind, timestamp)
  const windows: Array<Window> = []
  for (let start = first; start <= timestamp; start += advance) windows.push({ start, end: start + kind.size })
  return windows
}

/** The sliding window of a record at `timestamp`: the `size` ms that end at it, inclusive. */
export const slidingWindow = (kind: Sliding, timestamp: number): Window => ({
  start: Math.max(0, timestamp - kind.size + 1),
  end: timestamp + 1
})

/** Whether a record at `timestamp` joins `session`: within `gap` of its first or its last record, inclusive. */
export const joins = (kind: Session, session: Window, timestamp: number): boolean =>
  timestamp >= session.start - kind.gap && timestamp <= session.end - 1 + kind.gap

/**
 * What a record at `timestamp` does to a key's sessions: the ones it joins (`merged`, ascending; they are replaced)
 * and the session that results, from the first of their records (or the record) to the last.
 */
export const sessionMerge = (
  kind: Session,
  sessions: ReadonlyArray<Window>,
  timestamp: number
): { readonly session: Window; readonly merged: ReadonlyArray<Window> } => {
  const merged = sessions.filter((s) => joins(kind, s, timestamp)).sort((a, b) => a.start - b.start)
  let start = timestamp
  let end = timestamp + 1
  for (const s of merged) {
    start = Math.min(start, s.start)
    end = Math.max(end, s.end)
  }
  return { session: { start, end }, merged }
}

/** The stream time at which `window` closes: its final result is due, and records for it are late. */
export const closesAt = (kind: Kind, window: Window, grace: number): number =>
  kind._tag === "Session" ? window.end - 1 + kind.gap + grace + 1 : window.end + grace

export const isClosed = (kind: Kind, window: Window, grace: number, streamTime: number): boolean =>
  streamTime >= closesAt(kind, window, grace)

/** Sliding and session windows: whether a record at `timestamp` is late (and counts nowhere). */
export const isLate = (timestamp: number, grace: number, streamTime: number): boolean =>
  timestamp + 1 + grace <= streamTime

/** A fixed-window record's windows: the ones still open, and the ones it missed (closed). */
export const split = (
  kind: Fixed,
  timestamp: number,
  grace: number,
  streamTime: number
): { readonly open: ReadonlyArray<Window>; readonly missed: ReadonlyArray<Window> } => {
  const open: Array<Window> = []
  const missed: Array<Window> = []
  for (const w of assign(kind, timestamp)) (isClosed(kind, w, grace, streamTime) ? missed : open).push(w)
  return { open, missed }
}

/** `start-end`, as the late topic's `sluice.late.window` header lists windows. */
export const format = (window: Window): string => `${window.start}-${window.end}`
