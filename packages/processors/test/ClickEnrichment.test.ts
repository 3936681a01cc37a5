/** The click-enrichment join on the in-memory broker: strategies, table updates, the unknown-user policy, verification. */
import { assert, describe, it } from "@effect/vitest"
import { DeadLetter, Table } from "@sluice/core"
import { Kafka } from "@sluice/core/Kafka"
import { MemoryBroker, layer as memoryBroker } from "@sluice/core/MemoryBroker"
import { bytes, type ConsumerRecord, header, text } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import * as Topic from "@sluice/core/Topic"
import { Effect, Fiber, Result } from "effect"
import * as ClickData from "../src/ClickData.ts"
import * as ClickEnrichment from "../src/ClickEnrichment.ts"
import * as JoinRun from "../src/JoinRun.ts"
import { waitUntil } from "./support/effects.ts"

const records = (topic: string) =>
  Effect.gen(function* () {
    const broker = yield* MemoryBroker
    return yield* broker.records(topic)
  })

const decodeAll = <K, V>(topic: Topic.Topic<K, V>, rs: ReadonlyArray<ConsumerRecord>) =>
  rs.flatMap((r) => {
    const d = Topic.decode(topic, r)
    return Result.isSuccess(d) ? [d.success] : []
  })

describe("click enrichment on the in-memory broker", () => {
  // Live clock on purpose: JoinRun is the benchmark's run, which measures real elapsed time and latency.
  it.live("the table and rescan strategies give identical, correct outputs on the same input", () =>
    Effect.gen(function* () {
      const reports = []
      for (const strategy of ["table", "rescan"] as const) {
        const topics = ClickEnrichment.named(`same-${strategy}-`)
        const report = yield* JoinRun.run({
          strategy,
          events: 200,
          users: 30,
          topics,
          provenance: true,
          lookup:
            strategy === "table"
              ? ClickEnrichment.ProfileLookup.table(topics)
              : ClickEnrichment.ProfileLookup.rescan(topics)
        })
        assert.isTrue(report.correct, report.verification.problems.join("; "))
        const out = decodeAll(topics.enriched, yield* records(topics.enriched.name))
        // Same data, same partitioner: the same click has the same coordinates in both runs.
        reports.push(
          new Map(
            out.map((d) => [header(d.record.headers, ClickEnrichment.clickHeaders.source), JSON.stringify(d.value)])
          )
        )
      }
      assert.strictEqual(reports[0]!.size, 200)
      assert.deepStrictEqual([...reports[0]!].sort(), [...reports[1]!].sort())
    }).pipe(Effect.provide(memoryBroker))
  )

  it.effect("the table applies a profile update and a tombstone while running", () =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named("upd-")
      const kafka = yield* Kafka
      yield* kafka.createTopics([ClickEnrichment.profilesSpec(topics)])
      yield* kafka.send(ClickData.generateProfiles(5, topics))
      const table = yield* Table.makeReady(topics.profiles)
      assert.strictEqual((yield* table.get(101))?.name, ClickData.profileFor(101).name)
      yield* kafka.send([
        Result.getOrThrow(Topic.encode(topics.profiles, 101, { id: 101, name: "Renamed", city: "Oslo" })),
        Result.getOrThrow(Topic.encode(topics.profiles, 102, null))
      ])
      yield* waitUntil(
        "the update is applied",
        Effect.map(table.get(101), (p) => p?.name === "Renamed")
      )
      yield* waitUntil(
        "the tombstone is applied",
        Effect.map(table.get(102), (p) => p === undefined)
      )
      assert.strictEqual(yield* table.size, 4)
    }).pipe(Effect.scoped, Effect.provide(memoryBroker))
  )

  it.effect("unknown users: nulls under the null policy, dead letters with the reason under dead-letter", () =>
    Effect.gen(function* () {
      for (const policy of ["null", "dead-letter"] as const) {
        const topics = ClickEnrichment.named(`unknown-${policy}-`)
        const kafka = yield* Kafka
        yield* kafka.createTopics([ClickEnrichment.profilesSpec(topics), { name: topics.clicks.name, partitions: 3 }])
        yield* kafka.send(ClickData.generateProfiles(3, topics))
        yield* kafka.send([
          Result.getOrThrow(Topic.encode(topics.clicks, 101, { timestamp: 1, user_id: 101, url: "/a" })),
          Result.getOrThrow(Topic.encode(topics.clicks, 999, { timestamp: 2, user_id: 999, url: "/b" }))
        ])
        const fiber = yield* Runner.run(ClickEnrichment.topology({ topics, unknownUsers: policy })).pipe(
          Effect.provide(ClickEnrichment.ProfileLookup.table(topics)),
          Effect.forkChild
        )
        const dlqTopic = `${topics.clicks.name}.dlq`
        yield* waitUntil(
          "both clicks are handled",
          Effect.map(
            Effect.all([records(topics.enriched.name), records(dlqTopic)]),
            ([e, d]) => e.length + d.length === 2
          )
        )
        yield* Fiber.interrupt(fiber)
        const enriched = decodeAll(topics.enriched, yield* records(topics.enriched.name)).map((d) => d.value)
        const dlq = yield* records(dlqTopic)
        if (policy === "null") {
          assert.deepStrictEqual(
            enriched.find((e) => e.user_id === 999),
            { timestamp: 2, user_id: 999, url: "/b", user_name: null, user_city: null }
          )
          assert.strictEqual(dlq.length, 0)
        } else {
          assert.strictEqual(enriched.length, 1)
          assert.strictEqual(dlq.length, 1)
          assert.strictEqual(header(dlq[0]!.headers, DeadLetter.headers.errorTag), "UnknownUser")
          assert.include(header(dlq[0]!.headers, DeadLetter.headers.errorMessage), "999")
        }
      }
    }).pipe(Effect.provide(memoryBroker))
  )
})

