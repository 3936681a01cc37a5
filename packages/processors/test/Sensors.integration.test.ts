/**
 * The sensor pipeline as operators run it: `sluice run sensor-pipeline` worker processes against the real broker
 * (SLUICE_BROKERS, default 127.0.0.1:9092), checked against a recomputation from what was sent.
 */
import * as Net from "node:net"
import { assert, layer } from "@effect/vitest"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import { partitionForKey } from "@sluice/core/Partitioner"
import * as Reader from "@sluice/core/Reader"
import { bytes, type ConsumerRecord, header, type ProducerRecord, type RecordMetadata } from "@sluice/core/Record"
import * as Topic from "@sluice/core/Topic"
import { Effect, Fiber, Result, Schema } from "effect"
import { afterEach } from "vitest"
import * as SensorData from "../src/SensorData.ts"
import * as Sensors from "../src/Sensors.ts"
import * as Reference from "./support/sensorReference.ts"
import * as Workers from "./support/workers.ts"

const brokers = Effect.runSync(brokersConfig)
const partitions = 4
const lateByMs = Sensors.windowMs + Sensors.defaultGraceMs

afterEach(() => Workers.killAll())

/** Fresh topics under a random prefix, for workers of `sluice run sensor-pipeline`. */
const fresh = () => {
  const id = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`
  const prefix = `it-${id}-`
  const topics = Sensors.named(prefix)
  return {
    topics,
    prefix,
    worker: (
      name: string,
      group: string,
      more: { readonly http?: string; readonly extra?: ReadonlyArray<string> } = {}
    ) =>
      Workers.sensorPipeline(name, { brokers, prefix, group: `${prefix}${group}`, shutdownTimeoutMs: 10_000, ...more })
  }
}
type Deployment = ReturnType<typeof fresh>

/** The first reading's event time; readings are 100 ms apart in event time. */
const start = 1_700_000_000_000

/** A fresh deployment with its input topic, and `count` readings over `sensors` sensors: 10% malformed, 5% late. */
const deployment = (count: number, sensors: number) =>
  Effect.gen(function* () {
    const d = fresh()
    yield* Kafka.use((kafka) => kafka.createTopics([{ name: d.topics.readings.name, partitions }]))
    const readings = SensorData.generate({
      count,
      sensors,
      badRatio: 0.1,
      lateRatio: 0.05,
      startMs: start,
      stepMs: 100,
      lateByMs,
      topic: d.topics.readings.name
    })
    return { d, readings }
  })

/** A port nobody listens on now (the worker binds it a moment later). */
const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const bound = server.address()
    const port = typeof bound === "object" && bound !== null ? bound.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const getJson = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    const body: unknown = await res.json()
    return { status: res.status, body }
  })

/** The group's committed offsets against the input's ends. */
const committedToEnd = (d: Deployment, group: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.readings.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(`${d.prefix}${group}`, d.topics.readings.name)).map((c) => [c.partition, c.offset])
    )
    return highs.every((h) => committed.get(h.partition) === h.high)
  })

const stopGracefully = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("30 seconds")
    assert.strictEqual(exit.code, 0, `${worker.name} exit code after SIGTERM\n${worker.output().slice(-3000)}`)
  })

/** Readings per sensor that the table must hold: every one that is not malformed, late ones included. */
const countsOf = (sent: ReadonlyArray<ProducerRecord>) => {
  const counts = new Map<string, number>()
  for (const r of sent) {
    if (r.headers?.[SensorData.badHeader] !== undefined) continue
    const key = new TextDecoder().decode(r.key ?? new Uint8Array())
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return counts
}

const TableEntry = Schema.Struct({ partition: Schema.Int, key: Schema.String, value: Schema.Int })
type TableEntry = typeof TableEntry.Type
const TableBody = Schema.Struct({ tasks: Schema.Array(Schema.Int), entries: Schema.Array(TableEntry) })
const Elsewhere = Schema.Struct({ partition: Schema.Int, owner: Schema.NullOr(Schema.String) })

/** `/tables/sensor-counts` of one worker: its tasks and their entries. */
const tableOf = (port: number) =>
  Effect.map(getJson(`http://127.0.0.1:${port}/tables/sensor-counts?limit=100000`), ({ status, body }) => {
    assert.strictEqual(status, 200, JSON.stringify(body))
    return Schema.decodeUnknownSync(TableBody)(body)
  })

