/**
 * The floor `sluice bench windows` (BenchWindows.ts) compares Sluice with: the same aggregation written by hand as a
 * plain kafkajs loop. `eachBatch` per partition (partitions consumed concurrently), `JSON.parse` and a few
 * `typeof` checks per reading, a Map of open windows (by start, then sensor) per partition; after each batch the
 * windows the partition's stream time has passed the end plus the grace of are sent in one `sendBatch` with
 * acks=-1, and only then is the offset committed.
 *
 * The Map is the loop's only state, so what it commits must not run ahead of it: the committed offset is the first
 * record of the oldest window still open (or the batch's end when none is), and a restart re-reads the open
 * windows' records and rebuilds them. Windows are emitted before the commit that passes their records, so a crash
 * re-emits instead of losing: at-least-once, with no changelog. That is the loop's whole fault tolerance, and why
 * it is the floor: Sluice writes every window's state to a changelog as well.
 *
 * On the in-memory broker, which kafkajs cannot reach, the same batch handler runs over Sluice's Kafka service
 * (`runOnService`), so a test can check the loop's outputs too; the numbers that matter are kafkajs'.
 */
import type { GroupConsumer, KafkaShape } from "@sluice/core/Kafka"
import { bytes, type ProducerRecord, type RecordBatch, text } from "@sluice/core/Record"
import type { WindowAggregate } from "@sluice/processors/Sensors"
import * as Sensors from "@sluice/processors/Sensors"
import { Deferred, Effect, Predicate, type Scope } from "effect"
import * as KafkaJS from "kafkajs"

/** A reading as the loop needs it. */
export interface Reading {
  readonly sensor: string
  readonly temperature: number
  readonly eventMs: number
}

/** The reading in `text`, or `undefined` when it is not JSON with a sensor id, a temperature and an event time. */
export const parse = (text: string): Reading | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (
    !Predicate.hasProperty(json, "sensor_id") ||
    !Predicate.hasProperty(json, "temperature") ||
    !Predicate.hasProperty(json, "timestamp")
  )
    return undefined
  const { sensor_id, temperature, timestamp } = json
  if (typeof sensor_id !== "string" || typeof temperature !== "number" || typeof timestamp !== "number")
    return undefined
  const eventMs = Sensors.eventTimeMs(timestamp)
  return eventMs === undefined ? undefined : { sensor: sensor_id, temperature, eventMs }
}

interface Accumulator {
  count: number
  min: number
  max: number
  sum: number
}

/** One partition's open windows and stream time. */
export interface PartitionWindows {
  /** Adds the reading at `offset`; false when it is late (its window has closed) and counts nowhere. */
  readonly add: (offset: number, reading: Reading) => boolean
  /** The windows stream time has passed the end plus the grace of, removed from the Map. */
  readonly due: () => Array<WindowAggregate>
  /** The offset to commit once the records before `next` are handled: not past the first record of an open window. */
  readonly commitAt: (next: number) => number
}

export const partitionWindows = (windowMs: number, graceMs: number): PartitionWindows => {
  let streamTime = -1
  /** By window start: its sensors' accumulators, and the offset of its first record. */
  const open = new Map<number, { readonly first: number; readonly sensors: Map<string, Accumulator> }>()
  return {
    add: (offset, { sensor, temperature: x, eventMs }) => {
      if (eventMs > streamTime) streamTime = eventMs
      const start = eventMs - (eventMs % windowMs)
      if (start + windowMs + graceMs <= streamTime) return false
      let window = open.get(start)
      if (window === undefined) {
        window = { first: offset, sensors: new Map() }
        open.set(start, window)
      }
      const acc = window.sensors.get(sensor)
      if (acc === undefined) window.sensors.set(sensor, { count: 1, min: x, max: x, sum: x })
      else {
        acc.count++
        if (x < acc.min) acc.min = x
        if (x > acc.max) acc.max = x
        acc.sum += x
      }
      return true
    },
    due: () => {
      const closed: Array<WindowAggregate> = []
      for (const [start, window] of open) {
        if (start + windowMs + graceMs > streamTime) continue
        for (const [sensor, a] of window.sensors) {
          closed.push({
            sensor_id: sensor,
            window_start: start,
            window_end: start + windowMs,
            count: a.count,
            min_temperature: a.min,
            max_temperature: a.max,
            mean_temperature: a.sum / a.count
          })
        }
        open.delete(start)
      }
      return closed
    },
    commitAt: (next) => {
      let at = next
      for (const window of open.values()) if (window.first < at) at = window.first
      return at
    }
  }
}

/** What a contender has done so far, read by the benchmark while it runs. */
export interface Progress {
  /** When the first batch arrived (0 before), and the process' CPU time then. */
  firstAt: number
  firstCpu: NodeJS.CpuUsage | undefined
  /** Input records handled. */
  consumed: number
  /** Windows acknowledged by the broker. */
  visible: number
  /** Why the contender stopped, if it did. */
  failure: string | undefined
}

export const progress = (): Progress => ({
  firstAt: 0,
  firstCpu: undefined,
  consumed: 0,
  visible: 0,
  failure: undefined
})

export interface LoopOptions {
  readonly groupId: string
  readonly input: string
  readonly output: string
  readonly partitions: number
  readonly windowMs: number
  readonly graceMs: number
}

