/**
 * The sensor metrics pipeline (the Faust lab's): readings `{sensor_id, temperature, humidity, timestamp}` from
 * `sensor-readings`, keyed by sensor id, validated, enriched, counted and aggregated in event-time windows. Each is
 *
 * - validated (Schema, at the boundary): bad JSON, a missing or empty `sensor_id`, a negative temperature, a humidity
 *   outside 0..100, wrong types, non-finite numbers, an event time out of range, or a key that is not the reading's
 *   `sensor_id` make the reading a dead letter in `sensor-dead-letter`, its bytes untouched, the reason in
 *   `sluice.error.message`;
 * - enriched with a `status` (normal, warning, critical) from temperature thresholds, to `enriched-readings`;
 * - counted per sensor in the `sensor-counts` store (changelog `<group>-sensor-counts-changelog`), readable over HTTP
 *   at `/tables/sensor-counts`; a wall-clock timer logs the sensors whose count has passed a threshold;
 * - aggregated per sensor in 60 s tumbling windows of event time (count, min, max and mean temperature), each
 *   window's result emitted once to `window-aggregates` when the task's event time passes its end plus the grace
 *   (Windows.ts; state in the `sensor-windows` store). A reading that comes after its window closed is late: it goes
 *   to `sensor-late` with headers naming the window and the lateness, and counts in no window (it is still enriched
 *   and counted in `sensor-counts`).
 *
 * Keys: a sensor's readings must share a partition (its task holds its count), so the key must be the sensor id;
 * a reading whose key is another one would be counted in the wrong task, and is a dead letter instead.
 *
 * Event time: `timestamp` is epoch seconds, a float (the lab's `time.time()`), or epoch milliseconds. The two are
 * told apart by size, which is unambiguous because both are bounded to the years 2001..2286: seconds are in
 * [1e9, 1e10), milliseconds in [1e12, 1e13), three orders of magnitude apart; anything else is a dead letter.
 * The pipeline works in milliseconds (`eventTimeMs`); the Kafka timestamp of a reading plays no part.
 */
import * as Aggregator from "@sluice/core/Aggregator"
import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import * as Errors from "@sluice/core/Errors"
import * as Store from "@sluice/core/Store"
import * as Task from "@sluice/core/Task"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import * as Window from "@sluice/core/Window"
import * as Windows from "@sluice/core/Windows"
import { type Duration, Effect, Schema } from "effect"

// ---------------------------------------------------------------------------------------------------------------
// Readings and their event time
// ---------------------------------------------------------------------------------------------------------------

/** The accepted event times, in each unit: the years 2001..2286. */
export const eventTimeRange = { seconds: [1e9, 1e10], millis: [1e12, 1e13] } as const

/** A reading's `timestamp` as epoch milliseconds, or `undefined` when it is neither unit in range. */
export const eventTimeMs = (timestamp: number): number | undefined => {
  const { seconds, millis } = eventTimeRange
  if (timestamp >= seconds[0] && timestamp < seconds[1]) return Math.round(timestamp * 1000)
  if (timestamp >= millis[0] && timestamp < millis[1]) return Math.round(timestamp)
  return undefined
}

const EventTime = Schema.Finite.check(
  Schema.makeFilter((t: number) => eventTimeMs(t) !== undefined, {
    message: "timestamp must be epoch seconds (1e9..1e10) or epoch milliseconds (1e12..1e13)"
  })
)

export const Reading = Schema.Struct({
  sensor_id: Schema.String.check(Schema.isNonEmpty({ message: "sensor_id must not be empty" })),
  temperature: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0, { message: "temperature must not be negative" })),
  humidity: Schema.Finite.check(
    Schema.isBetween({ minimum: 0, maximum: 100 }, { message: "humidity must be a percentage, 0..100" })
  ),
  timestamp: EventTime
})
export type Reading = typeof Reading.Type

export const Status = Schema.Literals(["normal", "warning", "critical"])
export type Status = typeof Status.Type

