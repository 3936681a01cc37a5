/**
 * How the CLI reports a failure: one line saying what went wrong and, where we can tell, one saying what to do,
 * instead of a stack trace. Errors the CLI does not know pass through to the runtime's default report.
 */
import * as Main from "@sluice/core/Main"
import { Console, Effect, Predicate, Runtime, Schema } from "effect"
import { CliError } from "effect/cli"

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

/** What the command was pointed at, when the hint can use it. */
export interface Context {
  readonly brokers?: string
}

interface Tagged {
  readonly _tag: string
  readonly message: string
}

const isTagged = (u: unknown): u is Tagged =>
  Predicate.hasProperty(u, "_tag") &&
  typeof u._tag === "string" &&
  Predicate.hasProperty(u, "message") &&
  typeof u.message === "string"

/** A hint for the errors whose usual cause we know. */
export const hintFor = (error: unknown, _context: Context = {}): string | undefined => {
  if (!isTagged(error)) return undefined
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

/** An argument effect/cli could not parse: it has printed the help and the error already. */
const isUsageError = (u: unknown): u is CliError.ShowHelp =>
  CliError.isCliError(u) && u._tag === "ShowHelp" && u.errors.length > 0

/**
 * Prints known failures as `error: ...` plus a hint on stderr and fails with `Reported`: exit code 2 for invalid
 * arguments (`ConfigInvalid`, and arguments effect/cli rejected, which it has printed itself), 1 otherwise.
 */
export const reportErrors =
  (context: Context = {}) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.catchIf(
      effect,
      (e): e is E => (isTagged(e) && known.has(e._tag)) || isUsageError(e),
      (e) =>
        Effect.gen(function* () {
          if (isUsageError(e)) {
            return yield* new Reported({
              message: e.errors.map((x) => x.message).join("\n"),
              exitCode: Main.exitCodes.usage
            })
          }
          const message = isTagged(e) ? e.message : String(e)
          const hint = hintFor(e, context)
          yield* Console.error(`error: ${message}${hint === undefined ? "" : `\nhint: ${hint}`}`)
          const usage = isTagged(e) && e._tag === "ConfigInvalid"
          return yield* new Reported({ message, exitCode: usage ? Main.exitCodes.usage : Main.exitCodes.failed })
        })
    )
