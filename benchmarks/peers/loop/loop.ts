/**
 * The hand-written kafkajs peer of Sluice's click-enrichment (issue #13): what a careful developer writes without a
 * framework. The profiles are loaded once into a Map (every partition of the compacted profiles topic read up to the
 * high-water marks it had at start, through a throwaway consumer group, since kafkajs has no group-less consumer),
 * then clicks are consumed with `eachBatch`; each batch's enriched records go out with `sendBatch`, acks=-1 (in
 * requests of 2,000 records sent side by side, since a fetched batch can exceed the broker's 1 MiB request limit),
 * and the batch's offset is resolved and committed only after every send is acknowledged (at-least-once).
 *
 * Output: what Sluice writes (key = user id as text, value = {timestamp, user_id, url, user_name, user_city} as
 * JSON, headers sluice.click.source = "partition:offset" and sluice.click.produced-at = the click's timestamp).
 *
 * Configuration from the environment (benchmarks/peers/run.ts sets it): BROKERS, PROFILES, CLICKS, OUTPUT, GROUP.
 * Consumer settings match Sluice's kafkajs layer: maxWaitTimeInMs 100, one eachBatch per partition at a time
 * (partitionsConsumedConcurrently = 3, the partition count), commits at most once a second (autoCommitInterval).
 * Stops on SIGTERM/SIGINT: the consumer leaves its group, the clients disconnect.
 */
import { Kafka, logLevel, Partitioners } from "kafkajs"

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback
  if (v === undefined || v === "") {
    console.error(`loop: ${name} is not set`)
    process.exit(2)
  }
  return v
}

const brokers = env("BROKERS", "127.0.0.1:9092").split(",")
const profilesTopic = env("PROFILES")
const clicksTopic = env("CLICKS")
const outputTopic = env("OUTPUT")
const group = env("GROUP")

interface Profile {
  readonly name: string
  readonly city: string
}

interface Click {
  readonly timestamp: number
  readonly user_id: number
  readonly url: string
}

/** Records per produce request: ~2,000 enriched records are ~350 KB with their headers. */
const sendChunk = 2_000

const kafka = new Kafka({ clientId: "peers-loop", brokers, logLevel: logLevel.WARN })

/** Every profile up to the high-water marks the topic has now; a null value (tombstone) deletes. */
const loadProfiles = async (): Promise<Map<number, Profile>> => {
  const profiles = new Map<number, Profile>()
  const admin = kafka.admin()
  await admin.connect()
  const ends = await admin.fetchTopicOffsets(profilesTopic)
  await admin.disconnect()
  const remaining = new Map(ends.filter((p) => Number(p.high) > Number(p.low)).map((p) => [p.partition, p.high]))
  if (remaining.size === 0) return profiles
  const loader = kafka.consumer({ groupId: `${group}-profiles-loader`, maxWaitTimeInMs: 100 })
  await loader.connect()
  await loader.subscribe({ topic: profilesTopic, fromBeginning: true })
  await new Promise<void>((resolve, reject) => {
    loader
      .run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            const id = Number(m.key?.toString())
            if (m.value === null) profiles.delete(id)
            else {
              const p = JSON.parse(m.value.toString()) as Profile
              profiles.set(id, { name: p.name, city: p.city })
            }
          }
          const high = remaining.get(batch.partition)
          if (high !== undefined && BigInt(batch.lastOffset()) + 1n >= BigInt(high)) remaining.delete(batch.partition)
          if (remaining.size === 0) resolve()
        }
      })
      .catch(reject)
  })
  await loader.disconnect()
  return profiles
}

const main = async () => {
  const profiles = await loadProfiles()
  console.error(`loop: ${profiles.size} profiles loaded from ${profilesTopic}`)

  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 100, allowAutoTopicCreation: false })
  await consumer.connect()
  await consumer.subscribe({ topic: clicksTopic, fromBeginning: true })

  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await consumer.disconnect().catch(() => {})
    await producer.disconnect().catch(() => {})
    process.exit(0)
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  // kafkajs does not restart a consumer after a non-retriable error: exit, so that a supervisor (or the harness) sees it.
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) {
      console.error(`loop: consumer crashed: ${e.payload.error.message}`)
      process.exit(1)
    }
  })

  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 1_000,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 3,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
      if (!isRunning() || isStale() || batch.messages.length === 0) return
      const messages = batch.messages.map((m) => {
        const click = JSON.parse(m.value!.toString()) as Click
        const profile = profiles.get(click.user_id)
        return {
          key: String(click.user_id),
          value: JSON.stringify({
            timestamp: click.timestamp,
            user_id: click.user_id,
            url: click.url,
            user_name: profile?.name ?? null,
            user_city: profile?.city ?? null
          }),
          headers: {
            "sluice.click.source": `${batch.partition}:${m.offset}`,
            "sluice.click.produced-at": m.timestamp
          }
        }
      })
      // One fetched batch can hold more than the broker takes in one produce request (message.max.bytes, 1 MiB by
      // default): send it in chunks, side by side, and wait for all of them.
      const sends: Array<Promise<unknown>> = []
      for (let i = 0; i < messages.length; i += sendChunk)
        sends.push(
          producer.sendBatch({
            topicMessages: [{ topic: outputTopic, messages: messages.slice(i, i + sendChunk) }],
            acks: -1
          })
        )
      await Promise.all(sends)
      // Only now, with every enriched record of the batch acknowledged, may the batch's offset be committed.
      resolveOffset(batch.lastOffset())
      await commitOffsetsIfNecessary()
      await heartbeat()
    }
  })
  console.error(`loop: consuming ${clicksTopic} in group ${group} -> ${outputTopic}`)
}

main().catch((error: unknown) => {
  console.error(`loop: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
  process.exit(1)
})
