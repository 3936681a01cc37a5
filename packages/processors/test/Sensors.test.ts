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
import { stopOnTestClock } from "../../core/test/support/runtime.ts"
import * as SensorData from "../src/SensorData.ts"
import * as Sensors from "../src/Sensors.ts"
import { settle } from "./support/effects.ts"

const partitions = 3
const group = "sensor-pipeline"

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

  it.effect("a window's result is emitted once, after its grace, from event time; later readings for it are late", () =>
    Effect.gen(function* () {
      const topics = Sensors.named("windows-")
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name: topics.readings.name, partitions }])
      const w0 = 1_700_000_040_000 // a multiple of 60 s: window [w0, w0 + 60 s)
      const end = w0 + Sensors.windowMs
      const grace = Sensors.defaultGraceMs
      /** A reading at `ms` (written in seconds or in ms), with a Kafka timestamp that contradicts it. */
      const send = (list: ReadonlyArray<readonly [sensor: string, ms: number, temperature: number, unit?: "ms"]>) =>
        kafka.send(
          list.map(([sensor, ms, temperature, unit]) => ({
            topic: topics.readings.name,
            key: bytes(sensor),
            value: reading(sensor, temperature, { timestamp: unit === "ms" ? ms : ms / 1000 }),
            partition: 0,
            timestamp: 2_000_000_000_000 - ms
          }))
        )
      const aggregates = Effect.map(records(topics.aggregates.name), (list) =>
        list.map((r) => {
          const decoded = Topic.decode(topics.aggregates, r)
          if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
          return decoded.success.value
        })
      )
      const run = Effect.forkChild(Runner.run(Sensors.topology({ topics, partitions }), { groupId: group }))
      const processed = settle("every reading committed", committedToEnd(topics))

      yield* send([
        ["s1", w0, 20],
        ["s1", w0 + 30_000, 31, "ms"],
        ["s2", w0 + 59_999, 40],
        ["s1", end - 1, 25.5]
      ])
      let fiber = yield* run
      yield* processed
      assert.deepStrictEqual(yield* aggregates, [], "nothing before the window's end")
      // The open windows are restored from the changelog by the next run.
      yield* stopOnTestClock(fiber)
      fiber = yield* run

      yield* send([["s2", end + grace - 1, 10]])
      yield* processed
      assert.deepStrictEqual(yield* aggregates, [], "nothing within the grace")
      yield* send([["s3", end + grace, 10, "ms"]])
      yield* processed
      const closed = [
        {
          sensor_id: "s1",
          window_start: w0,
          window_end: end,
          count: 3,
          min_temperature: 20,
          max_temperature: 31,
          mean_temperature: (20 + 31 + 25.5) / 3
        },
        {
          sensor_id: "s2",
          window_start: w0,
          window_end: end,
          count: 1,
          min_temperature: 40,
          max_temperature: 40,
          mean_temperature: 40
        }
      ]
      assert.deepStrictEqual(yield* aggregates, closed, "stream time reached the end plus the grace: once per sensor")

      yield* send([
        ["s2", end + grace + 1_000, 12],
        ["s1", end - 2, 99]
      ])
      yield* processed
      yield* stopOnTestClock(fiber)
      assert.deepStrictEqual(yield* aggregates, closed, "a closed window is not emitted again")
      const late = yield* records(topics.late)
      assert.strictEqual(late.length, 1)
      assert.deepStrictEqual(late[0]?.value, reading("s1", 99, { timestamp: (end - 2) / 1000 }), "the reading's bytes")
      assert.strictEqual(header(late[0]?.headers ?? {}, "sluice.late.window"), `${w0}-${end}`)
      assert.strictEqual(header(late[0]?.headers ?? {}, "sluice.late.ms"), "1000", "1 s after the window closed")
      const enriched = decodeEnriched(topics, yield* records(topics.enriched.name))
      assert.strictEqual(enriched.length, 8, "every reading is enriched, the late one too")
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )

  it.effect("exactly-once: a window's result in a transaction that fails is aborted; the restart emits it once", () =>
    Effect.gen(function* () {
      const topics = Sensors.named("eos-")
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: topics.readings.name, partitions }])
      const w0 = 1_700_000_040_000
      const closes = w0 + Sensors.windowMs + Sensors.defaultGraceMs
      const send = (list: ReadonlyArray<readonly [sensor: string, ms: number]>) =>
        kafka.send(
          list.map(([sensor, ms]) => ({
            topic: topics.readings.name,
            key: bytes(sensor),
            value: reading(sensor, 20, { timestamp: ms }),
            partition: 0
          }))
        )
      const eos: Runner.RunOptions = { groupId: group, guarantee: "exactly_once", commitInterval: "100 millis" }
      const topology = Sensors.topology({ topics, partitions })
      const visible = (topic: string) => Effect.map(records(topic), (list) => list.length)

      yield* send([
        ["s1", w0],
        ["s1", w0 + 1_000],
        ["s2", w0 + 2_000]
      ])
      const first = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* settle("the first transaction", committedToEnd(topics))
      yield* stopOnTestClock(first)

      // The reading that closes the window is processed, and its transaction fails for good: the worker stops.
      yield* send([["s3", closes]])
      yield* broker.failSends(1, false)
      const failing = yield* Effect.forkChild(Runner.run(topology, eos))
      for (let i = 0; i < 50 && failing.pollUnsafe() === undefined; i++) {
        for (let j = 0; j < 50; j++) yield* Effect.yieldNow
        yield* TestClock.adjust("100 millis")
      }
      assert.isTrue((yield* Fiber.await(failing))._tag === "Failure", "a transaction failing for good stops the worker")
      assert.strictEqual(yield* visible(topics.aggregates.name), 0, "nothing of the aborted transaction is visible")

      const restarted = yield* Effect.forkChild(Runner.run(topology, eos))
      yield* settle("every reading committed", committedToEnd(topics))
      yield* stopOnTestClock(restarted)
      const windows = (yield* records(topics.aggregates.name)).map((r) => text(r.key ?? new Uint8Array()))
      assert.deepStrictEqual(windows.sort(), ["s1", "s2"], "each window once, for a read_committed reader")
      const states = (yield* broker.appended(topics.aggregates.name)).map((r) => r.state)
      assert.deepStrictEqual(
        states.toSorted(),
        ["aborted", "aborted", "committed", "committed"],
        "the dead worker's results were aborted"
      )
      assert.strictEqual(yield* visible(topics.enriched.name), 4, "each reading enriched once")
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )
})
