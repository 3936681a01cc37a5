/**
 * The hand-written kafkajs loop of issue #13, the baseline `compare.ts` measures Sluice against: the profiles loaded
 * once into a Map (read to the high-water marks), then one consumer group on the clicks with `eachBatch`; per batch,
 * every click is parsed, looked up and written as enriched JSON, the batch goes out in `sendBatch` calls of
 * `--chunk` records with acks=-1, and its offset is committed after the send. No dead letters, no schema checks, no headers.
 *
 * `node scripts/perf/loop.ts --brokers B --profiles T --clicks T --out T --group G --events N [--concurrency 3] [--chunk 4000]`
 * prints one JSON line (measure.ts) when N enriched records are acknowledged.
 */
import { Kafka, logLevel } from "kafkajs"
import { args, makeMeter, required } from "./measure.ts"

interface Profile {
  readonly name: string
  readonly city: string
}
interface Click {
  readonly timestamp: number
  readonly user_id: number
  readonly url: string
}

const options = args(process.argv.slice(2))
const events = Number(required(options, "events"))
const out = required(options, "out")
const chunk = Number(options.get("chunk") ?? "4000")
const meter = makeMeter("loop", events)
const kafka = new Kafka({
  brokers: required(options, "brokers").split(","),
  clientId: "perf-loop",
  logLevel: logLevel.ERROR
})

const loadProfiles = async (topic: string): Promise<Map<number, Profile>> => {
  const profiles = new Map<number, Profile>()
  const admin = kafka.admin()
  await admin.connect()
  const remaining = new Map<number, number>()
  for (const p of await admin.fetchTopicOffsets(topic)) {
    if (Number(p.high) > Number(p.low)) remaining.set(p.partition, Number(p.high))
  }
  await admin.disconnect()
  if (remaining.size === 0) return profiles
  const loader = kafka.consumer({ groupId: `${required(options, "group")}-load` })
  await loader.connect()
  await loader.subscribe({ topic, fromBeginning: true })
  await new Promise<void>((resolve) => {
    void loader.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (m.key === null) continue
          const id = Number(m.key.toString())
          if (m.value === null) profiles.delete(id)
          else profiles.set(id, JSON.parse(m.value.toString()))
        }
        const end = remaining.get(batch.partition)
        if (end !== undefined && Number(batch.lastOffset()) >= end - 1) remaining.delete(batch.partition)
        if (remaining.size === 0) resolve()
      }
    })
  })
  await loader.disconnect()
  return profiles
}

const main = async () => {
  const profiles = await loadProfiles(required(options, "profiles"))
  meter.loaded()
  const producer = kafka.producer()
  await producer.connect()
  const consumer = kafka.consumer({ groupId: required(options, "group") })
  await consumer.connect()
  await consumer.subscribe({ topic: required(options, "clicks"), fromBeginning: true })
  let acked = 0
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: Number(options.get("concurrency") ?? "3"),
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        meter.first()
        const messages = batch.messages.map((m) => {
          const click: Click = JSON.parse(m.value!.toString())
          const profile = profiles.get(click.user_id)
          return {
            key: m.key,
            value: JSON.stringify({
              timestamp: click.timestamp,
              user_id: click.user_id,
              url: click.url,
              user_name: profile?.name ?? null,
              user_city: profile?.city ?? null
            })
          }
        })
        if (messages.length === 0) return
        // Input and output are keyed alike, so one input batch (up to 1 MiB of clicks) goes to one output
        // partition: chunks keep each produce request's record batch under the topic's 1 MiB limit.
        for (let i = 0; i < messages.length; i += chunk) {
          await producer.sendBatch({
            topicMessages: [{ topic: out, messages: messages.slice(i, i + chunk) }],
            acks: -1
          })
        }
        const last = batch.messages[batch.messages.length - 1]!.offset
        resolveOffset(last)
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: String(Number(last) + 1) }
        ])
        await heartbeat()
        acked += messages.length
        if (acked >= events) resolve()
      }
    })
  })
  process.stdout.write(`${JSON.stringify(meter.done())}\n`)
  await consumer.disconnect()
  await producer.disconnect()
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`loop failed: ${String(error)}\n`)
    process.exit(1)
  }
)
