/**
 * The click-enrichment join against the real broker (SLUICE_BROKERS, default 127.0.0.1:9092) and Redis (REDIS_URL,
 * default redis://127.0.0.1:6379); `bash scripts/services.sh start`. Every test uses fresh topics under its own
 * `it-<random>-` prefix and deletes them (and its Redis keys) when it ends, so reruns never see each other's records.
 */
import { assert, describe, it } from "@effect/vitest"
import * as DeadLetter from "@sluice/core/DeadLetter"
import type { KafkaError, LookupError } from "@sluice/core/Errors"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Lookup from "@sluice/core/Lookup"
import * as Reader from "@sluice/core/Reader"
import { type ConsumerRecord, header, type ProducerRecord } from "@sluice/core/Record"
import * as Redis from "@sluice/core/Redis"
import * as Runner from "@sluice/core/Runner"
import * as Table from "@sluice/core/Table"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { type Duration, Effect, Fiber, Layer, Schedule, Schema, type Scope, Stream } from "effect"
import * as ClickData from "../src/ClickData.ts"
import * as ClickEnrichment from "../src/ClickEnrichment.ts"

// The addresses as the code reads them: SLUICE_BROKERS and REDIS_URL through core's configs, with their defaults.
const brokers = Effect.runSync(brokersConfig)

const Services = Layer.mergeAll(
  KafkaJs.layer({ brokers, clientId: "sluice-click-enrichment-test" }),
  Redis.layer({ url: Effect.runSync(Redis.urlConfig) })
)

class TestTimeout extends Schema.TaggedError<TestTimeout>()("TestTimeout", { what: Schema.String }) {
  override get message(): string {
    return `timed out waiting for ${this.what}`
  }
}

type LookupLayer = Layer.Layer<ClickEnrichment.ProfileLookup, KafkaError | Redis.RedisError, Kafka | Redis.Redis>
type RunnerFiber = Fiber.Fiber<never, Runner.RunError<LookupError> | Redis.RedisError>

const freshPrefix = () => `it-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}-`
const dlqOf = (topics: ClickEnrichment.Topics) => DeadLetter.topicFor(topics.clicks.name)
const source = (partition: number, offset: number) => `${partition}:${offset}`

/** Creates the deployment's topics (plus `extra`), all with 3 partitions except the compacted profiles'. */
const setup = (topics: ClickEnrichment.Topics, extra: ReadonlyArray<string> = []) =>
  Effect.flatMap(Effect.service(Kafka), (kafka) =>
    kafka.createTopics([
      ClickEnrichment.profilesSpec(topics),
      ...[topics.clicks.name, topics.enriched.name, dlqOf(topics), ...extra].map((name) => ({ name, partitions: 3 }))
    ])
  )

/**
 * Deletes every topic and Redis key under the test's prefix, with clients of its own, after the test's clients are
 * closed: kafkajs keeps refreshing the metadata of every topic its producer wrote to, so no client that is still
 * in use should ever have written to a deleted topic.
 */
const cleanup = (prefix: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const names = yield* kafka.listTopics
    yield* kafka.deleteTopics(names.filter((n) => n.startsWith(prefix)))
    // The redis strategy keys its profiles `sluice:<profile topic>:<id>`, and the profile topic is under the prefix.
    yield* (yield* Redis.Redis).flushPrefix(`sluice:${prefix}`)
  }).pipe(
    Effect.provide(Services),
    Effect.catch((e) => Effect.logWarning(`cleanup of ${prefix} failed: ${e.message}`))
  )

/**
 * A test against the real services: fresh topics under a random prefix, its own Kafka and Redis clients (closed
 * when the test ends, its runners first), and the cleanup above.
 */
const integration = <E>(
  name: string,
  body: (topics: ClickEnrichment.Topics) => Effect.Effect<void, E, Kafka | Redis.Redis | Scope.Scope>,
  timeout: number
) =>
  it.live(
    name,
    () => {
      const prefix = freshPrefix()
      return Effect.scoped(body(ClickEnrichment.named(prefix))).pipe(
        Effect.provide(Services),
        Effect.ensuring(cleanup(prefix))
      )
    },
    timeout
  )

