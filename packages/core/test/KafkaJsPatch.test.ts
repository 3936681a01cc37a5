/**
 * kafkajs' internals that internal/kafkajsPatch.ts replaces (with kafkajsEncoding.ts and kafkajsDecoding.ts): the
 * replacements are what kafkajs uses once Sluice's kafkajs layer is loaded, and they give exactly what kafkajs' own
 * versions give (the same groups, the same bytes, the same decoded messages).
 */
import { createRequire } from "node:module"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type * as KafkaJS from "kafkajs"
import { afterEach, vi } from "vitest"
import "../src/KafkaJs.ts"
import { type BatchContext, decodeRecord } from "../src/internal/kafkajsDecoding.ts"
import {
  crc32c,
  encodeRecord,
  frameRequest,
  makeProduceRequest,
  type ProduceArguments,
  type RecordArguments
} from "../src/internal/kafkajsEncoding.ts"
import {
  active,
  activeScheduleCheck,
  groupMessagesPerPartition,
  installed,
  type RequestQueueState,
  requestQueueFixed,
  scheduleCheckPendingRequests
} from "../src/internal/kafkajsPatch.ts"

/** kafkajs 2.2.4's src/producer/groupMessagesPerPartition.js, as the reference. */
const referenceGroup = ({
  topic,
  partitionMetadata,
  messages,
  partitioner
}: Parameters<typeof groupMessagesPerPartition>[0]): Record<number, Array<KafkaJS.Message>> => {
  if (partitionMetadata.length === 0) return {}
  return messages.reduce<Record<number, Array<KafkaJS.Message>>>((result, message) => {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition] || []
    return Object.assign(result, { [partition]: [...current, message] })
  }, {})
}

/** kafkajs' own module at `path`, loaded afresh from its file (the cached module exports the replacement). */
const originalOf = (path: string): unknown => {
  const requireCjs = createRequire(import.meta.url)
  const resolved = requireCjs.resolve(`kafkajs/src/${path}`)
  const patched = requireCjs.cache[resolved]
  delete requireCjs.cache[resolved]
  const original: unknown = requireCjs(resolved)
  requireCjs.cache[resolved] = patched
  return original
}

const referenceRecord = (() => {
  const original = originalOf("protocol/recordBatch/record/v0/index.js")
  return (args: RecordArguments): Buffer => {
    if (typeof original !== "function") throw new Error("kafkajs' record encoder is not a function")
    const encoder: unknown = original(args)
    if (typeof encoder === "object" && encoder !== null && "buffer" in encoder && Buffer.isBuffer(encoder.buffer)) {
      return encoder.buffer
    }
    throw new Error("kafkajs' record encoder returned no buffer")
  }
})()

const metadata = (n: number): Array<KafkaJS.PartitionMetadata> =>
  Array.from({ length: n }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 1,
    replicas: [1],
    isr: [1]
  }))

const makeRandom = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
  return seed / 2 ** 31
}

