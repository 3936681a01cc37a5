/**
 * A JSON pipeline's topology (src/Pipeline.ts) on the in-memory broker and the test clock, with a `Sink.collector`
 * for ClickHouse or Postgres and profiles from a function: the seed's windows against an independent recomputation,
 * late events, malformed events as dead letters with their reasons, the pipelines without aggregation or
 * enrichment, Postgres rows with profiles kept as hashes, exactly-once from the sink's offsets, and what each
 * guarantee means for each output.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as CachedLookup from "@sluice/core/CachedLookup"
import * as DeadLetter from "@sluice/core/DeadLetter"
import { Kafka } from "@sluice/core/Kafka"
import type { Lookup } from "@sluice/core/Lookup"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, type ProducerRecord, text } from "@sluice/core/Record"
import type * as Redis from "@sluice/core/Redis"
import * as Sink from "@sluice/core/Sink"
import { Effect, Metric, Result } from "effect"
import { TestClock } from "effect/testing"
import * as Data from "../src/ClickstreamData.ts"
import * as Sessions from "../src/ClickstreamSessions.ts"
import * as Pipeline from "../src/Pipeline.ts"
import * as Spec from "../src/PipelineSpec.ts"
import * as PipelineTable from "../src/PipelineTable.ts"
import * as Random from "../src/Random.ts"
import * as Effects from "./support/effects.ts"
import * as Reference from "./support/pipelineReference.ts"

const seedText = readFileSync(new URL("../../../examples/seed-004-pipeline.json", import.meta.url), "utf8")
const seed = Result.getOrThrow(Spec.parse(seedText))
const prefix = "t-"
const topic = `${prefix}clickstream`
/** Users 1..knownUsers have a profile. */
const knownUsers = 15
const userNumber = (user: string) => Number(user.slice("user_".length))

const profiles = () => {
  const asked: Array<ReadonlyArray<string>> = []
  const lookup: Lookup<string, Pipeline.Profile> = {
    strategy: "test",
    getMany: (ids) =>
      Effect.sync(() => {
        asked.push(ids)
        return ids.map((id) => (userNumber(id) <= knownUsers ? Data.profileFor(userNumber(id)) : undefined))
      })
  }
  return { asked, cached: CachedLookup.make(lookup, { maxEntries: 1_000, ttl: "10 minutes" }) }
}

const runWith = <V>(
  p: Spec.Pipeline,
  records: ReadonlyArray<ProducerRecord>,
  dialect: PipelineTable.Dialect<V>,
  source: {
    readonly asked: ReadonlyArray<ReadonlyArray<string>>
    readonly cached: Pipeline.Parts<V, never>["profiles"]
  } = profiles()
) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topic, partitions: 3 }])
    yield* kafka.send(records)
    const collector = Sink.collector<PipelineTable.Row<V>>({ name: "rows" })
    const names = Pipeline.named(p, prefix)
    const topology = Pipeline.topology(p, names, {
      sink: collector.sink,
      dialect,
      profiles: source.cached,
      partitions: 3
    })
    yield* Effects.runToEnd(topology, "pipeline", topic)
    const broker = yield* MemoryBroker
    return {
      rows: collector.rows(),
      asked: source.asked,
      sent: yield* broker.records(topic),
      deadLetters: yield* broker.records(DeadLetter.topicFor(topic)),
      late: yield* broker.records(names.late)
    }
  }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))

const run = (p: Spec.Pipeline, records: ReadonlyArray<ProducerRecord>) => runWith(p, records, PipelineTable.clickhouse)

const raw = (key: string | null, value: string): ProducerRecord => ({
  topic,
  key: key === null ? null : bytes(key),
  value: bytes(value)
})

/** Events the pipeline must refuse, each with what its dead letter's reason says. */
const malformed: ReadonlyArray<readonly [ProducerRecord, RegExp]> = [
  [raw("bad-json", "{not json"), /invalid JSON/],
  [raw("bad-array", "[1, 2]"), /Expected object/],
  [raw("bad-time", JSON.stringify({ user_id: "user_1", timestamp: "yesterday" })), /timestamp must be an ISO 8601/],
  [raw("bad-user", JSON.stringify({ user_id: null, timestamp: "2026-12-01T00:10:00Z" })), /user_id must be a string/],
  [raw(null, JSON.stringify({ user_id: "user_2", timestamp: "2026-12-01T00:10:00Z" })), /record key/]
]

