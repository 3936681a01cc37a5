/**
 * How kafkajs failures become Sluice's `KafkaError`: the operation, and a tagged reason (Unavailable, Timeout,
 * Rebalance, MessageTooLarge, ...) whose message names the kafkajs error and the broker error type it wraps, with
 * the original error as its cause; and the backoff Sluice retries them with.
 */
import { Effect, Predicate, Schedule } from "effect"
import * as Errors from "../Errors.ts"

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
  "KafkaJSBrokerNotFound",
  "KafkaJSNoBrokerAvailableError"
])
const timeoutErrors = new Set(["KafkaJSRequestTimeoutError", "KafkaJSLockTimeout"])

/** Broker answers that mean this member's generation is over: the partitions may now belong to another member. */
const generationErrors = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "UNKNOWN_MEMBER_ID",
  "FENCED_INSTANCE_ID"
])
/**
 * Broker answers that mean this transactional producer is over: a newer producer with the same transactional id took
 * over, or the coordinator forgot the id (INVALID_PRODUCER_ID_MAPPING: unused for `transactional.id.expiration.ms`).
 */
const fencedErrors = new Set([
  "INVALID_PRODUCER_EPOCH",
  "PRODUCER_FENCED",
  "INVALID_PRODUCER_ID_MAPPING",
  "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
])
/**
 * kafkajs' own refusals once its transaction state machine is stuck, which a failed EndTxn leaves it in (a fenced
 * producer's commit or abort); the producer can never transact again.
 */
const transactionStateErrors =
  /^(Transaction state exception|Cannot continue to use transaction once ended|There is already an ongoing transaction)/
const tooLargeErrors = new Set(["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"])

/** The broker error type (e.g. `UNKNOWN_TOPIC_OR_PARTITION`) anywhere in the chain, innermost first. */
export const errorType = (error: unknown): string | undefined => {
  const errors = chain(error)
  for (let i = errors.length - 1; i >= 0; i--) {
    const type = errors[i]!.type
    if (type !== undefined) return type
  }
  return undefined
}

/** What a kafkajs failure means for Sluice: the tagged reason, from the broker's error type or the error's class. */
export const toReason = (error: unknown, topic?: string): Errors.Reason => {
  const errors = chain(error)
  const top = errors[0]!
  const root = errors[errors.length - 1]!
  const type = errorType(error)
  const describe = (e: ErrorInfo) => `${e.name}${e.type === undefined ? "" : ` ${e.type}`}: ${e.message}`
  const message = top === root || top.message === root.message ? describe(root) : `${describe(root)} (${top.name})`
  const fields = { message, cause: error }
  const topicField = topic === undefined ? {} : { topic }
  if (type !== undefined) {
    if (generationErrors.has(type)) {
      return new Errors.Rebalance({
        ...fields,
        message: `the group rebalanced, so these partitions may have moved to another member (${message})`
      })
    }
    if (fencedErrors.has(type)) return new Errors.Fenced(fields)
    if (tooLargeErrors.has(type)) return new Errors.MessageTooLarge({ ...fields, ...topicField })
    if (type === "UNKNOWN_TOPIC_OR_PARTITION") return new Errors.UnknownTopic({ ...fields, ...topicField })
  }
  if (errors.some((e) => e.name === "KafkaJSNonRetriableError" && transactionStateErrors.test(e.message))) {
    return new Errors.Fenced({
      ...fields,
      message: `the producer's transaction state is stuck, as after a fencing; it cannot transact again (${message})`
    })
  }
  if (errors.some((e) => timeoutErrors.has(e.name))) return new Errors.Timeout(fields)
  if (errors.some((e) => connectionErrors.has(e.name))) return new Errors.Unavailable(fields)
  // kafkajs gives up on a retriable error with NumberOfRetriesExceeded, which itself says retriable: false.
  if (root.retriable === true) return new Errors.Transient(fields)
  return new Errors.Rejected(fields)
}

export const toKafkaError = (operation: string, error: unknown, topic?: string): Errors.KafkaError =>
  error instanceof Errors.KafkaError ? error : new Errors.KafkaError({ operation, reason: toReason(error, topic) })

/** Runs a kafkajs call, mapping its rejection (or synchronous throw) to a `KafkaError` (about `topic`, when known). */
export const attempt = <A>(
  operation: string,
  f: () => Promise<A>,
  topic?: string
): Effect.Effect<A, Errors.KafkaError> =>
  Effect.tryPromise({ try: f, catch: (error) => toKafkaError(operation, error, topic) })

/** Capped exponential backoff: 100 ms doubling to 5 s, for `limitMs` in total. */
export const backoff = (limitMs: number) =>
  Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")]).pipe(
    Schedule.upTo({ duration: `${limitMs} millis` })
  )
