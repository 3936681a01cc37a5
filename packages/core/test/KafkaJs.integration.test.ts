/**
 * The kafkajs layer against the real broker (SLUICE_BROKERS, default 127.0.0.1:9092; `bash scripts/kafka.sh start`).
 * Every run uses fresh topic and group names, so reruns never see each other's records.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Duration, Effect, Layer, Stream } from "effect"
// Only to delete a topic behind the layer's back; Sluice's own code never sees kafkajs types.
import { Kafka as KafkaJsClient, logLevel } from "kafkajs"
import type { ConfigInvalid, KafkaError } from "../src/Errors.ts"
import { type GroupConsumer, Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import {
  bytes,
  type ConsumerRecord,
  header,
  type ProducerRecord,
  type RecordBatch,
  type TopicPartition,
  text,
  textHeaders
} from "../src/Record.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"

const at = (partition: number, offset: number) => `${partition}@${offset}`
const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))

/** Polls `check` every 50 ms until it holds, failing with `what` after `ms`. */
const eventually = (what: string, ms: number, check: () => boolean) =>
  Effect.gen(function* () {
    while (!check()) yield* Effect.sleep("50 millis")
  }).pipe(
    Effect.timeoutOrElse({ duration: Duration.millis(ms), orElse: () => Effect.die(new Error(`timed out: ${what}`)) })
  )

/** Runs `java` on a single-file source with the broker's own jars, feeding `input` on stdin. */
const runJava = (source: string, className: string, args: ReadonlyArray<string>, input: string) =>
  Effect.callback<string, Error>((resume) => {
    const libs = ["libs-3.9", "libs-4"].map((d) => join(repoRoot, ".kafka", d)).find(hasKafkaClients)
    if (libs === undefined) {
      return resume(
        Effect.fail(new Error(`no Kafka jars in ${join(repoRoot, ".kafka")}/libs-*: run bash scripts/kafka.sh start`))
      )
    }
    const dir = mkdtempSync(join(tmpdir(), "sluice-java-"))
    const file = join(dir, `${className}.java`)
    writeFileSync(file, source)
    const child = execFile("java", ["-cp", `${libs}/*`, file, ...args], (error, stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true })
      resume(
        error === null ? Effect.succeed(stdout) : Effect.fail(new Error(`java failed: ${error.message}\n${stderr}`))
      )
    })
    child.stdin?.end(input, "utf8")
  })

const hasKafkaClients = (dir: string) =>
  existsSync(dir) && readdirSync(dir).some((f) => f.startsWith("kafka-clients-") && f.endsWith(".jar"))

const javaPartitioner = `
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

public class JavaPartitioner {
  public static void main(String[] args) throws Exception {
    int partitions = Integer.parseInt(args[0]);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String key;
    while ((key = in.readLine()) != null) {
      System.out.println(Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % partitions);
    }
  }
}
`

