/**
 * How kafkajs failures become Sluice's `KafkaError`: the operation, a reason naming the kafkajs error (and the
 * broker error type it wraps), whether a retry can help, and the original error as the cause.
 */
import { Effect, Predicate, Schedule } from "effect"
import { KafkaError } from "../Errors.ts"

interface ErrorInfo {
  readonly name: string
  readonly message: string
  readonly type: string | undefined
  readonly retriable: boolean | undefined
}

const info = (error: unknown): ErrorInfo => ({
  name: Predicate.isError(error) ? error.name : typeof error,
  message: Predicate.isError(error) ? error.message : String(error),
  type: Predicate.hasProperty(error, "type") && Predicate.isString(error.type) ? error.type : undefined,
  retriable:
    Predicate.hasProperty(error, "retriable") && typeof error.retriable === "boolean" ? error.retriable : undefined
})

/** kafkajs wraps the broker's error (retries exceeded, non-retriable) in `cause`; the innermost one says what broke. */
const chain = (error: unknown): ReadonlyArray<ErrorInfo> => {
  const out: Array<ErrorInfo> = []
  let current: unknown = error
  while (current !== undefined && current !== null && out.length < 8) {
    out.push(info(current))
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return out
}

const connectionErrors = new Set([
  "KafkaJSConnectionError",
  "KafkaJSConnectionClosedError",
  "KafkaJSRequestTimeoutError",
  "KafkaJSBrokerNotFound",
  "KafkaJSNoBrokerAvailableError",
  "KafkaJSLockTimeout"
])

/** Broker answers that mean this member's generation is over: the partitions may now belong to another member. */
const generationErrors = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "UNKNOWN_MEMBER_ID",
  "FENCED_INSTANCE_ID"
])

/** The broker error type (e.g. `UNKNOWN_TOPIC_OR_PARTITION`) anywhere in the chain, innermost first. */
export const errorType = (error: unknown): string | undefined => {
  const errors = chain(error)
  for (let i = errors.length - 1; i >= 0; i--) {
    const type = errors[i]!.type
    if (type !== undefined) return type
  }
  return undefined
}

export const toKafkaError = (operation: string, error: unknown): KafkaError => {
  if (error instanceof KafkaError) return error
  const errors = chain(error)
  const top = errors[0]!
  const root = errors[errors.length - 1]!
  const type = errorType(error)
  const describe = (e: ErrorInfo) => `${e.name}${e.type === undefined ? "" : ` ${e.type}`}: ${e.message}`
  let reason = top === root || top.message === root.message ? describe(root) : `${describe(root)} (${top.name})`
  // kafkajs gives up on a retriable error with NumberOfRetriesExceeded, which itself says retriable: false.
  let retryable = errors.some((e) => connectionErrors.has(e.name)) || root.retriable === true
  if (type !== undefined && generationErrors.has(type)) {
    reason = `the group rebalanced, so these partitions may have moved to another member (${reason})`
    retryable = false
  }
  return new KafkaError({ operation, reason, retryable, cause: error })
}

/** Runs a kafkajs call, mapping its rejection (or synchronous throw) to a `KafkaError`. */
export const attempt = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, KafkaError> =>
  Effect.tryPromise({ try: f, catch: (error) => toKafkaError(operation, error) })

/** Capped exponential backoff: 100 ms doubling to 5 s, for `limitMs` in total. */
export const backoff = (limitMs: number) =>
  Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")]).pipe(
    Schedule.upTo({ duration: `${limitMs} millis` })
  )
