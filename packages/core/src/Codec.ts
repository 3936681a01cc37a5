/**
 * Codecs turn a record's key or value bytes into typed values and back. JSON with a Schema is the default; raw
 * bytes and UTF-8 strings are there for topics that are not JSON.
 *
 * Decoding is synchronous and returns a Result: the runtime decodes whole batches in a plain loop (one Effect per
 * batch, not per record), and a failure becomes a DecodeError with the record's coordinates.
 *
 * Text is decoded strictly: bytes that are not valid UTF-8 are a decode failure, never replaced by U+FFFD (a
 * replaced key would be re-encoded to other bytes, and land on another partition). JSON numbers must be finite:
 * `1e400` parses to Infinity, which JSON cannot carry back out (`JSON.stringify` writes `null`), so it fails to
 * decode, and a value holding a non-finite number fails to encode rather than producing corrupt output.
 */
import { Result, Schema } from "effect"
import { guardOf } from "./internal/schemaGuard.ts"
import { bytes, textStrict } from "./Record.ts"

export interface Codec<A> {
  /** `null` bytes are an absent key or a tombstone value. */
  readonly decode: (input: Uint8Array | null) => Result.Result<A, string>
  readonly encode: (value: A) => Result.Result<Uint8Array | null, string>
}

const schemaIssue = (error: Schema.SchemaError): string => error.message.replace(/\s*\n\s*/g, "; ")

const invalidUtf8 = "invalid UTF-8"

/** The path of the first non-finite number in a JSON-like value (`$.a[2]`), or `undefined` when there is none. */
export const nonFinitePath = (value: unknown, path = "$"): string | undefined => {
  if (typeof value === "number") return Number.isFinite(value) ? undefined : path
  if (typeof value !== "object" || value === null) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nonFinitePath(value[i], `${path}[${i}]`)
      if (found !== undefined) return found
    }
    return undefined
  }
  for (const key in value) {
    const found = nonFinitePath(Reflect.get(value, key), `${path}.${key}`)
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * Whether a JSON-like value holds a non-finite number anywhere: the check that runs on every decoded and encoded
 * value, so it builds no paths (`nonFinitePath` names the place once one is found). Walking the parsed value costs
 * a few dozen nanoseconds for a small record, a tenth of what scanning its text for long digit runs did.
 */
const hasNonFinite = (value: unknown): boolean => {
  if (typeof value === "number") return !Number.isFinite(value)
  if (typeof value !== "object" || value === null) return false
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (hasNonFinite(value[i])) return true
    return false
  }
  for (const key in value) if (hasNonFinite(Reflect.get(value, key))) return true
  return false
}

/**
 * JSON text decoded with a Schema. An empty or absent payload is an error (use `nullable` for tombstones).
 *
 * For schemas without transformations, a fast check (internal/schemaGuard.ts) first asks whether the parsed value
 * (or the value to encode) already is what Schema would make of it; only when it is not, Schema runs, and decides.
 */
export const json = <S extends Schema.Codec<unknown, unknown, never, never>>(schema: S): Codec<S["Type"]> => {
  const decode = Schema.decodeUnknownResult(schema, { errors: "all" })
  const encode = Schema.encodeUnknownResult(schema)
  const guard = guardOf(schema.ast)
  // What the guard accepts is a value Schema accepts unchanged: its decoded (and encoded) form is the value itself.
  const isExact = (value: unknown): value is S["Type"] => guard?.(value) === true
  const toBytes = (encoded: unknown) =>
    hasNonFinite(encoded)
      ? Result.fail(`non-finite number at ${nonFinitePath(encoded)}: JSON cannot carry it`)
      : Result.succeed(bytes(JSON.stringify(encoded)))
  return {
    decode: (input) => {
      if (input === null || input.length === 0) return Result.fail("empty payload, expected JSON")
      const source = textStrict(input)
      if (source === undefined) return Result.fail(invalidUtf8)
      let parsed: unknown
      try {
        parsed = JSON.parse(source)
      } catch (e) {
        return Result.fail(`invalid JSON: ${e instanceof Error ? e.message : String(e)}`)
      }
      // JSON.parse yields a non-finite number only for a literal out of double range (`1e400`).
      if (hasNonFinite(parsed)) {
        return Result.fail(`non-finite number at ${nonFinitePath(parsed)} (a literal out of range, e.g. 1e400)`)
      }
      if (isExact(parsed)) return Result.succeed(parsed)
      return Result.mapError(decode(parsed), schemaIssue)
    },
    encode: (value) =>
      isExact(value)
        ? toBytes(value)
        : Result.match(encode(value), { onSuccess: toBytes, onFailure: (e) => Result.fail(schemaIssue(e)) })
  }
}

/** A codec where absent bytes mean `null`: tombstones on compacted topics, records without a key. */
export const nullable = <A>(codec: Codec<A>): Codec<A | null> => ({
  decode: (input) => (input === null ? Result.succeed(null) : codec.decode(input)),
  encode: (value) => (value === null ? Result.succeed(null) : codec.encode(value))
})

/** UTF-8 text; absent bytes and invalid UTF-8 are errors. */
export const string: Codec<string> = {
  decode: (input) => {
    if (input === null) return Result.fail("absent, expected a string")
    const s = textStrict(input)
    return s === undefined ? Result.fail(invalidUtf8) : Result.succeed(s)
  },
  encode: (value) => Result.succeed(bytes(value))
}

/** The bytes as they are. */
export const raw: Codec<Uint8Array | null> = {
  decode: (input) => Result.succeed(input),
  encode: (value) => Result.succeed(value)
}

/** An integer written as decimal UTF-8 text (how most producers key records by a numeric id). */
export const intString: Codec<number> = {
  decode: (input) => {
    if (input === null || input.length === 0) return Result.fail("absent, expected an integer key")
    const s = textStrict(input)
    if (s === undefined) return Result.fail(invalidUtf8)
    const n = Number(s)
    return Number.isSafeInteger(n) && /^-?\d+$/.test(s)
      ? Result.succeed(n)
      : Result.fail(`not an integer: ${JSON.stringify(s)}`)
  },
  encode: (value) =>
    Number.isSafeInteger(value) ? Result.succeed(bytes(String(value))) : Result.fail(`not an integer: ${value}`)
}
