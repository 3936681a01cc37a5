import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Codec from "../src/Codec.ts"
import { bytes } from "../src/Record.ts"

const failureOf = <A>(result: Result.Result<A, string>): string => {
  assert.isTrue(Result.isFailure(result), "expected a failure")
  return Result.isFailure(result) ? result.failure : ""
}

// "é" is 0xc3 0xa9; a lone 0xc3, 0xff and an encoded surrogate are not UTF-8.
const invalid = [
  Uint8Array.of(0x22, 0xff, 0xfe, 0x22),
  Uint8Array.of(0x22, 0x61, 0xc3, 0x22),
  Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22)
]

describe("Codec", () => {
  it("string and intString reject invalid UTF-8 instead of replacing it", () => {
    for (const input of invalid) assert.strictEqual(failureOf(Codec.string.decode(input)), "invalid UTF-8")
    assert.strictEqual(failureOf(Codec.intString.decode(Uint8Array.of(0x31, 0xff))), "invalid UTF-8")
    assert.deepStrictEqual(Codec.string.decode(Uint8Array.of(0xc3, 0xa9)), Result.succeed("é"))
  })

  it("json rejects invalid UTF-8 inside a string value", () => {
    const codec = Codec.json(Schema.Struct({ name: Schema.String }))
    for (const input of invalid) {
      const value = Uint8Array.of(...bytes(`{"name":`), ...input, ...bytes("}"))
      assert.strictEqual(failureOf(codec.decode(value)), "invalid UTF-8")
    }
    assert.deepStrictEqual(codec.decode(bytes(`{"name":"é"}`)), Result.succeed({ name: "é" }))
  })

  it("json rejects a number literal out of range even when the schema would take Infinity", () => {
    const loose = Codec.json(Schema.Struct({ t: Schema.Number, xs: Schema.Array(Schema.Number) }))
    assert.include(failureOf(loose.decode(bytes(`{"t":1e400,"xs":[]}`))), "non-finite number at $.t")
    assert.include(failureOf(loose.decode(bytes(`{"t":1,"xs":[2,-1E+999]}`))), "non-finite number at $.xs[1]")
    assert.include(failureOf(loose.decode(bytes(`{"t":${"9".repeat(400)},"xs":[]}`))), "non-finite")
    // Large but finite numbers, and an exponent-like string, are fine.
    assert.deepStrictEqual(loose.decode(bytes(`{"t":1e300,"xs":[]}`)), Result.succeed({ t: 1e300, xs: [] }))
    const named = Codec.json(Schema.Struct({ s: Schema.String }))
    assert.deepStrictEqual(named.decode(bytes(`{"s":"e400 1e999"}`)), Result.succeed({ s: "e400 1e999" }))
  })

  it("json fails to encode a non-finite number rather than writing null", () => {
    const loose = Codec.json(Schema.Struct({ t: Schema.Number }))
    assert.include(failureOf(loose.encode({ t: Number.POSITIVE_INFINITY })), "non-finite number at $.t")
    assert.include(failureOf(loose.encode({ t: Number.NaN })), "non-finite")
    const finite = Codec.json(Schema.Struct({ t: Schema.Finite }))
    assert.isTrue(Result.isFailure(finite.encode({ t: Number.NEGATIVE_INFINITY })))
    assert.isTrue(Result.isFailure(finite.decode(bytes(`{"t":1e400}`))))
  })
})
