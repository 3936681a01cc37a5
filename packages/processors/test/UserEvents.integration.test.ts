/**
 * The user-events topology as operators run it: `sluice run user-events` worker processes against the real broker
 * (SLUICE_BROKERS, default 127.0.0.1:9092; `bash scripts/kafka.sh start`), stopped with SIGTERM and SIGKILL.
 *
 * These are the acceptance tests of the delivery guarantees: a clean restart resumes exactly where the last commit
 * left off; two processes in a group split the partitions; malformed records land in the DLQ byte for byte; after
 * kill -9 every input offset still gets an output (at-least-once: duplicates allowed, gaps not); a SIGTERM stops
 * a busy worker within its bound with everything it processed committed; and two prefixes never share a group.
 * Each activity record names its source partition and offset, which is what lets every check be exact. Every test
 * uses fresh topics and a fresh group; some workers reach the broker through a proxy (support/workers.ts) that
 * slows their network down or takes the broker away.
 */
import { assert, layer } from "@effect/vitest"
import * as DeadLetter from "@sluice/core/DeadLetter"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as Reader from "@sluice/core/Reader"
import { type ConsumerRecord, header, type ProducerRecord, type RecordMetadata } from "@sluice/core/Record"
import * as Topic from "@sluice/core/Topic"
import { type Duration, Effect, Result, Stream } from "effect"
import { afterEach } from "vitest"
import * as UserEvents from "../src/UserEvents.ts"
import { recordCount } from "./support/deployment.ts"
import * as Workers from "./support/workers.ts"
import { waitUntil } from "./support/workers.ts"

// SLUICE_BROKERS as the code reads it (core's `brokersConfig`, default 127.0.0.1:9092).
const brokers = Effect.runSync(brokersConfig)

afterEach(() => Workers.killAll())

/**
 * A fresh deployment: topics under a random prefix and a fresh consumer group, named with `--group`, or with
 * `defaultGroup` the one `sluice run` derives from the prefix (the prefix followed by the topology's name). Its
 * workers connect to `brokers` (a proxy, say), the test itself to the broker.
 */
