#!/usr/bin/env node
// Round-trip readiness probe for a Kafka broker, used by scripts/kafka.sh.
//
//   node scripts/kafka-probe.mjs [brokers]        (default: $SLUICE_BROKERS or 127.0.0.1:9092)
//
// Steps: admin connect + describeCluster, create topic `__sluice_probe` (1 partition,
// waitForLeaders), poll its metadata until the partition has a leader, produce one
// record with acks=-1, consume it back with a fresh consumer group (fromBeginning,
// short session timeout), then delete that group.
//
// Exit codes: 0 ok, 1 probe failed or timed out, 2 kafkajs is not installed.
// Env: KAFKA_PROBE_TIMEOUT_MS (default 60000), KAFKA_PROBE_QUIET=1 (no success line).

const started = Date.now()
const brokersArg = process.argv[2] || process.env.SLUICE_BROKERS || "127.0.0.1:9092"
const brokers = brokersArg
  .split(",")
  .map((b) => b.trim())
  .filter(Boolean)
const timeoutMs = Number(process.env.KAFKA_PROBE_TIMEOUT_MS || 60000)
const deadline = started + timeoutMs
const TOPIC = "__sluice_probe"

let stage = "loading kafkajs"
let lastError

const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`
const fail = (msg, code = 1) => {
  const why = lastError ? `: ${lastError.name ?? "Error"}: ${lastError.message}` : ""
  console.error(`kafka-probe: ${msg} (${brokers.join(",")}, stage "${stage}", after ${elapsed()})${why}`)
  process.exit(code)
}

const hardTimer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs)
hardTimer.unref()

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1"
// kafkajs trips Node's TimeoutNegativeWarning (a negative setTimeout in its request queue); it is harmless.
process.removeAllListeners("warning")
process.on("warning", (w) => {
  if (w.name !== "TimeoutNegativeWarning") console.warn(`${w.name}: ${w.message}`)
})
let kafkajs
try {
  kafkajs = await import("kafkajs")
} catch (err) {
  lastError = err
  fail("cannot load kafkajs (run `npm install` in the repo root)", 2)
}
const { Kafka, logLevel } = kafkajs.default ?? kafkajs

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Retry `fn` until it succeeds or the overall deadline passes. */
async function retry(name, fn, pauseMs = 250) {
  stage = name
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      lastError = err
      if (Date.now() + pauseMs >= deadline) fail("gave up")
      await sleep(pauseMs)
    }
  }
}

const kafka = new Kafka({
  clientId: "sluice-probe",
  brokers,
  logLevel: logLevel.NOTHING,
  connectionTimeout: 2000,
  requestTimeout: 10000,
  retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 }
})

const admin = kafka.admin()
const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 5, initialRetryTime: 100 } })
const groupId = `sluice-probe-${process.pid}-${Date.now()}`
const consumer = kafka.consumer({
  groupId,
  // 6000 ms is the broker default for group.min.session.timeout.ms, so this also works
  // against a broker not started by kafka.sh (which lowers the minimum to 1000 ms).
  sessionTimeout: 6000,
  heartbeatInterval: 500,
  rebalanceTimeout: 10000,
  maxWaitTimeInMs: 100,
  retry: { retries: 5, initialRetryTime: 100 }
})

const cleanup = async () => {
  await Promise.allSettled([consumer.disconnect(), producer.disconnect()])
  await admin.deleteGroups([groupId]).catch(() => {})
  await admin.disconnect().catch(() => {})
}

try {
  await retry("admin connect", () => admin.connect())
  const cluster = await retry("describeCluster", () => admin.describeCluster())

  await retry("createTopics", async () => {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic: TOPIC,
            numPartitions: 1,
            replicationFactor: 1,
            configEntries: [{ name: "retention.ms", value: "3600000" }]
          }
        ]
      })
    } catch (err) {
      if (err?.type !== "TOPIC_ALREADY_EXISTS" && !/already exists/i.test(String(err?.message))) throw err
    }
  })

  // kafkajs ignores the createTopics leader-wait timeout (tulios/kafkajs#770): poll metadata ourselves.
  await retry("topic metadata", async () => {
    const md = await admin.fetchTopicMetadata({ topics: [TOPIC] })
    const p = md.topics[0]?.partitions?.[0]
    if (!p || p.leader < 0) throw new Error(`no leader yet for ${TOPIC}-0`)
  })

  const nonce = `probe-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`
  await retry("producer connect", () => producer.connect())
  await retry("produce (acks=-1)", () =>
    producer.send({ topic: TOPIC, acks: -1, messages: [{ key: "probe", value: nonce }] })
  )

  stage = "consume"
  await retry("consumer connect", () => consumer.connect())
  await retry("consumer subscribe", () => consumer.subscribe({ topics: [TOPIC], fromBeginning: true }))
  stage = "consume (waiting for the record)"
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, (e) => {
      lastError = e.payload?.error
      if (!e.payload?.restart) reject(lastError ?? new Error("consumer crashed"))
    })
    consumer
      .run({
        eachMessage: async ({ message }) => {
          if (message.value?.toString() === nonce) resolve()
        }
      })
      .catch(reject)
  })

  stage = "cleanup"
  await cleanup()
  clearTimeout(hardTimer)
  if (process.env.KAFKA_PROBE_QUIET !== "1") {
    console.log(`kafka-probe: ok (${brokers.join(",")}, cluster ${cluster.clusterId}, ${elapsed()})`)
  }
  process.exit(0)
} catch (err) {
  lastError = err
  await Promise.race([cleanup(), sleep(2000)])
  fail("failed")
}
