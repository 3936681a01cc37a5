/**
 * A reader for exactly-once tests that shares no code with Sluice: kafkajs directly, with its own consumer, its own
 * isolation setting and its own notion of "the end", so a bug in Sluice's read path (which also filters aborted
 * transactions) cannot hide one in its write path.
 *
 * `read_committed` is what a downstream consumer sees: records of aborted or still-open transactions never appear.
 * `read_uncommitted` sees everything written to the log, aborted records included: a test shows with it that the
 * records the committed read did not see were really written, and then aborted.
 */
import { Effect } from "effect"
import { Kafka as KafkaJsClient, logLevel } from "kafkajs"
import type { ConsumerRecord } from "../../src/Record.ts"

export type Isolation = "read_committed" | "read_uncommitted"

/**
 * Every record of `topic`, in offset order per partition. read_committed: up to the last stable offset each
 * partition has when the read starts (a transaction still open keeps it below the high-water mark).
 * read_uncommitted: up to the high-water mark of each partition that had records below its last stable offset.
 * Fails after `timeoutMs`.
 */
export const readTopic = (
  brokers: ReadonlyArray<string>,
  topic: string,
  isolation: Isolation,
  timeoutMs = 60_000
): Effect.Effect<ReadonlyArray<ConsumerRecord>, Error> =>
  Effect.tryPromise({
    try: async () => {
      const client = new KafkaJsClient({
        brokers: [...brokers],
        clientId: "independent-reader",
        logLevel: logLevel.NOTHING
      })
      const admin = client.admin()
      await admin.connect()
      // The admin's ListOffsets is read_committed: the last stable offset, where a read_committed fetch stops.
      const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect())
      const remaining = new Map<number, number>()
      for (const e of ends) if (Number(e.high) > Number(e.low)) remaining.set(e.partition, Number(e.high))
      const records: Array<ConsumerRecord> = []
      if (remaining.size === 0) return records
      const consumer = client.consumer({
        groupId: `independent-reader-${crypto.randomUUID()}`,
        readUncommitted: isolation === "read_uncommitted",
        maxWaitTimeInMs: 100,
        sessionTimeout: 10_000
      })
      let finish: () => void = () => {}
      const done = new Promise<void>((resolve) => {
        finish = resolve
      })
      // Every fetched batch ends here, also one that held only transaction markers or aborted records (which never
      // reaches eachBatch): its last offset is how far the partition was read.
      consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
        const { partition } = event.payload
        let end = remaining.get(partition)
        if (end === undefined) return
        // Read uncommitted, the end is the high-water mark: past the records of transactions still open.
        if (isolation === "read_uncommitted") end = Math.max(end, Number(event.payload.highWatermark))
        remaining.set(partition, end)
        if (Number(event.payload.lastOffset) >= end - 1) remaining.delete(partition)
        if (remaining.size === 0) finish()
      })
      const timer = setTimeout(finish, timeoutMs)
      try {
        await consumer.connect()
        await consumer.subscribe({ topic, fromBeginning: true })
        await consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const end = ends.find((e) => e.partition === batch.partition)
            for (const m of batch.messages) {
              if (isolation === "read_committed" && end !== undefined && Number(m.offset) >= Number(end.high)) continue
              records.push({
                topic,
                partition: batch.partition,
                offset: Number(m.offset),
                timestamp: Number(m.timestamp),
                key: m.key,
                value: m.value,
                headers: {}
              })
            }
          }
        })
        await done
      } finally {
        clearTimeout(timer)
        await consumer.disconnect()
      }
      if (remaining.size > 0)
        throw new Error(
          `independent read of ${topic} (${isolation}) did not reach the end within ${timeoutMs} ms: ` +
            [...remaining].map(([p, end]) => `partition ${p} to ${end}`).join(", ")
        )
      return records.sort((a, b) => a.partition - b.partition || a.offset - b.offset)
    },
    catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause)))
  })
