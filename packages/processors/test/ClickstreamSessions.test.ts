/**
 * clickstream-sessions on the in-memory broker and the test clock, with `Sink.collector`s for ClickHouse and
 * Postgres and profiles from a function: enrichment (missing profiles included), one lookup per batch, session
 * metrics against a recomputation, a restart that restores the session store, and the lookup-failure policies.
 */
import { assert, describe, it } from "@effect/vitest"
import * as DeadLetter from "@sluice/core/DeadLetter"
import { LookupError, Unavailable } from "@sluice/core/Errors"
import { Kafka } from "@sluice/core/Kafka"
import type { Lookup } from "@sluice/core/Lookup"
import { layerWith, MemoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, text } from "@sluice/core/Record"
import * as Sink from "@sluice/core/Sink"
import { Effect, Layer, Metric } from "effect"
import * as Data from "../src/ClickstreamData.ts"
import * as Sessions from "../src/ClickstreamSessions.ts"
import * as Tables from "../src/ClickstreamTables.ts"
import * as Effects from "./support/effects.ts"

const topics = Sessions.named("t-")
const group = "clickstream-sessions"
const partitions = 3
/** Users 1..knownUsers have a profile; the generator's other users do not. */
const knownUsers = 15

interface PgRow {
  readonly offset: number
  readonly partition: number
  readonly session: string
  readonly events: number
}

/** Profiles of the known users; records every call; fails (retryably, like Redis down) while `down`. */
const profileSource = () => {
  const calls: Array<ReadonlyArray<string>> = []
  const state = { down: 0 }
  const lookup: Lookup<string, Sessions.UserProfile> = {
    strategy: "test",
    getMany: (ids) =>
      Effect.suspend(() => {
        calls.push(ids)
        if (state.down > 0) {
          state.down--
          return Effect.fail(new LookupError({ strategy: "test", reason: new Unavailable({ message: "Redis down" }) }))
        }
        return Effect.succeed(
          ids.map((id) => {
            const n = Number(id.slice("user_".length))
            return n <= knownUsers ? Data.profileFor(n) : undefined
          })
        )
      })
  }
  return { lookup, calls, state }
}

const setup = (options: { readonly policy?: Sessions.LookupPolicy } = {}) => {
  const source = profileSource()
  const clickhouse = Sink.collector<Tables.ClickHouseRow>({ name: "clickhouse" })
  const postgres = Sink.collector<PgRow>({ name: "postgres" })
  // A new topology value per run, as a restarted process has: nothing may survive in it between runs.
  const topology = () =>
    Sessions.topology({
      topics,
      ...(options.policy === undefined ? {} : { onLookupFailure: options.policy }),
      sinks: {
        clickhouse: clickhouse.sink,
        postgres: postgres.sink,
        toClickHouse: Tables.toClickHouse,
        toPostgres: (e) => ({
          offset: e.record.offset,
          partition: e.record.partition,
          session: e.event.session_id,
          events: e.session.events
        })
      }
    })
  const env = Layer.mergeAll(
    layerWith({ maxBatchSize: 100 }),
    Sessions.UserProfiles.fromLookup(source.lookup, { maxEntries: 1_000, ttl: "1 minute" })
  )
  return { source, clickhouse, postgres, topology, env }
}

/** A worker's run: started, left to process and commit everything there is, then stopped. */
const runToEnd = (topology: ReturnType<ReturnType<typeof setup>["topology"]>) =>
  Effects.runToEnd(topology, group, topics.events.name)

const produce = (events: ReadonlyArray<Sessions.ClickEvent>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topics.events.name, partitions }])
    yield* kafka.send(Data.records(events, topics))
  })

const missingCount = Effect.map(Metric.value(Sessions.profilesMissing), (s) => Number(s.count))