const column = <V>(row: PipelineTable.Row<V>, name: string) => row[name]
const ofRows = (rows: ReadonlyArray<PipelineTable.Row<number>>) =>
  new Map(
    rows.map((r) => [Reference.rowId(String(column(r, "key")), Number(column(r, "window_start"))), { ...r }] as const)
  )

describe("a JSON pipeline (in-memory broker)", () => {
  it.effect("the seed's request: a row per key and window, each once, as an independent recomputation has it", () =>
    Effect.gen(function* () {
      // In time order but for a jitter of up to 4 s either way: out of order within the grace, never late.
      const jitter = Random.make(11)
      const events = Data.generate({ count: 1500, users: 20, sessions: 150, seed: 11, inTimeOrder: true })
        .map((e) => ({ e, at: Date.parse(e.timestamp) + jitter.int(-4_000, 4_000) }))
        .sort((a, b) => a.at - b.at)
        .map(({ e }) => e)
      // Events of the first minute again, after the data has moved on: late.
      const stale = events.slice(0, 3).map((e) => ({ ...e, event_id: `${e.event_id}-late` }))
      const records = [
        ...Data.records(events, Sessions.named(prefix)),
        ...malformed.map(([r]) => r),
        ...Data.records(stale, Sessions.named(prefix))
      ]
      const missingBefore = (yield* Metric.value(Pipeline.profilesMissing)).count
      const out = yield* run(seed, records)

      const valid = out.sent.filter((r) => r.key !== null && !text(r.key).startsWith("bad-"))
      const truth = Reference.expected(
        valid.map((r) => ({
          partition: r.partition,
          offset: r.offset,
          key: text(r.key!),
          event: JSON.parse(text(r.value!))
        })),
        { windowMs: 60_000, graceMs: 10_000, hasProfile: (u) => userNumber(u) <= knownUsers }
      )
      assert.isAbove(truth.rows.size, 100)
      assert.strictEqual(out.rows.length, truth.rows.size, "each window written once")
      assert.deepStrictEqual<ReadonlyMap<string, unknown>>(ofRows(out.rows), truth.rows)

      // The stale events are late: counted nowhere, in the late topic as they came.
      assert.strictEqual(truth.late.size, stale.length)
      assert.sameMembers(
        out.late.map((r) => JSON.parse(text(r.value!)).event_id),
        stale.map((e) => e.event_id)
      )

      assert.strictEqual(out.deadLetters.length, malformed.length)
      for (const [record, reason] of malformed) {
        const letter = out.deadLetters.find((d) => text(d.value!) === text(record.value!))
        assert.isDefined(letter, text(record.value!))
        assert.match(text(letter!.headers[DeadLetter.headers.errorMessage]!), reason)
      }

      const unknown = [...events, ...stale].filter((e) => userNumber(e.user_id) > knownUsers).length
      assert.strictEqual((yield* Metric.value(Pipeline.profilesMissing)).count - missingBefore, unknown)
      // One lookup per batch, each user asked once while the cache holds it.
      const asked = out.asked.flat()
      assert.strictEqual(new Set(asked).size, asked.length)
    })
  )

  it.effect("without aggregation, each event is a row with its profile; a record needs no key or time", () =>
    Effect.gen(function* () {
      const file = JSON.parse(seedText)
      const p = Result.getOrThrow(Spec.decode({ ...file, processing: { enrichment: file.processing.enrichment } }))
      const events = Data.generate({ count: 120, users: 20, sessions: 10, seed: 12 })
      const out = yield* run(p, [...Data.records(events, Sessions.named(prefix)), ...malformed.map(([r]) => r)])
      // Without windows, only the events that are not objects or have no user to look up are refused.
      assert.strictEqual(out.deadLetters.length, 3)
      assert.strictEqual(out.rows.length, events.length + 2)
      const byEvent = new Map(out.rows.map((r) => [String(column(r, "event")), r]))
      for (const e of events) {
        const row = byEvent.get(JSON.stringify(e))
        assert.isDefined(row, e.event_id)
        const n = userNumber(e.user_id)
        assert.strictEqual(column(row!, "lookup_key"), e.user_id)
        assert.strictEqual(column(row!, "key"), e.session_id)
        assert.strictEqual(column(row!, "profile_found"), n <= knownUsers ? 1 : 0)
        assert.strictEqual(column(row!, "profile"), n <= knownUsers ? JSON.stringify(Data.profileFor(n)) : null)
      }
      const sent = new Map(out.sent.map((r) => [`${r.partition}:${r.offset}`, r]))
      for (const row of out.rows) {
        const source = sent.get(`${column(row, "source_partition")}:${column(row, "source_offset")}`)!
        assert.strictEqual(column(row, "kafka_timestamp") as number, Math.floor(source.timestamp / 1000))
        assert.strictEqual(column(row, "event"), JSON.stringify(JSON.parse(text(source.value!))))
        assert.sameMembers(
          Object.keys(row),
          PipelineTable.columns(p, PipelineTable.clickhouse).map((c) => c.name)
        )
      }
    })
  )

  it.effect("without processing, every JSON object is a row as it came", () =>
    Effect.gen(function* () {
      const p = Result.getOrThrow(Spec.decode({ ...JSON.parse(seedText), processing: {} }))
      const events = Data.generate({ count: 50, users: 5, sessions: 5, seed: 13 })
      const out = yield* run(p, [...Data.records(events, Sessions.named(prefix)), ...malformed.map(([r]) => r)])
      assert.strictEqual(out.deadLetters.length, 2, "only what is not a JSON object")
      assert.strictEqual(out.rows.length, events.length + malformed.length - 2)
      assert.deepStrictEqual(out.asked, [])
      for (const row of out.rows)
        assert.sameMembers(
          Object.keys(row),
          PipelineTable.columns(p, PipelineTable.clickhouse).map((c) => c.name)
        )
    })
  )

  it.effect("a row has the columns of the metrics asked for", () =>
    Effect.gen(function* () {
      const file = JSON.parse(seedText)
      const p = Result.getOrThrow(
        Spec.decode({ ...file, processing: { aggregation: { window_size_seconds: 60, metrics: ["event_count"] } } })
      )
      const events = Data.generate({ count: 200, users: 10, sessions: 10, seed: 14, inTimeOrder: true })
      const out = yield* run(p, Data.records(events, Sessions.named(prefix)))
      assert.isAbove(out.rows.length, 0)
      for (const row of out.rows)
        assert.sameMembers(Object.keys(row), ["window_start", "window_end", "key", "event_count"])
      assert.deepStrictEqual(
        PipelineTable.columns(p, PipelineTable.clickhouse).map((c) => c.name),
        ["window_start", "window_end", "key", "event_count"]
      )
    })
  )

  it.effect("unique_users without an enrichment needs the user field, and counts distinct users exactly", () =>
    Effect.gen(function* () {
      const file = JSON.parse(seedText)
      const p = Result.getOrThrow(
        Spec.decode({
          ...file,
          processing: { aggregation: { window_size_seconds: 60, metrics: ["unique_users"], user_field: "who" } }
        })
      )
      const at = (s: number) => new Date(Date.UTC(2026, 11, 1, 0, 0, s)).toISOString()
      const out = yield* run(p, [
        raw("k", JSON.stringify({ who: "a", timestamp: at(1) })),
        raw("k", JSON.stringify({ who: 7, timestamp: at(2) })),
        raw("k", JSON.stringify({ who: "a", timestamp: at(3) })),
        raw("k", JSON.stringify({ user_id: "b", timestamp: at(4) })),
        raw("k", JSON.stringify({ who: "c", timestamp: at(100) }))
      ])
      assert.deepStrictEqual(out.rows, [
        { window_start: 1_796_083_200, window_end: 1_796_083_260, key: "k", unique_users: 2 }
      ])
      assert.lengthOf(out.deadLetters, 1)
      assert.match(
        text(out.deadLetters[0]!.headers[DeadLetter.headers.errorMessage]!),
        /unique_users: who must be a string/
      )
    })
  )
})

