/**
 * Aggregators: how the records of a window fold into a result, as plain functions (no Effect). A windowed
 * aggregation (`Windows.ts`) keeps one accumulator per window in a store, so an aggregator also has a `Codec` for
 * it; sessions and sliding windows combine accumulators with `merge`.
 *
 * The laws the runtime relies on: `merge` is associative, `initial()` is its identity, and adding records one by one
 * gives the same result as merging the accumulators of any split of them (in order). The built-ins are exact on
 * integers; on fractional numbers, sums may differ in the last bits with the order of merging.
 */
import { Result, Schema } from "effect"
import { dual } from "effect/Function"
import * as Codec from "./Codec.ts"
import { lowerBound } from "./internal/sorted.ts"

export interface Aggregator<in I, in out A, out O> {
  /** The accumulator of no input. */
  readonly initial: () => A
  readonly add: (acc: A, input: I) => A
  readonly merge: (a: A, b: A) => A
  readonly result: (acc: A) => O
  /** How the accumulator is stored (kept small: it is written to the changelog on every update). */
  readonly codec: Codec.Codec<A>
  /**
   * Why `codec` would refuse `acc` (`undefined`: it would not), said without encoding it. With it, a windowed
   * aggregation checks each record's accumulator and encodes a window once per step, not once per record; without
   * it, it encodes per record, so that a record whose accumulator does not encode is rejected on its own. It must
   * agree with `codec`: an accumulator it passes that then does not encode fails the step.
   */
  readonly check?: ((acc: A) => string | undefined) | undefined
}

/** The input of an aggregator. */
export type Input<G> = G extends Aggregator<infer I, infer _A, unknown> ? I : never
/** The accumulator of an aggregator. */
export type Accumulator<G> = G extends Aggregator<never, infer A, unknown> ? A : never
/** The result of an aggregator. */
export type Output<G> = G extends Aggregator<never, infer _A, infer O> ? O : never

// The built-in numeric accumulators are stored as big-endian IEEE 754 doubles, 8 bytes a number: a few ns to write
// and read back, where JSON text cost a stringify, a parse and a Schema check for every record a window took.
const scratch = new Float64Array(1)
const scratchBytes = new Uint8Array(scratch.buffer)
const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1

const writeDouble = (out: Uint8Array, at: number, n: number): void => {
  scratch[0] = n
  for (let i = 0; i < 8; i++) out[at + i] = scratchBytes[littleEndian ? 7 - i : i]!
}

const readDouble = (bytes: Uint8Array, at: number): number => {
  for (let i = 0; i < 8; i++) scratchBytes[littleEndian ? 7 - i : i] = bytes[at + i]!
  return scratch[0]!
}

/**
 * A fixed number of doubles, each checked by `valid` (its message says what was expected) when it is written and
 * when it is read back.
 */
const doubles = <A>(options: {
  readonly count: number
  readonly expected: string
  readonly valid: (n: number) => boolean
  readonly write: (value: A) => ReadonlyArray<number>
  readonly read: (ns: ReadonlyArray<number>) => A
}): Codec.Codec<A> => {
  const size = 8 * options.count
  return {
    encode: (value) => {
      const ns = options.write(value)
      const out = new Uint8Array(size)
      for (let i = 0; i < options.count; i++) {
        const n = ns[i]!
        if (!options.valid(n)) return Result.fail(`${n} is not ${options.expected}`)
        writeDouble(out, 8 * i, n)
      }
      return Result.succeed(out)
    },
    decode: (bytes) => {
      if (bytes === null || bytes.length !== size) {
        return Result.fail(`${bytes === null ? "absent" : `${bytes.length} bytes`}, expected ${size} bytes`)
      }
      const ns: Array<number> = []
      for (let i = 0; i < options.count; i++) {
        const n = readDouble(bytes, 8 * i)
        if (!options.valid(n)) return Result.fail(`${n} is not ${options.expected}`)
        ns.push(n)
      }
      return Result.succeed(options.read(ns))
    }
  }
}

/** One number, `valid` or refused as not `expected`. */
const double = (expected: string, valid: (n: number) => boolean) =>
  doubles<number>({ count: 1, expected, valid, write: (n) => [n], read: (ns) => ns[0]! })
const finite = double("a finite number", Number.isFinite)
/** `null` (no input yet) is stored as no bytes. */
const finiteOrNull: Codec.Codec<number | null> = Codec.nullable(finite)
const integer = double("a whole number", Number.isSafeInteger)