layer(KafkaJs.layer({ brokers, clientId: "sluice-kafkajs-test", connectRetry }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("KafkaJs (real broker)", (it) => {
  it.effect(
    "1,000 keyed records round-trip through a group exactly once, keys stay on one partition, commits stick",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-kafkajs-roundtrip")
        const groupId = unique("sluice-kafkajs-group")
        yield* kafka.createTopics([{ name: topic, partitions: 3 }])

        const records: Array<ProducerRecord> = Array.from({ length: 1000 }, (_, i) => ({
          topic,
          key: bytes(`key-${i % 100}`),
          value: bytes(`value-${i}`),
          headers: textHeaders({ seq: String(i) }),
          timestamp: 1_700_000_000_000 + i
        }))
        // Ten concurrent callers: the sender coalesces them, and each must get the metadata of its own records.
        const started = Date.now()
        const metadata = (yield* Effect.forEach(
          Array.from({ length: 10 }, (_, c) => records.slice(c * 100, c * 100 + 100)),
          (chunk) => kafka.send(chunk),
          { concurrency: "unbounded" }
        )).flat()
        const produceMs = Date.now() - started
        assert.strictEqual(metadata.length, 1000)
        const written = new Map<string, number>()
        metadata.forEach((m, i) => {
          assert.strictEqual(m.topic, topic)
          written.set(at(m.partition, m.offset), i)
        })
        assert.strictEqual(written.size, 1000, "every record got its own partition and offset")

        const received: Array<ConsumerRecord> = []
        const events: Array<string> = []
        const consumer = yield* kafka.consume(
          { groupId, topics: [topic], sessionTimeoutMs: 6000 },
          {
            // Slow on purpose: batches must still wait for it.
            onAssignment: (assignment: ReadonlyArray<TopicPartition>) =>
              Effect.sleep("300 millis").pipe(
                Effect.andThen(
                  Effect.sync(() => {
                    events.push(`assign:${assignment.length}`)
                  })
                )
              ),
            onBatch: (batch: RecordBatch) =>
              Effect.sync(() => {
                events.push("batch")
                received.push(...batch.records)
              })
          }
        )
        const consumeStarted = Date.now()
        yield* eventually("all 1,000 records consumed", 60_000, () => received.length >= 1000)
        const consumeMs = Date.now() - consumeStarted
        // A clean run has no rebalance, so nothing may arrive twice; give a duplicate time to show up.
        yield* Effect.sleep("500 millis")
        yield* consumer.stop
        yield* Effect.logInfo(`produced 1,000 records in ${produceMs} ms, consumed them in ${consumeMs} ms`)

        assert.strictEqual(events[0], "assign:3", "onAssignment ran before the first batch")
        assert.strictEqual(received.length, 1000, "no duplicates")
        const seen = new Set(received.map((r) => Number(header(r.headers, "seq"))))
        assert.strictEqual(seen.size, 1000, "no gaps")
        const partitionOfKey = new Map<string, number>()
        for (const r of received) {
          const i = Number(header(r.headers, "seq"))
          assert.strictEqual(text(r.value!), `value-${i}`)
          assert.strictEqual(r.timestamp, 1_700_000_000_000 + i)
          assert.strictEqual(written.get(at(r.partition, r.offset)), i, "the record is where send said it went")
          const key = text(r.key!)
          const partition = partitionOfKey.get(key) ?? r.partition
          assert.strictEqual(r.partition, partition, `key ${key} stays on one partition`)
          partitionOfKey.set(key, partition)
        }

        // Commits still work after stop; the committed positions are the high-water marks.
        const offsets = yield* kafka.offsets(topic)
        assert.strictEqual(
          offsets.reduce((n, p) => n + p.high - p.low, 0),
          1000
        )
        const next = new Map<number, number>()
        for (const r of received) next.set(r.partition, Math.max(next.get(r.partition) ?? 0, r.offset + 1))
        yield* consumer.commit([...next].map(([partition, offset]) => ({ topic, partition, offset })))
        const committed = yield* kafka.committedOffsets(groupId, topic)
        assert.deepStrictEqual(
          committed.map((c) => [c.partition, c.offset]),
          offsets.map((o) => [o.partition, o.high])
        )
      }).pipe(Effect.scoped)
  )

  it.effect("keyed records land on the partition the Java client computes", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-java")
      yield* kafka.createTopics([{ name: topic, partitions: 3 }])
      const keys = ["user-1", "user-2", "alice", "bob", "", "k", "ключ-7", "🔑 emoji", "a longer key, 1234567890"]
      const metadata = yield* kafka.send(keys.map((k) => ({ topic, key: bytes(k), value: bytes(k) })))
      const java = (yield* runJava(javaPartitioner, "JavaPartitioner", ["3"], keys.map((k) => `${k}\n`).join("")))
        .trim()
        .split("\n")
        .map(Number)
      assert.deepStrictEqual(
        metadata.map((m) => m.partition),
        java
      )
      assert.strictEqual(new Set(java).size, 3, "the keys cover every partition, so a wrong hash cannot pass by luck")
      // An explicit partition wins over the key.
      const [pinned] = yield* kafka.send([{ topic, key: bytes("alice"), value: null, partition: (java[2]! + 1) % 3 }])
      assert.strictEqual(pinned!.partition, (java[2]! + 1) % 3)
    })
  )

  it.effect("read delivers a whole topic from the earliest offset; offsets and describeTopic report it", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-read")
      yield* kafka.createTopics([{ name: topic, partitions: 2, config: { "retention.ms": "3600000" } }])
      yield* kafka.send(Array.from({ length: 50 }, (_, i) => ({ topic, key: bytes(`k${i}`), value: bytes(`${i}`) })))

      const values = yield* kafka.read({ topics: [topic], from: "earliest" }).pipe(
        Stream.flatMap((batch) => Stream.fromIterable(batch.records)),
        Stream.take(50),
        Stream.runCollect,
        Effect.timeout("30 seconds")
      )
      assert.deepStrictEqual(
        values.map((r) => Number(text(r.value!))).sort((a, b) => a - b),
        Array.from({ length: 50 }, (_, i) => i)
      )

      const offsets = yield* kafka.offsets(topic)
      assert.deepStrictEqual(
        offsets.map((o) => o.partition),
        [0, 1]
      )
      for (const o of offsets) {
        assert.strictEqual(o.low, 0)
        assert.strictEqual(o.high, values.filter((r) => r.partition === o.partition).length)
      }
      assert.deepStrictEqual(yield* kafka.describeTopic(topic), { name: topic, partitions: 2 })
      assert.include(yield* kafka.listTopics, topic)

      const missing = unique("sluice-kafkajs-missing")
      const error = yield* Effect.flip(kafka.describeTopic(missing))
      assert.strictEqual(error._tag, "KafkaError")
      assert.strictEqual(error.operation, "describeTopic")
      assert.strictEqual(error.reason._tag, "UnknownTopic")
      assert.strictEqual(error.reason.message, `topic ${missing} does not exist`)
      assert.isFalse(error.isRetryable)

      // Creating an existing topic is a no-op, deleting a missing one too.
      yield* kafka.createTopics([{ name: topic, partitions: 2 }])
      yield* kafka.deleteTopics([missing])
    })
  )

  it.effect("deleting a topic the producer wrote to does not break sends to other topics", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const doomed = unique("sluice-kafkajs-doomed")
      const survivor = unique("sluice-kafkajs-survivor")
      yield* kafka.createTopics([
        { name: doomed, partitions: 1 },
        { name: survivor, partitions: 1 }
      ])
      yield* kafka.send([{ topic: doomed, key: null, value: bytes("x") }])
      yield* kafka.deleteTopics([doomed])
      assert.notInclude(yield* kafka.listTopics, doomed)
      const [written] = yield* kafka
        .send([{ topic: survivor, key: null, value: bytes("y") }])
        .pipe(Effect.timeout("10 seconds"))
      assert.deepStrictEqual(written, { topic: survivor, partition: 0, offset: 0 })
    })
  )

  it.effect("pause holds a partition back, resume continues where it stopped", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-pause")
      yield* kafka.createTopics([{ name: topic, partitions: 1 }])
      const produce = (from: number) =>
        kafka.send(Array.from({ length: 5 }, (_, i) => ({ topic, key: null, value: bytes(`${from + i}`) })))
      yield* produce(0)

      const ready = yield* Deferred.make<GroupConsumer>()
      const received: Array<number> = []
      const consumer = yield* kafka.consume(
        { groupId: unique("sluice-kafkajs-pause-group"), topics: [topic] },
        {
          onAssignment: () => Effect.void,
          onBatch: (batch) =>
            Effect.gen(function* () {
              for (const r of batch.records) received.push(Number(text(r.value!)))
              // The way the runtime pushes back: pause from inside the handler once its queue is full.
              if (received.length >= 5) yield* (yield* Deferred.await(ready)).pause([{ topic, partition: 0 }])
            })
        }
      )
      yield* Deferred.succeed(ready, consumer)
      yield* eventually("the first five records", 30_000, () => received.length >= 5)
      yield* produce(5)
      yield* Effect.sleep("1500 millis")
      assert.deepStrictEqual(received, [0, 1, 2, 3, 4], "nothing is delivered while paused")
      yield* consumer.resume([{ topic, partition: 0 }])
      yield* eventually("the records produced while paused", 30_000, () => received.length >= 10)
      yield* Effect.sleep("300 millis")
      assert.deepStrictEqual(
        received,
        Array.from({ length: 10 }, (_, i) => i)
      )
    }).pipe(Effect.scoped)
  )

  it.effect("stop waits for the batch in flight, nothing is delivered after it, and commits still work", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-kafkajs-stop")
      const groupId = unique("sluice-kafkajs-stop-group")
      yield* kafka.createTopics([{ name: topic, partitions: 1 }])
      yield* kafka.send(Array.from({ length: 10 }, (_, i) => ({ topic, key: null, value: bytes(`${i}`) })))

      const inBatch = yield* Deferred.make<void>()
      let batches = 0
      let finished = false
      let last = -1
      const consumer = yield* kafka.consume(
        { groupId, topics: [topic] },
        {
          onAssignment: () => Effect.void,
          onBatch: (batch) =>
            Effect.gen(function* () {
              batches++
              yield* Deferred.succeed(inBatch, undefined)
              yield* Effect.sleep("1 second")
              last = batch.records[batch.records.length - 1]!.offset
              finished = true
            })
        }
      )
      yield* Deferred.await(inBatch).pipe(Effect.timeout("30 seconds"))
      yield* consumer.stop
      assert.isTrue(finished, "stop returned only after the in-flight onBatch")
      yield* consumer.stop // idempotent

      yield* kafka.send([{ topic, key: null, value: bytes("after stop") }])
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(batches, 1, "no batch after stop")

      yield* consumer.commit([{ topic, partition: 0, offset: last + 1 }])
      assert.deepStrictEqual(yield* kafka.committedOffsets(groupId, topic), [{ topic, partition: 0, offset: 10 }])
    }).pipe(Effect.scoped)
  )
})