/** The seed's pipeline with a Postgres output (and `processing` as given, the seed's by default). */
const intoPostgres = (processing?: unknown) => {
  const file = JSON.parse(seedText)
  return Result.getOrThrow(
    Spec.decode({
      ...file,
      ...(processing === undefined ? {} : { processing }),
      output: { type: "postgres", table: "aggregates" }
    })
  )
}

const stringFields = (profile: object) =>
  Object.fromEntries(Object.entries(profile).map(([k, v]) => [k, String(v)] as const))

/**
 * What Redis could hold for each user: users 1..knownUsers a profile, as a hash (odd users) or a string of JSON
 * (even users); the next three something that is no profile; the others nothing.
 */
const stored = (user: string): Redis.Value | null => {
  const n = userNumber(user)
  if (n <= knownUsers)
    return n % 2 === 1
      ? { type: "hash", fields: stringFields(Data.profileFor(n)) }
      : { type: "string", value: JSON.stringify(Data.profileFor(n)) }
  if (n === knownUsers + 1) return { type: "other", redisType: "list" }
  if (n === knownUsers + 2) return { type: "string", value: "not json" }
  if (n === knownUsers + 3) return { type: "string", value: "[1, 2]" }
  return null
}
const unreadable = (user: string) => userNumber(user) > knownUsers && userNumber(user) <= knownUsers + 3

