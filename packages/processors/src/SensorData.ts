/**
 * Deterministic sensor readings for the sensor pipeline (`sluice produce sensors`, tests, benchmarks): the same
 * options give the same records, and every record says what it is meant to be in a test header
 * (`sluice.test.bad: <kind>` for a malformed one, `sluice.test.late: 1` for a late one), so a test can check each
 * outcome exactly.
 *
 * Reading i has event time `startMs + i * stepMs`, written as epoch seconds with a fraction (the lab's
 * `time.time()`). A late reading is one of a sensor that has sent readings before, with an event time a window plus
 * the grace plus a second before that sensor's latest: the task that owns the sensor has seen that latest reading,
 * so whatever window the late one falls in has closed there, and it must go to the late topic.
 */

import { bytes, type ProducerRecord } from "@sluice/core/Record"
import * as Topic from "@sluice/core/Topic"
import { Result } from "effect"
import * as BadRecords from "./BadRecords.ts"
import * as Random from "./Random.ts"
import { defaultTopics, type Reading } from "./Sensors.ts"

/** The kinds of malformed reading `generate` mixes in, in turn. */
export const badKinds = [
  "invalid-json",
  "missing-sensor-id",
  "negative-temperature",
  "wrong-types",
  "non-finite"
] as const
export type BadKind = (typeof badKinds)[number]

export const badHeader = BadRecords.header
export const lateHeader = "sluice.test.late"

/** The id of the `n`th sensor (from 1). */
export const sensorId = (n: number): string => `sensor-${n}`

export interface Options {
  readonly count: number
  /** Distinct sensors, picked at random for each reading. Default 10. */
  readonly sensors?: number
  readonly seed?: number
  /** Share of malformed readings, cycling through `badKinds`. Default 0. */
  readonly badRatio?: number
  /** Share of late readings. Default 0. */
  readonly lateRatio?: number
  /** Event time of the first reading, epoch ms. Default 2023-11-14T22:13:20Z. */
  readonly startMs?: number
  /** Event time between consecutive readings, ms. Default 1000. */
  readonly stepMs?: number
  /** How far behind its sensor's latest reading a late one is: the pipeline's window size plus its grace. */
  readonly lateByMs: number
  readonly topic?: string
}

const malformed = (kind: BadKind, sensor: string, seconds: number): Uint8Array => {
  switch (kind) {
    case "invalid-json":
      return bytes(`{"sensor_id": "${sensor}", "temperature": 21.5,`)
    case "missing-sensor-id":
      return bytes(JSON.stringify({ temperature: 21.5, humidity: 40, timestamp: seconds }))
    case "negative-temperature":
      return bytes(JSON.stringify({ sensor_id: sensor, temperature: -4.5, humidity: 40, timestamp: seconds }))
    case "wrong-types":
      return bytes(JSON.stringify({ sensor_id: sensor, temperature: "hot", humidity: null, timestamp: "now" }))
    case "non-finite":
      // JSON has no Infinity: a literal out of double range is how one arrives.
      return bytes(`{"sensor_id": "${sensor}", "temperature": 1e400, "humidity": 40, "timestamp": ${seconds}}`)
  }
}

/**
 * `count` readings. Each one is malformed with probability `badRatio`, else late with probability `lateRatio`
 * (when its sensor has sent a reading before), else on time.
 */
export const generate = (options: Options): Array<ProducerRecord> => {
  const topic = options.topic ?? defaultTopics.readings.name
  const rng = Random.make(options.seed ?? 42)
  const sensors = options.sensors ?? 10
  const start = options.startMs ?? 1_700_000_000_000
  const step = options.stepMs ?? 1_000
  const badRatio = options.badRatio ?? 0
  const lateRatio = options.lateRatio ?? 0
  const encode = Topic.make(topic, defaultTopics.readings)
  /** The latest on-time event time of each sensor. */
  const latest = new Map<string, number>()
  const out: Array<ProducerRecord> = []
  let bad = 0
  for (let i = 0; i < options.count; i++) {
    const sensor = sensorId(rng.int(1, sensors))
    const at = start + i * step
    const temperature = rng.int(150, 450) / 10
    const humidity = rng.int(200, 900) / 10
    const roll = rng.next()
    if (roll < badRatio) {
      const kind = badKinds[bad++ % badKinds.length]!
      out.push({
        topic,
        key: bytes(sensor),
        value: malformed(kind, sensor, at / 1000),
        headers: { [badHeader]: bytes(kind) }
      })
      continue
    }
    const last = latest.get(sensor)
    const late = roll < badRatio + lateRatio && last !== undefined
    const eventTime = late ? last - options.lateByMs - 1_000 : at
    if (!late) latest.set(sensor, Math.max(last ?? at, at))
    const reading: Reading = { sensor_id: sensor, temperature, humidity, timestamp: eventTime / 1000 }
    // Generated readings are valid by construction; a failure here is a bug in this module.
    const record = Result.getOrThrow(Topic.encode(encode, sensor, reading))
    out.push(late ? { ...record, headers: { [lateHeader]: bytes("1") } } : record)
  }
  return out
}
