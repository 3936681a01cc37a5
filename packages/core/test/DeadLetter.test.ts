import { assert, describe, it } from "@effect/vitest"
import * as DeadLetter from "../src/DeadLetter.ts"
import { RecordRejected } from "../src/Errors.ts"
import { bytes, type ConsumerRecord, header, sizeOf } from "../src/Record.ts"

const record = (value: Uint8Array, headers: ConsumerRecord["headers"] = {}): ConsumerRecord => ({
  topic: "in",
  partition: 3,
  offset: 41,
  timestamp: 0,
  key: bytes("key-1"),
  value,
  headers
})

const error = new RecordRejected({ tag: "Junk", reason: "not JSON" })

describe("DeadLetter", () => {
  it("keeps the original key, value and header bytes, and names the error and the source", () => {
    const original = Uint8Array.of(0xff, 0xfe, 0x00, 0x01)
    const dl = DeadLetter.toRecord("in.dlq", "topo", { record: record(original, { h: original }), error }, 0)
    assert.deepStrictEqual(dl.value, original)
    assert.deepStrictEqual(dl.key, bytes("key-1"))
    assert.deepStrictEqual(dl.headers?.h, original)
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.errorTag), "Junk")
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.sourceOffset), "41")
    assert.isUndefined(dl.headers?.[DeadLetter.headers.truncated])
  })

  it("cuts the value of a dead letter over its topic's limit to fit, and says so", () => {
    const value = new Uint8Array(1_048_450).fill(0x61)
    const limit = 1_048_588
    const full = DeadLetter.toRecord("in.dlq", "topo", { record: record(value), error }, 0)
    assert.isAbove(sizeOf(full), limit, "the untruncated dead letter would not fit")
    const dl = DeadLetter.toRecord("in.dlq", "topo", { record: record(value), error }, 0, limit)
    const size = sizeOf(dl)
    assert.isAtMost(size, limit)
    assert.isAbove(size, limit - 8, "cut no more than needed")
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.truncated), "value")
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.originalSize), "1048450")
    assert.deepStrictEqual(dl.value, value.subarray(0, dl.value?.byteLength ?? 0), "a prefix of the original bytes")
    assert.deepStrictEqual(dl.key, bytes("key-1"))
  })

  it("drops the original headers, then cuts the key, when cutting the value is not enough", () => {
    const big = new Uint8Array(5_000).fill(0x62)
    const dl = DeadLetter.toRecord("in.dlq", "topo", { record: record(bytes("v"), { big }), error }, 0, 2_000)
    assert.isAtMost(sizeOf(dl), 2_000)
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.truncated), "value,headers")
    assert.isUndefined(dl.headers?.big)
    assert.strictEqual(header(dl.headers ?? {}, DeadLetter.headers.errorTag), "Junk")
    const tiny = DeadLetter.toRecord("in.dlq", "topo", { record: { ...record(bytes("v")), key: big }, error }, 0, 1_000)
    assert.isAtMost(sizeOf(tiny), 1_000)
    assert.strictEqual(header(tiny.headers ?? {}, DeadLetter.headers.truncated), "value,headers,key")
  })
})