describe("kafkajs patch", () => {
  it("is what kafkajs' producer uses once the kafkajs layer is loaded", () => {
    assert.isTrue(installed)
    assert.strictEqual(active().group, groupMessagesPerPartition)
    assert.strictEqual(active().record, encodeRecord)
    assert.strictEqual(active().crc, crc32c)
    assert.strictEqual(active().recordDecoder, decodeRecord)
    assert.strictEqual(active().request, frameRequest)
  })

  it("groups like kafkajs: same partitions, same order, the partitioner called once per message in order", () => {
    const random = makeRandom(7)
    for (const [count, partitions] of [
      [0, 3],
      [1, 1],
      [50, 3],
      [1_000, 7],
      [20, 0]
    ] as const) {
      const messages: Array<KafkaJS.Message> = Array.from({ length: count }, (_, i) => ({
        key: `k${i}`,
        value: `v${i}`,
        ...(random() < 0.3 ? { partition: Math.floor(random() * Math.max(1, partitions)) } : {})
      }))
      const choices = messages.map((m) => m.partition ?? Math.floor(random() * Math.max(1, partitions)))
      const calls = (seen: Array<KafkaJS.Message>) => (args: { readonly message: KafkaJS.Message }) => {
        seen.push(args.message)
        return choices[messages.indexOf(args.message)]!
      }
      const seenLinear: Array<KafkaJS.Message> = []
      const seenReference: Array<KafkaJS.Message> = []
      const input = { topic: "t", partitionMetadata: metadata(partitions), messages }
      const linear = groupMessagesPerPartition({ ...input, partitioner: calls(seenLinear) })
      const expected = referenceGroup({ ...input, partitioner: calls(seenReference) })
      assert.deepStrictEqual(linear, expected, `${count} messages, ${partitions} partitions`)
      assert.deepStrictEqual(Object.keys(linear), Object.keys(expected))
      assert.deepStrictEqual(seenLinear, seenReference)
    }
  })

  it("encodes records to kafkajs' bytes: keys, values, headers, deltas of every size", () => {
    const random = makeRandom(11)
    const texts = ["", "a", "héllo wörld", "日本語のテキスト", "🙂 emoji", "x".repeat(200), "y".repeat(20_000)]
    const bytesOf = (): Buffer | string | null => {
      const r = random()
      if (r < 0.15) return null
      const text = texts[Math.floor(random() * texts.length)]!
      if (r < 0.45) return text
      const b = Buffer.from(text)
      // A view into a larger buffer, as fetched and pooled buffers are.
      return r < 0.7 ? b : Buffer.concat([Buffer.from("pre"), b, Buffer.from("post")]).subarray(3, 3 + b.length)
    }
    const deltas = [
      0,
      1,
      63,
      64,
      127,
      128,
      8_191,
      8_192,
      2 ** 20,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 40,
      -1,
      -64,
      -65,
      -(2 ** 31)
    ]
    const cases: Array<RecordArguments> = [
      {},
      { key: null, value: null },
      { key: "k", value: "v", headers: {} },
      { value: Buffer.alloc(0), headers: { a: "", b: Buffer.alloc(0) } },
      { key: "k", value: "v", headers: { repeated: ["one", Buffer.from("two"), "three"], ünï: "cödé" } },
      { offsetDelta: 2 ** 31 - 1, timestampDelta: 2 ** 53 - 1, value: "v" },
      { offsetDelta: 5, timestampDelta: -(2 ** 53 - 1), value: "v" }
    ]
    for (let i = 0; i < 400; i++) {
      const headers: Record<string, Buffer | string | Array<Buffer | string>> = {}
      const headerCount = Math.floor(random() * 4)
      for (let h = 0; h < headerCount; h++) {
        const name = `${texts[Math.floor(random() * 5)]}-${h}`
        const v = bytesOf() ?? ""
        headers[name] = random() < 0.2 ? [v, bytesOf() ?? "z"] : v
      }
      cases.push({
        offsetDelta: Math.floor(random() * 20_000),
        timestampDelta: deltas[Math.floor(random() * deltas.length)]!,
        key: bytesOf(),
        value: bytesOf(),
        ...(random() < 0.5 ? { headers } : {})
      })
    }
    for (const [i, args] of cases.entries()) {
      const encoded = encodeRecord(args)
      const expected = referenceRecord(args)
      assert.isTrue(encoded.buffer.equals(expected), `case ${i}: ${JSON.stringify(args).slice(0, 200)}`)
      assert.strictEqual(encoded.size(), expected.length)
      assert.isTrue(Buffer.isBuffer(encoded.buf))
    }
  })

  it("computes kafkajs' CRC-32C for buffers of every length and offset", () => {
    const original = originalOf("protocol/recordBatch/crc32C/index.js")
    if (typeof original !== "function") throw new Error("kafkajs' crc32C is not a function")
    const random = makeRandom(3)
    const data = Buffer.alloc(70_000)
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256)
    // The check value of CRC-32C (RFC 3720).
    assert.strictEqual(crc32c(Buffer.from("123456789")), 0xe3069283)
    for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 255, 4_096, 65_537]) {
      for (const offset of [0, 1, 3]) {
        const b = data.subarray(offset, offset + length)
        const expected: unknown = original(b)
        assert.strictEqual(crc32c(b), expected, `${length} bytes from ${offset}`)
      }
    }
  })

  it("decodes records to kafkajs' messages: offsets, timestamps (exact past 2^53), keys, values, headers", () => {
    const original = originalOf("protocol/recordBatch/record/v0/decoder.js")
    const decoderClass = createRequire(import.meta.url)("kafkajs/src/protocol/decoder.js")
    if (typeof original !== "function" || typeof decoderClass !== "function") throw new Error("kafkajs changed")
    const random = makeRandom(5)
    const contexts: Array<BatchContext> = [
      { firstOffset: "0", firstTimestamp: "1700000000000", maxTimestamp: "1700000009999", magicByte: 2 },
      { firstOffset: "123456789", firstTimestamp: "-1", maxTimestamp: "-1", magicByte: 2, isControlBatch: true },
      { firstOffset: "9007199254740990", firstTimestamp: "9007199254740000", magicByte: 2, timestampType: 0 },
      { firstOffset: "42", firstTimestamp: "5", maxTimestamp: "777", magicByte: 2, timestampType: 1 },
      { firstOffset: "9223372036854775800", firstTimestamp: "9223372036854775000", magicByte: 2 }
    ]
    const deltas = [0, 1, -1, 63, 64, 8_192, 2 ** 31, 2 ** 40, 2 ** 48, 2 ** 49, 2 ** 52, -(2 ** 50), 2 ** 53 - 1]
    const names = ["a", "b", "repeated", "__proto__", "toString", "ünï", ""]
    for (let i = 0; i < 600; i++) {
      const headers: Record<string, Buffer | Array<Buffer>> = {}
      const headerCount = Math.floor(random() * 4)
      for (let h = 0; h < headerCount; h++) {
        const value = Buffer.from(`v${h}-${i}`)
        const name = names[Math.floor(random() * names.length)]!
        headers[name] = random() < 0.3 ? [value, Buffer.from("again"), Buffer.alloc(0)] : value
      }
      const encoded = encodeRecord({
        offsetDelta: Math.floor(random() * 100_000),
        timestampDelta: deltas[Math.floor(random() * deltas.length)]!,
        key: random() < 0.2 ? null : Buffer.from(`key-${i}`),
        value: random() < 0.1 ? null : Buffer.from(`value ${"x".repeat(i % 50)}`),
        headers
      })
      const context = contexts[i % contexts.length]!
      // kafkajs' batch decoder reads the record's length and hands the record's bytes over; here after a prefix.
      let lengthBytes = 0
      while (encoded.buffer[lengthBytes]! >= 0x80) lengthBytes++
      const bytes = Buffer.concat([Buffer.from([9, 9]), encoded.buffer.subarray(lengthBytes + 1)])
      const mine = { buffer: bytes, offset: 2 }
      const theirs: unknown = Reflect.construct(decoderClass, [bytes])
      if (typeof theirs !== "object" || theirs === null || !("offset" in theirs)) throw new Error("no Decoder")
      theirs.offset = 2
      const expected: unknown = original(theirs, context)
      assert.deepStrictEqual(decodeRecord(mine, context), expected, `record ${i}`)
      assert.strictEqual(mine.offset, theirs.offset, `record ${i}: where reading stopped`)
    }
  })

  describe("produce requests", () => {
    afterEach(() => {
      vi.restoreAllMocks()
    })
    const requireCjs = createRequire(import.meta.url)
    const long: unknown = requireCjs("kafkajs/src/utils/long.js")
    const producerIdOf = (id: number) => {
      if (typeof long !== "function" || !("fromValue" in long) || typeof long.fromValue !== "function") {
        throw new Error("kafkajs' Long changed")
      }
      const value: unknown = long.fromValue(id)
      if (typeof value !== "object" || value === null) throw new Error("no Long")
      return { toString: () => String(value) }
    }
    /** The bytes a request's `encode` gives (kafkajs' Encoder or the replacement). */
    const bodyOf = async (request: unknown): Promise<Buffer> => {
      if (typeof request !== "object" || request === null || !("encode" in request)) throw new Error("no request")
      const encode = request.encode
      if (typeof encode !== "function") throw new Error("no encode")
      const encoded: unknown = await encode()
      if (typeof encoded === "object" && encoded !== null && "buffer" in encoded && Buffer.isBuffer(encoded.buffer)) {
        return encoded.buffer
      }
      throw new Error("encode gave no buffer")
    }
    const messages = (n: number, seed: number): Array<KafkaJS.Message> => {
      const random = makeRandom(seed)
      return Array.from({ length: n }, (_, i) => ({
        key: random() < 0.2 ? null : `key-${i}`,
        value: random() < 0.1 ? null : Buffer.from(`value-${i}-${"v".repeat(i % 30)}`),
        ...(random() < 0.3 ? { headers: { a: `h${i}`, b: [Buffer.from("1"), "2"] } } : {}),
        ...(random() < 0.5 ? { timestamp: String(1_700_000_000_000 + Math.floor(random() * 5_000)) } : {})
      }))
    }

    it.effect("are kafkajs' bytes: topics, partitions, sequences, producer ids, transactions, timestamps", () =>
      Effect.promise(async () => {
        vi.spyOn(Date, "now").mockReturnValue(1_700_000_001_234)
        const original = originalOf("protocol/requests/produce/v3/request.js")
        if (typeof original !== "function") throw new Error("kafkajs' produce request is not a function")
        const replacement = makeProduceRequest(original)
        const cases: Array<ProduceArguments> = [
          { acks: -1, timeout: 30_000, topicData: [] },
          {
            acks: -1,
            timeout: 30_000,
            topicData: [{ topic: "t", partitions: [{ partition: 0, firstSequence: 0, messages: messages(1, 1) }] }]
          },
          {
            acks: 1,
            timeout: 5_000,
            transactionalId: "tx-ünï",
            producerId: producerIdOf(4_242),
            producerEpoch: 3,
            topicData: [
              {
                topic: "clicks.enriched",
                partitions: [
                  { partition: 2, firstSequence: 17, messages: messages(300, 2) },
                  { partition: 0, firstSequence: 2 ** 31 - 10, messages: messages(40, 3) }
                ]
              },
              { topic: "dlq", partitions: [{ partition: 1, messages: messages(5, 4) }] }
            ]
          },
          {
            acks: -1,
            timeout: 30_000,
            producerId: producerIdOf(-1),
            topicData: [{ topic: "t", partitions: [{ partition: 5, firstSequence: 9, messages: messages(2_000, 5) }] }]
          }
        ]
        for (const [i, args] of cases.entries()) {
          const theirs = original(args)
          const mine = replacement(args)
          const expected = await bodyOf(theirs)
          assert.isTrue((await bodyOf(mine)).equals(expected), `case ${i}`)
          for (const field of ["apiKey", "apiVersion", "apiName"] as const) {
            assert.strictEqual(Reflect.get(Object(mine), field), Reflect.get(Object(theirs), field))
          }
        }
      })
    )

    it.effect("are framed as kafkajs frames them", () =>
      Effect.promise(async () => {
        const original = originalOf("protocol/request.js")
        if (typeof original !== "function") throw new Error("kafkajs' request framing is not a function")
        for (const clientId of ["sluice", "ünïcödé-client", null]) {
          for (const body of [Buffer.alloc(0), Buffer.from("body bytes"), Buffer.alloc(70_000, 5)]) {
            const args = {
              correlationId: 123_456,
              clientId,
              request: { apiKey: 3, apiVersion: 6, encode: async () => ({ buffer: body, buf: body }) }
            }
            const expected = await bodyOf({ encode: () => original(args) })
            assert.isTrue((await frameRequest(args)).buffer.equals(expected), `${clientId}, ${body.length} bytes`)
          }
        }
      })
    )
  })
})

