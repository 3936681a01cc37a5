/** `sluice produce ...`: write generated data to Kafka, with progress. */
import { Kafka } from "@sluice/core/Kafka"
import { header, type ProducerRecord } from "@sluice/core/Record"
import * as BadRecords from "@sluice/processors/BadRecords"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as Counting from "@sluice/processors/Counting"
import * as SensorData from "@sluice/processors/SensorData"
import * as Sensors from "@sluice/processors/Sensors"
import * as UserEvents from "@sluice/processors/UserEvents"
import { Console, Effect, Option } from "effect"
import { Command } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Inspect from "./Inspect.ts"
import * as ProduceClickstream from "./ProduceClickstream.ts"
import * as ProduceEvents from "./ProduceEvents.ts"

const chunk = 5_000

/**
 * Sends records in chunks, showing progress on long runs when stderr is a terminal (quiet in pipes and logs);
 * returns elapsed milliseconds.
 */
export const sendAll = Effect.fnUntraced(function* (records: ReadonlyArray<ProducerRecord>, label: string) {
  const kafka = yield* Kafka
  const started = Date.now()
  let lastReport = started
  for (let i = 0; i < records.length; i += chunk) {
    yield* kafka.send(records.slice(i, i + chunk))
    const now = Date.now()
    if (now - lastReport > 2_000 && process.stderr.isTTY === true) {
      lastReport = now
      yield* Console.error(`  ${label}: ${Math.min(i + chunk, records.length)}/${records.length}`)
    }
  }
  return Date.now() - started
})

/** `--include-bad R`: the share of malformed records a generator mixes in; `kinds` names them in `--help`. */
export const includeBad = (kinds: string) =>
  Flags.finite("include-bad", { description: `share of malformed records (${kinds})`, min: 0, max: 1, default: 0 })

/** Creates `topic` (3 partitions), sends the generated `records` and says how many (`noun`), malformed ones too. */
export const produceGenerated = (topic: string, records: ReadonlyArray<ProducerRecord>, noun: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topic, partitions: 3 }])
    const ms = yield* sendAll(records, topic)
    const bad = records.filter((r) => header(r.headers ?? {}, BadRecords.header) !== undefined).length
    yield* Console.log(`produced ${records.length} ${noun} to ${topic} (${bad} malformed) in ${ms} ms`)
  })

export const count = Flags.int("count", { description: "how many records", alias: "n", min: 1, default: 1_000 })
export const users = Flags.int("users", { description: "how many distinct users", min: 1, default: 100 })