export const EnrichedReading = Schema.Struct({ ...Reading.fields, status: Status })
export type EnrichedReading = typeof EnrichedReading.Type

/** A window's result: `[window_start, window_end)` in epoch ms, and its readings' temperatures. */
export const WindowAggregate = Schema.Struct({
  sensor_id: Schema.String,
  window_start: Schema.Int,
  window_end: Schema.Int,
  count: Schema.Int,
  min_temperature: Schema.Finite,
  max_temperature: Schema.Finite,
  mean_temperature: Schema.Finite
})
export type WindowAggregate = typeof WindowAggregate.Type

/** Temperatures at which a reading's status becomes warning, and critical (each bound included). */
export interface Thresholds {
  readonly warning: number
  readonly critical: number
}

export const defaultThresholds: Thresholds = { warning: 30, critical: 35 }

/** Why `thresholds` cannot be used, or `undefined`: a warning must come before critical. */
export const checkThresholds = (t: Thresholds): string | undefined =>
  !Number.isFinite(t.warning) || !Number.isFinite(t.critical)
    ? "the temperature thresholds must be finite numbers"
    : t.warning < t.critical
      ? undefined
      : `the warning threshold (${t.warning}) must be below the critical one (${t.critical})`

/** critical at or above `critical`, warning at or above `warning`, normal below. */
export const statusOf = (temperature: number, t: Thresholds): Status =>
  temperature >= t.critical ? "critical" : temperature >= t.warning ? "warning" : "normal"

// ---------------------------------------------------------------------------------------------------------------
// Topics and state
// ---------------------------------------------------------------------------------------------------------------

/** The topics of a deployment; `named(prefix)` gives fresh ones (tests, parallel environments). */
export const named = (prefix = "") => ({
  readings: Topic.make(`${prefix}sensor-readings`, { key: Codec.string, value: Codec.json(Reading) }),
  enriched: Topic.make(`${prefix}enriched-readings`, { key: Codec.string, value: Codec.json(EnrichedReading) }),
  aggregates: Topic.make(`${prefix}window-aggregates`, { key: Codec.string, value: Codec.json(WindowAggregate) }),
  deadLetters: `${prefix}sensor-dead-letter`,
  late: `${prefix}sensor-late`
})
export type Topics = ReturnType<typeof named>

export const defaultTopics = named()

/** Windows are 60 s tumbling windows in event time, closed `grace` after their end (default 10 s). */
export const windowMs = 60_000
export const defaultGraceMs = 10_000

/** A window's aggregation of its readings' temperatures. */
export const temperatures = Aggregator.struct({
  count: Aggregator.count,
  min: Aggregator.min,
  max: Aggregator.max,
  mean: Aggregator.mean
})

/** A closed window's output value: the sensor, the window's bounds, and its temperatures. */
export const windowAggregate = (
  sensor: string,
  window: Window.Window,
  t: { readonly count: number; readonly min: number | null; readonly max: number | null; readonly mean: number | null }
): WindowAggregate => ({
  sensor_id: sensor,
  window_start: window.start,
  window_end: window.end,
  count: t.count,
  // A window has at least one reading, so these are never null; NaN would fail to encode, loudly.
  min_temperature: t.min ?? Number.NaN,
  max_temperature: t.max ?? Number.NaN,
  mean_temperature: t.mean ?? Number.NaN
})

/** Sensor id → readings counted. Counts as decimal text: small changelog records, readable with `sluice inspect`. */
export const counts = Store.make("sensor-counts", { key: Codec.string, value: Codec.intString })

/** The threshold timer: every `every`, each task logs its sensors with more than `count` readings. */
export interface Alert {
  readonly count: number
  readonly every: Duration.Input
}

export const defaultAlert: Alert = { count: 100, every: "10 seconds" }

/** Names in one alert line at most; the rest are counted. */
const alertNames = 20