const asMap = (entries: ReadonlyArray<TableEntry>) => new Map(entries.map((e) => [e.key, e.value]))

const readAll = (topic: string) =>
  Reader.foldToEnd<Array<ConsumerRecord>>(topic, [], (acc, r) => {
    acc.push(r)
    return acc
  }).pipe(Effect.timeout("60 seconds"))

const decoder = new TextDecoder()

/**
 * One reading per partition, `afterMs` past the last event time sent, from a sensor whose key lands there: each task's
 * stream time moves past every window of the readings before, so they all close (as a steady stream would do).
 */
const closers = (topic: string, lastMs: number) =>
  Array.from({ length: partitions }, (_, partition): ProducerRecord => {
    let n = 0
    while (partitionForKey(bytes(`closer-${n}`), partitions) !== partition) n++
    const sensor = `closer-${n}`
    const timestamp = (lastMs + Sensors.windowMs * 2 + Sensors.defaultGraceMs) / 1000
    return {
      topic,
      key: bytes(sensor),
      value: bytes(JSON.stringify({ sensor_id: sensor, temperature: 20, humidity: 50, timestamp }))
    }
  })

/** Sends in chunks, keeping where each record went. */
const sendAll = (records: ReadonlyArray<ProducerRecord>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const written: Array<RecordMetadata> = []
    for (let i = 0; i < records.length; i += 5_000) written.push(...(yield* kafka.send(records.slice(i, i + 5_000))))
    return written
  })

/** How many times each string occurs. */
const tally = (items: Iterable<string>) => {
  const m = new Map<string, number>()
  for (const x of items) m.set(x, (m.get(x) ?? 0) + 1)
  return m
}

/**
 * The outputs against the reference: every malformed reading a dead letter, every late one in the late topic, every
 * other valid one in an emitted window (each window's aggregate the reference's), the table returned for the caller
 * to compare. `exact`: nothing more (exactly-once, or at-least-once without a crash). `atLeastOnce`, after a crash:
 * what was processed again may be there twice: a window emitted twice, or with readings counted twice (its count
 * over the reference's, its min and max the same), and readings in the late topic that were re-delivered after
 * their window had closed (the restored stream time is past it; the window had counted them).
 */
