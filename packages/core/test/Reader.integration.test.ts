/**
 * Bounded reads on the real broker (SLUICE_BROKERS, default 127.0.0.1:9092) when a partition ends in a transaction
 * marker, as every topic written by an exactly-once producer (Kafka Streams, a transactional Java app, Sluice's
 * planned exactly-once mode) does. The marker takes an offset that is never delivered, so "read to the end" must not
 * wait for a record there.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule, Schema, Stream } from "effect"
// Only to play a foreign transactional producer; Sluice's own code never sees kafkajs types.
import { Kafka as KafkaJsClient, logLevel } from "kafkajs"
import * as Codec from "../src/Codec.ts"
import { Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import * as Reader from "../src/Reader.ts"
import * as Table from "../src/Table.ts"
import * as Topic from "../src/Topic.ts"
import { brokers, connectRetry } from "./support/brokers.ts"

const produceTransactionally = (topic: string, records: ReadonlyArray<readonly [string, string]>) =>
  Effect.promise(async () => {
    const producer = new KafkaJsClient({ brokers: [...brokers], logLevel: logLevel.NOTHING }).producer({
      transactionalId: `${topic}-tx`,
      idempotent: true,
      maxInFlightRequests: 1
    })
    await producer.connect()
    const tx = await producer.transaction()
    await tx.send({ topic, messages: records.map(([key, value]) => ({ key, value })) })
    await tx.commit()
    await producer.disconnect()
  })

describe("Reader (real broker)", () => {
  it.live("a table and readToEnd finish on a partition that ends in a transaction marker", () =>
    Effect.gen(function* () {
      const name = `it-tx-${Date.now().toString(36)}`
      const kafka = yield* Kafka
      yield* kafka.createTopics([{ name, partitions: 1, config: { "cleanup.policy": "compact" } }])
      yield* produceTransactionally(name, [
        ["1", '"alice"'],
        ["2", '"bob"']
      ])
      // Two records and one commit marker. The broker writes the marker after `commit` returns, and the offsets
      // it reports are the last stable ones, so wait until the marker is in.
      const high = yield* kafka.offsets(name).pipe(
        Effect.map(([p]) => p?.high ?? 0),
        Effect.repeat({ until: (h) => h >= 3, schedule: Schedule.spaced("50 millis") }),
        Effect.timeout("10 seconds")
      )
      assert.strictEqual(high, 3)

      const read = yield* Reader.readToEnd(name).pipe(
        Stream.runFold(
          () => 0,
          (n, records) => n + records.length
        ),
        Effect.timeout("15 seconds")
      )
      assert.strictEqual(read, 2)

      const topic = Topic.make(name, { key: Codec.string, value: Codec.nullable(Codec.json(Schema.String)) })
      const table = yield* Table.makeReady(topic).pipe(Effect.timeout("15 seconds"))
      assert.strictEqual(yield* table.size, 2)
      assert.strictEqual(yield* table.get("2"), "bob")
      yield* kafka.deleteTopics([name])
    }).pipe(Effect.scoped, Effect.provide(KafkaJs.layer({ brokers, connectRetry })))
  )
})
