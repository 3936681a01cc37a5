/**
 * Windowed aggregations on the in-memory broker. The finals of every kind of window are checked against a reference
 * written here, independently of the implementation: collect the records, judge each with a record-by-record stream
 * time as Window.ts documents, and compute every window's aggregate from scratch.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Metric, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Aggregator from "../src/Aggregator.ts"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import { RecordRejected } from "../src/Errors.ts"
import { Kafka } from "../src/Kafka.ts"
import { layerWith, MemoryBroker } from "../src/MemoryBroker.ts"
import * as Metrics from "../src/Metrics.ts"
import { bytes, type ConsumerRecord, header, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import * as Window from "../src/Window.ts"
import * as Windows from "../src/Windows.ts"
import { captureLogs } from "./support/captureLogs.ts"
import { settle, stopOnTestClock } from "./support/runtime.ts"

const Reading = Schema.Struct({ id: Schema.Int, sensor: Schema.String, temp: Schema.Int, at: Schema.Int })
type Reading = typeof Reading.Type
const readings = Topic.make("readings", { key: Codec.string, value: Codec.json(Reading) })

const Stats = Schema.Struct({
  sensor: Schema.String,
  start: Schema.Int,
  end: Schema.Int,
  count: Schema.Int,
  sum: Schema.Finite,
  min: Schema.NullOr(Schema.Finite),
  max: Schema.NullOr(Schema.Finite),
  mean: Schema.NullOr(Schema.Finite),
  distinct: Schema.Int
})
type Stats = typeof Stats.Type
const Result = Schema.Struct({ ...Stats.fields, final: Schema.Boolean })
const results = Topic.make("results", { key: Codec.string, value: Codec.json(Result) })

const stats = Aggregator.struct({
  count: Aggregator.count,
  sum: Aggregator.sum,
  min: Aggregator.min,
  max: Aggregator.max,
  mean: Aggregator.mean,
  distinct: Aggregator.mapInput(Aggregator.distinctCount, (t: number) => String(t % 7))
})

const windowed = (
  windows: Window.Kind,
  grace: number,
  extra: { readonly emit?: "final" | "changes"; readonly closeOnWallClock?: Duration.Input } = {},
  /** A reading that fails its whole step after the step's readings were added (the step is then re-run one by one). */
  poison: (r: Reading) => boolean = () => false
) => {
  const agg = Windows.aggregate({
    name: "stats",
    windows,
    grace,
    key: Codec.string,
    aggregator: stats,
    lateTopic: "late",
    ...extra,
    result: (out, sensor, window, value, final) =>
      out.emit(results, sensor, { sensor, start: window.start, end: window.end, ...value, final })
  })
  return Topology.make({
    name: "win",
    input: readings,
    stores: [...agg.stores],
    timers: [...agg.timers],
    process: (records, ctx) =>
      Effect.suspend(() => {
        const w = agg.open(ctx)
        const r = Batch.forEach(records, (rec, out) => w.add(out, rec.record, rec.key, rec.value.temp, rec.value.at))
        if (records.some((rec) => poison(rec.value))) {
          return Effect.fail(new RecordRejected({ tag: "Poison", reason: "a poisoned reading in the step" }))
        }
        return Effect.succeed(Batch.concat([r, w.close()]))
      })
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Records and the reference
// ---------------------------------------------------------------------------------------------------------------

interface Sent extends Reading {
  readonly partition: number
}

const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/**
 * Timestamps on the edges of the rules at stream time `max`. Sliding: the last that is late and the first that is
 * not, then the last timestamp whose window reaches back to it, and the first whose window does not. Session: the
 * same first two, then the last that joins the session and one just over the gap. Fixed windows: one that moves
 * stream time exactly onto a window's close, then the window's last ms (late, by 0 ms) and the next window's first.
 */
const edges = (kind: Window.Kind, grace: number, max: number): ReadonlyArray<number> => {
  const onTime = max - grace
  switch (kind._tag) {
    case "Sliding":
      return [onTime - 1, onTime, onTime + kind.size - 1, onTime + kind.size]
    case "Session":
      return [onTime - 1, onTime, onTime + kind.gap, onTime + 2 * kind.gap + 1]
    default: {
      const advance = kind._tag === "Tumbling" ? kind.size : kind.advance
      const end = Math.ceil((max - grace - kind.size) / advance) * advance + kind.size
      return [end + grace, end - 1, end]
    }
  }
}

/**
 * `n` readings of 5 sensors on 2 partitions, about 20 ms apart with pauses, most out of order by up to 300 ms and
 * some by seconds, and now and then a few on the edge of lateness (`edges`); then a reading per partition far
 * ahead, which closes every other window.
 */
const generate = (seed: number, n: number, kind: Window.Kind, grace: number): ReadonlyArray<Sent> => {
  const random = mulberry32(seed)
  const out: Array<Sent> = []
  const max = [-1, -1]
  const push = (sensor: number, at: number) => {
    const partition = sensor % 2
    out.push({ id: out.length, sensor: `s${sensor}`, temp: Math.floor(random() * 40) - 10, at, partition })
    max[partition] = Math.max(max[partition]!, at)
  }
  let clock = 1_000
  while (out.length < n) {
    clock += random() < 0.04 ? 1_500 : 20
    const sensor = Math.floor(random() * 5)
    const r = random()
    if (r < 0.05 && max[sensor % 2]! > 0) {
      for (const at of edges(kind, grace, max[sensor % 2]!)) push(sensor, Math.max(0, at))
      continue
    }
    const disorder = r < 0.11 ? 800 + Math.floor(random() * 2_000) : Math.floor(random() * 300)
    push(sensor, Math.max(0, clock - disorder))
  }
  for (const partition of [0, 1]) {
    out.push({ id: out.length, sensor: `ahead${partition}`, temp: 0, at: 1_000_000, partition })
  }
  return out
}

const summary = (sensor: string, start: number, end: number, temps: ReadonlyArray<number>): Stats => {
  const sum = temps.reduce((a, b) => a + b, 0)
  return {
    sensor,
    start,
    end,
    count: temps.length,
    sum,
    min: Math.min(...temps),
    max: Math.max(...temps),
    mean: sum / temps.length,
    distinct: new Set(temps.map((t) => String(t % 7))).size
  }
}

interface Expected {
  /** The windows closed by the end, with their aggregates. */
  readonly finals: Array<Stats>
  /** Every window, closed or not, with the aggregate of every record that counted in it. */
  readonly all: Array<Stats>
  /** Late records: id → the windows they missed. */
  readonly late: Map<number, string>
}

const reference = (kind: Window.Kind, grace: number, records: ReadonlyArray<Sent>): Expected => {
  const expected: Expected = { finals: [], all: [], late: new Map() }
  for (const partition of [0, 1]) {
    let streamTime = -1
    const fixed = new Map<string, { sensor: string; start: number; end: number; temps: Array<number> }>()
    const counted: Array<Sent> = []
    for (const r of records.filter((x) => x.partition === partition)) {
      streamTime = Math.max(streamTime, r.at)
      if (kind._tag === "Tumbling" || kind._tag === "Hopping") {
        const advance = kind._tag === "Tumbling" ? kind.size : kind.advance
        const missed: Array<string> = []
        for (let start = 0; start <= r.at; start += advance) {
          const end = start + kind.size
          if (end <= r.at) continue
          if (streamTime >= end + grace) missed.push(`${start}-${end}`)
          else {
            const id = `${r.sensor}|${start}`
            const window = fixed.get(id) ?? { sensor: r.sensor, start, end, temps: [] }
            window.temps.push(r.temp)
            fixed.set(id, window)
          }
        }
        if (missed.length > 0) expected.late.set(r.id, missed.join(","))
      } else if (r.at + 1 + grace <= streamTime) {
        const start = kind._tag === "Sliding" ? Math.max(0, r.at - kind.size + 1) : r.at
        expected.late.set(r.id, `${start}-${r.at + 1}`)
      } else counted.push(r)
    }
    const add = (s: Stats, closesAt: number) => {
      expected.all.push(s)
      if (streamTime >= closesAt) expected.finals.push(s)
    }
    if (kind._tag === "Tumbling" || kind._tag === "Hopping") {
      for (const w of fixed.values()) add(summary(w.sensor, w.start, w.end, w.temps), w.end + grace)
    }
    for (const sensor of new Set(counted.map((r) => r.sensor))) {
      const mine = counted.filter((r) => r.sensor === sensor)
      if (kind._tag === "Sliding") {
        for (const t of new Set(mine.map((r) => r.at))) {
          const start = Math.max(0, t - kind.size + 1)
          const temps = mine.filter((r) => r.at >= start && r.at <= t).map((r) => r.temp)
          add(summary(sensor, start, t + 1, temps), t + 1 + grace)
        }
      }
      if (kind._tag === "Session") {
        const sorted = [...mine].sort((a, b) => a.at - b.at)
        let group: Array<Sent> = []
        const flush = () => {
          const last = group[group.length - 1]!.at
          add(
            summary(
              sensor,
              group[0]!.at,
              last + 1,
              group.map((r) => r.temp)
            ),
            last + kind.gap + grace + 1
          )
        }
        for (const r of sorted) {
          if (group.length > 0 && r.at - group[group.length - 1]!.at > kind.gap) {
            flush()
            group = []
          }
          group.push(r)
        }
        if (group.length > 0) flush()
      }
    }
  }
  return expected
}

const byWindow = (a: Stats, b: Stats) =>
  a.sensor < b.sensor ? -1 : a.sensor > b.sensor ? 1 : a.start - b.start || a.end - b.end

// ---------------------------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------------------------

// Small batches, so that records on an edge often come in a later step than the record that moved stream time.
const memory = layerWith({ maxBatchSize: 7 })
const options: Runner.RunOptions = { commitEveryRecords: 1 }

const send = (records: ReadonlyArray<Sent>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.send(
      records.map(({ partition, ...reading }) => ({
        topic: "readings",
        partition,
        key: bytes(reading.sensor),
        value: bytes(JSON.stringify(reading)),
        timestamp: 0
      }))
    )
  })

/** Waits until the group has committed `total` records of the input (each step commits: no time needs to pass). */
const committed = (total: number) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* settle(
      `${total} records committed`,
      Effect.map(
        kafka.committedOffsets("win", "readings").pipe(Effect.orElseSucceed(() => [])),
        (c) => c.reduce((n, x) => n + x.offset, 0) === total
      )
    )
  })

