/**
 * The sensor pipeline on the in-memory broker, on the test clock: validation (each kind of malformed reading is a
 * dead letter with its reason and its original bytes), the status thresholds at their boundaries, event times in
 * both units, the count table (and its restore), and the threshold timer driven by the TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { DeadLetter } from "@sluice/core"
import { Kafka } from "@sluice/core/Kafka"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, type ConsumerRecord, header, type ProducerRecord, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Store from "@sluice/core/Store"
import * as Tables from "@sluice/core/Tables"
import * as Topic from "@sluice/core/Topic"
import { Effect, Fiber, Layer, Result } from "effect"
import { TestClock } from "effect/testing"
import { captureLogs } from "../../core/test/support/captureLogs.ts"
import * as SensorData from "../src/SensorData.ts"
import * as Sensors from "../src/Sensors.ts"

const partitions = 3
const group = "sensor-pipeline"

/** Lets the runner's fibers run, a second of test time at a time, until `condition` holds. */
const settle = Effect.fnUntraced(function* <E, R>(what: string, condition: Effect.Effect<boolean, E, R>) {
  for (let i = 0; i < 300; i++) {
    if (yield* condition) return
    for (let j = 0; j < 20; j++) yield* Effect.yieldNow
    yield* TestClock.adjust("1 second")
  }
  return yield* Effect.die(new Error(`never: ${what}`))
})

const committedToEnd = (topics: Sensors.Topics) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(topics.readings.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(group, topics.readings.name)).map((c) => [c.partition, c.offset])
    )
    return highs.every((h) => (committed.get(h.partition) ?? 0) === h.high)
  })

const records = (topic: string) =>
  Effect.gen(function* () {
    const broker = yield* MemoryBroker
    return yield* broker.records(topic)
  })

/** Sends `sent` to a fresh input and runs the pipeline until every record is committed; returns the stopper. */
const runOver = (topics: Sensors.Topics, sent: ReadonlyArray<ProducerRecord>, options: Sensors.Options = {}) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topics.readings.name, partitions }])
    yield* kafka.send(sent)
    const fiber = yield* Effect.forkChild(
      Runner.run(Sensors.topology({ topics, partitions, ...options }), { groupId: group })
    )
    yield* settle("every reading committed", committedToEnd(topics))
    return fiber
  })

const stop = (fiber: Fiber.Fiber<unknown, unknown>) =>
  Effect.gen(function* () {
    const stopping = yield* Effect.forkChild(Fiber.interrupt(fiber))
    for (let i = 0; i < 10 && stopping.pollUnsafe() === undefined; i++) yield* TestClock.adjust("1 second")
    yield* Fiber.join(stopping)
  })

const at = 1_700_000_000
const reading = (sensor: string, temperature: number, extra: Record<string, unknown> = {}) =>
  bytes(JSON.stringify({ sensor_id: sensor, temperature, humidity: 40, timestamp: at, ...extra }))

const decodeEnriched = (topics: Sensors.Topics, list: ReadonlyArray<ConsumerRecord>) =>
  list.map((r) => {
    const decoded = Topic.decode(topics.enriched, r)
    if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
    return decoded.success.value
  })

describe("sensor readings", () => {
  it("event time: epoch seconds (with a fraction) or epoch ms, each only in its range", () => {
    assert.strictEqual(Sensors.eventTimeMs(1_700_000_000.123), 1_700_000_000_123)
    assert.strictEqual(Sensors.eventTimeMs(1_700_000_000_123), 1_700_000_000_123)
    assert.strictEqual(Sensors.eventTimeMs(1e9), 1e12, "the first second accepted")
    assert.strictEqual(Sensors.eventTimeMs(1e12), 1e12, "the first millisecond accepted")
    for (const outside of [0, 1, 999_999_999.9, 1e10, 5e10, 999_999_999_999, 1e13, -1_700_000_000])
      assert.isUndefined(Sensors.eventTimeMs(outside), String(outside))
  })

  it("status: warning from the warning threshold on, critical from the critical one on", () => {
    const t = Sensors.defaultThresholds
    assert.deepStrictEqual(
      [0, 29.99, 30, 34.99, 35, 80].map((x) => Sensors.statusOf(x, t)),
      ["normal", "normal", "warning", "warning", "critical", "critical"]
    )
    const custom = { warning: 20, critical: 21 }
    assert.deepStrictEqual(
      [19.9, 20, 20.5, 21].map((x) => Sensors.statusOf(x, custom)),
      ["normal", "warning", "warning", "critical"]
    )
    assert.isUndefined(Sensors.checkThresholds(custom))
    assert.include(Sensors.checkThresholds({ warning: 30, critical: 30 }), "must be below")
    assert.include(Sensors.checkThresholds({ warning: Number.NaN, critical: 30 }), "finite")
  })

  it("the generator marks its malformed and late readings, and a late one is a window and the grace behind", () => {
    const lateByMs = Sensors.windowMs + Sensors.defaultGraceMs
    const sent = SensorData.generate({ count: 2_000, sensors: 5, badRatio: 0.1, lateRatio: 0.05, lateByMs })
    const bad = sent.filter((r) => r.headers?.[SensorData.badHeader] !== undefined)
    const late = sent.filter((r) => r.headers?.[SensorData.lateHeader] !== undefined)
    assert.approximately(bad.length, 200, 40)
    assert.approximately(late.length, 100, 30)
    assert.deepStrictEqual(
      [...new Set(bad.map((r) => header(r.headers ?? {}, SensorData.badHeader)))].sort(),
      [...SensorData.badKinds].sort()
    )
    const latest = new Map<string, number>()
    for (const r of sent) {
      if (r.headers?.[SensorData.badHeader] !== undefined) continue
      const value = JSON.parse(text(r.value ?? new Uint8Array()))
      const t = Sensors.eventTimeMs(value.timestamp) ?? Number.NaN
      if (r.headers?.[SensorData.lateHeader] !== undefined)
        assert.strictEqual(t, (latest.get(value.sensor_id) ?? Number.NaN) - lateByMs - 1_000)
      else latest.set(value.sensor_id, Math.max(latest.get(value.sensor_id) ?? t, t))
    }
  })
})

