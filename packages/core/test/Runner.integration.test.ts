/**
 * The runner against the real broker: records at and over a topic's `max.message.bytes`, dead letters that must be
 * truncated, and header bytes that must come back byte-exact. Every case ends with valid records that must all be
 * processed: a bad record never stops a partition.
 */
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import * as DeadLetter from "../src/DeadLetter.ts"
import { Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import * as Reader from "../src/Reader.ts"
import { bytes, type ConsumerRecord, header, sizeOf } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"
import { recordOfSize } from "./support/recordOfSize.ts"

const records = (topic: string) =>
  Effect.gen(function* () {
    const all: Array<ConsumerRecord> = []
    yield* Reader.foldToEnd(topic, 0, (n, r) => {
      all.push(r)
      return n + 1
    })
    return all
  })

/** Waits (real time) until the group has committed every partition of `topic` up to its end. */
const awaitCommitted = (group: string, topic: string, total: number) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      const committed = yield* kafka.committedOffsets(group, topic)
      if (committed.reduce((n, c) => n + c.offset, 0) >= total) return
      yield* Effect.sleep("200 millis")
    }
    assert.fail(`group ${group} did not commit ${total} records of ${topic} within 60 s`)
  })

const Live = KafkaJs.layer({ brokers, connectRetry, clientId: "sluice-runner-it" })

layer(Live, { excludeTestServices: true, timeout: Duration.seconds(120) })("Runner (real broker)", (it) => {
  it.effect(
    "records just under and just over the output topic's limit, then valid ones: the one over is dead-lettered, all others are processed",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const limit = 20_000
        const names = { in: unique("rit-size-in"), out: unique("rit-size-out") }
        // The input takes records a little over the output's limit; the output does not.
        yield* kafka.createTopics([
          { name: names.in, partitions: 1, config: { "max.message.bytes": String(limit + 100) } },
          { name: names.out, partitions: 1, config: { "max.message.bytes": String(limit) } }
        ])
        const under = recordOfSize({ topic: names.in, key: null }, limit)
        const over = recordOfSize({ topic: names.in, key: null }, limit + 1)
        const valid = Array.from({ length: 100 }, (_, i) => ({ topic: names.in, key: null, value: bytes(`ok-${i}`) }))
        yield* kafka.send([under, over, ...valid])

        // Echoes each value unchanged, with no key and no headers: an output has exactly its input's size.
        const out = Topic.raw(names.out)
        const topology = Topology.make({
          name: names.in,
          input: Topic.raw(names.in),
          process: (rs) => Effect.succeed(Batch.forEach(rs, (r, emit) => emit.emit(out, null, r.value)))
        })
        const fiber = yield* Effect.forkChild(Runner.run(topology, { commitInterval: "200 millis" }))
        yield* awaitCommitted(names.in, names.in, 102)
        yield* Fiber.interrupt(fiber)

        const written = yield* records(names.out)
        assert.strictEqual(written.length, 101, "the record at the limit and the 100 valid ones")
        assert.strictEqual(sizeOf(written[0]!), limit)
        assert.deepStrictEqual(written[0]!.value, under.value)
        const dlq = yield* records(DeadLetter.topicFor(names.in))
        assert.strictEqual(dlq.length, 1)
        const dl = dlq[0]!
        assert.deepStrictEqual(dl.value, over.value, "the original bytes, whole")
        assert.strictEqual(header(dl.headers, DeadLetter.headers.errorTag), "MessageTooLarge")
        assert.include(header(dl.headers, DeadLetter.headers.errorMessage), `over the topic's limit of ${limit} bytes`)
        assert.strictEqual(header(dl.headers, DeadLetter.headers.sourceOffset), "1")
      })
  )

  it.effect(
    "junk over the dead-letter topic's limit is written truncated, headers saying so; odd header bytes come back exact",
    () =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const names = { in: unique("rit-junk-in") }
        const dlqTopic = DeadLetter.topicFor(names.in)
        // A dead-letter topic made beforehand, smaller than the input's limit: the runner keeps it as it is.
        yield* kafka.createTopics([
          { name: names.in, partitions: 1, config: { "max.message.bytes": "40000" } },
          { name: dlqTopic, partitions: 1, config: { "max.message.bytes": "20000" } }
        ])
        const odd = Uint8Array.of(0xff, 0xfe, 0x00, 0x01)
        const bigJunk = new Uint8Array(30_000).fill(0x7b)
        const smallJunk = Uint8Array.of(0x7b, 0xff, 0x22)
        yield* kafka.send([
          { topic: names.in, key: null, value: bigJunk, headers: { trace: odd } },
          { topic: names.in, key: bytes("k"), value: smallJunk, headers: { trace: odd } },
          ...Array.from({ length: 50 }, (_, n) => ({ topic: names.in, key: null, value: bytes(JSON.stringify({ n })) }))
        ])
        const events = Topic.make(names.in, { key: Codec.raw, value: Codec.json(Schema.Struct({ n: Schema.Int })) })
        const out = Topic.raw(unique("rit-junk-out"))
        const topology = Topology.make({
          name: names.in,
          input: events,
          outputs: [{ name: out.name, partitions: 1 }],
          process: (rs) =>
            Effect.succeed(Batch.forEach(rs, (r, emit) => emit.emit(out, null, bytes(String(r.value.n)))))
        })
        const fiber = yield* Effect.forkChild(Runner.run(topology, { commitInterval: "200 millis" }))
        yield* awaitCommitted(names.in, names.in, 52)
        yield* Fiber.interrupt(fiber)

        assert.strictEqual((yield* records(out.name)).length, 50, "every valid record after the junk is processed")
        const dlq = yield* records(dlqTopic)
        assert.strictEqual(dlq.length, 2)
        const [big, small] = dlq
        assert.isAtMost(sizeOf(big!), 20_000)
        assert.strictEqual(header(big!.headers, DeadLetter.headers.truncated), "value")
        assert.strictEqual(header(big!.headers, DeadLetter.headers.originalSize), "30000")
        assert.deepStrictEqual(big!.value, bigJunk.subarray(0, big!.value?.byteLength ?? 0))
        assert.deepStrictEqual(big!.headers.trace, odd, "header bytes kept exactly")
        assert.deepStrictEqual(small!.value, smallJunk, "invalid UTF-8 inside JSON: the original bytes")
        assert.deepStrictEqual(small!.key, bytes("k"))
        assert.deepStrictEqual(small!.headers.trace, odd, "header bytes kept exactly")
        assert.include(header(small!.headers, DeadLetter.headers.errorMessage), "invalid UTF-8")
      })
  )
})