const fresh = (options: { readonly defaultGroup?: boolean; readonly brokers?: ReadonlyArray<string> } = {}) => {
  const id = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`
  const prefix = `it-${id}-`
  const topics = UserEvents.named(prefix)
  const topology = UserEvents.topology(topics)
  const group = options.defaultGroup === true ? `${prefix}${topology.name}` : `it-group-${id}`
  return {
    prefix,
    topics,
    group,
    dlq: topology.deadLetterTopic,
    worker: (name: string, shutdownTimeoutMs?: number) =>
      Workers.userEvents(name, {
        brokers: options.brokers ?? brokers,
        prefix,
        ...(options.defaultGroup === true ? {} : { group }),
        ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs })
      })
  }
}
type Deployment = ReturnType<typeof fresh>

const at = (partition: number, offset: number) => `${partition}@${offset}`

/** Creates the 3-partition input topic and produces `records` to it; returns where each one was written. */
const produce = (topic: string, records: ReadonlyArray<ProducerRecord>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: topic, partitions: 3 }])
    const written: Array<RecordMetadata> = []
    for (let i = 0; i < records.length; i += 10_000) written.push(...(yield* kafka.send(records.slice(i, i + 10_000))))
    return written
  })

/** The group's committed offset and the high-water mark of each partition of the deployment's input. */
const progress = (d: Deployment) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.events.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(d.group, d.topics.events.name)).map((c) => [c.partition, c.offset])
    )
    const activity = yield* recordCount(d.topics.activity.name)
    return {
      done: highs.every((h) => committed.get(h.partition) === h.high),
      text: `committed ${highs.map((h) => `${h.partition}@${committed.get(h.partition) ?? "-"}/${h.high}`).join(" ")}; activity holds ${activity}`
    }
  })

/**
 * Waits until the group has committed every input record. Outputs are durable before their offset is committed,
 * so from then on the activity topic must cover every input offset: the assertions that follow check exactly that,
 * and report gaps by offset rather than as a timeout.
 */
const awaitCommittedToEnd = (d: Deployment, timeout: Duration.Input, workers: ReadonlyArray<Workers.Worker>) =>
  waitUntil(
    "the group has committed every input record",
    timeout,
    Effect.map(progress(d), (p) => p.done),
    workers,
    Effect.map(progress(d), (p) => p.text)
  )

/** Every record of a topic, from the beginning to the end offsets it has now. */
const readAll = (topic: string) =>
  Reader.readToEnd(topic).pipe(
    Stream.runFold(
      (): Array<ConsumerRecord> => [],
      (acc, records) => {
        for (const r of records) acc.push(r)
        return acc
      }
    ),
    Effect.timeout("60 seconds")
  )

interface Coverage {
  /** Activity records read. */
  readonly records: number
  /** Activity records whose source was already covered by an earlier one. */
  readonly duplicates: number
  /** The most activity records one input offset has. */
  readonly maxCopies: number
  /** Expected input offsets without an activity record. */
  readonly missing: ReadonlyArray<string>
  /** Activity records whose source is not an expected input offset. */
  readonly unexpected: ReadonlyArray<string>
}

/** Matches activity records to input offsets through their `source_partition` / `source_offset`. */
const coverage = (
  deployment: Deployment,
  expected: ReadonlyArray<{ readonly partition: number; readonly offset: number }>,
  activity: ReadonlyArray<ConsumerRecord>
): Coverage => {
  const seen = new Map<string, number>()
  for (const record of activity) {
    const decoded = Topic.decode(deployment.topics.activity, record)
    if (Result.isFailure(decoded)) assert.fail(`undecodable activity record: ${decoded.failure.message}`)
    const key = at(decoded.success.value.source_partition, decoded.success.value.source_offset)
    seen.set(key, (seen.get(key) ?? 0) + 1)
  }
  const wanted = new Set(expected.map((e) => at(e.partition, e.offset)))
  let duplicates = 0
  let maxCopies = 0
  for (const n of seen.values()) {
    duplicates += n - 1
    maxCopies = Math.max(maxCopies, n)
  }
  return {
    records: activity.length,
    duplicates,
    maxCopies,
    missing: [...wanted].filter((k) => !seen.has(k)),
    unexpected: [...seen.keys()].filter((k) => !wanted.has(k))
  }
}

const summary = (c: Coverage) =>
  `${c.records} activity records, ${c.duplicates} duplicates (at most ${c.maxCopies} per input offset), ` +
  `${c.missing.length} input offsets missing` +
  ` (first: ${c.missing.slice(0, 10).join(" ")}), ${c.unexpected.length} unexpected (first: ${c.unexpected.slice(0, 10).join(" ")})`

/** The "counts: login=.. purchase=.. logout=.." line a worker prints when it stops: how many events it processed. */
const processedBy = (worker: Workers.Worker): number => {
  const match = /counts: login=(\d+) purchase=(\d+) logout=(\d+)/.exec(worker.output())
  if (match === null) return assert.fail(`${worker.name} printed no counts line:\n${worker.output().slice(-3000)}`)
  return Number(match[1]) + Number(match[2]) + Number(match[3])
}

/** Sends SIGTERM and waits for a graceful exit: code 0 (a clean stop, see core Main.ts), "stopped ... in N ms" logged. */
const stopGracefully = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("20 seconds")
    assert.strictEqual(exit.code, 0, `${worker.name} exit code after SIGTERM\n${worker.output().slice(-3000)}`)
    const stopped = /stopped user-events in (\d+) ms/.exec(worker.output())
    assert.isNotNull(stopped, `${worker.name} logged its graceful stop\n${worker.output().slice(-3000)}`)
    assert.notInclude(worker.output(), "graceful shutdown took too long")
    return { exitMs: exit.msSinceSignal ?? Number.NaN, stoppedMs: Number(stopped?.[1]) }
  })

const joined = /assigned [1-9]\d* partition\(s\)/

/** What the DLQ's error message must mention for each kind of malformed record `UserEvents.generate` makes. */
const problems = new Map<string, RegExp>([
  ["invalid-json", /invalid JSON/],
  ["wrong-types", /Expected number.*user_id/],
  ["missing-fields", /Missing key.*user_id/],
  ["empty-value", /empty payload/]
])

layer(KafkaJs.layer({ brokers, clientId: "sluice-user-events-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("user-events workers against a real broker", (it) => {
  it.effect(
    "restart resumes from the committed offset: nothing skipped, nothing reprocessed after a clean stop",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        const all = UserEvents.generate({ count: 5_000, topic: d.topics.events.name, seed: 1 })
        const first = yield* produce(d.topics.events.name, all.slice(0, 3_000))

        const w1 = yield* d.worker("worker-1")
        yield* w1.waitForLog(joined, "30 seconds")
        yield* waitUntil(
          "the activity topic holds 3,000 records",
          "60 seconds",
          Effect.map(recordCount(d.topics.activity.name), (n) => n >= 3_000),
          [w1]
        )
        yield* stopGracefully(w1)
        assert.strictEqual(yield* recordCount(d.topics.activity.name), 3_000, "worker-1 wrote each record once")

        const second = yield* produce(d.topics.events.name, all.slice(3_000))
        const w2 = yield* d.worker("worker-2")
        yield* w2.waitForLog(joined, "30 seconds")
        yield* awaitCommittedToEnd(d, "60 seconds", [w2])
        // Stopped before reading, so a late re-processing (a restart from an older offset) cannot hide.
        yield* stopGracefully(w2)

        const c = coverage(d, [...first, ...second], yield* readAll(d.topics.activity.name))
        assert.strictEqual(c.missing.length, 0, summary(c))
        assert.strictEqual(c.unexpected.length, 0, summary(c))
        assert.strictEqual(c.duplicates, 0, summary(c))
        assert.strictEqual(c.records, 5_000, summary(c))
        assert.strictEqual(processedBy(w2), 2_000, "worker-2 processed only the records produced after the stop")
      }).pipe(Effect.scoped),
    90_000
  )

  it.effect(
    "two worker processes in one group split the partitions and together process every record",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        yield* Kafka.use((kafka) => kafka.createTopics([{ name: d.topics.events.name, partitions: 3 }]))
        const a = yield* d.worker("worker-a")
        const b = yield* d.worker("worker-b")
        // Produce only once the group has settled on a split, so both members get records to process.
        const split = () => {
          const [la, lb] = [a.assignments().at(-1) ?? [], b.assignments().at(-1) ?? []]
          const union = new Set([...la, ...lb])
          return la.length > 0 && lb.length > 0 && la.length + lb.length === 3 && union.size === 3
        }
        yield* waitUntil("the group has split the 3 partitions between the workers", "45 seconds", Effect.sync(split), [
          a,
          b
        ])

        const written = yield* produce(
          d.topics.events.name,
          UserEvents.generate({ count: 6_000, topic: d.topics.events.name, seed: 2 })
        )
        yield* awaitCommittedToEnd(d, "60 seconds", [a, b])
        // The split as it stood while they processed; the one leaving first hands its partitions to the other.
        const pa = a.assignments().at(-1) ?? []
        const pb = b.assignments().at(-1) ?? []
        yield* Effect.all([stopGracefully(a), stopGracefully(b)], { concurrency: "unbounded" })

        assert.isNotEmpty(pa, `worker-a's partitions\n${a.output()}`)
        assert.isNotEmpty(pb, `worker-b's partitions\n${b.output()}`)
        assert.deepStrictEqual(
          pa.filter((p) => pb.includes(p)),
          [],
          `disjoint: a=${pa} b=${pb}`
        )
        assert.deepStrictEqual([...pa, ...pb].sort(), [0, 1, 2], `a=${pa} b=${pb}`)

        const c = coverage(d, written, yield* readAll(d.topics.activity.name))
        assert.strictEqual(c.missing.length, 0, summary(c))
        assert.strictEqual(c.unexpected.length, 0, summary(c))
        const [na, nb] = [processedBy(a), processedBy(b)]
        assert.isAbove(na, 0, "worker-a processed records")
        assert.isAbove(nb, 0, "worker-b processed records")
        assert.isAtLeast(na + nb, 6_000, `a=${na} b=${nb}`)
        console.log(`two workers: a=${pa} (${na} records), b=${pb} (${nb} records); ${summary(c)}`)
      }).pipe(Effect.scoped),
    90_000
  )

  it.effect(
    "--topic-prefix isolates consumer groups: two workers under different prefixes each process all of their own records",
    () =>
      Effect.gen(function* () {
        // No --group: each worker is in the group the CLI derives. If both were in one group (the topology's name
        // alone), each would be assigned partitions of the other's topic, which it never reads.
        const deployments = [fresh({ defaultGroup: true }), fresh({ defaultGroup: true })] as const
        const written = yield* Effect.forEach(deployments, (d, i) =>
          produce(
            d.topics.events.name,
            UserEvents.generate({ count: 3_000, topic: d.topics.events.name, seed: 10 + i })
          )
        )
        const workers = yield* Effect.forEach(deployments, (d, i) => d.worker(`worker-${"ab"[i]}`))
        const counts = Effect.forEach(deployments, (d) => recordCount(d.topics.activity.name))
        yield* waitUntil(
          "each prefix's activity topic holds an output for each of its 3,000 records",
          "45 seconds",
          Effect.map(counts, (ns) => ns.every((n) => n >= 3_000)),
          workers,
          Effect.map(counts, (ns) => `activity records per prefix: ${ns.join(", ")}`)
        )
        // Committed in the group the CLI derives, which each worker names when it starts.
        yield* Effect.forEach(deployments, (d, i) => awaitCommittedToEnd(d, "30 seconds", [workers[i]!]))
        for (const [i, w] of workers.entries()) assert.include(w.output(), `in group ${deployments[i]!.group}:`)
        yield* Effect.forEach(workers, stopGracefully, { concurrency: "unbounded" })

        for (const [i, d] of deployments.entries()) {
          const w = workers[i]!
          assert.deepStrictEqual(w.assignments().at(-1), [0, 1, 2], `${w.name} owns all of its topic's partitions`)
          const c = coverage(d, written[i]!, yield* readAll(d.topics.activity.name))
          assert.strictEqual(c.missing.length, 0, `${w.name}: ${summary(c)}`)
          assert.strictEqual(c.unexpected.length, 0, `${w.name}: ${summary(c)}`)
          assert.strictEqual(c.duplicates, 0, `${w.name}: ${summary(c)}`)
          assert.strictEqual(processedBy(w), 3_000, `${w.name} processed exactly its own prefix's records`)
        }
      }).pipe(Effect.scoped),
    90_000
  )

  it.effect(
    "5% malformed records land in the DLQ with their headers; every other record is processed",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        const records = UserEvents.generate({ count: 2_000, badRatio: 0.05, topic: d.topics.events.name, seed: 3 })
        const written = yield* produce(d.topics.events.name, records)
        const produced = new Map(written.map((m, i) => [at(m.partition, m.offset), records[i]!]))
        const isBad = (r: ProducerRecord) => r.headers?.["sluice.test.bad"] !== undefined
        const good = written.filter((_, i) => !isBad(records[i]!))
        assert.strictEqual(good.length, 1_900)
        const startedAt = Date.now()

        const w = yield* d.worker("worker")
        yield* w.waitForLog(joined, "30 seconds")
        yield* awaitCommittedToEnd(d, "60 seconds", [w])
        yield* stopGracefully(w)

        const dlq = yield* readAll(d.dlq)
        assert.strictEqual(dlq.length, 100, "the DLQ holds exactly the 100 malformed records")
        const hex = (b: Uint8Array | null | undefined) => (b == null ? String(b) : Buffer.from(b).toString("hex"))
        const kinds = new Map<string, number>()
        const sources = new Set<string>()
        for (const r of dlq) {
          const h = r.headers
          const where = `DLQ record @${r.partition}:${r.offset} ${JSON.stringify(h)}`
          assert.strictEqual(header(h, DeadLetter.headers.sourceTopic), d.topics.events.name, where)
          const source = at(
            Number(header(h, DeadLetter.headers.sourcePartition)),
            Number(header(h, DeadLetter.headers.sourceOffset))
          )
          const original = produced.get(source)
          assert.isDefined(original, `${where}: its source offset is an input record`)
          if (original === undefined) continue
          sources.add(source)
          const kind = original.headers === undefined ? undefined : header(original.headers, "sluice.test.bad")
          assert.isDefined(kind, `${where}: only malformed records are dead-lettered`)
          assert.strictEqual(header(h, "sluice.test.bad"), kind, `${where}: the original headers are kept`)
          assert.strictEqual(hex(r.key), hex(original.key), `${where}: key bytes`)
          assert.strictEqual(hex(r.value), hex(original.value), `${where}: value bytes (${kind})`)
          assert.strictEqual(header(h, DeadLetter.headers.errorTag), "DecodeError", where)
          const message = header(h, DeadLetter.headers.errorMessage) ?? ""
          assert.include(
            message,
            `cannot decode the value of ${d.topics.events.name}[${source.replace("@", "]@")}`,
            where
          )
          const problem = problems.get(kind)
          assert.isDefined(problem, `${where}: unknown kind ${kind}`)
          assert.match(message, problem ?? /^$/, `${where}: the message names the problem`)
          const time = header(h, DeadLetter.headers.errorTime) ?? ""
          assert.strictEqual(new Date(time).toISOString(), time, `${where}: ISO time`)
          assert.isAtLeast(Date.parse(time), startedAt - 1_000, where)
          assert.isAtMost(Date.parse(time), Date.now(), where)
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
        }
        assert.strictEqual(sources.size, 100, "each malformed record is dead-lettered once")
        assert.deepStrictEqual(
          Object.fromEntries([...kinds].sort()),
          Object.fromEntries(UserEvents.badKinds.map((k) => [k, 25]).sort()),
          "all four kinds, 25 each"
        )

        const c = coverage(d, good, yield* readAll(d.topics.activity.name))
        assert.strictEqual(c.missing.length, 0, summary(c))
        assert.strictEqual(c.unexpected.length, 0, `no activity for a malformed record: ${summary(c)}`)
        assert.strictEqual(c.duplicates, 0, summary(c))
        assert.strictEqual(c.records, 1_900, summary(c))
      }).pipe(Effect.scoped),
    90_000
  )

  it.effect(
    "kill -9 in the middle of 100,000 records, then restart: every input offset has at least one output",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        const total = 100_000
        const written = yield* produce(
          d.topics.events.name,
          UserEvents.generate({ count: total, topic: d.topics.events.name, seed: 4 })
        )

        const w1 = yield* d.worker("worker-1")
        yield* w1.waitForLog(joined, "30 seconds")
        let atKill = 0
        yield* waitUntil(
          "the activity topic holds 20% of the records",
          "90 seconds",
          Effect.map(recordCount(d.topics.activity.name), (n) => {
            atKill = n
            return n >= total * 0.2
          }),
          [w1]
        )
        yield* w1.signal("SIGKILL")
        const killed = yield* w1.exit("10 seconds")
        assert.strictEqual(killed.signal, "SIGKILL")
        assert.isBelow(atKill, total * 0.8, "killed in the middle, not at the end")
        const committedAtKill = yield* Kafka.use((kafka) => kafka.committedOffsets(d.group, d.topics.events.name))

        const w2 = yield* d.worker("worker-2")
        // It joins once the group has given up on the killed member (session timeout 6 s in the CLI).
        yield* w2.waitForLog(joined, "60 seconds")
        yield* awaitCommittedToEnd(d, "150 seconds", [w2])
        yield* stopGracefully(w2)

        const c = coverage(d, written, yield* readAll(d.topics.activity.name))
        assert.strictEqual(c.missing.length, 0, summary(c))
        assert.strictEqual(c.unexpected.length, 0, summary(c))
        const resumedFrom = committedAtKill.map((o) => `${o.partition}@${o.offset}`).join(" ")
        console.log(
          `kill -9 at ${atKill} activity records (${((atKill / total) * 100).toFixed(1)}%), committed then: ${resumedFrom || "nothing"}; ` +
            `after restart: ${c.records} activity records for ${total} inputs, ${c.duplicates} duplicates, 0 missing`
        )
      }).pipe(Effect.scoped),
    200_000
  )

  it.effect(
    "SIGTERM mid-stream: the process exits 0 within 5 s, what it processed committed and the rest left",
    () =>
      Effect.gen(function* () {
        // The worker fetches through a proxy that passes 3 MB/s (about 18,000 records a second): it waits for its
        // fetches rather than buffering, so its drain is short, and by the time it exits it has been sent far less
        // than the input. The stop therefore lands mid-stream: records processed and committed, records left.
        const proxy = yield* Workers.kafkaProxy(brokers[0]!, { bytesPerSecond: 3_000_000 })
        const d = fresh({ brokers: [proxy.address] })
        const total = 150_000
        const written = yield* produce(
          d.topics.events.name,
          UserEvents.generate({ count: total, topic: d.topics.events.name, seed: 5 })
        )

        const w = yield* d.worker("worker", 5_000)
        yield* w.waitForLog(joined, "30 seconds")
        let atSignal = 0
        yield* waitUntil(
          "the worker has processed some records",
          "60 seconds",
          Effect.map(recordCount(d.topics.activity.name), (n) => {
            atSignal = n
            return n > 0
          }),
          [w]
        )
        const { exitMs, stoppedMs } = yield* stopGracefully(w)
        console.log(
          `SIGTERM after ${atSignal} of ${total} records: exited in ${exitMs} ms (runner's own stop: ${stoppedMs} ms), code 0`
        )
        assert.isBelow(exitMs, 5_000, "exit within 5 s of SIGTERM")

        const activity = yield* readAll(d.topics.activity.name)
        const committed = yield* Kafka.use((kafka) => kafka.committedOffsets(d.group, d.topics.events.name))
        const committedTotal = committed.reduce((n, c) => n + c.offset, 0)
        const where = `committed ${committed.map((o) => `${o.partition}@${o.offset}`).join(" ")} of ${total}`
        assert.isAbove(committedTotal, 0, `the stop committed what was processed: ${where}`)
        assert.isBelow(committedTotal, total, `the stop landed mid-stream, with records left: ${where}`)
        const maxOffset = new Map<number, number>()
        for (const record of activity) {
          const a = Topic.decode(d.topics.activity, record)
          if (Result.isFailure(a)) return assert.fail(a.failure.message)
          const { source_partition: p, source_offset: o } = a.success.value
          maxOffset.set(p, Math.max(maxOffset.get(p) ?? -1, o))
        }
        const expectedCommits = [...maxOffset].sort(([a], [b]) => a - b).map(([partition, max]) => [partition, max + 1])
        assert.deepStrictEqual(
          committed.map((c) => [c.partition, c.offset]),
          expectedCommits,
          "committed offset of each partition = last processed offset + 1"
        )
        // Exactly the committed prefix of each partition was processed, each record once: every committed offset has
        // its output, and nothing past the commit was written.
        const committedUpTo = new Map(committed.map((c) => [c.partition, c.offset]))
        const processed = written.filter((m) => m.offset < (committedUpTo.get(m.partition) ?? 0))
        assert.strictEqual(processed.length, committedTotal, where)
        const c = coverage(d, processed, activity)
        assert.strictEqual(c.missing.length, 0, summary(c))
        assert.strictEqual(c.unexpected.length, 0, summary(c))
        assert.strictEqual(c.duplicates, 0, summary(c))
        assert.strictEqual(processedBy(w), committedTotal, "the worker processed exactly what it committed")
        console.log(`after the stop: ${activity.length} of ${total} processed and committed (${where})`)
      }).pipe(Effect.scoped),
    120_000
  )

  it.effect(
    "SIGTERM with the broker unreachable: the process exits within --shutdown-timeout-ms + 2.5 s, with code 3 (unclean)",
    () =>
      Effect.gen(function* () {
        // The worker reaches the broker only through this proxy, so stopping it takes the broker away mid-run.
        const proxy = yield* Workers.kafkaProxy(brokers[0]!)
        const d = fresh({ brokers: [proxy.address] })
        const total = 200_000
        yield* produce(
          d.topics.events.name,
          UserEvents.generate({ count: total, topic: d.topics.events.name, seed: 6 })
        )
        const shutdownTimeoutMs = 3_000
        const w = yield* d.worker("worker", shutdownTimeoutMs)
        yield* w.waitForLog(joined, "30 seconds")
        yield* waitUntil(
          "the worker has processed some records",
          "60 seconds",
          Effect.map(recordCount(d.topics.activity.name), (n) => n > 0),
          [w]
        )
        // Mid-stream, with fetched batches waiting: their outputs can no longer be written, nor offsets committed.
        yield* proxy.stop
        yield* Effect.sleep("500 millis")
        assert.isTrue(w.isRunning(), `the worker rides out the outage until it is stopped\n${w.output().slice(-3000)}`)
        yield* w.signal("SIGTERM")
        const exit = yield* w.exit("30 seconds")
        const output = w.output().slice(-3000)
        console.log(`SIGTERM with the broker unreachable: exit code ${exit.code} after ${exit.msSinceSignal} ms`)
        assert.isBelow(
          exit.msSinceSignal ?? Number.POSITIVE_INFINITY,
          shutdownTimeoutMs + 2_500,
          `exit within --shutdown-timeout-ms + 2.5 s\n${output}`
        )
        const afterStop = w.output().slice(w.output().indexOf("stopped user-events"))
        assert.notMatch(afterStop, /in=\d+ out=\d+/, `no progress line once the topology has stopped\n${output}`)
        assert.notStrictEqual(exit.code, 0, `a stop that abandoned work is not clean\n${output}`)
        assert.strictEqual(exit.code, 3, `exit code 3: stopped, not cleanly\n${output}`)
        assert.include(output, "stopped, not cleanly")
      }).pipe(Effect.scoped),
    120_000
  )
})
