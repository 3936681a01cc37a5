/** Puts a few orders into `<prefix>orders` on the real broker, with the Kafka layer of the published package. */

import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import { bytes } from "@sluice/core/Record"
import { Effect } from "effect"

const prefix = process.argv[2] ?? ""
const brokers = (process.env.SLUICE_BROKERS ?? "127.0.0.1:9092").split(",")
// Keyed by SKU, so that all orders of one SKU meet in one task (and its store).
const orders: ReadonlyArray<readonly [string, string]> = [
  ["a", '{"sku":"a","qty":2}'],
  ["b", '{"sku":"b","qty":1}'],
  ["a", '{"sku":"a","qty":3}'],
  ["x", "oops"]
]

await Effect.runPromise(
  Effect.gen(function* () {
    const kafka = yield* Kafka
    yield* kafka.createTopics([{ name: `${prefix}orders`, partitions: 3 }])
    yield* kafka.send(orders.map(([sku, o]) => ({ topic: `${prefix}orders`, key: bytes(sku), value: bytes(o) })))
  }).pipe(Effect.provide(KafkaJs.layer({ brokers })))
)
console.log(`produced ${orders.length} orders to ${prefix}orders`)
