/** The clickstream a JSON pipeline's integration tests run on: produced by the CLI as a user does, read back. */
import { assert } from "@effect/vitest"
import type { KafkaError } from "@sluice/core/Errors"
import type { Kafka } from "@sluice/core/Kafka"
import * as Reader from "@sluice/core/Reader"
import { text } from "@sluice/core/Record"
import { Effect, Stream } from "effect"
import type { Sent } from "./pipelineReference.ts"
import * as Workers from "./workers.ts"

/** `sluice produce clickstream --count N --users 100 --sessions 200 --time-order --topic-prefix P`. */
export const produce = (prefix: string, count: number) =>
  Effect.gen(function* () {
    const produced = yield* Workers.once([
      "produce",
      "clickstream",
      "--count",
      String(count),
      "--users",
      "100",
      "--sessions",
      "200",
      "--time-order",
      "--topic-prefix",
      prefix
    ])
    assert.strictEqual(produced.code, 0, produced.stderr)
  })

/** Every event of `topic`, where it is, with its key and its JSON. */
export const readBack = (topic: string): Effect.Effect<ReadonlyArray<Sent>, KafkaError, Kafka> =>
  Stream.runCollect(Reader.readToEnd(topic)).pipe(
    Effect.map((batches) =>
      batches.flat().map((r) => ({
        partition: r.partition,
        offset: r.offset,
        key: text(r.key!),
        event: JSON.parse(text(r.value!))
      }))
    )
  )
