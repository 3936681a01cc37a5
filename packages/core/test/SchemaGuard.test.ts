/**
 * The JSON codecs' fast check (internal/schemaGuard.ts) against Effect Schema: over a corpus of values, whatever the
 * guard accepts, Schema decodes and encodes to the same value with the same keys in the same order; the values
 * Sluice's own topics carry are accepted (so the fast path is taken); schemas it cannot model get no guard.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { guardOf } from "../src/internal/schemaGuard.ts"

const schemas = {
  profile: Schema.Struct({ id: Schema.Int, name: Schema.String, city: Schema.String }),
  enriched: Schema.Struct({
    timestamp: Schema.Finite,
    user_id: Schema.Int,
    url: Schema.String,
    user_name: Schema.NullOr(Schema.String),
    user_city: Schema.NullOr(Schema.String)
  }),
  nested: Schema.Struct({ a: Schema.Struct({ b: Schema.Array(Schema.Finite) }), ok: Schema.Boolean }),
  literals: Schema.Struct({ kind: Schema.Literals(["hot", "cold"]), n: Schema.Literal(3) }),
  checked: Schema.Struct({ s: Schema.String.check(Schema.isMinLength(2)) }),
  string: Schema.String,
  number: Schema.Number,
  array: Schema.Array(Schema.NullOr(Schema.Int))
}

const corpus: ReadonlyArray<unknown> = [
  null,
  0,
  1.5,
  -3,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  "",
  "x",
  "hot",
  true,
  [],
  [1, 2.5],
  [1, null, 3],
  [1, "2"],
  {},
  { id: 1, name: "a", city: "b" },
  { name: "a", id: 1, city: "b" },
  { id: 1.5, name: "a", city: "b" },
  { id: 1, name: "a", city: "b", extra: 1 },
  { id: 1, name: "a" },
  { id: 1, name: null, city: "b" },
  { timestamp: 1e12, user_id: 7, url: "/", user_name: null, user_city: null },
  { timestamp: 1e12, user_id: 7, url: "/", user_name: "n", user_city: "c" },
  { timestamp: Number.NaN, user_id: 7, url: "/", user_name: "n", user_city: "c" },
  { timestamp: 1, user_id: 7, url: "/", user_city: "c", user_name: "n" },
  { a: { b: [1, 2] }, ok: false },
  { a: { b: [1, "2"] }, ok: false },
  { a: { b: [], c: 1 }, ok: true },
  { kind: "hot", n: 3 },
  { kind: "warm", n: 3 },
  { kind: "cold", n: 4 },
  { s: "ab" },
  { s: "a" },
  Object.assign(Object.create(null), { id: 1, name: "a", city: "b" })
]

describe("schema guard", () => {
  it("accepts only what Schema decodes and encodes to itself, keys in order", () => {
    for (const [name, schema] of Object.entries(schemas)) {
      const guard = guardOf(schema.ast)
      assert.isDefined(guard, `${name} has a guard`)
      const decode = Schema.decodeUnknownResult(schema)
      const encode = Schema.encodeUnknownResult(schema)
      for (const value of corpus) {
        if (!guard!(value)) continue
        const label = `${name}: ${JSON.stringify(value)}`
        for (const [direction, result] of [
          ["decode", decode(value)],
          ["encode", encode(value)]
        ] as const) {
          assert.isTrue(Result.isSuccess(result), `${label}: Schema must ${direction} what the guard accepts`)
          if (Result.isFailure(result)) continue
          assert.deepStrictEqual(result.success, value, `${label} (${direction})`)
          assert.strictEqual(JSON.stringify(result.success), JSON.stringify(value), `${label}: key order`)
        }
      }
    }
  })

  it("takes the fast path for the values Sluice's topics carry", () => {
    assert.isTrue(guardOf(schemas.profile.ast)!({ id: 101, name: "Alice-0", city: "Lisbon" }))
    assert.isTrue(
      guardOf(schemas.enriched.ast)!({ timestamp: 1e12, user_id: 7, url: "/", user_name: null, user_city: null })
    )
    assert.isFalse(guardOf(schemas.profile.ast)!({ id: 1.5, name: "a", city: "b" }), "Int is checked")
    assert.isFalse(guardOf(schemas.checked.ast)!({ s: "a" }), "filters are run")
  })

  it("leaves schemas with transformations, optional keys or other kinds to Schema", () => {
    for (const schema of [
      Schema.Struct({ a: Schema.optional(Schema.String) }),
      Schema.Struct({ a: Schema.optionalKey(Schema.String) }),
      Schema.NumberFromString,
      Schema.Struct({ d: Schema.DateTimeUtcFromString }),
      Schema.Record(Schema.String, Schema.Number),
      Schema.Tuple([Schema.String]),
      Schema.Union([Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.String })]),
      Schema.Struct({ "0": Schema.String })
    ]) {
      assert.isUndefined(guardOf(schema.ast))
    }
  })
})