const topic = (name: string) =>
  Effect.gen(function* () {
    const broker = yield* MemoryBroker
    return yield* broker.records(name)
  })

const emitted = Effect.map(topic("results"), (records) =>
  records.map((r) => Schema.decodeUnknownSync(Schema.fromJsonString(Result))(text(r.value ?? new Uint8Array())))
)

const finals = Effect.map(emitted, (all) =>
  all
    .filter((r) => r.final)
    .map(({ final: _, ...s }): Stats => s)
    .sort(byWindow)
)

const lateOf = (records: ReadonlyArray<ConsumerRecord>) =>
  new Map(
    records.map((r) => [
      Schema.decodeUnknownSync(Schema.fromJsonString(Reading))(text(r.value ?? new Uint8Array())).id,
      header(r.headers, "sluice.late.window") ?? ""
    ])
  )

const setUp = Effect.gen(function* () {
  const kafka = yield* Kafka
  yield* kafka.createTopics([{ name: "readings", partitions: 2 }])
})

/**
 * The store's entries per task at the end: its stream time, and the open windows of the reading far ahead (tumbling:
 * 1; hopping: 3, those starting at 999,300, 999,600 and 999,900; sliding: its bucket, with two index entries;
 * session: 1, with its index entry). The state of every closed window is gone.
 */