describe("click enrichment's provenance headers", () => {
  const topics = ClickEnrichment.named("prov-")
  const click = (offset: number): Topic.Decoded<number, ClickEnrichment.Click> => ({
    key: 101,
    value: { timestamp: 1_700_000_000_000 + offset, user_id: 101, url: "/cart" },
    record: {
      topic: topics.clicks.name,
      partition: 2,
      offset,
      timestamp: 1_700_000_000_500 + offset,
      key: bytes("101"),
      value: null,
      headers: {}
    }
  })
  const profile = ClickData.profileFor(101)

  it("are off by default: the enriched value alone", () => {
    const result = ClickEnrichment.join([click(7)], [profile], "null", topics)
    assert.strictEqual(result.outputs.length, 1)
    assert.isUndefined(result.outputs[0]!.headers)
  })

  it("name the source click and its produce timestamp when asked for", () => {
    const result = ClickEnrichment.join([click(7), click(8)], [profile, undefined], "null", topics, true)
    assert.deepStrictEqual(
      result.outputs.map((r) => [
        header(r.headers ?? {}, ClickEnrichment.clickHeaders.source),
        header(r.headers ?? {}, ClickEnrichment.clickHeaders.producedAt)
      ]),
      [
        ["2:7", "1700000000507"],
        ["2:8", "1700000000508"]
      ]
    )
  })

  it.live("a benchmark run verifies every click without them", () =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named("noprov-")
      const report = yield* JoinRun.run({
        strategy: "table",
        events: 300,
        users: 20,
        topics,
        lookup: ClickEnrichment.ProfileLookup.table(topics)
      })
      assert.isTrue(report.correct, report.verification.problems.join("; "))
      assert.strictEqual(report.verification.present, 300)
      const out = yield* records(topics.enriched.name)
      assert.isTrue(out.every((r) => Object.keys(r.headers).length === 0))
    }).pipe(Effect.provide(memoryBroker))
  )
})