/** The metrics of each session in its last row (by event count): what the store held after its last event. */
const finalSessions = (rows: ReadonlyArray<Tables.ClickHouseRow>) => {
  const last = new Map<string, Tables.ClickHouseRow>()
  for (const r of rows) {
    const seen = last.get(r.session_id)
    if (seen === undefined || r.session_event_count > seen.session_event_count) last.set(r.session_id, r)
  }
  return new Map(
    Array.from(last, ([id, r]) => [
      id,
      {
        user_id: r.user_id,
        start: r.session_start * 1000 + r.session_start_ms,
        last: r.session_start * 1000 + r.session_start_ms + r.session_duration_ms,
        events: r.session_event_count,
        pages: r.session_pages_viewed
      }
    ])
  )
}

const positions = (rows: ReadonlyArray<{ readonly partition: number; readonly offset: number }>) =>
  new Set(rows.map((r) => `${r.partition}:${r.offset}`))

describe("ClickstreamSessions.applyEvent", () => {
  const event = (page: string, type = "page_view", ts = "2026-12-01T00:00:10.000Z"): Sessions.ClickEvent => ({
    ...Data.generate({ count: 1, users: 1, sessions: 1 })[0]!,
    event_type: type,
    page_url: page,
    timestamp: ts
  })
  it("counts events, distinct pages of page views, and start and end whatever the order", () => {
    const t = (s: number) => Date.UTC(2026, 11, 1, 0, 0, s)
    let s = Sessions.applyEvent(undefined, event("/a"), t(10), 0)!
    s = Sessions.applyEvent(s, event("/b"), t(30), 1)!
    s = Sessions.applyEvent(s, event("/a"), t(5), 2)!
    s = Sessions.applyEvent(s, event("/c", "click"), t(20), 3)!
    assert.deepStrictEqual(s, {
      user_id: "user_1",
      start: t(5),
      last: t(30),
      events: 4,
      pages: ["/a", "/b"],
      offset: 3
    })
  })
  it("a re-delivered event (offset at or below the last applied) changes nothing", () => {
    const s = Sessions.applyEvent(undefined, event("/a"), 1, 7)!
    assert.isUndefined(Sessions.applyEvent(s, event("/b"), 2, 7))
    assert.isUndefined(Sessions.applyEvent(s, event("/b"), 2, 3))
  })
})

