/**
 * The typed errors at each of Sluice's boundaries.
 *
 * Every error carries a `reason` and says whether it is `retryable`: retry policies read that flag (broker
 * unavailable, timeouts: retry on a Schedule) and the runtime reads it to decide between "retry the batch" and
 * "dead-letter the record". A pipeline's error type therefore shows what can fail.
 */
import { Schema } from "effect"

/** A failure talking to Kafka (or the in-memory broker): connect, produce, fetch, commit, admin. */
export class KafkaError extends Schema.TaggedError<KafkaError>()("KafkaError", {
  operation: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `Kafka ${this.operation} failed: ${this.reason}`
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
  readonly retryable = false
  override get message(): string {
    return `cannot decode the ${this.part} of ${this.topic}[${this.partition}]@${this.offset}: ${this.issue}`
  }
}

/** A value could not be encoded for its output topic: a bug in the topology, so it is dead-lettered. */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  topic: Schema.String,
  issue: Schema.String
}) {
  readonly retryable = false
  override get message(): string {
    return `cannot encode a record for ${this.topic}: ${this.issue}`
  }
}

/** A sink (Kafka topic, Postgres, ClickHouse, Redis) failed to write or flush. */
export class SinkError extends Schema.TaggedError<SinkError>()("SinkError", {
  sink: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `sink ${this.sink} failed: ${this.reason}`
  }
}

/** A join lookup failed (Redis down, the profile topic unreadable). */
export class LookupError extends Schema.TaggedError<LookupError>()("LookupError", {
  strategy: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `lookup (${this.strategy}) failed: ${this.reason}`
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
  readonly retryable = false
  override get message(): string {
    return `${this.tag}: ${this.reason}`
  }
}

/** Invalid configuration or arguments, found at startup. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/** Whatever an error value is, whether a retry can help. Unknown errors are not retried. */
export const isRetryable = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "retryable" in error && error.retryable === true

/** The tag of an error for dead-letter headers and logs; a RecordRejected names its own `tag`. */
export const tagOf = (error: unknown): string =>
  error instanceof RecordRejected
    ? error.tag
    : typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
      ? error._tag
      : error instanceof Error
        ? error.name
        : "UnknownError"

/** A one-line, human-readable message for any error value. */
export const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)