const verify = (
  d: Deployment,
  sent: ReadonlyArray<ProducerRecord>,
  written: ReadonlyArray<RecordMetadata>,
  port: number,
  mode: "exact" | "atLeastOnce" = "exact"
) =>
  Effect.gen(function* () {
    const truth = Reference.expected(sent, written, Sensors.defaultGraceMs)
    const dead = yield* readAll(d.topics.deadLetters)
    const deadAt = tally(
      dead.map((r) => `${header(r.headers, "sluice.source.partition")}:${header(r.headers, "sluice.source.offset")}`)
    )
    assert.deepStrictEqual(new Set(deadAt.keys()), truth.bad, "the dead letters are the malformed readings")
    for (const r of dead) assert.isDefined(header(r.headers, SensorData.badHeader), "a dead letter keeps its headers")

    const late = yield* readAll(d.topics.late)
    const lateSent = written.flatMap((m, i) => {
      const r = sent[i]
      return r !== undefined && truth.late.has(`${m.partition}:${m.offset}`) ? [r] : []
    })
    const lateValues = new Set(late.map((r) => decoder.decode(r.value ?? new Uint8Array())))
    const expectedLate = new Set(lateSent.map((r) => decoder.decode(r.value ?? new Uint8Array())))
    assert.deepStrictEqual(
      [...expectedLate].filter((v) => !lateValues.has(v)),
      [],
      "every late reading is in the late topic"
    )
    if (mode === "exact") assert.deepStrictEqual(lateValues, expectedLate, "and nothing else")
    const markedLate = sent.filter((r) => r.headers?.[SensorData.lateHeader] !== undefined).length
    assert.strictEqual(truth.late.size, markedLate, "late by the reference: the ones the generator made late")
    for (const r of late) {
      assert.match(header(r.headers, "sluice.late.window") ?? "", /^\d+-\d+$/)
      assert.isAbove(Number(header(r.headers, "sluice.late.ms")), -1)
    }

    const emitted = (yield* readAll(d.topics.aggregates.name)).map((r) => {
      const decoded = Topic.decode(d.topics.aggregates, r)
      if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
      return decoded.success.value
    })
    const times = tally(emitted.map((w) => `${w.sensor_id}@${w.window_start}`))
    const wrong: Array<string> = []
    for (const w of emitted) {
      const t = truth.windows.get(`${w.sensor_id}@${w.window_start}`)
      if (t === undefined) {
        wrong.push(`${w.sensor_id}@${w.window_start}: not a closed window`)
        continue
      }
      const exact = w.count === t.count && Math.abs(w.mean_temperature - t.sum / t.count) <= 1e-9
      if (
        w.window_end !== t.start + Sensors.windowMs ||
        w.min_temperature !== t.min ||
        w.max_temperature !== t.max ||
        (mode === "exact" ? !exact : w.count < t.count)
      )
        wrong.push(`${w.sensor_id}@${w.window_start}: ${JSON.stringify(w)} vs ${JSON.stringify(t)}`)
    }
    assert.deepStrictEqual(wrong.slice(0, 10), [], "every emitted window is the reference's")
    const missing = [...truth.windows.keys()].filter((k) => !times.has(k))
    assert.deepStrictEqual(missing.slice(0, 10), [], "every closed window is emitted")
    const counted = [...times.keys()].reduce((n, k) => n + (truth.windows.get(k)?.count ?? 0), 0)
    assert.strictEqual(counted, truth.inClosedWindows, "each valid reading that is not late is in one window")

    const table = asMap((yield* tableOf(port)).entries)
    const enriched = yield* readAll(d.topics.enriched.name)
    return {
      truth,
      duplicateWindows: emitted.length - times.size,
      duplicateDeadLetters: dead.length - deadAt.size,
      duplicateLate: late.length - truth.late.size,
      windowsOver: emitted.filter((w) => w.count > (truth.windows.get(`${w.sensor_id}@${w.window_start}`)?.count ?? 0))
        .length,
      enriched: enriched.length,
      table,
      summary:
        `${sent.length} readings: ${truth.bad.size} malformed -> ${dead.length} dead letters; ${truth.late.size} late -> ${late.length} in ${d.topics.late}; ` +
        `${truth.windows.size} windows closed -> ${emitted.length} emitted (${emitted.length - times.size} twice), holding ${counted} readings; ` +
        `${truth.valid} valid -> ${enriched.length} enriched; ${table.size} sensors in the table`
    }
  })

/**
 * 20,000 readings (10% malformed, 5% late) under `guarantee`: the first 8,000 are there when a worker starts; once it
 * has committed some, the next 8,000 arrive at ~2,500/s, and it is killed -9 once its group has committed 10,000; a
 * second worker finishes the job with the rest. (With all 16,000 there at the start, the worker could commit all of
 * them between two polls of the group's offsets, and the kill would find nothing left to do.)
 */