describe("clickstream-sessions (in-memory broker)", () => {
  it.effect(
    "every event is enriched and written to both sinks once per offset; missing profiles get the defaults, counted",
    () => {
      const { source, clickhouse, postgres, topology, env } = setup()
      return Effect.gen(function* () {
        const events = Data.generate({ count: 600, users: 20, sessions: 40, seed: 3 })
        const missingBefore = yield* missingCount
        yield* produce(events)
        yield* runToEnd(topology())

        const rows = clickhouse.rows()
        assert.strictEqual(rows.length, 600)
        assert.strictEqual(
          positions(rows.map((r) => ({ partition: r.source_partition, offset: r.source_offset }))).size,
          600
        )
        assert.strictEqual(positions(postgres.rows()).size, 600)
        assert.strictEqual(postgres.rows().length, 600)

        const byId = new Map(events.map((e) => [e.event_id, e]))
        let missing = 0
        for (const row of rows) {
          const e = byId.get(row.event_id)!
          const n = Number(e.user_id.slice("user_".length))
          const profile = n <= knownUsers ? Data.profileFor(n) : Sessions.defaultProfile(e.user_id)
          if (n > knownUsers) missing++
          assert.deepStrictEqual(
            {
              session: row.session_id,
              page: row.page_url,
              ms: row.timestamp * 1000 + row.timestamp_ms,
              name: row.user_name,
              segment: row.user_segment,
              tier: row.user_tier,
              value: row.user_lifetime_value,
              found: row.profile_found
            },
            {
              session: e.session_id,
              page: e.page_url,
              ms: Date.parse(e.timestamp),
              name: profile.name,
              segment: profile.segment,
              tier: profile.tier,
              value: profile.lifetime_value,
              found: n <= knownUsers ? 1 : 0
            },
            `event ${e.event_id}`
          )
        }
        assert.isAbove(missing, 0, "the data has users without a profile")
        assert.strictEqual((yield* missingCount) - missingBefore, missing, "every defaulted event is counted")

        // One lookup per batch, of distinct users only, and only of users the cache did not already hold.
        const asked = source.calls.flat()
        assert.strictEqual(new Set(asked).size, asked.length, "no user asked twice (the cache holds them for 1 min)")
        assert.strictEqual(new Set(asked).size, 20)

        assert.deepStrictEqual(finalSessions(rows), Data.recompute(events))
      }).pipe(Effect.provide(env))
    }
  )

  it.effect("a restart restores the session store from its changelog: metrics go on from where they were", () => {
    const { clickhouse, topology, env } = setup()
    return Effect.gen(function* () {
      const first = Data.generate({ count: 300, users: 10, sessions: 12, seed: 5 })
      // The same sessions, later: their events must add to what the first run counted.
      const second = Data.generate({ count: 300, users: 10, sessions: 12, seed: 6, startTime: Date.UTC(2026, 11, 2) })
      yield* produce(first)
      yield* runToEnd(topology())
      assert.deepStrictEqual(finalSessions(clickhouse.rows()), Data.recompute(first))
      yield* produce(second)
      yield* runToEnd(topology())
      assert.strictEqual(clickhouse.rows().length, 600)
      assert.deepStrictEqual(finalSessions(clickhouse.rows()), Data.recompute([...first, ...second]))
    }).pipe(Effect.provide(env))
  })

  it.effect(
    "Redis down, policy wait (the default): the batch waits and retries; nothing lost, nothing defaulted",
    () => {
      const { source, clickhouse, topology, env } = setup()
      return Effect.gen(function* () {
        const events = Data.generate({ count: 200, users: 10, sessions: 10, seed: 8 })
        source.state.down = 6
        yield* produce(events)
        yield* runToEnd(topology())
        assert.strictEqual(source.state.down, 0, "the failures happened")
        assert.strictEqual(clickhouse.rows().length, 200)
        assert.isTrue(clickhouse.rows().every((r) => r.profile_found === 1))
        assert.deepStrictEqual(finalSessions(clickhouse.rows()), Data.recompute(events))
      }).pipe(Effect.provide(env))
    }
  )

  it.effect("Redis down, policy defaults: the batch goes on with the defaults, counted as missing", () => {
    const { source, clickhouse, topology, env } = setup({ policy: "defaults" })
    return Effect.gen(function* () {
      const events = Data.generate({ count: 50, users: 5, sessions: 5, seed: 9 })
      source.state.down = 1_000
      yield* produce(events)
      yield* runToEnd(topology())
      assert.strictEqual(clickhouse.rows().length, 50)
      assert.isTrue(clickhouse.rows().every((r) => r.profile_found === 0 && r.user_segment === "unknown"))
    }).pipe(Effect.provide(env))
  })

  it.effect("an event whose timestamp does not parse is dead-lettered and leaves its session alone", () => {
    const { clickhouse, topology, env } = setup()
    return Effect.gen(function* () {
      const events = Data.generate({ count: 20, users: 2, sessions: 1, seed: 1 })
      const broken = { ...events[5]!, timestamp: "yesterday" }
      yield* produce([...events.slice(0, 5), broken, ...events.slice(6)])
      const kafka = yield* Kafka
      yield* kafka.send([{ topic: topics.events.name, key: bytes("session_1"), value: bytes("{not json") }])
      yield* runToEnd(topology())
      const letters = yield* (yield* MemoryBroker).records(DeadLetter.topicFor(topics.events.name))
      assert.sameMembers(
        letters.map((l) => text(l.headers[DeadLetter.headers.errorTag]!)),
        ["InvalidTimestamp", "DecodeError"]
      )
      assert.strictEqual(clickhouse.rows().length, 19)
      assert.deepStrictEqual(finalSessions(clickhouse.rows()), Data.recompute(events.filter((_, i) => i !== 5)))
    }).pipe(Effect.provide(env))
  })
})