const notFinite = (n: number): string | undefined => (Number.isFinite(n) ? undefined : `${n} is not a finite number`)

/** How many inputs, of any type. */
export const count: Aggregator<unknown, number, number> = {
  initial: () => 0,
  add: (n) => n + 1,
  merge: (a, b) => a + b,
  result: (n) => n,
  codec: integer,
  check: (n) => (Number.isSafeInteger(n) ? undefined : `${n} is not a whole number`)
}

export const sum: Aggregator<number, number, number> = {
  initial: () => 0,
  add: (s, x) => s + x,
  merge: (a, b) => a + b,
  result: (s) => s,
  codec: finite,
  check: notFinite
}

const extreme = (pick: (a: number, b: number) => number): Aggregator<number, number | null, number | null> => {
  const merge = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : pick(a, b))
  return {
    initial: () => null,
    add: merge,
    merge,
    result: (m) => m,
    codec: finiteOrNull,
    check: (m) => (m === null ? undefined : notFinite(m))
  }
}

/** The smallest input; `null` when there is none (a window always has one, so only `initial()` gives `null`). */
export const min: Aggregator<number, number | null, number | null> = extreme(Math.min)

/** The largest input; `null` when there is none, as for `min`. */
export const max: Aggregator<number, number | null, number | null> = extreme(Math.max)

/** The arithmetic mean; `null` of no input. The accumulator is `[sum, count]`. */
export const mean: Aggregator<number, readonly [sum: number, count: number], number | null> = {
  initial: () => [0, 0],
  add: ([s, n], x) => [s + x, n + 1],
  merge: (a, b) => [a[0] + b[0], a[1] + b[1]],
  result: ([s, n]) => (n === 0 ? null : s / n),
  codec: doubles({
    count: 2,
    expected: "a finite number",
    valid: Number.isFinite,
    write: (pair: readonly [sum: number, count: number]) => pair,
    read: (ns): readonly [sum: number, count: number] => [ns[0]!, ns[1]!]
  }),
  check: ([s, n]) => notFinite(s) ?? notFinite(n)
}

/**
 * How many distinct strings, exactly: the accumulator is the set itself, sorted (so it is stored the same whatever
 * the order of the inputs). Its size grows with the number of distinct values: for large cardinalities an
 * approximate sketch belongs in a custom aggregator.
 */
export const distinctCount: Aggregator<string, ReadonlyArray<string>, number> = {
  initial: () => [],
  add: (set, x) => {
    const at = lowerBound(set, x)
    return set[at] === x ? set : [...set.slice(0, at), x, ...set.slice(at)]
  },
  merge: (a, b) => {
    const out: Array<string> = []
    let i = 0
    let j = 0
    while (i < a.length || j < b.length) {
      const x = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!
      if (out.length === 0 || out[out.length - 1] !== x) out.push(x)
    }
    return out
  },
  result: (set) => set.length,
  codec: Codec.json(Schema.Array(Schema.String)),
  // An array of strings always encodes.
  check: () => undefined
}

/** An aggregator over `J`, fed with `f(input)`. */
export const mapInput: {
  <J, I>(f: (input: J) => I): <A, O>(self: Aggregator<I, A, O>) => Aggregator<J, A, O>
  <I, A, O, J>(self: Aggregator<I, A, O>, f: (input: J) => I): Aggregator<J, A, O>
} = dual(
  2,
  <I, A, O, J>(self: Aggregator<I, A, O>, f: (input: J) => I): Aggregator<J, A, O> => ({
    ...self,
    add: (acc, input) => self.add(acc, f(input))
  })
)

// ---------------------------------------------------------------------------------------------------------------
// struct
// ---------------------------------------------------------------------------------------------------------------

/** The fields of a struct: each an aggregator, over an input every field accepts. */
type Fields<F> = { readonly [K in keyof F]: F[K] & Aggregator<Inputs<F>, Accumulator<F[K]>, Output<F[K]>> }
type Accumulators<F> = { [K in keyof F]: Accumulator<F[K]> }
type Outputs<F> = { [K in keyof F]: Output<F[K]> }
/** The input every field accepts: the intersection of the fields' inputs (`unknown & number` is `number`). */
type Inputs<F> = { [K in keyof F]: (input: Input<F[K]>) => void }[keyof F] extends (input: infer I) => void ? I : never

/**
 * With exact optional properties, a `Partial<T>` that has every key of `T` is a `T`: how the struct's objects,
 * built key by key, get their types.
 */
