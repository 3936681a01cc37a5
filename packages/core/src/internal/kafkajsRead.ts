/**
 * `read`: every partition of some topics, outside any consumer group, as a Stream of batches.
 *
 * kafkajs has no `assign()`, so a read is a consumer group of one with a throwaway id (`sluice-reader-<uuid>`) that
 * never commits; the consumer lives exactly as long as the stream.
 */

import { Cause, type Context, Effect, Exit, Queue, Stream } from "effect"
import type * as KafkaJS from "kafkajs"
import type { KafkaError } from "../Errors.ts"
import type { ReadOptions } from "../Kafka.ts"
import type { RecordBatch } from "../Record.ts"
import {
  type ConsumerSettings,
  connectScoped,
  consumerConfig,
  heartbeatIntervalFor,
  startRunning,
  subscribe,
  whileHeartbeating
} from "./kafkajsConsumerBase.ts"
import { toKafkaError } from "./kafkajsErrors.ts"
import { toRecordBatch } from "./kafkajsRecords.ts"

/** Bytes one fetch of a `read` returns per partition. */
const readFetchBytes = 256 * 1024

export const read = (kafka: KafkaJS.Kafka, settings: ConsumerSettings) => (options: ReadOptions) =>
  Stream.callback<RecordBatch, KafkaError>(
    (queue) =>
      Effect.gen(function* () {
        const context: Context.Context<never> = yield* Effect.context<never>()
        const abort = new AbortController()
        const sessionTimeoutMs = 10_000
        const groupId = `sluice-reader-${crypto.randomUUID()}`
        const consumer = kafka.consumer(
          consumerConfig(groupId, sessionTimeoutMs, options.maxWaitMs ?? 100, settings, {
            // A restarted reader would start over from the beginning: fail the stream instead.
            restartOnFailure: async () => false,
            // kafkajs decodes a whole fetch response at once, and its records stay alive until the stream has
            // taken them: smaller fetches keep a table load's garbage from surviving into the old generation.
            maxBytesPerPartition: readFetchBytes
          })
        )
        // A fetch that held only transaction markers or aborted records never reaches eachBatch; kafkajs moves past
        // it and reports it here. Readers looking for a partition's end need to hear about it (Reader.endTracker).
        consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
          if (event.payload.batchSize !== 0) return
          const lastOffset = Number(event.payload.lastOffset)
          if (!Number.isFinite(lastOffset)) return
          Effect.runForkWith(context)(
            Queue.offer(queue, {
              topic: event.payload.topic,
              partition: event.payload.partition,
              records: [],
              highWatermark: Number(event.payload.highWatermark),
              lastOffset
            })
          )
        })
        consumer.on(consumer.events.CRASH, (event) => {
          Queue.failCauseUnsafe(queue, Cause.fail(toKafkaError("read", event.payload.error)))
        })
        const log = (message: string) => {
          Effect.runForkWith(context)(Effect.logError(message))
        }
        yield* connectScoped(consumer, abort, settings, groupId)
        yield* subscribe(consumer, settings, "read", options.topics, options.from !== "latest")
        yield* startRunning(
          consumer,
          settings,
          async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
            if (!isRunning() || isStale()) return
            const last = batch.messages[batch.messages.length - 1]
            if (last === undefined) return
            // Awaiting the offer is the back-pressure: kafkajs fetches no more until the stream takes it.
            const exit = await whileHeartbeating(
              Effect.runPromiseExitWith(context)(Queue.offer(queue, toRecordBatch(batch)), {
                signal: abort.signal
              }),
              heartbeat,
              heartbeatIntervalFor(sessionTimeoutMs)
            )
            if (Exit.isFailure(exit)) return
            resolveOffset(last.offset)
            await heartbeat()
          },
          (reason) => log(`kafkajs consumer.run failed: ${reason}`)
        )
      }),
    // Two batches ahead of the stream's reader are enough to keep kafkajs fetching; more only hold records longer.
    { bufferSize: 2, strategy: "suspend" }
  )
