/**
 * Record limits on the real broker (SLUICE_BROKERS, default 127.0.0.1:9092): `maxRecordBytes` reads the topic's
 * `max.message.bytes`, `send` refuses what is over it before sending, and `Record.sizeOf` is what the broker measures
 * (checked with a plain kafkajs producer that does no pre-check).
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
// Only to check the broker's own verdict, without Sluice's pre-check; Sluice's code never sees kafkajs types.
import { Kafka as KafkaJsClient, logLevel, type Message } from "kafkajs"
import type { KafkaError } from "../src/Errors.ts"
import { Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes, defaultMaxMessageBytes, type ProducerRecord, sizeOf, text } from "../src/Record.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"
import { recordOfSize } from "./support/recordOfSize.ts"
import { alterMaxMessageBytes } from "./support/topicConfig.ts"

const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)

const toMessage = (record: ProducerRecord): Message => ({
  key: record.key === null ? null : toBuffer(record.key),
  value: record.value === null ? null : toBuffer(record.value),
  headers: Object.fromEntries(Object.entries(record.headers ?? {}).map(([k, v]) => [k, toBuffer(v)]))
})

/** What the broker itself says to one record sent alone by a plain kafkajs producer: "ok" or its error type. */
const brokerVerdict = (record: ProducerRecord) =>
  Effect.promise(async () => {
    const producer = new KafkaJsClient({ brokers: [...brokers], logLevel: logLevel.NOTHING }).producer({
      retry: { retries: 0 }
    })
    await producer.connect()
    try {
      await producer.send({ topic: record.topic, acks: -1, messages: [toMessage(record)] })
      return "ok"
    } catch (error) {
      const type = (e: unknown): string =>
        typeof e === "object" && e !== null && "type" in e && typeof e.type === "string"
          ? e.type
          : typeof e === "object" && e !== null && "cause" in e
            ? type(e.cause)
            : String(e)
      return type(error)
    } finally {
      await producer.disconnect()
    }
  })

const total = (kafka: typeof Kafka.Service, topic: string) =>
  Effect.map(kafka.offsets(topic), (partitions) => partitions.reduce((n, p) => n + p.high - p.low, 0))

const tooLarge = (error: KafkaError) => {
  assert.strictEqual(error.reason._tag, "MessageTooLarge", error.reason.message)
  assert.isFalse(error.isRetryable)
  return error.reason._tag === "MessageTooLarge" ? error.reason : undefined
}