const userEvents = Flags.command(
  "user-events",
  {
    brokers: Flags.brokers,
    prefix: Flags.prefix,
    count,
    users,
    seed: Flags.seed,
    includeBad: includeBad("invalid JSON, wrong types, missing fields, empty value")
  },
  (o) =>
    Effect.gen(function* () {
      const topic = UserEvents.named(o.prefix).events.name
      const records = UserEvents.generate({
        count: o.count,
        users: o.users,
        seed: o.seed,
        badRatio: o.includeBad,
        topic
      })
      yield* produceGenerated(topic, records, "records")
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(Command.withDescription("Produce user events (login, purchase, logout) keyed by user id"))

const profiles = Flags.command("profiles", { brokers: Flags.brokers, prefix: Flags.prefix, users }, (o) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const topics = ClickEnrichment.named(o.prefix)
    yield* kafka.createTopics([ClickEnrichment.profilesSpec(topics)])
    const ms = yield* sendAll(ClickData.generateProfiles(o.users, topics), topics.profiles.name)
    yield* Console.log(`produced ${o.users} profiles to ${topics.profiles.name} (compacted) in ${ms} ms`)
  }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(Command.withDescription("Produce one profile per user (ids from 101) to the compacted user_profiles topic"))

const clicks = Flags.command(
  "clicks",
  { brokers: Flags.brokers, prefix: Flags.prefix, count, users, seed: Flags.seed },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topics = ClickEnrichment.named(o.prefix)
      yield* kafka.createTopics([{ name: topics.clicks.name, partitions: 3 }])
      const ms = yield* sendAll(
        ClickData.generateClicks({ count: o.count, users: o.users, seed: o.seed, topics }),
        topics.clicks.name
      )
      yield* Console.log(`produced ${o.count} clicks over ${o.users} users to ${topics.clicks.name} in ${ms} ms`)
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(Command.withDescription("Produce deterministic click events (timestamp, user_id, url)"))

const counts = Flags.command(
  "counts",
  {
    brokers: Flags.brokers,
    prefix: Flags.prefix,
    count,
    keys: Flags.int("keys", { description: "how many distinct keys, taken round robin", min: 1, default: 100 }),
    partitions: Flags.int("partitions", {
      description: "partitions of the input topic when it is created (tasks of `sluice run counts`)",
      min: 1,
      max: 10_000,
      default: 6
    })
  },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = Counting.named(o.prefix).input.name
      yield* kafka.createTopics([{ name: topic, partitions: o.partitions }])
      const ms = yield* sendAll(Counting.generate({ count: o.count, keys: o.keys, topic }), topic)
      yield* Console.log(`produced ${o.count} records over ${Math.min(o.keys, o.count)} keys to ${topic} in ${ms} ms`)
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription("Produce records for the counting topology: --count records over --keys keys, round robin")
)

const sensors = Flags.command(
  "sensors",
  {
    brokers: Flags.brokers,
    prefix: Flags.prefix,
    count,
    interval: Flags.finite("interval", {
      description: "seconds between two readings sent (0: as fast as possible, in batches)",
      min: 0,
      max: 3_600,
      default: 1
    }),
    sensors: Flags.int("sensors", { description: "how many distinct sensors", min: 1, default: 10 }),
    includeBad: Flags.finite("include-bad", {
      description: `share of malformed readings (${SensorData.badKinds.join(", ")})`,
      min: 0,
      max: 1,
      default: 0
    }),
    late: Flags.finite("late", {
      description: `share of late readings: a window plus the default grace (${Sensors.defaultGraceMs / 1000} s) and a second behind their sensor's latest`,
      min: 0,
      max: 1,
      default: 0
    }),
    eventStepMs: Flags.int("event-step-ms", {
      description:
        "event time between consecutive readings, so that a burst can span many windows; the last reading's event time is when it is sent",
      min: 0,
      max: 86_400_000,
      whenAbsent: "the send interval"
    }),
    partitions: Flags.int("partitions", {
      description: "partitions of sensor-readings when it is created (tasks of `sluice run sensor-pipeline`)",
      min: 1,
      max: 10_000,
      default: 3
    }),
    seed: Flags.seed
  },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = Sensors.named(o.prefix).readings.name
      yield* kafka.createTopics([{ name: topic, partitions: o.partitions }])
      const intervalMs = Math.round(o.interval * 1000)
      const stepMs = Option.getOrElse(o.eventStepMs, () => intervalMs)
      // Event time keeps pace with the sends at the default step; another step spaces the readings so that the last
      // one's event time is (about) when it is sent, the earlier ones before it.
      const records = SensorData.generate({
        count: o.count,
        sensors: o.sensors,
        seed: o.seed,
        badRatio: o.includeBad,
        lateRatio: o.late,
        startMs: Date.now() + (o.count - 1) * (intervalMs - stepMs),
        stepMs,
        lateByMs: Sensors.windowMs + Sensors.defaultGraceMs,
        topic
      })
      const started = Date.now()
      if (intervalMs === 0) yield* sendAll(records, topic)
      else {
        // The lab's producer: one reading at a time, each printed as it goes.
        for (const [i, record] of records.entries()) {
          if (i > 0) yield* Effect.sleep(intervalMs)
          yield* kafka.send([record])
          yield* Console.log(`sent ${Inspect.show(record.key)}: ${Inspect.show(record.value)}`)
        }
      }
      const bad = records.filter((r) => r.headers?.[SensorData.badHeader] !== undefined).length
      const late = records.filter((r) => r.headers?.[SensorData.lateHeader] !== undefined).length
      yield* Console.log(
        `produced ${records.length} readings of ${o.sensors} sensor(s) to ${topic} (${bad} malformed, ${late} late) in ${Date.now() - started} ms`
      )
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription(
    "Produce sensor readings {sensor_id, temperature, humidity, timestamp} keyed by sensor id, timestamp in epoch seconds"
  )
)

export const command = Command.make("produce").pipe(
  Command.withDescription("Produce generated data to Kafka"),
  Command.withSubcommands([
    userEvents,
    profiles,
    clicks,
    counts,
    sensors,
    ProduceEvents.command(),
    ...ProduceClickstream.commands()
  ])
)