describe("kafkajs' request queue throttle check", () => {
  /** The delay the check schedules for a queue in this state (the timer is cleared, nothing runs). */
  const delayFor = (throttledUntil: number, pending: number) => {
    const spy = vi.spyOn(globalThis, "setTimeout")
    const queue: RequestQueueState = {
      throttledUntil,
      throttleCheckTimeoutId: null,
      pending: Array.from({ length: pending }),
      checkPendingRequests: () => {}
    }
    scheduleCheckPendingRequests.call(queue)
    const delay = spy.mock.calls[0]?.[1]
    spy.mockRestore()
    if (queue.throttleCheckTimeoutId !== null) clearTimeout(queue.throttleCheckTimeoutId)
    return delay
  }

  it("is the one kafkajs uses, and never schedules a negative delay (Node 24's TimeoutNegativeWarning)", () => {
    assert.isTrue(requestQueueFixed)
    assert.strictEqual(activeScheduleCheck(), scheduleCheckPendingRequests)
    // Never throttled (kafkajs' initial -1), nothing pending: kafkajs computed minus the epoch here.
    assert.strictEqual(delayFor(-1, 0), 1)
    // Never throttled, requests pending: kafkajs' 10 ms interval.
    assert.strictEqual(delayFor(-1, 2), 10)
    // Throttled for another ~5 s: until then.
    const d = delayFor(Date.now() + 5_000, 1)
    assert.isTrue(typeof d === "number" && d > 4_900 && d <= 5_000, String(d))
  })
})
