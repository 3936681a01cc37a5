/**
 * The typed errors at each of Sluice's boundaries.
 *
 * Effect's convention (its `SqlError` is the model): one tagged error per boundary (`KafkaError`, `RedisError`,
 * `LookupError`, `SinkError`) whose `reason` is itself a tagged value saying what went wrong, and whether a retry
 * can help (`isRetryable`). Retry policies read that flag (broker unavailable, timeouts: retry on a Schedule) and the
 * runtime reads it to decide between "retry the batch" and "dead-letter the record"; `Effect.catchReason` matches a
 * specific reason (`Fenced`, `Rebalance`, `MessageTooLarge`). A pipeline's error type therefore shows what can fail.
 */
import { Predicate, Schema } from "effect"

const ReasonFields = {
  /** What happened, for people: names the thing that is wrong. */
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}

/** The service cannot be reached (connection refused or reset, no broker or leader available). Retryable. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/** A request got no answer in time. Retryable. */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/** The service answered "not now" (a leader moving, a coordinator loading, a server busy). Retryable. */
export class Transient extends Schema.TaggedError<Transient>()("Transient", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The consumer group rebalanced: this member's generation is over and its partitions may belong to another member
 * now. Not retryable: what was in flight for those partitions is re-delivered to their next owner.
 */
export class Rebalance extends Schema.TaggedError<Rebalance>()("Rebalance", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/** A newer producer or member with the same identity took over (a fenced transactional producer). Not retryable. */
export class Fenced extends Schema.TaggedError<Fenced>()("Fenced", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/** A record is larger than the broker or topic accepts (`message.max.bytes`, `max.message.bytes`). Not retryable. */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", {
  ...ReasonFields,
  /** The topic written to, when known. */
  topic: Schema.optional(Schema.String),
  /** The record's size in bytes, when known. */
  size: Schema.optional(Schema.Number),
  /** The limit it broke, when known. */
  limit: Schema.optional(Schema.Number),
  /**
   * From `Kafka.send`: the indices (into the records of that call) of the records over their topic's limit. When
   * it is set, the send appended nothing; when it is absent, the broker itself refused a request and which records
   * caused it is unknown.
   */
  records: Schema.optional(Schema.Array(Schema.Number))
}) {
  get isRetryable(): boolean {
    return false
  }
}

/** The topic does not exist. Not retryable: create it, or fix the name. */
export class UnknownTopic extends Schema.TaggedError<UnknownTopic>()("UnknownTopic", {
  ...ReasonFields,
  /** The topic, when known. */
  topic: Schema.optional(Schema.String)
}) {
  get isRetryable(): boolean {
    return false
  }
}

/** The client was closed, left its group or crashed for good. Not retryable. */
export class Closed extends Schema.TaggedError<Closed>()("Closed", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/** The service refused the request for good (invalid request, authorization, a rejected command). Not retryable. */
export class Rejected extends Schema.TaggedError<Rejected>()("Rejected", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/** Why a call to a service failed. */
export type Reason =
  | Unavailable
  | Timeout
  | Transient
  | Rebalance
  | Fenced
  | MessageTooLarge
  | UnknownTopic
  | Closed
  | Rejected

export const Reason = Schema.Union([
  Unavailable,
  Timeout,
  Transient,
  Rebalance,
  Fenced,
  MessageTooLarge,
  UnknownTopic,
  Closed,
  Rejected
])

/** A failure talking to Kafka (or the in-memory broker): connect, produce, fetch, commit, admin. */
export class KafkaError extends Schema.TaggedError<KafkaError>()("KafkaError", {
  operation: Schema.String,
  reason: Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    return `Kafka ${this.operation} failed: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/** A record's key or value did not decode with its topic's codec. Never retryable: the bytes will not change. */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  topic: Schema.String,
  partition: Schema.Number,
  offset: Schema.Number,
  part: Schema.Literals(["key", "value"]),
  issue: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `cannot decode the ${this.part} of ${this.topic}[${this.partition}]@${this.offset}: ${this.issue}`
  }
}

/** A value could not be encoded for its output topic: a bug in the topology, so it is dead-lettered. */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  topic: Schema.String,
  issue: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `cannot encode a record for ${this.topic}: ${this.issue}`
  }
}

/** A sink (Kafka topic, Postgres, ClickHouse, Redis) failed to write or flush. */
export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  sink: Schema.String,
  reason: Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    return `sink ${this.sink} failed: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/** A join lookup failed (Redis down, the profile topic unreadable). */
export class LookupError extends Schema.TaggedError<LookupError>()("LookupError", {
  strategy: Schema.String,
  reason: Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    return `lookup (${this.strategy}) failed: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/**
 * A record that the topology rejects on purpose (bad business data, an unknown user under the dead-letter
 * policy). Goes to the dead-letter topic with its `tag` and `reason`.
 */
export class RecordRejected extends Schema.TaggedError<RecordRejected>()("RecordRejected", {
  tag: Schema.String,
  reason: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.tag}: ${this.reason}`
  }
}

/** Invalid configuration or arguments, found at startup. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  reason: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return this.reason
  }
}

/**
 * Whatever an error value is, whether a retry can help: Effect's `isRetryable` (its own errors such as `SqlError`,
 * and Sluice's), else a boolean `retryable` field (some libraries' convention). Unknown errors are not retried.
 */
export const isRetryable = (error: unknown): boolean => {
  if (Predicate.hasProperty(error, "isRetryable")) return error.isRetryable === true
  return Predicate.hasProperty(error, "retryable") && error.retryable === true
}

/** The tag of an error for dead-letter headers and logs; a RecordRejected names its own `tag`. */
export const tagOf = (error: unknown): string =>
  error instanceof RecordRejected
    ? error.tag
    : typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
      ? error._tag
      : error instanceof Error
        ? error.name
        : "UnknownError"

/** The tag of an error's reason when it has one (`MessageTooLarge`), else its own tag. */
export const reasonTagOf = (error: unknown): string =>
  Predicate.hasProperty(error, "reason") &&
  Predicate.hasProperty(error.reason, "_tag") &&
  typeof error.reason._tag === "string"
    ? error.reason._tag
    : tagOf(error)

/** A one-line, human-readable message for any error value. */
export const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)
