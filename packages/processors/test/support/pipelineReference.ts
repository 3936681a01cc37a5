/**
 * What a JSON pipeline with an aggregation must write, computed here independently of the implementation (no
 * Windows.ts, Window.ts or Pipeline.ts): replay each partition in offset order, keep its stream time (the largest
 * event time so far, the event being judged included), call an event late when its window's end plus the grace is
 * at or below it, and fold the others per record key and tumbling window from scratch.
 */

/** An input record as the test read it back: where it is, its key and its JSON. */
export interface Sent {
  readonly partition: number
  readonly offset: number
  readonly key: string
  readonly event: {
    readonly timestamp: string
    readonly user_id: string
  }
}

/** A window's row as the pipeline writes it (with every metric and enrichment). */
export interface WindowRow {
  readonly window_start: number
  readonly window_end: number
  readonly key: string
  readonly event_count: number
  readonly unique_users: number
  readonly session_duration_ms: number
  readonly enriched_events: number
}

export interface Expected {
  /** The rows of the windows that must have closed, by `key@start` (start in seconds). */
  readonly rows: ReadonlyMap<string, WindowRow>
  /** `partition:offset` of every late event. */
  readonly late: ReadonlySet<string>
  /** By row id, the record whose event moved stream time past the window's close: its offset commits the row. */
  readonly closedBy: ReadonlyMap<string, { readonly partition: number; readonly offset: number }>
}

interface Acc {
  key: string
  start: number
  events: number
  users: Set<string>
  first: number
  last: number
  enriched: number
}

export const rowId = (key: string, startSeconds: number) => `${key}@${startSeconds}`

export const expected = (
  sent: ReadonlyArray<Sent>,
  options: { readonly windowMs: number; readonly graceMs: number; readonly hasProfile: (user: string) => boolean }
): Expected => {
  const { windowMs, graceMs } = options
  const rows = new Map<string, WindowRow>()
  const late = new Set<string>()
  const closedBy = new Map<string, { partition: number; offset: number }>()
  const partitions = new Map<number, Array<Sent>>()
  for (const s of sent) partitions.set(s.partition, [...(partitions.get(s.partition) ?? []), s])
  for (const [partition, list] of partitions) {
    list.sort((a, b) => a.offset - b.offset)
    const open = new Map<string, Acc>()
    let streamTime = -1
    const close = (offset: number) => {
      for (const [id, acc] of open) {
        if (acc.start + windowMs + graceMs > streamTime) continue
        open.delete(id)
        const row = {
          window_start: acc.start / 1000,
          window_end: (acc.start + windowMs) / 1000,
          key: acc.key,
          event_count: acc.events,
          unique_users: acc.users.size,
          session_duration_ms: acc.last - acc.first,
          enriched_events: acc.enriched
        }
        rows.set(rowId(acc.key, row.window_start), row)
        closedBy.set(rowId(acc.key, row.window_start), { partition, offset })
      }
    }
    for (const s of list) {
      const t = Date.parse(s.event.timestamp)
      streamTime = Math.max(streamTime, t)
      const start = Math.floor(t / windowMs) * windowMs
      if (start + windowMs + graceMs <= streamTime) {
        late.add(`${partition}:${s.offset}`)
        close(s.offset)
        continue
      }
      const id = `${s.key}@${start}`
      const acc = open.get(id) ?? {
        key: s.key,
        start,
        events: 0,
        users: new Set<string>(),
        first: t,
        last: t,
        enriched: 0
      }
      acc.events++
      acc.users.add(s.event.user_id)
      acc.first = Math.min(acc.first, t)
      acc.last = Math.max(acc.last, t)
      if (options.hasProfile(s.event.user_id)) acc.enriched++
      open.set(id, acc)
      close(s.offset)
    }
  }
  return { rows, late, closedBy }
}
