/**
 * Some of kafkajs 2.2.4's internals replaced, before kafkajs loads, by versions that give the same result (the same
 * groups, the same bytes, the same decoded messages) with a fraction of the work and garbage. In the issue #13
 * profile of a click-enrichment run the producer's were the largest costs on the main thread after GC:
 *
 * - `src/producer/groupMessagesPerPartition.js` groups the messages of each topic of a `sendBatch` by partition
 *   with a `reduce` that copies the partition's array for every message it adds: quadratic in the messages one send
 *   has for one partition (a task whose outputs are keyed like its input sends thousands to one partition). The
 *   version here calls the partitioner once per message, in order, and keeps each partition's messages in order.
 * - `src/protocol/recordBatch/record/v0/index.js` encodes each record through a fresh `Encoder` (a zeroed 512-byte
 *   buffer), a `Buffer` per varint and `Long` arithmetic for the timestamp delta. The version here writes the same
 *   bytes (Kafka's record format v2: length, attributes, timestamp delta, offset delta, key, value, headers) into one
 *   buffer of the record's exact size.
 * - `src/protocol/recordBatch/crc32C/index.js`, the CRC-32C of every record batch, goes through its table one byte at
 *   a time (5–8% of a run once the two above were gone). The version here reads 8 bytes a step (slicing-by-8, the
 *   same polynomial and result).
 * - `src/protocol/requests/produce/v3/request.js` (v3 to v7) and `src/protocol/request.js` build a produce request
 *   through six nested `Encoder`s, each growing by doubling from 512 bytes and copying the one inside it: for a
 *   512 KiB request, ~7 MB of short-lived buffers outside the V8 heap, which the GC lets pile up. The versions here
 *   size the request first and write it into one buffer (a compressed request still goes through kafkajs' own).
 *
 * And on the consumer side, `src/protocol/recordBatch/record/v0/decoder.js` decodes every fetched record's
 * timestamp and offset delta with `Long` arithmetic (BigInt-backed objects), ~900 bytes of garbage per record: a
 * million-record table load allocated 3 GB, and its peak RSS came from that garbage. The version here reads the
 * varints as numbers and adds them to the batch's first offset and timestamp (read once per batch) while those are
 * exact, and computes with 64-bit BigInts, as kafkajs' Long does, otherwise.
 *
 * And one fix: kafkajs' request queue schedules its throttle check `throttledUntil - Date.now()` ms ahead, with
 * `throttledUntil` at -1 until a broker throttles the client: a delay of minus the epoch, which Node 24 reports with
 * a `TimeoutNegativeWarning` on every worker's first connection (kafkajs issue 1751; Node then waits 1 ms). The
 * method is replaced on the class by the same code with the delay at least 1 ms, which is what Node did with it.
 *
 * The encoders are in kafkajsEncoding.ts, the decoder in kafkajsDecoding.ts. kafkajs takes each with `require` when
 * the module that uses it loads (`sendMessages.js` and the connection when kafkajs loads, the produce request at the
 * first produce, the record batch decoder at the first fetch), so this module replaces their exports in Node's
 * require cache first: every Sluice module that imports kafkajs as a value imports this one before it. `installed`
 * says whether that worked (false if something loaded those parts of kafkajs earlier; everything is then correct,
 * only slower).
 */
import { createRequire } from "node:module"
import { Predicate } from "effect"
import type * as KafkaJS from "kafkajs"
import { decodeRecord } from "./kafkajsDecoding.ts"
import { crc32c, encodeRecord, frameRequest, makeProduceRequest } from "./kafkajsEncoding.ts"

interface GroupArguments {
  readonly topic: string
  readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
  readonly messages: ReadonlyArray<KafkaJS.Message>
  readonly partitioner: (args: {
    readonly topic: string
    readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
    readonly message: KafkaJS.Message
  }) => number
}

/** The messages of one topic per partition, as kafkajs' `sendMessages` expects them. */
export const groupMessagesPerPartition = ({
  topic,
  partitionMetadata,
  messages,
  partitioner
}: GroupArguments): Record<number, Array<KafkaJS.Message>> => {
  const result: Record<number, Array<KafkaJS.Message>> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition]
    if (current === undefined) result[partition] = [message]
    else current.push(message)
  }
  return result
}