describe("the sensor pipeline on the in-memory broker", () => {
  it.effect("each kind of malformed reading is a dead letter with its reason and its original bytes", () =>
    Effect.gen(function* () {
      const topics = Sensors.named("bad-")
      const cases: ReadonlyArray<readonly [name: string, key: Uint8Array | null, value: Uint8Array, reason: string]> = [
        ["bad JSON", bytes("s1"), bytes(`{"sensor_id": "s1", "temperature": 21.5,`), "invalid JSON"],
        ["missing sensor_id", bytes("s1"), bytes(`{"temperature":20,"humidity":40,"timestamp":${at}}`), "Missing key"],
        ["empty sensor_id", bytes(""), reading("", 20), "sensor_id must not be empty"],
        ["negative temperature", bytes("s1"), reading("s1", -0.5), "temperature must not be negative"],
        ["wrong types", bytes("s1"), reading("s1", 20, { temperature: "hot" }), 'Expected number; at ["temperature"]'],
        ["a string timestamp", bytes("s1"), reading("s1", 20, { timestamp: "now" }), '["timestamp"]'],
        [
          "non-finite temperature",
          bytes("s1"),
          bytes(`{"sensor_id":"s1","temperature":1e400,"humidity":40,"timestamp":${at}}`),
          "non-finite number at $.temperature"
        ],
        ["humidity over 100", bytes("s1"), reading("s1", 20, { humidity: 100.5 }), "humidity must be a percentage"],
        [
          "timestamp out of range",
          bytes("s1"),
          reading("s1", 20, { timestamp: 12 }),
          "timestamp must be epoch seconds"
        ],
        ["not an object", bytes("s1"), bytes("[1,2]"), "Expected object"],
        ["empty value", bytes("s1"), new Uint8Array(0), "empty payload"],
        ["no key", null, reading("s1", 20), "key"],
        ["key is another sensor", bytes("s2"), reading("s1", 20), 'the record\'s key "s2" is not its sensor_id "s1"']
      ]
      const sent: Array<ProducerRecord> = [
        { topic: topics.readings.name, key: bytes("s1"), value: reading("s1", 20) },
        ...cases.map(([name, key, value]) => ({
          topic: topics.readings.name,
          key,
          value,
          partition: 0,
          headers: { case: bytes(name) }
        })),
        { topic: topics.readings.name, key: bytes("s1"), value: reading("s1", 0) }
      ]
      const fiber = yield* runOver(topics, sent)
      yield* stop(fiber)

      const dead = yield* records(topics.deadLetters)
      assert.strictEqual(dead.length, cases.length)
      for (const [name, key, value, reason] of cases) {
        const letter = dead.find((r) => header(r.headers, "case") === name)
        assert.isDefined(letter, name)
        assert.include(header(letter?.headers ?? {}, DeadLetter.headers.errorMessage), reason, name)
        assert.deepStrictEqual(letter?.value, value, `${name}: the original value bytes`)
        assert.deepStrictEqual(letter?.key, key, `${name}: the original key bytes`)
        assert.strictEqual(header(letter?.headers ?? {}, DeadLetter.headers.sourceTopic), topics.readings.name)
      }
      const enriched = decodeEnriched(topics, yield* records(topics.enriched.name))
      assert.deepStrictEqual(
        enriched.map((e) => [e.sensor_id, e.temperature, e.status]),
        [
          ["s1", 20, "normal"],
          ["s1", 0, "normal"]
        ],
        "a temperature of 0 is valid"
      )
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )

  it.effect("enriches with the configured thresholds, each bound included", () =>
    Effect.gen(function* () {
      const topics = Sensors.named("status-")
      const temperatures = [24.9, 25, 25.1, 39.9, 40, 41]
      const sent = temperatures.map((t) => ({
        topic: topics.readings.name,
        key: bytes("s1"),
        value: reading("s1", t)
      }))
      const fiber = yield* runOver(topics, sent, { thresholds: { warning: 25, critical: 40 } })
      yield* stop(fiber)
      const enriched = decodeEnriched(topics, yield* records(topics.enriched.name))
      assert.deepStrictEqual(
        enriched.map((e) => [e.temperature, e.status]),
        [
          [24.9, "normal"],
          [25, "warning"],
          [25.1, "warning"],
          [39.9, "warning"],
          [40, "critical"],
          [41, "critical"]
        ]
      )
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )

  it.effect("counts every valid reading of each sensor in sensor-counts, restored from its changelog on restart", () =>
    Effect.gen(function* () {
      const topics = Sensors.named("counts-")
      const lateByMs = Sensors.windowMs + Sensors.defaultGraceMs
      const options = { sensors: 12, badRatio: 0.1, lateRatio: 0.05, lateByMs, topic: topics.readings.name }
      const first = SensorData.generate({ ...options, count: 600, seed: 1 })
      const fiber = yield* runOver(topics, first)
      const truth = (sent: ReadonlyArray<ProducerRecord>) => {
        const counts = new Map<string, number>()
        for (const r of sent) {
          if (r.headers?.[SensorData.badHeader] !== undefined) continue
          const key = text(r.key ?? new Uint8Array())
          counts.set(key, (counts.get(key) ?? 0) + 1)
        }
        return counts
      }
      const table = Effect.gen(function* () {
        const found = (yield* Tables.Tables).entries(Sensors.counts.name, 10_000)
        return new Map((found?.entries ?? []).map((e) => [String(e.key), Number(e.value)]))
      })
      assert.deepStrictEqual(yield* table, truth(first), "late readings are counted, malformed ones are not")
      yield* stop(fiber)

      // A second run of the group restores the counts from the changelog and counts on from there.
      const second = SensorData.generate({ ...options, count: 300, seed: 2 })
      const kafka = yield* Kafka
      yield* kafka.send(second)
      const again = yield* Effect.forkChild(
        Runner.run(Sensors.topology({ topics, partitions }), { groupId: group, stateStore: Store.memory })
      )
      yield* settle("every reading committed", committedToEnd(topics))
      assert.deepStrictEqual(yield* table, truth([...first, ...second]))
      yield* stop(again)
    }).pipe(Effect.provide(Layer.mergeAll(layerWith({ maxBatchSize: 100 }), Tables.layer)))
  )

  it.effect(
    "the threshold timer logs, every interval of the wall clock, the sensors with more readings than the threshold",
    () =>
      Effect.gen(function* () {
        const logs = captureLogs()
        const topics = Sensors.named("alerts-")
        // sensor-a: 3 readings, sensor-b: 2 (the threshold: not more than it), sensor-c: 1.
        const sent = ["sensor-a", "sensor-b", "sensor-a", "sensor-c", "sensor-b", "sensor-a"].map((s) => ({
          topic: topics.readings.name,
          key: bytes(s),
          value: reading(s, 20),
          partition: 0
        }))
        const alertLines = () => logs.lines.filter((l) => l.message.includes("readings:"))
        yield* Effect.gen(function* () {
          const kafka = yield* Kafka
          yield* kafka.createTopics([{ name: topics.readings.name, partitions }])
          yield* kafka.send(sent)
          const fiber = yield* Effect.forkChild(
            Runner.run(Sensors.topology({ topics, partitions, alert: { count: 2, every: "30 seconds" } }), {
              groupId: group
            })
          )
          // Two commits' worth of time: every reading processed, not yet a timer tick.
          for (let i = 0; i < 20; i++) {
            for (let j = 0; j < 20; j++) yield* Effect.yieldNow
            yield* TestClock.adjust("1 second")
          }
          assert.isTrue(yield* committedToEnd(topics))
          assert.deepStrictEqual(alertLines(), [], "nothing before the first tick")
          yield* TestClock.adjust("10 seconds")
          for (let j = 0; j < 20; j++) yield* Effect.yieldNow
          assert.deepStrictEqual(
            alertLines().map((l) => `${l.level} ${l.message}`),
            ["Warn task 0: 1 sensor(s) over 2 readings: sensor-a=3"]
          )
          yield* TestClock.adjust("30 seconds")
          for (let j = 0; j < 20; j++) yield* Effect.yieldNow
          assert.strictEqual(alertLines().length, 2, "once more at the next tick")
          yield* stop(fiber)
        }).pipe(Effect.provide(logs.layer))
      }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )
})