const killedHalfway = (guarantee: "at_least_once" | "exactly_once") =>
  Effect.gen(function* () {
    const { d, readings } = yield* deployment(20_000, 200)
    const run = { extra: ["--guarantee", guarantee] }
    const upFront = 8_000
    const cut = 16_000
    // Half of the readings are there before the worker starts: it works in large steps, each sent in several chunks.
    const written = [...(yield* sendAll(readings.slice(0, upFront)))]
    const [p1, p2] = [yield* freePort, yield* freePort]
    const first = yield* d.worker("first", "killed", { ...run, http: `127.0.0.1:${p1}` })
    const committed = Effect.map(
      Kafka.use((k) => k.committedOffsets(`${d.prefix}killed`, d.topics.readings.name)),
      (offsets) => offsets.reduce((n, o) => n + o.offset, 0)
    )
    let atKill = 0
    yield* Workers.waitUntil(
      "the first worker committed readings",
      "90 seconds",
      Effect.map(committed, (n) => n > 0),
      [first]
    )
    const paced = yield* Effect.forkScoped(
      Effect.gen(function* () {
        for (let i = upFront; i < cut; i += 250) {
          written.push(...(yield* sendAll(readings.slice(i, Math.min(i + 250, cut)))))
          yield* Effect.sleep("100 millis")
        }
      })
    )
    yield* Workers.waitUntil(
      "the first worker committed 10,000 readings",
      "90 seconds",
      Effect.map(committed, (n) => {
        atKill = n
        return n >= 10_000
      }),
      [first]
    )
    yield* first.signal("SIGKILL")
    assert.strictEqual((yield* first.exit("10 seconds")).signal, "SIGKILL")
    yield* Fiber.join(paced)
    const rest = [...readings.slice(cut), ...closers(d.topics.readings.name, start + 20_000 * 100)]
    written.push(...(yield* sendAll(rest)))
    const sent = [...readings.slice(0, cut), ...rest]
    // The group gives up on the killed member after its session timeout; the second fences its producers.
    const second = yield* d.worker("second", "killed", { ...run, http: `127.0.0.1:${p2}` })
    yield* Workers.waitUntil("the second worker committed everything", "120 seconds", committedToEnd(d, "killed"), [
      second
    ])
    const v = yield* verify(d, sent, written, p2, guarantee === "exactly_once" ? "exact" : "atLeastOnce")
    assert.isBelow(atKill, cut, "killed with readings still to process")
    yield* stopGracefully(second)
    return { v, atKill }
  })

