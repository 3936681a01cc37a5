/**
 * Codecs turn a record's key or value bytes into typed values and back. JSON with a Schema is the default; raw
 * bytes and UTF-8 strings are there for topics that are not JSON.
 *
 * Decoding is synchronous and returns a Result: the runtime decodes whole batches in a plain loop (one Effect per
 * batch, not per record), and a failure becomes a DecodeError with the record's coordinates.
 */
import { Result, Schema } from "effect"
import { bytes, text } from "./Record.ts"

export interface Codec<A> {
  /** `null` bytes are an absent key or a tombstone value. */
  readonly decode: (input: Uint8Array | null) => Result.Result<A, string>
  readonly encode: (value: A) => Result.Result<Uint8Array | null, string>
}

const schemaIssue = (error: Schema.SchemaError): string => error.message.replace(/\s*\n\s*/g, "; ")

/** JSON text decoded with a Schema. An empty or absent payload is an error (use `nullable` for tombstones). */
export const json = <S extends Schema.Codec<unknown, unknown, never, never>>(schema: S): Codec<S["Type"]> => {
  const decode = Schema.decodeUnknownResult(schema, { errors: "all" })
  const encode = Schema.encodeUnknownResult(schema)
  return {
    decode: (input) => {
      if (input === null || input.length === 0) return Result.fail("empty payload, expected JSON")
      let parsed: unknown
      try {
        parsed = JSON.parse(text(input))
      } catch (e) {
        return Result.fail(`invalid JSON: ${e instanceof Error ? e.message : String(e)}`)
      }
      return Result.mapError(decode(parsed), schemaIssue)
    },
    encode: (value) =>
      Result.match(encode(value), {
        onSuccess: (encoded) => Result.succeed(bytes(JSON.stringify(encoded))),
        onFailure: (e) => Result.fail(schemaIssue(e))
      })
  }
}

/** A codec where absent bytes mean `null`: tombstones on compacted topics, records without a key. */
export const nullable = <A>(codec: Codec<A>): Codec<A | null> => ({
  decode: (input) => (input === null ? Result.succeed(null) : codec.decode(input)),
  encode: (value) => (value === null ? Result.succeed(null) : codec.encode(value))
})

/** UTF-8 text; absent bytes are an error. */
export const string: Codec<string> = {
  decode: (input) => (input === null ? Result.fail("absent, expected a string") : Result.succeed(text(input))),
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
    const s = text(input)
    const n = Number(s)
    return Number.isSafeInteger(n) && /^-?\d+$/.test(s)
      ? Result.succeed(n)
      : Result.fail(`not an integer: ${JSON.stringify(s)}`)
  },
  encode: (value) =>
    Number.isSafeInteger(value) ? Result.succeed(bytes(String(value))) : Result.fail(`not an integer: ${value}`)
}