/** `stored` decoded as the CLI decodes what `RedisLookup.values` reads. */
const redisProfiles = () => {
  const lookup: Lookup<string, Pipeline.Profile | Pipeline.ProfileInvalid> = {
    strategy: "test",
    getMany: (ids) =>
      Effect.sync(() =>
        ids.map((id) => {
          const value = stored(id)
          return value === null ? undefined : Pipeline.decodeProfile(value, `user:profile:${id}`)
        })
      )
  }
  return { asked: [], cached: CachedLookup.make(lookup, { maxEntries: 1_000, ttl: "10 minutes" }) }
}

describe("a JSON pipeline into Postgres (in-memory broker)", () => {
  it.effect("windows: timestamptz bounds, as the recomputation has them; profiles from hashes and strings", () =>
    Effect.gen(function* () {
      const p = intoPostgres()
      const jitter = Random.make(21)
      const events = Data.generate({ count: 1200, users: 22, sessions: 120, seed: 21, inTimeOrder: true })
        .map((e) => ({ e, at: Date.parse(e.timestamp) + jitter.int(-4_000, 4_000) }))
        .sort((a, b) => a.at - b.at)
        .map(({ e }) => e)
      const before = {
        missing: (yield* Metric.value(Pipeline.profilesMissing)).count,
        invalid: (yield* Metric.value(Pipeline.profilesInvalid)).count
      }
      const out = yield* runWith(
        p,
        Data.records(events, Sessions.named(prefix)),
        PipelineTable.postgres,
        redisProfiles()
      )
      const truth = Reference.expected(
        out.sent.map((r) => ({
          partition: r.partition,
          offset: r.offset,
          key: text(r.key!),
          event: JSON.parse(text(r.value!))
        })),
        { windowMs: 60_000, graceMs: 10_000, hasProfile: (u) => stored(u) !== null && !unreadable(u) }
      )
      assert.isAbove(truth.rows.size, 100)
      assert.strictEqual(out.rows.length, truth.rows.size, "each window written once")
      const seconds = (v: unknown) => {
        assert.instanceOf(v, Date)
        return v instanceof Date ? v.getTime() / 1000 : Number.NaN
      }
      assert.deepStrictEqual<ReadonlyMap<string, unknown>>(
        new Map(
          out.rows.map((r) => {
            const row = { ...r, window_start: seconds(r.window_start), window_end: seconds(r.window_end) }
            return [Reference.rowId(String(r.key), row.window_start), row] as const
          })
        ),
        truth.rows
      )
      // Hashes and strings both enrich (the recomputation counts both); the three keys that hold something else
      // are counted apart from the absent ones.
      assert.isAbove(
        events.filter((e) => userNumber(e.user_id) <= knownUsers && userNumber(e.user_id) % 2 === 1).length,
        0
      )
      assert.strictEqual(
        (yield* Metric.value(Pipeline.profilesInvalid)).count - before.invalid,
        events.filter((e) => unreadable(e.user_id)).length
      )
      assert.strictEqual(
        (yield* Metric.value(Pipeline.profilesMissing)).count - before.missing,
        events.filter((e) => userNumber(e.user_id) > knownUsers + 3).length
      )
      assert.isAbove(events.filter((e) => unreadable(e.user_id)).length, 0)
    })
  )

  it.effect("events, exactly-once: rows and offsets written together, tasks start from the sink's offsets", () =>
    Effect.gen(function* () {
      const p = intoPostgres({ enrichment: JSON.parse(seedText).processing.enrichment })
      const kafka = yield* Kafka
      const broker = yield* MemoryBroker
      yield* kafka.createTopics([{ name: topic, partitions: 3 }])
      const events = Data.generate({ count: 150, users: 22, sessions: 30, seed: 22 })
      yield* kafka.send(Data.records(events.slice(0, 100), Sessions.named(prefix)))
      const collector = Sink.collector<PipelineTable.Row<Date | boolean>>({ name: "rows", offsets: true })
      const topology = Pipeline.topology(p, Pipeline.named(p, prefix), {
        sink: collector.sink,
        dialect: PipelineTable.postgres,
        profiles: redisProfiles().cached,
        partitions: 3,
        startFromSink: Pipeline.delivery(p, "exactly_once").sinkOffsets
      })
      yield* Effects.runToEnd(topology, "first", topic)
      assert.lengthOf(collector.rows(), 100)
      const ends = new Map((yield* kafka.offsets(topic)).map((o) => [`${topic}:${o.partition}`, o.high]))
      assert.deepStrictEqual(collector.offsets(), ends, "the sink stored the end offsets with the rows")

      const sent = new Map((yield* broker.records(topic)).map((r) => [`${r.partition}:${r.offset}`, r]))
      for (const row of collector.rows()) {
        const record = sent.get(`${row.source_partition}:${row.source_offset}`)!
        const event = JSON.parse(text(record.value!))
        assert.deepStrictEqual(row.kafka_timestamp, new Date(record.timestamp))
        assert.strictEqual(row.event, JSON.stringify(event))
        const value = stored(event.user_id)
        const profile = value === null || unreadable(event.user_id) ? undefined : Pipeline.decodeProfile(value, "")
        assert.strictEqual(row.profile_found, profile !== undefined)
        assert.strictEqual(row.profile, profile === undefined ? null : JSON.stringify(profile))
        assert.sameMembers(
          Object.keys(row),
          PipelineTable.columns(p, PipelineTable.postgres).map((c) => c.name)
        )
      }

      // A group with no commits at all: the tasks still start where the sink's offsets say.
      yield* kafka.send(Data.records(events.slice(100), Sessions.named(prefix)))
      yield* Effects.runUntil(
        topology,
        "fresh",
        "the new events' rows",
        Effect.sync(() => collector.rows().length >= 150)
      )
      for (let i = 0; i < 3; i++) yield* TestClock.adjust("1 second")
      assert.lengthOf(collector.rows(), 150, "nothing written twice")
      assert.strictEqual(new Set(collector.rows().map((r) => `${r.source_partition}:${r.source_offset}`)).size, 150)
    }).pipe(Effect.provide(layerWith({ maxBatchSize: 100 })))
  )

  it("windows cannot start from the sink's offsets: their state is in Kafka", () => {
    const p = intoPostgres()
    assert.throws(
      () =>
        Pipeline.topology(p, Pipeline.named(p), {
          sink: Sink.collector<PipelineTable.Row<Date | boolean>>({ offsets: true }).sink,
          dialect: PipelineTable.postgres,
          profiles: redisProfiles().cached,
          startFromSink: true
        }),
      /windows keep their state in Kafka/
    )
  })
})