layer(KafkaJs.layer({ brokers, clientId: "sluice-sensors-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("sensor pipeline workers against a real broker", (it) => {
  it.effect(
    "20,000 readings, 5% late and 10% malformed, at-least-once: each valid one in one window, malformed ones dead letters, late ones in the late topic",
    () =>
      Effect.gen(function* () {
        const { d, readings } = yield* deployment(20_000, 200)
        const sent = [...readings, ...closers(d.topics.readings.name, start + 20_000 * 100)]
        const written = yield* sendAll(sent)
        const port = yield* freePort
        const started = Date.now()
        const worker = yield* d.worker("worker", "alo", { http: `127.0.0.1:${port}` })
        yield* Workers.waitUntil("the worker committed everything", "90 seconds", committedToEnd(d, "alo"), [worker])
        const ms = Date.now() - started
        const v = yield* verify(d, sent, written, port)
        console.log(`at-least-once, one worker, ${ms} ms from start to the last commit: ${v.summary}`)
        assert.deepStrictEqual(v.table, v.truth.counts, "the table holds every valid reading, late ones included")
        // No crash: at-least-once re-delivers nothing, so everything is there once.
        assert.strictEqual(v.duplicateWindows, 0)
        assert.strictEqual(v.duplicateDeadLetters, 0)
        assert.strictEqual(v.duplicateLate, 0)
        assert.strictEqual(v.enriched, v.truth.valid)
        assert.approximately(v.truth.bad.size, 2_000, 200)
        assert.approximately(v.truth.late.size, 1_000, 150)
        yield* stopGracefully(worker)
      }).pipe(Effect.scoped),
    180_000
  )

  it.effect(
    "20,000 readings, exactly-once, the worker killed -9 halfway: every output once for a read_committed reader",
    () =>
      Effect.gen(function* () {
        const { v, atKill } = yield* killedHalfway("exactly_once")
        console.log(`exactly-once, killed -9 after ${atKill} committed readings, then a second worker: ${v.summary}`)
        assert.strictEqual(v.duplicateWindows, 0, "each window once")
        assert.strictEqual(v.duplicateDeadLetters, 0, "each dead letter once")
        assert.strictEqual(v.duplicateLate, 0, "each late reading once")
        assert.strictEqual(v.enriched, v.truth.valid, "each reading enriched once")
        assert.deepStrictEqual(v.table, v.truth.counts, "each reading counted once")
      }).pipe(Effect.scoped),
    240_000
  )

  it.effect(
    "20,000 readings, at-least-once, the worker killed -9 halfway: nothing lost, every valid reading in a window at least once",
    () =>
      Effect.gen(function* () {
        const { v, atKill } = yield* killedHalfway("at_least_once")
        console.log(
          `at-least-once, killed -9 after ${atKill} committed readings, then a second worker: ${v.summary}; ` +
            `${v.windowsOver} window result(s) over the truth, ${v.duplicateLate} re-delivered reading(s) in the late topic`
        )
        assert.isAtLeast(v.enriched, v.truth.valid)
        const under = [...v.truth.counts].filter(([sensor, n]) => (v.table.get(sensor) ?? 0) < n)
        assert.deepStrictEqual(under, [], "no count below the truth")
      }).pipe(Effect.scoped),
    240_000
  )

  it.effect(
    "restart: the count table and the open windows are restored from their changelogs, the input is not read again, windows closing after it are right",
    () =>
      Effect.gen(function* () {
        const { d, readings } = yield* deployment(10_000, 50)
        // The restart falls in the middle of a window: its readings come from both runs.
        const half = readings.slice(0, 5_250)
        const written = yield* sendAll(half)
        const [p1, p2] = [yield* freePort, yield* freePort]
        const first = yield* d.worker("first", "restart", { http: `127.0.0.1:${p1}` })
        yield* Workers.waitUntil("the first worker committed everything", "90 seconds", committedToEnd(d, "restart"), [
          first
        ])
        const before = new Set(
          (yield* readAll(d.topics.aggregates.name)).map((r) => decoder.decode(r.value ?? new Uint8Array()))
        )
        yield* stopGracefully(first)

        const rest = [...readings.slice(5_250), ...closers(d.topics.readings.name, start + 10_000 * 100)]
        written.push(...(yield* sendAll(rest)))
        const second = yield* d.worker("second", "restart", { http: `127.0.0.1:${p2}` })
        yield* Workers.waitUntil("the second worker committed everything", "90 seconds", committedToEnd(d, "restart"), [
          second
        ])
        const sent = [...half, ...rest]
        const v = yield* verify(d, sent, written, p2)
        const restores = second.restores()
        const restored = (store: string) => restores.filter((r) => r.store === store)
        console.log(
          `restart after ${half.length} readings: the second worker restored ${restores.map((r) => `${r.store}[${r.task}]: ${r.records}`).join(", ")}; ${v.summary}`
        )
        assert.strictEqual(restored("sensor-counts").length, partitions, "each task's counts restored")
        assert.strictEqual(restored("sensor-windows").length, partitions, "each task's windows restored")
        assert.isTrue(restores.every((r) => r.from === 0 && r.records > 0))
        assert.deepStrictEqual(v.table, v.truth.counts, "the counts go on from the restored ones")
        assert.strictEqual(v.enriched, v.truth.valid, "the input was not read again: each reading enriched once")
        assert.strictEqual(v.duplicateWindows, 0, "no window emitted twice")
        const after = v.truth.windows.size - before.size
        assert.isAbove(after, 0, "windows closed after the restart")
        const cut = start + (half.length - 1) * 100
        const spanning = [...v.truth.windows.values()].filter((w) => w.start <= cut && cut < w.start + Sensors.windowMs)
        assert.isNotEmpty(spanning, "windows with readings from both runs, emitted right (verify)")
        yield* stopGracefully(second)
      }).pipe(Effect.scoped),
    180_000
  )

  it.effect(
    "two workers split the sensors: the union of their tables is the single worker's; a key is served by its owner, 421 elsewhere",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: d.topics.readings.name, partitions }])
        const sent = SensorData.generate({
          count: 5_000,
          sensors: 40,
          badRatio: 0.1,
          lateRatio: 0.05,
          stepMs: 100,
          lateByMs,
          topic: d.topics.readings.name
        })
        yield* kafka.send(sent)
        const truth = countsOf(sent)

        const [p1, p2, p3] = [yield* freePort, yield* freePort, yield* freePort]
        const single = yield* d.worker("single", "one", { http: `127.0.0.1:${p1}` })
        yield* Workers.waitUntil("the single worker committed everything", "60 seconds", committedToEnd(d, "one"), [
          single
        ])
        const alone = yield* tableOf(p1)
        assert.deepStrictEqual(alone.tasks, [0, 1, 2, 3])
        assert.deepStrictEqual(asMap(alone.entries), truth, "the single worker's table is the recomputation")
        yield* stopGracefully(single)

        const a = yield* d.worker("worker-a", "two", { http: `127.0.0.1:${p2}` })
        const b = yield* d.worker("worker-b", "two", { http: `127.0.0.1:${p3}` })
        const split = Effect.sync(() => {
          const [ta, tb] = [a.assignments().at(-1) ?? [], b.assignments().at(-1) ?? []]
          return ta.length > 0 && tb.length > 0 && new Set([...ta, ...tb]).size === partitions
        })
        yield* Workers.waitUntil("the two workers split the tasks", "60 seconds", split, [a, b])
        yield* Workers.waitUntil("the two workers committed everything", "60 seconds", committedToEnd(d, "two"), [a, b])
        const [ta, tb] = [yield* tableOf(p2), yield* tableOf(p3)]
        assert.isEmpty(
          ta.tasks.filter((t) => tb.tasks.includes(t)),
          "each task on one worker"
        )
        const union = new Map([...asMap(ta.entries), ...asMap(tb.entries)])
        assert.strictEqual(ta.entries.length + tb.entries.length, union.size, "no sensor in both tables")
        assert.deepStrictEqual(union, asMap(alone.entries))
        assert.isNotEmpty(ta.entries)
        assert.isNotEmpty(tb.entries)

        // A sensor of worker-a's tasks: worker-a answers with its count, worker-b says where it is.
        const sensor = ta.entries[0]!.key
        const owned = yield* getJson(`http://127.0.0.1:${p2}/tables/sensor-counts/${sensor}`)
        assert.strictEqual(owned.status, 200)
        assert.deepInclude(owned.body, {
          key: sensor,
          value: truth.get(sensor),
          partition: partitionForKey(new TextEncoder().encode(sensor), partitions)
        })
        const elsewhere = yield* getJson(`http://127.0.0.1:${p3}/tables/sensor-counts/${sensor}`)
        assert.strictEqual(elsewhere.status, 421, JSON.stringify(elsewhere.body))
        const { owner, partition } = Schema.decodeUnknownSync(Elsewhere)(elsewhere.body)
        assert.strictEqual(partition, ta.entries[0]!.partition)
        assert.isString(owner, "names the owner")
        console.log(
          `two workers: worker-a has tasks ${ta.tasks.join(",")} (${ta.entries.length} sensors), worker-b ${tb.tasks.join(",")} ` +
            `(${tb.entries.length} sensors); ${sensor} from worker-b: 421, owner ${owner}`
        )
        yield* Effect.all([stopGracefully(a), stopGracefully(b)], { concurrency: "unbounded" })
      }).pipe(Effect.scoped),
    180_000
  )
})
