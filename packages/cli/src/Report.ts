/**
 * How the CLI reports a failure: one line saying what went wrong and, where we can tell, one saying what to do,
 * instead of a stack trace. Hints are chosen by the error's tag and its reason's tag (`UnknownTopic`,
 * `Unavailable`, `MessageTooLarge`, ...), never by the wording of a message, and name the thing that is wrong: the
 * topic, the brokers, the sizes. Errors the CLI does not know pass through to the runtime's default report.
 */
import * as DeadLetter from "@sluice/core/DeadLetter"
import * as Main from "@sluice/core/Main"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as Sensors from "@sluice/processors/Sensors"
import * as UserEvents from "@sluice/processors/UserEvents"
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

/** The reason of a boundary error (`KafkaError`, `RedisError`, `SqlError`, ...) as its tag and its fields. */
const reasonOf = (error: unknown): Tagged | undefined =>
  Predicate.hasProperty(error, "reason") && isTagged(error.reason) ? error.reason : undefined

/** A field of a reason (`topic`, `size`) as text, when it is set. */
const field = (reason: Tagged | undefined, name: string): string | undefined => {
  const value = Predicate.hasProperty(reason, name) ? reason[name] : undefined
  return typeof value === "string" || typeof value === "number" ? String(value) : undefined
}

/** The topics Sluice's commands create, by their unprefixed name, with the command that creates each one. */
const creators = (
  [
    [UserEvents.defaultTopics.events.name, "sluice produce user-events"],
    [UserEvents.defaultTopics.activity.name, "sluice run user-events"],
    [DeadLetter.topicFor(UserEvents.defaultTopics.events.name), "sluice run user-events"],
    // EventsToPostgres.defaultTopics.raw.name, spelled out: that module brings Postgres' with it, which no other
    // command should load to report an error (Report.test.ts checks the two agree).
    ["events.raw", "sluice produce events"],
    [ClickEnrichment.defaultTopics.profiles.name, "sluice produce profiles"],
    [ClickEnrichment.defaultTopics.clicks.name, "sluice produce clicks"],
    [ClickEnrichment.defaultTopics.enriched.name, "sluice run click-enrichment"],
    [DeadLetter.topicFor(ClickEnrichment.defaultTopics.clicks.name), "sluice run click-enrichment"],
    [Sensors.defaultTopics.readings.name, "sluice produce sensors"],
    [Sensors.defaultTopics.enriched.name, "sluice run sensor-pipeline"],
    [Sensors.defaultTopics.deadLetters, "sluice run sensor-pipeline"],
    // ClickstreamSessions.named().events.name, spelled out for the same reason (Redis' client).
    ["clickstream", "sluice produce clickstream"]
  ] satisfies ReadonlyArray<readonly [topic: string, command: string]>
)
  // Longest first: should one name ever end with another, the longer (more specific) one wins.
  .toSorted(([a], [b]) => b.length - a.length)

/** The command that creates `topic`, with the topic's prefix, if one of Sluice's commands does. */
export const creatorOf = (topic: string): string | undefined => {
  const found = creators.find(([name]) => topic.endsWith(name))
  if (found === undefined) return undefined
  const [name, command] = found
  const prefix = topic.slice(0, topic.length - name.length)
  return prefix === "" ? command : `${command} --topic-prefix ${prefix}`
}

const kafkaAt = (context: Context) => (context.brokers === undefined ? "" : ` at ${context.brokers}`)

const kafkaHint = (reason: Tagged | undefined, context: Context): string | undefined => {
  switch (reason?._tag) {
    case "UnknownTopic": {
      const topic = field(reason, "topic")
      const creator = topic === undefined ? undefined : creatorOf(topic)
      const create = creator === undefined ? "create it" : `create it (\`${creator}\`)`
      return `${topic === undefined ? "the topic" : `topic ${topic}`} does not exist: ${create}, or check --topic-prefix and --brokers`
    }
    case "Unavailable":
    case "Timeout":
      return `is Kafka running${kafkaAt(context)}? \`bash scripts/services.sh start\`, or point --brokers / SLUICE_BROKERS at your cluster`
    case "MessageTooLarge": {
      const topic = field(reason, "topic")
      const size = field(reason, "size")
      const limit = field(reason, "limit")
      const what = `a record${size === undefined ? "" : ` of ${size} bytes`} is larger than ${
        topic === undefined ? "the topic" : `topic ${topic}`
      } accepts${limit === undefined ? "" : ` (${limit} bytes)`}`
      return `${what}: make the records smaller, or raise the topic's max.message.bytes (and the broker's message.max.bytes and replica.fetch.max.bytes to match)`
    }
    default:
      return undefined
  }
}

const redisHint = (reason: Tagged | undefined): string | undefined =>
  reason?._tag === "Unavailable" || reason?._tag === "Timeout"
    ? "is Redis running? `bash scripts/services.sh start`, or set REDIS_URL"
    : undefined

/** A hint for the errors whose usual cause we know. */
export const hintFor = (error: unknown, context: Context = {}): string | undefined => {
  if (!isTagged(error)) return undefined
  const reason = reasonOf(error)
  switch (error._tag) {
    case "KafkaError":
      return kafkaHint(reason, context)
    case "RedisError":
      return redisHint(reason)
    case "LookupError":
      // The redis strategy looks profiles up in Redis; the others read the profile topic.
      return Predicate.hasProperty(error, "strategy") && error.strategy === "redis"
        ? redisHint(reason)
        : kafkaHint(reason, context)
    case "ClickHouseError":
      return reason?._tag === "Unavailable" || reason?._tag === "Timeout"
        ? "is ClickHouse running? `bash scripts/services.sh start`, or set CLICKHOUSE_URL"
        : undefined
    case "SqlError":
      return reason?._tag === "AuthenticationError"
        ? "check the user and password in DATABASE_URL"
        : "is Postgres running? `bash scripts/services.sh start`, or set DATABASE_URL"
    case "ConfigInvalid":
      return "see --help for the accepted values"
    default:
      return undefined
  }
}

const known = new Set([
  "KafkaError",
  "RedisError",
  "ClickHouseError",
  "SqlError",
  "ConfigInvalid",
  "LookupError",
  "SinkError",
  "JoinRunFailed",
  "StateBenchFailed",
  "SinkBenchFailed",
  "DemoFailed"
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
