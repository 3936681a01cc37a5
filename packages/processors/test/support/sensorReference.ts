/**
 * What the sensor pipeline must produce from what was sent, computed here independently of the implementation (no
 * Windows.ts, no Sensors.ts beyond the constants): replay each partition in offset order, keep a stream time (the
 * largest event time seen so far, the reading being judged included), call a reading late when its 60 s window's
 * end plus the grace is at or below it, and aggregate the rest per sensor and window from scratch.
 */
import type { ProducerRecord, RecordMetadata } from "@sluice/core/Record"
import * as SensorData from "../../src/SensorData.ts"

export interface Expected {
  /** `partition:offset` of every malformed reading. */
  readonly bad: ReadonlySet<string>
  /** `partition:offset` of every late reading. */
  readonly late: ReadonlySet<string>
  /** Readings per sensor, late ones included. */
  readonly counts: ReadonlyMap<string, number>
  /** Valid readings in all. */
  readonly valid: number
  /** The windows that must have closed, by `sensor@start`, with their aggregates. */
  readonly windows: ReadonlyMap<string, WindowTruth>
  /** Valid readings not late, in windows that must have closed. */
  readonly inClosedWindows: number
}

export interface WindowTruth {
  readonly sensor: string
  readonly start: number
  readonly count: number
  readonly min: number
  readonly max: number
  readonly sum: number
}

const decoder = new TextDecoder()

/** The reading's event time in ms, by the documented rule: seconds below 1e11, else ms. */
const eventMs = (timestamp: number): number => (timestamp < 1e11 ? Math.round(timestamp * 1000) : Math.round(timestamp))

/**
 * The truth for `sent` (as written: `written[i]` is where `sent[i]` went), with 60 s windows and `graceMs`.
 * Malformed readings are the ones the generator marked.
 */
export const expected = (
  sent: ReadonlyArray<ProducerRecord>,
  written: ReadonlyArray<RecordMetadata>,
  graceMs: number,
  windowMs = 60_000
): Expected => {
  const bad = new Set<string>()
  const late = new Set<string>()
  const counts = new Map<string, number>()
  const byPartition = new Map<
    number,
    Array<{ readonly at: string; readonly offset: number; readonly record: ProducerRecord }>
  >()
  for (const [i, m] of written.entries()) {
    const list = byPartition.get(m.partition) ?? []
    list.push({ at: `${m.partition}:${m.offset}`, offset: m.offset, record: sent[i]! })
    byPartition.set(m.partition, list)
  }
  const open = new Map<string, WindowTruth & { readonly partition: number }>()
  const streamTimes = new Map<number, number>()
  let valid = 0
  for (const [partition, list] of byPartition) {
    list.sort((a, b) => a.offset - b.offset)
    let streamTime = -1
    for (const { at, record } of list) {
      if (record.headers?.[SensorData.badHeader] !== undefined) {
        bad.add(at)
        continue
      }
      valid++
      const value: { sensor_id: string; temperature: number; timestamp: number } = JSON.parse(
        decoder.decode(record.value ?? new Uint8Array())
      )
      counts.set(value.sensor_id, (counts.get(value.sensor_id) ?? 0) + 1)
      const t = eventMs(value.timestamp)
      streamTime = Math.max(streamTime, t)
      const start = Math.floor(t / windowMs) * windowMs
      if (start + windowMs + graceMs <= streamTime) {
        late.add(at)
        continue
      }
      const key = `${value.sensor_id}@${start}`
      const w = open.get(key)
      const x = value.temperature
      open.set(
        key,
        w === undefined
          ? { sensor: value.sensor_id, start, count: 1, min: x, max: x, sum: x, partition }
          : { ...w, count: w.count + 1, min: Math.min(w.min, x), max: Math.max(w.max, x), sum: w.sum + x }
      )
    }
    streamTimes.set(partition, streamTime)
  }
  const windows = new Map<string, WindowTruth>()
  let inClosedWindows = 0
  for (const [key, w] of open) {
    if (w.start + windowMs + graceMs > (streamTimes.get(w.partition) ?? -1)) continue
    windows.set(key, { sensor: w.sensor, start: w.start, count: w.count, min: w.min, max: w.max, sum: w.sum })
    inClosedWindows += w.count
  }
  return { bad, late, counts, valid, windows, inClosedWindows }
}