const requireCjs = createRequire(import.meta.url)
const resolve = (path: string) => requireCjs.resolve(`kafkajs/src/${path}`)
const groupPath = resolve("producer/groupMessagesPerPartition.js")
const recordPath = resolve("protocol/recordBatch/record/v0/index.js")
const crcPath = resolve("protocol/recordBatch/crc32C/index.js")
const recordDecoderPath = resolve("protocol/recordBatch/record/v0/decoder.js")
const producePath = resolve("protocol/requests/produce/v3/request.js")
const requestPath = resolve("protocol/request.js")

/**
 * Makes `path` export `replacement`, unless a module that takes it (`users`) has loaded already, then it would keep
 * the original: true if the replacement is in place.
 */
const replace = (path: string, replacement: unknown, users: ReadonlyArray<string>): boolean => {
  const cached = requireCjs.cache[path]
  if (cached?.exports === replacement) return true
  if (users.some((user) => requireCjs.cache[resolve(user)] !== undefined)) return false
  // Loaded the ordinary way first, so that Node's own bookkeeping of the module stays as it would be.
  requireCjs(path)
  const module = requireCjs.cache[path]
  if (module === undefined) return false
  module.exports = replacement
  return true
}

export const installed =
  replace(groupPath, groupMessagesPerPartition, ["producer/sendMessages.js"]) &&
  replace(recordPath, encodeRecord, ["protocol/requests/produce/v3/request.js"]) &&
  replace(crcPath, crc32c, ["protocol/recordBatch/v0/index.js"]) &&
  replace(recordDecoderPath, decodeRecord, ["protocol/recordBatch/v0/decoder.js"]) &&
  replace(producePath, makeProduceRequest(requireCjs(producePath)), [
    "protocol/requests/produce/index.js",
    "protocol/requests/produce/v4/request.js"
  ]) &&
  replace(requestPath, frameRequest, ["network/connection.js"])

/** The fields of kafkajs' `RequestQueue` its throttle check uses. */
export interface RequestQueueState {
  readonly throttledUntil: number
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null
  readonly pending: ReadonlyArray<unknown>
  checkPendingRequests(): void
}

/** kafkajs' `CHECK_PENDING_REQUESTS_INTERVAL`: how soon a queue with pending requests is looked at again. */
const checkPendingInterval = 10

/** `RequestQueue.prototype.scheduleCheckPendingRequests` of kafkajs 2.2.4, its delay never below 1 ms. */
export function scheduleCheckPendingRequests(this: RequestQueueState): void {
  let scheduleAt = this.throttledUntil - Date.now()
  if (!this.throttleCheckTimeoutId) {
    if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : checkPendingInterval
    this.throttleCheckTimeoutId = setTimeout(
      () => {
        this.throttleCheckTimeoutId = null
        this.checkPendingRequests()
      },
      Math.max(1, scheduleAt)
    )
  }
}

const requestQueuePath = resolve("network/requestQueue/index.js")

/** Puts `scheduleCheckPendingRequests` on kafkajs' RequestQueue class (its instances share the prototype). */
const fixRequestQueue = (): boolean => {
  const RequestQueue: unknown = requireCjs(requestQueuePath)
  if (typeof RequestQueue !== "function" || !Predicate.hasProperty(RequestQueue, "prototype")) return false
  const prototype: unknown = RequestQueue.prototype
  if (!Predicate.hasProperty(prototype, "scheduleCheckPendingRequests")) return false
  Object.defineProperty(prototype, "scheduleCheckPendingRequests", {
    value: scheduleCheckPendingRequests,
    writable: true,
    configurable: true
  })
  return true
}

/** Whether the request queue's throttle check has its delay clamped (it can be fixed even after kafkajs loaded). */
export const requestQueueFixed = fixRequestQueue()

/** The request queue's throttle check kafkajs uses now (for tests). */
export const activeScheduleCheck = (): unknown => {
  const RequestQueue: unknown = requireCjs(requestQueuePath)
  return typeof RequestQueue === "function" && Predicate.hasProperty(RequestQueue, "prototype")
    ? Predicate.hasProperty(RequestQueue.prototype, "scheduleCheckPendingRequests")
      ? RequestQueue.prototype.scheduleCheckPendingRequests
      : undefined
    : undefined
}

/** What kafkajs' producer uses now (for tests). */
export const active = (): Record<"group" | "record" | "crc" | "recordDecoder" | "request", unknown> => ({
  group: requireCjs(groupPath),
  record: requireCjs(recordPath),
  crc: requireCjs(crcPath),
  recordDecoder: requireCjs(recordDecoderPath),
  request: requireCjs(requestPath)
})
