/**
 * A fast, allocation-free check in front of Effect Schema for the JSON codecs (Codec.json): for a schema without
 * transformations, built from structs, arrays, unions, literals, strings, numbers, booleans and null (with their
 * filters, such as `Int` and `Finite`), `guardOf` compiles its AST into a predicate that says whether a value is
 * already exactly what Schema would decode (or encode) it to: the same value, with a struct's declared keys only, in
 * their declared order. Schema's parser allocates ~1 kB of intermediate objects per record; a million-profile table
 * load spent a third of its 3 GB of garbage there.
 *
 * The predicate only ever accepts: when it says no (an invalid value, an excess or reordered key, anything it does
 * not model), the codec asks Schema, which decides and words the error. So a value the predicate accepts is one
 * Schema accepts, unchanged; tests check this against Schema over a corpus of values.
 */
import type { SchemaAST } from "effect"

type Guard = (value: unknown) => boolean

const parseOptions: SchemaAST.ParseOptions = { errors: "all" }

/** The AST's own filters (`Int`, `Finite`, `check(...)`), all of which must pass; `undefined` for an unknown kind. */
const checksOf = (ast: SchemaAST.AST): ((value: unknown) => boolean) | undefined => {
  const checks = ast.checks
  if (checks === undefined) return () => true
  const filters: Array<SchemaAST.Filter<unknown>> = []
  const collect = (check: SchemaAST.Check<unknown>): boolean => {
    if (check._tag === "Filter") {
      filters.push(check)
      return true
    }
    return check.checks.every(collect)
  }
  if (!checks.every(collect)) return undefined
  return (value) => {
    for (const filter of filters) if (filter.run(value, ast, parseOptions) !== undefined) return false
    return true
  }
}

/** A predicate for `ast`, or `undefined` when the AST has a part this module does not model exactly. */
export const guardOf = (ast: SchemaAST.AST): Guard | undefined => {
  // Transformations, optional or mutable keys, defaults: Schema's business.
  if (ast.encoding !== undefined || ast.context !== undefined) return undefined
  const checks = checksOf(ast)
  if (checks === undefined) return undefined
  const withChecks = (shape: Guard): Guard => (ast.checks === undefined ? shape : (v) => shape(v) && checks(v))
  switch (ast._tag) {
    case "String":
      return withChecks((v) => typeof v === "string")
    case "Number":
      return withChecks((v) => typeof v === "number")
    case "Boolean":
      return withChecks((v) => typeof v === "boolean")
    case "Null":
      return withChecks((v) => v === null)
    case "Literal": {
      const literal = ast.literal
      return withChecks((v) => v === literal)
    }
    case "Union": {
      if (ast.options !== undefined) return undefined
      // Only unions of members that keep the value as it is: then the first member that accepts decides, as in
      // Schema, and the output is the input whichever member that is.
      const members: Array<Guard> = []
      for (const member of ast.types) {
        if (member._tag === "Objects" || member._tag === "Arrays" || member._tag === "Union") return undefined
        const guard = guardOf(member)
        if (guard === undefined) return undefined
        members.push(guard)
      }
      return withChecks((v) => members.some((m) => m(v)))
    }
    case "Arrays": {
      if (ast.elements.length > 0 || ast.rest.length !== 1) return undefined
      const element = guardOf(ast.rest[0]!)
      if (element === undefined) return undefined
      return withChecks((v) => {
        if (!Array.isArray(v)) return false
        for (const e of v) if (!element(e)) return false
        return true
      })
    }
    case "Objects": {
      if (ast.indexSignatures.length > 0) return undefined
      const names: Array<string> = []
      const guards: Array<Guard> = []
      for (const p of ast.propertySignatures) {
        // Integer-like names are enumerated before the others whatever the order they were written in.
        if (typeof p.name !== "string" || p.name === "__proto__" || /^\d+$/.test(p.name)) return undefined
        const guard = guardOf(p.type)
        if (guard === undefined) return undefined
        names.push(p.name)
        guards.push(guard)
      }
      return withChecks((v) => {
        if (typeof v !== "object" || v === null || Array.isArray(v)) return false
        if (Object.getPrototypeOf(v) !== Object.prototype) return false
        // Exactly the declared keys, in the declared order: what Schema's output would have.
        let i = 0
        for (const key in v) {
          if (key !== names[i] || !Object.hasOwn(v, key)) return false
          if (!guards[i]!(Reflect.get(v, key))) return false
          i++
        }
        return i === names.length
      })
    }
    default:
      return undefined
  }
}