const encode = <K, V>(topic: Topic.Topic<K, V>, key: K, value: V) => Effect.fromResult(Topic.encode(topic, key, value))

/** Produces clicks and returns them by the source coordinates (`partition:offset`) the join writes in a header. */
const sendClicks = (topics: ClickEnrichment.Topics, records: ReadonlyArray<ProducerRecord>) =>
  Effect.gen(function* () {
    const metadata = yield* (yield* Kafka).send(records)
    const sent = new Map<string, ClickEnrichment.Click>()
    for (let i = 0; i < records.length; i++) {
      const click = yield* Effect.fromResult(topics.clicks.value.decode(records[i]!.value))
      sent.set(source(metadata[i]!.partition, metadata[i]!.offset), click)
    }
    return sent
  })

const clicksFor = (topics: ClickEnrichment.Topics, userIds: ReadonlyArray<number>, url: string) =>
  Effect.forEach(userIds, (user_id, i) =>
    encode(topics.clicks, user_id, { timestamp: 1_700_000_000_000 + i, user_id, url })
  )

/** Starts the click topology as its own consumer group, in the current scope (interrupted when it closes). */
const startJoin = (
  topics: ClickEnrichment.Topics,
  group: string,
  lookup: LookupLayer,
  unknownUsers: ClickEnrichment.UnknownUserPolicy = "null"
): Effect.Effect<RunnerFiber, never, Kafka | Redis.Redis | Scope.Scope> =>
  // With provenance headers: outputs are matched to their clicks by the source coordinates.
  Runner.run(ClickEnrichment.topology({ topics, unknownUsers, provenance: true }), {
    groupId: `${topics.clicks.name}-${group}`,
    commitInterval: "500 millis"
  }).pipe(Effect.provide(lookup), Effect.forkScoped)

/**
 * How many records a topic holds. Retried: kafkajs' `fetchTopicOffsets` can fail with a TypeError while other admin
 * calls of the same client refresh its metadata (kafkajs#461), and a poll can simply ask again.
 */
const recordCount = (topic: string) =>
  Effect.flatMap(Effect.service(Kafka), (kafka) =>
    Effect.map(kafka.offsets(topic), (ps) => ps.reduce((n, p) => n + p.high - p.low, 0))
  ).pipe(Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 10 }))

/**
 * Polls `check` until it holds. Fails with the runner's own error if the runner stops first, and with a
 * `TestTimeout` after `within`.
 */
const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  runner?: RunnerFiber,
  within: Duration.Input = "45 seconds"
) => {
  const poll = Effect.gen(function* () {
    while (!(yield* check)) yield* Effect.sleep("100 millis")
  })
  return (runner === undefined ? poll : Effect.raceFirst(poll, Fiber.join(runner))).pipe(
    Effect.timeoutOrElse({ duration: within, orElse: () => Effect.fail(new TestTimeout({ what })) })
  )
}

/**
 * Waits until the topics together hold `n` records (enriched + dead-lettered, say). The bound is generous: the
 * rescan strategy re-reads the profiles per batch, and a loaded machine makes that slow (a failure here is a
 * timeout, never a wrong output: the outputs are checked afterwards).
 */
const awaitRecords = (topicNames: ReadonlyArray<string>, n: number, runner: RunnerFiber) =>
  eventually(
    `${n} record(s) in ${topicNames.join(" + ")}`,
    Effect.map(
      Effect.forEach(topicNames, (t) => recordCount(t)),
      (counts) => counts.reduce((a, b) => a + b, 0) >= n
    ),
    runner,
    "120 seconds"
  )

const readAll = (topic: string): Effect.Effect<ReadonlyArray<ConsumerRecord>, KafkaError, Kafka> =>
  Effect.map(Stream.runCollect(Reader.readToEnd(topic)), (batches) => batches.flat())

/**
 * The enriched records of a topic by their source click. At-least-once may repeat a click's output (it does not in
 * a clean run); a repeat must then be identical, so one value per click is kept and repeats are checked here.
 */