/** Runs `effect`, expecting UnknownTopic naming `topic`, within `ms`. */
const failsFastOnUnknown = <A>(what: string, topic: string, effect: Effect.Effect<A, KafkaError>, ms = 1500) =>
  Effect.gen(function* () {
    const started = Date.now()
    const error = yield* Effect.flip(effect)
    const elapsed = Date.now() - started
    assert.strictEqual(error.reason._tag, "UnknownTopic", `${what}: ${error.reason.message}`)
    assert.strictEqual(error.reason._tag === "UnknownTopic" ? error.reason.topic : undefined, topic, what)
    assert.strictEqual(error.reason.message, `topic ${topic} does not exist`, what)
    assert.isFalse(error.isRetryable, what)
    assert.isBelow(elapsed, ms, `${what} took ${elapsed} ms`)
  })

const deleteBehindTheLayersBack = (topic: string) =>
  Effect.promise(async () => {
    const admin = new KafkaJsClient({ brokers: [...brokers], logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    await admin.deleteTopics({ topics: [topic] })
    await admin.disconnect()
  })

layer(KafkaJs.layer({ brokers, clientId: "sluice-unknown-topic-test", connectRetry }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("KafkaJs unknown topics (real broker)", (it) => {
  it.effect("every call about a missing topic fails within a second with UnknownTopic naming it", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const existing = unique("sluice-unknown-existing")
      const missing = unique("sluice-unknown-missing")
      yield* kafka.createTopics([{ name: existing, partitions: 1 }])
      const handlers = { onBatch: () => Effect.void, onAssignment: () => Effect.void }
      yield* failsFastOnUnknown("offsets", missing, kafka.offsets(missing))
      yield* failsFastOnUnknown("committedOffsets", missing, kafka.committedOffsets("g", missing))
      yield* failsFastOnUnknown("maxRecordBytes", missing, kafka.maxRecordBytes(missing))
      yield* failsFastOnUnknown("describeTopic", missing, kafka.describeTopic(missing))
      yield* failsFastOnUnknown("send", missing, kafka.send([{ topic: missing, key: null, value: bytes("x") }]))
      yield* failsFastOnUnknown(
        "read",
        missing,
        kafka.read({ topics: [existing, missing] }).pipe(Stream.runDrain),
        3000
      )
      yield* failsFastOnUnknown(
        "consume",
        missing,
        kafka
          .consume({ groupId: unique("sluice-unknown-group"), topics: [existing, missing] }, handlers)
          .pipe(Effect.scoped),
        3000
      )
    })
  )

  it.effect("a topic deleted behind the layer's back does not break calls about other topics", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const doomed = unique("sluice-unknown-doomed")
      const other = unique("sluice-unknown-other")
      yield* kafka.createTopics([
        { name: doomed, partitions: 1 },
        { name: other, partitions: 1 }
      ])
      yield* kafka.send([{ topic: doomed, key: null, value: bytes("x") }])
      // kafkajs' admin now refreshes metadata for it; the producer too.
      yield* kafka.offsets(doomed)
      yield* kafka.committedOffsets("g", doomed)
      yield* deleteBehindTheLayersBack(doomed)
      const started = Date.now()
      assert.deepStrictEqual(yield* kafka.offsets(other), [{ partition: 0, low: 0, high: 0 }])
      assert.deepStrictEqual(yield* kafka.committedOffsets("g", other), [])
      assert.strictEqual(yield* kafka.maxRecordBytes(other), 1_048_588)
      yield* kafka.send([{ topic: other, key: null, value: bytes("y") }])
      assert.isBelow(Date.now() - started, 3000)
      yield* failsFastOnUnknown("offsets", doomed, kafka.offsets(doomed))
      yield* failsFastOnUnknown("send", doomed, kafka.send([{ topic: doomed, key: null, value: bytes("x") }]), 3000)
    })
  )
})