layer(KafkaJs.layer({ brokers, clientId: "sluice-limits-test", connectRetry }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("KafkaJs record limits (real broker)", (it) => {
  it.effect("maxRecordBytes is the topic's max.message.bytes, else the broker default", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const small = unique("sluice-limits-small")
      const plain = unique("sluice-limits-plain")
      yield* kafka.createTopics([
        { name: small, partitions: 1, config: { "max.message.bytes": "20000" } },
        { name: plain, partitions: 1 }
      ])
      assert.strictEqual(yield* kafka.maxRecordBytes(small), 20_000)
      assert.strictEqual(yield* kafka.maxRecordBytes(small), 20_000, "cached")
      assert.strictEqual(yield* kafka.maxRecordBytes(plain), defaultMaxMessageBytes)
    })
  )

  it.effect(
    "a record of exactly the limit is accepted, one byte more is refused before sending; the broker agrees",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = unique("sluice-limits-exact")
        const limit = 20_000
        yield* kafka.createTopics([{ name: topic, partitions: 1, config: { "max.message.bytes": String(limit) } }])
        const base = {
          topic,
          key: bytes("key-é"),
          // Header values are bytes, not text: invalid UTF-8 counts byte for byte.
          headers: { trace: new Uint8Array([0xff, 0xfe, 0x80, 0x00]), "content-type": bytes("application/x") }
        }
        const fits = recordOfSize(base, limit)
        const over = recordOfSize(base, limit + 1)
        assert.deepStrictEqual([sizeOf(fits), sizeOf(over)], [limit, limit + 1])

        const [acked] = yield* kafka.send([fits])
        assert.strictEqual(acked?.offset, 0)
        const [stored] = yield* kafka.read({ topics: [topic] }).pipe(
          Stream.flatMap((batch) => Stream.fromIterable(batch.records)),
          Stream.take(1),
          Stream.runCollect,
          Effect.timeout("30 seconds")
        )
        assert.strictEqual(stored?.value?.byteLength, fits.value?.byteLength)
        assert.deepStrictEqual([...(stored?.headers.trace ?? [])], [0xff, 0xfe, 0x80, 0x00])
        assert.strictEqual(text(stored?.key ?? new Uint8Array()), "key-é")

        const small = { topic, key: null, value: bytes("small") }
        const error = yield* kafka.send([small, over]).pipe(Effect.flip)
        const reason = tooLarge(error)
        assert.deepStrictEqual(reason?.records, [1])
        assert.deepStrictEqual([reason?.topic, reason?.size, reason?.limit], [topic, limit + 1, limit])
        assert.strictEqual(yield* total(kafka, topic), 1, "nothing of the refused call was appended")

        // The estimate is the broker's: without the pre-check, it takes the one and refuses the other.
        assert.strictEqual(yield* brokerVerdict(fits), "ok")
        assert.strictEqual(yield* brokerVerdict(over), "MESSAGE_TOO_LARGE")
      })
  )

  it.effect("on a default topic, sizeOf decides about a ~1 MB value as the broker does", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-limits-default")
      yield* kafka.createTopics([{ name: topic, partitions: 1 }])
      const base = { topic, key: bytes("k"), headers: { h: new Uint8Array([0xc3]) } }
      const near = { ...base, value: new Uint8Array(1_048_300) }
      assert.isAtMost(sizeOf(near), defaultMaxMessageBytes, "a 1,048,300-byte value with a small key fits")
      assert.strictEqual((yield* kafka.send([near])).length, 1)
      assert.strictEqual(yield* brokerVerdict(near), "ok")

      const fits = recordOfSize(base, defaultMaxMessageBytes)
      const over = recordOfSize(base, defaultMaxMessageBytes + 1)
      assert.strictEqual((yield* kafka.send([fits])).length, 1)
      assert.deepStrictEqual(tooLarge(yield* kafka.send([over]).pipe(Effect.flip))?.records, [0])
      assert.strictEqual(yield* brokerVerdict(fits), "ok")
      assert.strictEqual(yield* brokerVerdict(over), "MESSAGE_TOO_LARGE")
    })
  )

  it.effect("many small records for a topic with a small limit are sent in batches the broker accepts", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-limits-many")
      yield* kafka.createTopics([{ name: topic, partitions: 2, config: { "max.message.bytes": "20000" } }])
      // 300 KB in one call: one 512 KiB chunk would put ~150 KB into each partition's record batch.
      const records = Array.from({ length: 300 }, (_, i) =>
        recordOfSize({ topic, key: bytes(`k${i}`), timestamp: 1_700_000_000_000 + i * 3_600_000 }, 1000)
      )
      const metadata = yield* kafka.send(records)
      assert.strictEqual(metadata.length, 300)
      assert.strictEqual(yield* total(kafka, topic), 300)
    })
  )

  it.effect("a broker-side MESSAGE_TOO_LARGE comes back at once for its topic; the limit is then read again", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = unique("sluice-limits-altered")
      yield* kafka.createTopics([{ name: topic, partitions: 1, config: { "max.message.bytes": "20000" } }])
      assert.strictEqual(yield* kafka.maxRecordBytes(topic), 20_000)
      // Lowered behind the layer's back: its cached limit is now wrong.
      yield* alterMaxMessageBytes(topic, 10_000)
      const record = recordOfSize({ topic, key: null }, 15_000)

      const started = Date.now()
      const refused = tooLarge(yield* kafka.send([record]).pipe(Effect.flip))
      assert.isBelow(Date.now() - started, 2000, "not retried")
      assert.strictEqual(refused?.topic, topic)
      assert.isUndefined(refused?.records, "the broker does not say which record")

      const checked = tooLarge(yield* kafka.send([record]).pipe(Effect.flip))
      assert.deepStrictEqual([checked?.records, checked?.limit], [[0], 10_000])
      assert.strictEqual(yield* total(kafka, topic), 0)
    })
  )

  it.effect("after the broker refused part of a request, the next records for what it accepted are appended", () =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const out = unique("sluice-limits-accepted")
      const small = unique("sluice-limits-refusing")
      yield* kafka.createTopics([
        { name: out, partitions: 1 },
        { name: small, partitions: 1 }
      ])
      assert.isAbove(yield* kafka.maxRecordBytes(small), 100_000)
      yield* alterMaxMessageBytes(small, 2000)
      // One request: the broker appends the record for `out` and refuses the one for `small`. kafkajs then rolls back
      // the sequence numbers of both partitions.
      const refused = yield* kafka
        .send([{ topic: out, key: null, value: bytes("first") }, recordOfSize({ topic: small, key: null }, 5000)])
        .pipe(Effect.flip)
      tooLarge(refused)
      // A batch with the rolled-back sequence number would be taken for a duplicate of "first": acknowledged with its
      // offset, and dropped.
      const [second] = yield* kafka.send([{ topic: out, key: null, value: bytes("second") }])
      assert.strictEqual(second?.offset, 1)
      const values = yield* kafka.readPartition({ topic: out, partition: 0, from: 0 }).pipe(
        Stream.flatMap((batch) => Stream.fromIterable(batch.records)),
        Stream.map((r) => text(r.value!)),
        Stream.runCollect
      )
      assert.deepStrictEqual(values, ["first", "second"])
    })
  )
})