const kinds: ReadonlyArray<{
  readonly name: string
  readonly kind: Window.Kind
  readonly grace: number
  readonly live: number
}> = [
  // The stream time, and each open window (fixed windows have no index entries).
  { name: "tumbling", kind: Window.tumbling("1 second"), grace: 200, live: 1 + 1 },
  { name: "hopping", kind: Window.hopping("1 second", "300 millis"), grace: 200, live: 1 + 3 },
  { name: "sliding", kind: Window.sliding("500 millis"), grace: 200, live: 1 + 3 },
  { name: "session", kind: Window.session("150 millis"), grace: 100, live: 1 + 2 }
]

/** The keys of the store's changelog whose last record is not a deletion, per partition (task). */
const liveState = Effect.map(topic("win-stats-changelog"), (records) => {
  const last = new Map<string, { readonly partition: number; readonly deleted: boolean }>()
  for (const r of records)
    last.set(`${r.partition}:${text(r.key!)}`, { partition: r.partition, deleted: r.value === null })
  const live = [0, 0]
  for (const { partition, deleted } of last.values()) if (!deleted) live[partition]!++
  return live
})

describe("Windows", () => {
  for (const { name, kind, grace, live } of kinds) {
    it.effect(`${name}: the finals and late records are the reference's`, () =>
      Effect.gen(function* () {
        yield* setUp
        const records = generate(7, 300, kind, grace)
        const expected = reference(kind, grace, records)
        const fiber = yield* Effect.forkChild(Runner.run(windowed(kind, grace), options))
        yield* send(records)
        yield* committed(records.length)
        const got = yield* finals
        assert.isAbove(expected.finals.length, 40)
        assert.isAbove(expected.late.size, 5)
        assert.deepStrictEqual(got, expected.finals.sort(byWindow))
        assert.deepStrictEqual(lateOf(yield* topic("late")), expected.late)
        assert.deepStrictEqual(yield* liveState, [live, live])
        yield* stopOnTestClock(fiber)
      }).pipe(Effect.provide(memory))
    )

    it.effect(`${name}: a step that fails after its adds is re-run one by one, and no reading counts twice`, () =>
      Effect.gen(function* () {
        yield* setUp
        const records = generate(11, 300, kind, grace)
        const poisoned = (r: Reading) => r.id % 37 === 5
        const expected = reference(
          kind,
          grace,
          records.filter((r) => !poisoned(r))
        )
        const fiber = yield* Effect.forkChild(Runner.run(windowed(kind, grace, {}, poisoned), options))
        yield* send(records)
        yield* committed(records.length)
        assert.isAbove(expected.finals.length, 40)
        assert.deepStrictEqual(yield* finals, expected.finals.sort(byWindow))
        assert.strictEqual((yield* topic("readings.dlq")).length, records.filter(poisoned).length)
        yield* stopOnTestClock(fiber)
      }).pipe(Effect.provide(memory))
    )

    it.effect(`${name}: a restart in the middle gives the same finals`, () =>
      Effect.gen(function* () {
        yield* setUp
        const records = generate(11, 300, kind, grace)
        const expected = reference(kind, grace, records)
        // Right before a late record: after the restart, only the restored stream time says that it is late.
        const split = records.findIndex((r) => r.id >= 150 && expected.late.has(r.id))
        const first = yield* Effect.forkChild(Runner.run(windowed(kind, grace), options))
        yield* send(records.slice(0, split))
        yield* committed(split)
        yield* stopOnTestClock(first)
        const second = yield* Effect.forkChild(Runner.run(windowed(kind, grace), options))
        yield* send(records.slice(split))
        yield* committed(records.length)
        assert.deepStrictEqual(yield* finals, expected.finals.sort(byWindow))
        assert.deepStrictEqual(lateOf(yield* topic("late")), expected.late)
        yield* stopOnTestClock(second)
      }).pipe(Effect.provide(memory))
    )
  }

  it.effect("emit changes: the last change of every window is its aggregate, and nothing is final", () =>
    Effect.gen(function* () {
      yield* setUp
      const kind = Window.hopping("1 second", "300 millis")
      const records = generate(3, 300, kind, 200)
      const expected = reference(kind, 200, records)
      const fiber = yield* Effect.forkChild(Runner.run(windowed(kind, 200, { emit: "changes" }), options))
      yield* send(records)
      yield* committed(records.length)
      const all = yield* emitted
      assert.isTrue(all.every((r) => !r.final))
      const last = new Map<string, Stats>()
      for (const { final: _, ...s } of all) last.set(`${s.sensor}|${s.start}`, s)
      assert.deepStrictEqual([...last.values()].sort(byWindow), expected.all.sort(byWindow))
      // Coalesced: a window changes at most once per step, so never more often than it has records.
      const changes = new Map<string, number>()
      for (const s of all) changes.set(`${s.sensor}|${s.start}`, (changes.get(`${s.sensor}|${s.start}`) ?? 0) + 1)
      for (const s of expected.all) assert.isAtMost(changes.get(`${s.sensor}|${s.start}`)!, s.count)
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("emit changes: once per window per step, and nothing at the close", () =>
    Effect.gen(function* () {
      yield* setUp
      const fiber = yield* Effect.forkChild(
        Runner.run(windowed(Window.tumbling("1 second"), 0, { emit: "changes" }), options)
      )
      const reading = (id: number, temp: number, at: number): Sent => ({ id, sensor: "a", temp, at, partition: 0 })
      yield* send([reading(0, 1, 100), reading(1, 3, 200)])
      yield* committed(2)
      yield* send([reading(2, 5, 1500)])
      yield* committed(3)
      yield* send([reading(3, 7, 2500)])
      yield* committed(4)
      const got = (yield* emitted).map((r) => `${r.start}-${r.end}:${r.count}:${r.sum}:${r.final}`)
      assert.deepStrictEqual(got, ["0-1000:2:4:false", "1000-2000:1:5:false", "2000-3000:1:7:false"])
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("a late record goes to the late topic with its bytes, headers and why; it is counted and logged", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      yield* setUp
      const lateBefore = (yield* Metric.value(Metrics.lateFor("readings"))).count
      const fiber = yield* Effect.forkChild(Runner.run(windowed(Window.tumbling("1 second"), 100), options))
      const kafka = yield* Kafka
      yield* send([
        { id: 0, sensor: "a", temp: 1, at: 500, partition: 0 },
        { id: 1, sensor: "a", temp: 2, at: 1200, partition: 0 }
      ])
      const value = bytes(JSON.stringify({ id: 2, sensor: "a", temp: 3, at: 900 }))
      yield* kafka.send([
        { topic: "readings", partition: 0, key: bytes("a"), value, timestamp: 42, headers: { trace: bytes("x") } }
      ])
      yield* committed(3)
      const late = yield* topic("late")
      assert.strictEqual(late.length, 1)
      const record = late[0]!
      assert.deepStrictEqual([text(record.key!), text(record.value!), record.timestamp], ["a", text(value), 42])
      assert.deepStrictEqual(
        ["trace", "sluice.late.window", "sluice.late.ms", "sluice.late.stream-time"].map((h) =>
          header(record.headers, h)
        ),
        ["x", "0-1000", "100", "1200"]
      )
      // Stream time 1200 closed [0, 1000) at 1100: the record at 900 missed it, 100 ms after.
      assert.strictEqual((yield* Metric.value(Metrics.lateFor("readings"))).count - lateBefore, 1)
      assert.include(
        logs.text(),
        "Debug window stats: 1 late record(s) (stream time 1200, grace 100 ms) to late: readings[0]@2"
      )
      // The window's final does not have it.
      yield* send([{ id: 3, sensor: "a", temp: 0, at: 5000, partition: 0 }])
      yield* committed(4)
      assert.deepStrictEqual(
        (yield* finals).map((s) => `${s.start}-${s.end}:${s.count}`),
        ["0-1000:1", "1000-2000:1"]
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory), Effect.provide(logs.layer))
  })

  it.effect("a hopping record that missed some of its windows counts in the others, and is late for the rest", () =>
    Effect.gen(function* () {
      yield* setUp
      const fiber = yield* Effect.forkChild(Runner.run(windowed(Window.hopping("1 second", "500 millis"), 0), options))
      yield* send([
        { id: 0, sensor: "a", temp: 1, at: 1600, partition: 0 },
        { id: 1, sensor: "a", temp: 2, at: 1200, partition: 0 },
        { id: 2, sensor: "b", temp: 0, at: 2600, partition: 0 },
        { id: 3, sensor: "a", temp: 4, at: 1400, partition: 0 },
        { id: 4, sensor: "a", temp: 0, at: 9000, partition: 0 }
      ])
      yield* committed(5)
      // At stream time 1600, [500, 1500) had closed, [1000, 2000) had not; at 2600 both had, [1000, 2000) 600 ms ago.
      const late = yield* topic("late")
      assert.deepStrictEqual(
        lateOf(late),
        new Map([
          [1, "500-1500"],
          [3, "500-1500,1000-2000"]
        ])
      )
      assert.deepStrictEqual(
        late.map((r) => header(r.headers, "sluice.late.ms")),
        ["100", "600"]
      )
      assert.deepStrictEqual(
        (yield* finals).map((s) => `${s.sensor}:${s.start}-${s.end}:${s.count}:${s.sum}`),
        ["a:1000-2000:2:3", "a:1500-2500:1:1", "b:2000-3000:1:0", "b:2500-3500:1:0"]
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect(
    "session: a record that comes gap + grace after a session's last one, in a later step, still joins it",
    () =>
      Effect.gen(function* () {
        yield* setUp
        const fiber = yield* Effect.forkChild(Runner.run(windowed(Window.session("150 millis"), 100), options))
        yield* send([{ id: 0, sensor: "a", temp: 1, at: 1000, partition: 0 }])
        yield* committed(1)
        // Stream time 1250: a's session [1000, 1001) is open until 1000 + 150 + 100 + 1.
        yield* send([{ id: 1, sensor: "b", temp: 1, at: 1250, partition: 0 }])
        yield* committed(2)
        yield* send([{ id: 2, sensor: "a", temp: 2, at: 1150, partition: 0 }])
        yield* committed(3)
        assert.deepStrictEqual(yield* finals, [])
        yield* send([{ id: 3, sensor: "c", temp: 0, at: 9000, partition: 0 }])
        yield* committed(4)
        assert.deepStrictEqual(
          (yield* finals).map((s) => `${s.sensor}:${s.start}-${s.end}:${s.count}`),
          ["a:1000-1151:2", "b:1250-1251:1"]
        )
        yield* stopOnTestClock(fiber)
      }).pipe(Effect.provide(memory))
  )

  it.effect("a negative timestamp is dead-lettered, and leaves stream time alone", () =>
    Effect.gen(function* () {
      yield* setUp
      const fiber = yield* Effect.forkChild(Runner.run(windowed(Window.tumbling("1 second"), 0), options))
      yield* send([
        { id: 0, sensor: "a", temp: 1, at: 100, partition: 0 },
        { id: 1, sensor: "a", temp: 1, at: -5, partition: 0 },
        { id: 2, sensor: "a", temp: 1, at: 1000, partition: 0 }
      ])
      yield* committed(3)
      const dead = yield* topic("readings.dlq")
      assert.deepStrictEqual(
        dead.map((r) => header(r.headers, "sluice.error.tag")),
        ["InvalidTimestamp"]
      )
      assert.include(header(dead[0]!.headers, "sluice.error.message") ?? "", "-5 is not a whole number of epoch ms")
      assert.deepStrictEqual(
        (yield* finals).map((s) => `${s.start}-${s.end}:${s.count}`),
        ["0-1000:1"]
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )

  it.effect("closeOnWallClock closes an idle task's windows on the wall clock; older records are late then", () =>
    Effect.gen(function* () {
      yield* setUp
      const topology = windowed(Window.tumbling("60 seconds"), 10_000, { closeOnWallClock: "5 seconds" })
      const fiber = yield* Effect.forkChild(Runner.run(topology, options))
      yield* send([
        { id: 0, sensor: "a", temp: 1, at: 1_000, partition: 0 },
        { id: 1, sensor: "a", temp: 2, at: 2_000, partition: 0 }
      ])
      yield* committed(2)
      // [0, 60 s) closes at 70 s of stream time; no record comes, the wall clock gets there.
      yield* TestClock.adjust("65 seconds")
      for (let i = 0; i < 500; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(yield* finals, [])
      yield* TestClock.adjust("5 seconds")
      yield* settle(
        "the final on the wall clock",
        Effect.map(finals, (f) => f.length === 1)
      )
      assert.deepStrictEqual(
        (yield* finals).map((s) => `${s.sensor}:${s.start}-${s.end}:${s.count}`),
        ["a:0-60000:2"]
      )
      // Stream time is the wall clock now: a record of 30 s is late.
      yield* send([{ id: 2, sensor: "a", temp: 3, at: 30_000, partition: 0 }])
      yield* committed(3)
      const late = yield* topic("late")
      assert.deepStrictEqual(
        late.map((r) => [header(r.headers, "sluice.late.window"), header(r.headers, "sluice.late.stream-time")]),
        [["0-60000", "70000"]]
      )
      yield* stopOnTestClock(fiber)
    }).pipe(Effect.provide(memory))
  )
})