const enrichedBySource = (topic: ClickEnrichment.Topics["enriched"]) =>
  Effect.gen(function* () {
    const out = new Map<string, ClickEnrichment.EnrichedClick>()
    for (const record of yield* readAll(topic.name)) {
      const from = header(record.headers, ClickEnrichment.clickHeaders.source)
      assert.isDefined(from, `enriched record ${record.partition}:${record.offset} has no source header`)
      const { value } = yield* Effect.fromResult(Topic.decode(topic, record))
      const previous = out.get(from)
      if (previous !== undefined) assert.deepStrictEqual(value, previous, `a repeat of click ${from} differs`)
      out.set(from, value)
    }
    return out
  })

const assertVerified = (
  label: string,
  sent: ReadonlyMap<string, ClickEnrichment.Click>,
  outputs: ReadonlyMap<string, ClickEnrichment.EnrichedClick>,
  knownUsers?: (id: number) => boolean
) => {
  const verification = ClickData.verify(
    sent,
    [...outputs].map(([from, value]) => ({ source: from, value })),
    knownUsers
  )
  assert.isTrue(ClickData.isCorrect(verification), `${label}: ${verification.problems.join("; ")}`)
  assert.strictEqual(outputs.size, sent.size, `${label}: outputs for clicks that should have none`)
}

