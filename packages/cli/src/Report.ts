/**
 * How the CLI reports a failure: one line saying what went wrong and, where we can tell, one saying what to do,
 * instead of a stack trace. Errors the CLI does not know pass through to the runtime's default report.
 */
import { Console, Effect, Runtime, Schema } from "effect"

/** Already printed for the user; the runtime only sets the exit code (2 for invalid arguments, else 1). */
export class Reported extends Schema.TaggedError<Reported>()("Reported", {
  message: Schema.String,
  exitCode: Schema.Number
}) {
  override readonly [Runtime.errorReported] = false
  override get [Runtime.errorExitCode](): number {
    return this.exitCode
  }
}

const hasTag = (u: unknown): u is { readonly _tag: string; readonly message: string } =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" && "message" in u

/** A hint for the errors whose usual cause we know. */
export const hintFor = (error: { readonly _tag: string; readonly message: string }): string | undefined => {
  const m = error.message
  switch (error._tag) {
    case "KafkaError":
      if (/unknown topic/.test(m)) {
        return "create it by producing to it first (e.g. `sluice produce ...`), or check --topic-prefix and --brokers"
      }
      if (/connect|ECONNREFUSED|broker/i.test(m)) {
        return "is Kafka running? `bash scripts/services.sh start`, or point --brokers / SLUICE_BROKERS at your cluster"
      }
      return undefined
    case "RedisError":
      return "is Redis running? `bash scripts/services.sh start`, or set REDIS_URL"
    case "SqlError":
      return "is Postgres running? `bash scripts/services.sh start`, or set DATABASE_URL"
    case "ConfigInvalid":
      return "see --help for the accepted values"
    default:
      return undefined
  }
}

const known = new Set([
  "KafkaError",
  "RedisError",
  "SqlError",
  "ConfigInvalid",
  "LookupError",
  "SinkError",
  "JoinRunFailed"
])

/** Prints known failures as `error: ...` plus a hint on stderr and fails with `Reported` (exit code 1). */
export const reportErrors = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e): e is E => hasTag(e) && known.has(e._tag),
    (e) =>
      Effect.gen(function* () {
        const message = hasTag(e) ? e.message : String(e)
        const hint = hasTag(e) ? hintFor(e) : undefined
        yield* Console.error(`error: ${message}${hint === undefined ? "" : `\nhint: ${hint}`}`)
        return yield* new Reported({ message, exitCode: hasTag(e) && e._tag === "ConfigInvalid" ? 2 : 1 })
      })
  )