describe("named", () => {
  it("--topic-prefix prefixes the table as identifier characters, in lowercase for Postgres", () => {
    assert.strictEqual(Pipeline.named(seed, "Staging-").table, "Staging_clickstream_aggregates")
    assert.strictEqual(Pipeline.named(intoPostgres(), "Staging-").table, "staging_aggregates")
    assert.strictEqual(Pipeline.named(intoPostgres()).table, "aggregates")
  })
})

describe("what each guarantee means for each output", () => {
  it("exactly-once is Postgres's transaction only without windows; Kafka's otherwise", () => {
    const events = intoPostgres({})
    const windows = intoPostgres()
    const clickhouse = seed
    assert.deepStrictEqual(
      [clickhouse, windows, events].map((p) => {
        const { runner, sinkOffsets } = Pipeline.delivery(p, "exactly_once")
        return { runner, sinkOffsets }
      }),
      [
        { runner: "exactly_once", sinkOffsets: false },
        { runner: "exactly_once", sinkOffsets: false },
        { runner: "at_least_once", sinkOffsets: true }
      ]
    )
    for (const p of [clickhouse, windows, events])
      assert.deepStrictEqual(
        { ...Pipeline.delivery(p, "at_least_once"), text: "" },
        { runner: "at_least_once", sinkOffsets: false, text: "" }
      )
    assert.include(Pipeline.delivery(events, "exactly_once").text, "one Postgres transaction (public.sluice_offsets)")
    assert.include(Pipeline.delivery(windows, "exactly_once").text, "one Kafka transaction per commit")
    assert.include(Pipeline.delivery(windows, "at_least_once").text, "inserts nothing (primary key")
    assert.include(Pipeline.delivery(clickhouse, "at_least_once").text, "ReplacingMergeTree")
  })
})