describe("ClickEnrichment (real broker)", () => {
  integration(
    "the three strategies give identical outputs on the same input (real broker)",
    (topics) =>
      Effect.gen(function* () {
        // One input for all three: profiles and clicks are produced once, and each strategy runs the topology as
        // its own consumer group writing its own output topic. Every strategy therefore reads the very same
        // click records, so their outputs can be matched strictly by the click's `partition:offset` (the source
        // header) rather than by order, which differs between partitions and runs.
        const strategies = ["table", "rescan", "redis"] as const
        const outputOf = (strategy: string) => ClickEnrichment.enrichedTopic(`${topics.enriched.name}.${strategy}`)
        yield* setup(
          topics,
          strategies.map((s) => outputOf(s).name)
        )

        const clicks = 150
        const users = 40
        yield* (yield* Kafka).send(ClickData.generateProfiles(users, topics))
        const sent = yield* sendClicks(topics, ClickData.generateClicks({ count: clicks, users, seed: 11, topics }))
        assert.strictEqual(sent.size, clicks)

        const lookups: Record<(typeof strategies)[number], LookupLayer> = {
          table: ClickEnrichment.ProfileLookup.table(topics),
          // Rescan reads the whole profile topic once per click: the reason this test keeps N small.
          rescan: ClickEnrichment.ProfileLookup.rescan(topics),
          redis: ClickEnrichment.ProfileLookup.redis(topics)
        }
        const runStrategy = (strategy: (typeof strategies)[number]) =>
          Effect.scoped(
            Effect.gen(function* () {
              const output = outputOf(strategy)
              const started = Date.now()
              const runner = yield* startJoin({ ...topics, enriched: output }, strategy, lookups[strategy])
              yield* awaitRecords([output.name], clicks, runner)
              yield* Fiber.interrupt(runner)
              yield* Effect.logInfo(`${strategy}: ${clicks} clicks enriched in ${Date.now() - started} ms`)
              return yield* enrichedBySource(output)
            })
          )
        // One after the other: on one kafkajs client, `offsets` (a table or Redis loader starting) fails while a
        // runner's `createTopics` refreshes the admin's metadata with only its own topics.
        const [table, rescan, redis] = yield* Effect.all(strategies.map(runStrategy))

        assertVerified("table", sent, table)
        assertVerified("rescan", sent, rescan)
        assertVerified("redis", sent, redis)
        // Each is correct against the generator's truth (above); identical to each other, click by click, is the
        // point here.
        const ordered = (m: ReadonlyMap<string, ClickEnrichment.EnrichedClick>) =>
          [...sent.keys()].map((from) => [from, m.get(from)] as const)
        assert.deepStrictEqual(ordered(rescan), ordered(table), "rescan differs from table")
        assert.deepStrictEqual(ordered(redis), ordered(table), "redis differs from table")
        const seenUsers = new Set([...table.values()].map((e) => e.user_id))
        assert.isAbove(seenUsers.size, users / 2, "the clicks cover many users")
      }),
    120_000
  )

  integration(
    "the table applies a profile update and a tombstone while running (real broker)",
    (topics) =>
      Effect.gen(function* () {
        yield* setup(topics)
        const kafka = yield* Kafka
        const users = 5
        yield* kafka.send(ClickData.generateProfiles(users, topics))

        const table = yield* Table.makeReady(topics.profiles)
        assert.strictEqual(yield* table.size, users)
        const [renamed, deleted, untouched] = [101, 102, 103] as const
        assert.deepStrictEqual(yield* table.get(renamed), ClickData.profileFor(renamed))
        assert.deepStrictEqual(yield* table.get(deleted), ClickData.profileFor(deleted))

        // The topology reads this very table, so what it enriches with is what `get` shows.
        const runner = yield* startJoin(
          topics,
          "table-updates",
          Layer.succeed(ClickEnrichment.ProfileLookup, Lookup.fromTable(table))
        )
        const before = yield* sendClicks(topics, yield* clicksFor(topics, [renamed, deleted, untouched], "/before"))
        yield* awaitRecords([topics.enriched.name], 3, runner)

        const newProfile: ClickEnrichment.Profile = { id: renamed, name: "Renamed-101", city: "Reykjavik" }
        yield* kafka.send([
          yield* encode(topics.profiles, renamed, newProfile),
          yield* encode(topics.profiles, deleted, null)
        ])
        yield* eventually(
          "the table to apply the update and the tombstone",
          Effect.map(
            Effect.all([table.get(renamed), table.get(deleted)]),
            ([r, d]) => r?.name === newProfile.name && d === undefined
          )
        )
        assert.deepStrictEqual(yield* table.get(renamed), newProfile)
        assert.isUndefined(yield* table.get(deleted))
        assert.deepStrictEqual(yield* table.get(untouched), ClickData.profileFor(untouched))
        assert.strictEqual(yield* table.size, users - 1)

        const after = yield* sendClicks(topics, yield* clicksFor(topics, [renamed, deleted, untouched], "/after"))
        yield* awaitRecords([topics.enriched.name], 6, runner)
        const outputs = yield* enrichedBySource(topics.enriched)
        assert.strictEqual(outputs.size, 6)

        const nameAndCity = (sent: ReadonlyMap<string, ClickEnrichment.Click>) =>
          [...sent].map(([from, click]) => {
            const e = outputs.get(from)
            assert.isDefined(e, `no enriched record for click ${from}`)
            assert.strictEqual(e.url, click.url)
            return [e.user_id, e.user_name, e.user_city]
          })
        const original = (id: number) => [id, ClickData.profileFor(id).name, ClickData.profileFor(id).city]
        assert.deepStrictEqual(
          nameAndCity(before),
          [original(renamed), original(deleted), original(untouched)],
          "clicks before the update see the original profiles"
        )
        assert.deepStrictEqual(
          nameAndCity(after),
          [[renamed, newProfile.name, newProfile.city], [deleted, null, null], original(untouched)],
          "clicks after the update see the new name, and nulls for the deleted user"
        )
      }),
    90_000
  )

  integration(
    "unknown users are dead-lettered under the dead-letter policy (real broker)",
    (topics) =>
      Effect.gen(function* () {
        yield* setup(topics)
        // Profiles for the first 10 users only; the clicks come from 15, so users 111-115 are unknown.
        const knownCount = 10
        const isKnown = (id: number) => id < ClickData.firstUserId + knownCount
        yield* (yield* Kafka).send(ClickData.generateProfiles(knownCount, topics))
        const sent = yield* sendClicks(topics, ClickData.generateClicks({ count: 80, users: 15, seed: 3, topics }))
        const known = new Map([...sent].filter(([, c]) => isKnown(c.user_id)))
        const unknown = new Map([...sent].filter(([, c]) => !isKnown(c.user_id)))
        assert.isAbove(known.size, 0)
        assert.isAbove(unknown.size, 0)

        const runner = yield* startJoin(
          topics,
          "dead-letter",
          ClickEnrichment.ProfileLookup.table(topics),
          "dead-letter"
        )
        yield* awaitRecords([topics.enriched.name, dlqOf(topics)], sent.size, runner)
        yield* Fiber.interrupt(runner)

        const enriched = yield* enrichedBySource(topics.enriched)
        assertVerified("enriched", known, enriched, isKnown)

        const dead = new Map<string, ConsumerRecord>()
        for (const record of yield* readAll(dlqOf(topics))) {
          const h = record.headers
          dead.set(
            source(
              Number(header(h, DeadLetter.headers.sourcePartition)),
              Number(header(h, DeadLetter.headers.sourceOffset))
            ),
            record
          )
        }
        assert.deepStrictEqual(
          [...dead.keys()].sort(),
          [...unknown.keys()].sort(),
          "exactly the clicks of unknown users are dead-lettered"
        )
        for (const [from, record] of dead) {
          const click = unknown.get(from)
          assert.isDefined(click)
          assert.strictEqual(header(record.headers, DeadLetter.headers.errorTag), "UnknownUser", `tag of ${from}`)
          assert.include(
            header(record.headers, DeadLetter.headers.errorMessage),
            `no profile for user_id ${click.user_id}`,
            `reason of ${from}`
          )
          assert.strictEqual(header(record.headers, DeadLetter.headers.sourceTopic), topics.clicks.name)
          // The original bytes, untouched.
          assert.deepStrictEqual(yield* Effect.fromResult(topics.clicks.value.decode(record.value)), click)
        }
        assert.strictEqual(enriched.size + dead.size, sent.size, "every click is enriched or dead-lettered")
      }),
    90_000
  )

  integration(
    "the redis strategy issues one MGET per batch",
    (topics) =>
      Effect.gen(function* () {
        yield* setup(topics)
        // Every MGET the lookup sends goes through this Redis, which counts the calls and their keys. Counting at
        // the service rather than with INFO commandstats keeps the test exact while other runs share the server.
        const mgets: Array<number> = []
        const counting = Layer.effect(
          Redis.Redis,
          Effect.map(Effect.service(Redis.Redis), (real) =>
            Redis.Redis.of({
              ...real,
              mget: (keys) =>
                Effect.andThen(
                  Effect.sync(() => mgets.push(keys.length)),
                  real.mget(keys)
                )
            })
          )
        )
        const users = 30
        const clicks = 300
        yield* (yield* Kafka).send(ClickData.generateProfiles(users, topics))
        // All clicks are in the topic before the topology starts, so batches are large.
        const sent = yield* sendClicks(topics, ClickData.generateClicks({ count: clicks, users, seed: 5, topics }))

        let batches = 0
        let clicksProcessed = 0
        const base = ClickEnrichment.topology({ topics, provenance: true })
        const topology = Topology.tapBatches(base, (records) =>
          Effect.sync(() => {
            batches++
            clicksProcessed += records.length
          })
        )
        const runner = yield* Runner.run(topology, { groupId: `${topics.clicks.name}-mget` }).pipe(
          Effect.provide(ClickEnrichment.ProfileLookup.redis(topics).pipe(Layer.provide(counting))),
          Effect.forkScoped
        )
        yield* awaitRecords([topics.enriched.name], clicks, runner)
        yield* Fiber.interrupt(runner)
        assertVerified("redis", sent, yield* enrichedBySource(topics.enriched))

        assert.strictEqual(clicksProcessed, clicks)
        assert.strictEqual(mgets.length, batches, `one MGET per batch: ${mgets.length} MGETs for ${batches} batches`)
        assert.strictEqual(
          mgets.reduce((a, b) => a + b, 0),
          clicks,
          "every click's user is asked for once"
        )
        assert.isAtMost(mgets.length, clicks / 10, `far fewer MGETs than clicks: ${mgets.join(",")}`)
      }),
    90_000
  )
})