/** One batch of a partition: its readings into the windows, then the windows due as records and where to commit. */
const handle = (
  windows: PartitionWindows,
  messages: ReadonlyArray<{ readonly offset: number; readonly text: string | undefined }>,
  next: number
): { readonly due: Array<WindowAggregate>; readonly commitAt: number } => {
  for (const m of messages) {
    const reading = m.text === undefined ? undefined : parse(m.text)
    if (reading !== undefined) windows.add(m.offset, reading)
  }
  return { due: windows.due(), commitAt: windows.commitAt(next) }
}

/** Marks the first batch: when it came, and the CPU time then. */
export const started = (p: Progress): void => {
  if (p.firstAt !== 0) return
  p.firstAt = Date.now()
  p.firstCpu = process.cpuUsage()
}

/** Windows per `sendBatch`: ~180 bytes each, so well under 1 MiB even if they all go to one partition. */
const sendChunk = 4_000

/** The loop on kafkajs, until the scope closes. */
export const runKafkaJs = (
  brokers: ReadonlyArray<string>,
  o: LoopOptions,
  p: Progress
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const kafka = new KafkaJS.Kafka({
        brokers: [...brokers],
        clientId: "sluice-bench-loop",
        logLevel: KafkaJS.logLevel.ERROR
      })
      const producer = kafka.producer()
      const consumer = kafka.consumer({ groupId: o.groupId, maxWaitTimeInMs: 100 })
      await producer.connect()
      await consumer.connect()
      await consumer.subscribe({ topic: o.input, fromBeginning: true })
      const partitions = new Map<number, PartitionWindows>()
      consumer.on(consumer.events.CRASH, (e) => {
        p.failure = `kafkajs consumer crashed: ${String(e.payload.error)}`
      })
      consumer
        .run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: o.partitions,
          eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
            started(p)
            if (p.failure !== undefined || batch.messages.length === 0) return
            let windows = partitions.get(batch.partition)
            if (windows === undefined) {
              windows = partitionWindows(o.windowMs, o.graceMs)
              partitions.set(batch.partition, windows)
            }
            const last = batch.messages[batch.messages.length - 1]!.offset
            const { due, commitAt } = handle(
              windows,
              batch.messages.map((m) => ({ offset: Number(m.offset), text: m.value?.toString() })),
              Number(last) + 1
            )
            try {
              // kafkajs puts a partition's messages of one send into one record batch, which must fit the broker's
              // max.message.bytes (1 MiB): a few thousand windows at a time.
              for (let from = 0; from < due.length; from += sendChunk) {
                const messages = due
                  .slice(from, from + sendChunk)
                  .map((w) => ({ key: w.sensor_id, value: JSON.stringify(w) }))
                await producer.sendBatch({ acks: -1, topicMessages: [{ topic: o.output, messages }] })
              }
              // After the send: what the committed offset passes is in the output, or in a window still open.
              await consumer.commitOffsets([{ topic: o.input, partition: batch.partition, offset: String(commitAt) }])
            } catch (error) {
              // A retried batch would be added to the windows twice: the benchmark stops instead.
              p.failure = `the loop failed: ${String(error)}`
              return
            }
            p.consumed += batch.messages.length
            p.visible += due.length
            resolveOffset(last)
            await heartbeat()
          }
        })
        .catch((error: unknown) => {
          p.failure = `kafkajs consumer.run failed: ${String(error)}`
        })
      return { producer, consumer }
    }),
    ({ producer, consumer }) =>
      Effect.promise(async () => {
        await consumer.disconnect().catch(() => undefined)
        await producer.disconnect().catch(() => undefined)
      })
  ).pipe(Effect.asVoid)

/** The same loop over Sluice's Kafka service (the in-memory broker), until the scope closes. */
export const runOnService = (kafka: KafkaShape, o: LoopOptions, p: Progress): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const member = yield* Deferred.make<GroupConsumer>()
    const partitions = new Map<number, PartitionWindows>()
    const onBatch = (batch: RecordBatch) =>
      Effect.gen(function* () {
        started(p)
        const consumer = yield* Deferred.await(member)
        if (p.failure !== undefined || batch.records.length === 0) return
        const windows = partitions.get(batch.partition) ?? partitionWindows(o.windowMs, o.graceMs)
        partitions.set(batch.partition, windows)
        const { due, commitAt } = handle(
          windows,
          batch.records.map((r) => ({
            offset: r.offset,
            text: r.value === null ? undefined : text(r.value)
          })),
          batch.records[batch.records.length - 1]!.offset + 1
        )
        const records: Array<ProducerRecord> = due.map((w) => ({
          topic: o.output,
          key: bytes(w.sensor_id),
          value: bytes(JSON.stringify(w))
        }))
        if (records.length > 0) yield* kafka.send(records)
        yield* consumer.commit([{ topic: o.input, partition: batch.partition, offset: commitAt }])
        p.consumed += batch.records.length
        p.visible += due.length
      }).pipe(
        Effect.catch((error) =>
          Effect.sync(() => {
            p.failure = `the loop failed: ${error.message}`
          })
        )
      )
    const consumer = yield* kafka
      .consume({ groupId: o.groupId, topics: [o.input] }, { onBatch, onAssignment: () => Effect.void })
      .pipe(
        Effect.catch((error) =>
          Effect.sync(() => {
            p.failure = `the loop could not join its group: ${error.message}`
          })
        )
      )
    if (consumer !== undefined) yield* Deferred.succeed(member, consumer)
  })