describe("the join benchmark's paced live mode", () => {
  it.live("produces at the rate asked for: 400 clicks at 2,000/s take about 200 ms, all verified", () =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named("paced-")
      const started = Date.now()
      const report = yield* JoinRun.run({
        strategy: "table",
        events: 400,
        users: 20,
        topics,
        ratePerSec: 2_000,
        lookup: ClickEnrichment.ProfileLookup.table(topics)
      })
      assert.isTrue(report.correct, report.verification.problems.join("; "))
      assert.isAtLeast(Date.now() - started, 180)
      assert.isAtLeast(report.elapsedMs, 150, "the clicks arrived over the run, not at once")
    }).pipe(Effect.provide(memoryBroker))
  )
})

describe("click enrichment and bad numbers", () => {
  it.effect("a click with a timestamp out of range is a dead letter, never an output with a null timestamp", () =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named("inf-")
      const kafka = yield* Kafka
      yield* kafka.createTopics([ClickEnrichment.profilesSpec(topics), { name: topics.clicks.name, partitions: 1 }])
      yield* kafka.send(ClickData.generateProfiles(3, topics))
      const raw = bytes(`{"timestamp":1e400,"user_id":101,"url":"/a"}`)
      yield* kafka.send([
        { topic: topics.clicks.name, key: bytes("101"), value: raw },
        Result.getOrThrow(Topic.encode(topics.clicks, 102, { timestamp: 5, user_id: 102, url: "/b" }))
      ])
      const fiber = yield* Runner.run(ClickEnrichment.topology({ topics }), { commitEveryRecords: 1 }).pipe(
        Effect.provide(ClickEnrichment.ProfileLookup.table(topics)),
        Effect.forkChild
      )
      yield* (yield* MemoryBroker).awaitCommitted("click-enrichment", topics.clicks.name)
      yield* Fiber.interrupt(fiber)
      const enriched = yield* records(topics.enriched.name)
      assert.deepStrictEqual(
        enriched.map((r) => JSON.parse(text(r.value ?? new Uint8Array())).timestamp),
        [5]
      )
      const dlq = yield* records(`${topics.clicks.name}.dlq`)
      assert.strictEqual(dlq.length, 1)
      assert.deepStrictEqual(dlq[0]?.value, raw)
      assert.include(header(dlq[0]?.headers ?? {}, DeadLetter.headers.errorMessage), "non-finite number at $.timestamp")
    }).pipe(Effect.provide(memoryBroker))
  )
})

describe("join verification", () => {
  const click = { timestamp: 1, user_id: 105, url: "/cart" }
  const truth = ClickData.profileFor(105)
  const good = { user_id: 105, url: "/cart", user_name: truth.name, user_city: truth.city }
  const sent = new Map([["0:0", click]])

  it("accepts a correct output and counts duplicates", () => {
    const v = ClickData.verify(sent, [
      { source: "0:0", value: good },
      { source: "0:0", value: good }
    ])
    assert.isTrue(ClickData.isCorrect(v))
    assert.strictEqual(v.duplicates, 1)
  })

  it("fails when one output is corrupted or missing", () => {
    const corrupted = ClickData.verify(sent, [{ source: "0:0", value: { ...good, user_name: "Mallory" } }])
    assert.isFalse(ClickData.isCorrect(corrupted))
    assert.include(corrupted.problems[0], "0:0")
    assert.isFalse(ClickData.isCorrect(ClickData.verify(sent, [])))
  })

  it("the lab's log line", () => {
    assert.strictEqual(
      ClickEnrichment.formatEnriched({
        ...good,
        timestamp: 1,
        user_id: 103,
        url: "/products/widget-a",
        user_name: "Charlie"
      }),
      "Enriched Event: {'user_id': 103, 'url': '/products/widget-a', 'user_name': 'Charlie'}"
    )
  })
})