describe("decodeProfile", () => {
  it("a string of a JSON object or a hash is a profile; anything else is ProfileInvalid, naming the key", () => {
    assert.deepStrictEqual(Pipeline.decodeProfile({ type: "string", value: '{"tier": "pro", "n": 1}' }, "k"), {
      tier: "pro",
      n: 1
    })
    assert.deepStrictEqual(Pipeline.decodeProfile({ type: "hash", fields: { tier: "pro", n: "1" } }, "k"), {
      tier: "pro",
      n: "1"
    })
    const invalid: ReadonlyArray<readonly [Redis.Value, RegExp]> = [
      [
        { type: "other", redisType: "list" },
        /^Redis user:1 is no profile: a list, neither a string of JSON nor a hash$/
      ],
      [{ type: "string", value: "{not json" }, /a string that is not JSON/],
      [{ type: "string", value: "[1]" }, /a string of JSON array, not an object/],
      [{ type: "string", value: "null" }, /a string of JSON null, not an object/],
      [{ type: "string", value: "7" }, /a string of JSON number, not an object/]
    ]
    for (const [value, says] of invalid) {
      const decoded = Pipeline.decodeProfile(value, "user:1")
      assert.instanceOf(decoded, Pipeline.ProfileInvalid, JSON.stringify(value))
      assert.match(decoded instanceof Pipeline.ProfileInvalid ? decoded.message : "", says)
    }
  })
})

describe("event time", () => {
  it("reads ISO 8601 (no zone: UTC) and epoch seconds or milliseconds", () => {
    assert.strictEqual(Pipeline.eventTime("2026-12-01T10:00:00.123Z"), Date.UTC(2026, 11, 1, 10, 0, 0, 123))
    assert.strictEqual(Pipeline.eventTime("2026-12-01T10:00:00.123456"), Date.UTC(2026, 11, 1, 10, 0, 0, 123))
    assert.strictEqual(Pipeline.eventTime("2026-12-01 10:00:00+01:00"), Date.UTC(2026, 11, 1, 9))
    assert.strictEqual(Pipeline.eventTime("2026-12-01T10:00-05:30"), Date.UTC(2026, 11, 1, 15, 30))
    assert.strictEqual(Pipeline.eventTime(1_796_119_200), Date.UTC(2026, 11, 1, 10))
    assert.strictEqual(Pipeline.eventTime(1_796_119_200_123), Date.UTC(2026, 11, 1, 10, 0, 0, 123))
    for (const bad of ["2026-02-30T00:00:00Z", "2026-12-01", "yesterday", "2026-12-01T24:00:00Z", 5, null, undefined])
      assert.isUndefined(Pipeline.eventTime(bad), String(bad))
  })
})