/** The alert line of a task, or `undefined` when no sensor of it is over the threshold. */
export const alertLine = (
  task: number,
  over: ReadonlyArray<readonly [sensor: string, count: number]>,
  threshold: number
): string | undefined => {
  if (over.length === 0) return undefined
  const shown = over
    .slice(0, alertNames)
    .map(([sensor, n]) => `${sensor}=${n}`)
    .join(", ")
  const rest = over.length > alertNames ? `, and ${over.length - alertNames} more` : ""
  return `task ${task}: ${over.length} sensor(s) over ${threshold} readings: ${shown}${rest}`
}

// ---------------------------------------------------------------------------------------------------------------
// The topology
// ---------------------------------------------------------------------------------------------------------------

export interface Options {
  readonly topics?: Topics
  /** Partitions of the output topics when they are created: the input's, so each task has its own. Default 3. */
  readonly partitions?: number
  readonly thresholds?: Thresholds
  readonly alert?: Alert
  /** How far out of order a reading may come and still count in its window, ms. Default 10 s. */
  readonly graceMs?: number
  /**
   * Every this often, close the windows whose grace has passed by the wall clock, so a sensor that went quiet still
   * gets its last window emitted. Only for live readings, whose event time follows the wall clock: it makes every
   * reading older than the wall clock minus the grace late. Off by default.
   */
  readonly closeOnWallClock?: Duration.Input
}

export const topology = (options: Options = {}) => {
  const topics = options.topics ?? defaultTopics
  const thresholds = options.thresholds ?? defaultThresholds
  const alert = options.alert ?? defaultAlert
  const problem = checkThresholds(thresholds)
  if (problem !== undefined) throw new Error(problem)
  const partitions = options.partitions ?? 3

  // The scan runs in the task, between its steps: it sees every count the task has made so far.
  const alerts = Task.wallClock("sensor-alerts", alert.every, (ctx) =>
    Effect.gen(function* () {
      const over: Array<readonly [string, number]> = []
      for (const [sensor, n] of ctx.store(counts).all()) if (n > alert.count) over.push([sensor, n])
      const line = alertLine(ctx.task, over, alert.count)
      if (line !== undefined) yield* Effect.logWarning(line)
      return Batch.empty
    })
  )

  const windows = Windows.aggregate({
    name: "sensor-windows",
    windows: Window.tumbling(windowMs),
    grace: options.graceMs ?? defaultGraceMs,
    key: Codec.string,
    aggregator: temperatures,
    lateTopic: topics.late,
    closeOnWallClock: options.closeOnWallClock,
    result: (out, sensor, window, t) => out.emit(topics.aggregates, sensor, windowAggregate(sensor, window, t))
  })

  return Topology.make({
    name: "sensor-pipeline",
    input: topics.readings,
    deadLetterTopic: topics.deadLetters,
    outputs: [topics.enriched.name, topics.aggregates.name, topics.late].map((name) => ({ name, partitions })),
    stores: [counts, ...windows.stores],
    timers: [alerts, ...windows.timers],
    process: (records, ctx) =>
      Effect.sync(() => {
        const store = ctx.store(counts)
        const open = windows.open(ctx)
        const result = Batch.forEach(records, ({ key, value, record }, out) => {
          if (key !== value.sensor_id) {
            return out.reject(
              new Errors.RecordRejected({
                tag: "KeyMismatch",
                reason: `the record's key ${JSON.stringify(key)} is not its sensor_id ${JSON.stringify(value.sensor_id)}: a sensor's readings must be keyed by its id`
              })
            )
          }
          // The schema has checked the range, so this is never -1; if it were, the window would reject the reading.
          open.add(out, record, key, value.temperature, eventTimeMs(value.timestamp) ?? -1)
          store.put(key, (store.get(key) ?? 0) + 1)
          out.emit(topics.enriched, key, { ...value, status: statusOf(value.temperature, thresholds) })
        })
        return Batch.concat([result, open.close()])
      })
  })
}
