import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Codec from "../src/Codec.ts"
import { bytes, type ConsumerRecord } from "../src/Record.ts"
import * as Topic from "../src/Topic.ts"

const topic = Topic.make("t", {
  key: Codec.intString,
  value: Codec.json(Schema.Struct({ id: Schema.Int, name: Schema.String }))
})

const record = (key: string | null, value: string | null): ConsumerRecord => ({
  topic: "t",
  partition: 2,
  offset: 17,
  timestamp: 0,
  key: key === null ? null : bytes(key),
  value: value === null ? null : bytes(value),
  headers: {}
})

const failure = (r: ConsumerRecord) => {
  const decoded = Topic.decode(topic, r)
  assert.isTrue(Result.isFailure(decoded))
  return Result.isFailure(decoded) ? decoded.failure : undefined
}

describe("Topic", () => {
  it("decodes a valid record and round-trips through encode", () => {
    const decoded = Topic.decode(topic, record("7", `{"id":7,"name":"Ann"}`))
    assert.isTrue(Result.isSuccess(decoded))
    if (Result.isSuccess(decoded)) assert.deepStrictEqual(decoded.success.value, { id: 7, name: "Ann" })
    const encoded = Topic.encode(topic, 7, { id: 7, name: "Ann" })
    assert.isTrue(Result.isSuccess(encoded))
  })

  it("a decoding failure names topic, partition, offset, part and the schema issue", () => {
    const wrongType = failure(record("7", `{"id":"x","name":"Ann"}`))
    assert.strictEqual(wrongType?._tag, "DecodeError")
    assert.strictEqual(wrongType?.topic, "t")
    assert.strictEqual(wrongType?.partition, 2)
    assert.strictEqual(wrongType?.offset, 17)
    assert.strictEqual(wrongType?.part, "value")
    assert.include(wrongType?.issue, "id")
    assert.include(failure(record("7", `{"id":7,`))?.issue, "invalid JSON")
    assert.include(failure(record("7", `{"id":7}`))?.issue, "name")
    assert.include(failure(record("7", ""))?.issue, "empty")
    assert.strictEqual(failure(record("seven", `{"id":7,"name":"Ann"}`))?.part, "key")
  })

  it("nullable codecs read tombstones as null", () => {
    const compacted = Topic.make("p", { key: Codec.intString, value: Codec.nullable(Codec.string) })
    const decoded = Topic.decode(compacted, { ...record("1", null), topic: "p" })
    assert.isTrue(Result.isSuccess(decoded) && decoded.success.value === null)
  })
})