const complete = <T extends object>(partial: Partial<T>, keys: ReadonlyArray<keyof T>): partial is T =>
  keys.every((k) => k in partial)

const incomplete = (): never => {
  throw new Error("Aggregator.struct: a field is missing")
}

const writeU32 = (out: Uint8Array, at: number, n: number): void => {
  out[at] = n >>> 24
  out[at + 1] = (n >>> 16) & 0xff
  out[at + 2] = (n >>> 8) & 0xff
  out[at + 3] = n & 0xff
}

const readU32 = (bytes: Uint8Array, at: number): number =>
  bytes[at]! * 0x1000000 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!)

/** A frame's length for a field whose accumulator encodes to no bytes (`null`). */
const absent = 0xffffffff

/**
 * Several aggregators over the same input, as one: the result is an object with a result per field,
 * `struct({ min: Aggregator.min, n: Aggregator.count })` gives `{ min: number | null, n: number }`. The accumulator
 * is stored as the fields' own encodings, each after its length, in the order of the fields.
 */
export const struct = <F>(fields: Fields<F>): Aggregator<Inputs<F>, Accumulators<F>, Outputs<F>> => {
  const keys: Array<keyof F> = []
  for (const k in fields) keys.push(k)
  const checkField = <K extends keyof F>(k: K, acc: Accumulators<F>): string | undefined => fields[k].check?.(acc[k])
  const accumulators = (one: <K extends keyof F>(out: Partial<Accumulators<F>>, k: K) => void) => {
    const out: Partial<Accumulators<F>> = {}
    for (const k of keys) one(out, k)
    return complete<Accumulators<F>>(out, keys) ? out : incomplete()
  }
  return {
    initial: () =>
      accumulators((out, k) => {
        out[k] = fields[k].initial()
      }),
    add: (acc, input) =>
      accumulators((out, k) => {
        out[k] = fields[k].add(acc[k], input)
      }),
    merge: (a, b) =>
      accumulators((out, k) => {
        out[k] = fields[k].merge(a[k], b[k])
      }),
    result: (acc) => {
      const out: Partial<Outputs<F>> = {}
      const one = <K extends keyof F>(k: K) => {
        out[k] = fields[k].result(acc[k])
      }
      for (const k of keys) one(k)
      return complete<Outputs<F>>(out, keys) ? out : incomplete()
    },
    check: keys.every((k) => fields[k].check !== undefined)
      ? (acc) => {
          for (const k of keys) {
            const problem = checkField(k, acc)
            if (problem !== undefined) return `${String(k)}: ${problem}`
          }
          return undefined
        }
      : undefined,
    codec: {
      encode: (acc) => {
        const parts: Array<Uint8Array | null> = []
        let size = 0
        const one = <K extends keyof F>(k: K): string | undefined => {
          const encoded = fields[k].codec.encode(acc[k])
          if (Result.isFailure(encoded)) return `${String(k)}: ${encoded.failure}`
          parts.push(encoded.success)
          size += 4 + (encoded.success?.length ?? 0)
          return undefined
        }
        for (const k of keys) {
          const failure = one(k)
          if (failure !== undefined) return Result.fail(failure)
        }
        const out = new Uint8Array(size)
        let at = 0
        for (const part of parts) {
          writeU32(out, at, part === null ? absent : part.length)
          at += 4
          if (part !== null) {
            out.set(part, at)
            at += part.length
          }
        }
        return Result.succeed(out)
      },
      decode: (bytes) => {
        if (bytes === null) return Result.fail("absent, expected a struct accumulator")
        const out: Partial<Accumulators<F>> = {}
        let at = 0
        const one = <K extends keyof F>(k: K): string | undefined => {
          if (at + 4 > bytes.length) return `${String(k)}: truncated`
          const length = readU32(bytes, at)
          at += 4
          const part = length === absent ? null : bytes.subarray(at, at + length)
          if (part !== null && part.length !== length) return `${String(k)}: truncated`
          at += part === null ? 0 : length
          const decoded = fields[k].codec.decode(part)
          if (Result.isFailure(decoded)) return `${String(k)}: ${decoded.failure}`
          out[k] = decoded.success
          return undefined
        }
        for (const k of keys) {
          const failure = one(k)
          if (failure !== undefined) return Result.fail(failure)
        }
        if (at !== bytes.length) return Result.fail(`${bytes.length - at} bytes after the last field`)
        return complete<Accumulators<F>>(out, keys) ? Result.succeed(out) : Result.fail("a field is missing")
      }
    }
  }
}