describe("KafkaJs layers", () => {
  it.live("layerConfig takes the brokers from SLUICE_BROKERS", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      assert.isArray(yield* kafka.listTopics)
    }).pipe(
      Effect.provide(KafkaJs.layerConfig),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnvRecord({ SLUICE_BROKERS: brokers.join(",") })))
    )
  )

  it.live("a layer pointed at a closed port fails with a retryable KafkaError, quickly", () =>
    Effect.gen(function* () {
      const started = Date.now()
      const error: KafkaError | ConfigInvalid = yield* Effect.flip(
        Layer.build(
          KafkaJs.layer({
            brokers: ["127.0.0.1:1"],
            connectionTimeoutMs: 500,
            connectRetry: { maxDurationMs: 1000 },
            logLevel: "None"
          })
        )
      )
      if (error._tag !== "KafkaError") return assert.fail(error.message)
      const elapsed = Date.now() - started
      yield* Effect.logInfo(`closed port: failed after ${elapsed} ms with "${error.reason.message}"`)
      assert.strictEqual(error._tag, "KafkaError")
      assert.strictEqual(error.operation, "connect")
      assert.isTrue(error.isRetryable, error.reason.message)
      assert.strictEqual(error.reason._tag, "Unavailable")
      assert.match(error.reason.message, /ECONNREFUSED|Connection/)
      assert.isBelow(elapsed, 3000)
    }).pipe(Effect.scoped)
  )
})
