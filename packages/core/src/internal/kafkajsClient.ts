/**
 * The life of a kafkajs client (admin, producer, consumer): connecting at start while the broker may still be away
 * (`connectWithRetry`), connecting on first use and being replaced by a fresh client (`makeClient`), and
 * disconnecting within a bound (`disconnectWithin`), because with the broker down or stalled kafkajs can wait a whole
 * request timeout, and closing must not.
 */
import { Clock, Effect, Option, Result, type Scope } from "effect"
import type { KafkaError } from "../Errors.ts"
import { attempt } from "./kafkajsErrors.ts"

/**
 * Disconnects a kafkajs client, waiting at most `timeoutMs`: with the broker down or stalled, kafkajs can wait for a
 * whole request timeout (a consumer leaving its group), and closing must not. A disconnect that takes longer goes on
 * in the background; `onTimeout` says what that means.
 */
export const disconnectWithin = (
  client: { readonly disconnect: () => Promise<void> },
  timeoutMs: number,
  onTimeout: Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.promise(() => client.disconnect().catch(() => undefined)).pipe(
    Effect.timeoutOption(`${timeoutMs} millis`),
    Effect.flatMap((done) => (Option.isNone(done) ? onTimeout : Effect.void))
  )

const formatDelay = (ms: number) => (ms < 1000 ? `${ms} ms` : `${ms / 1000} s`)

/**
 * Runs `connect` until it succeeds, retrying a retryable failure after 250 ms, doubling up to 5 s, for at most
 * `maxDurationMs` (the last attempt is made at the deadline). Each failed attempt is one Warn line.
 */
export const connectWithRetry = Effect.fnUntraced(function* (
  brokers: ReadonlyArray<string>,
  maxDurationMs: number | undefined,
  connect: Effect.Effect<void, KafkaError>
) {
  const started = yield* Clock.currentTimeMillis
  for (let attempt = 1; ; attempt++) {
    const result = yield* Effect.result(connect)
    if (Result.isSuccess(result)) return
    const error = result.failure
    const remaining =
      maxDurationMs === undefined ? Infinity : started + maxDurationMs - (yield* Clock.currentTimeMillis)
    if (!error.isRetryable || remaining <= 0) return yield* Effect.fail(error)
    const delay = Math.min(250 * 2 ** Math.min(attempt - 1, 5), 5000, remaining)
    yield* Effect.logWarning(
      `cannot reach Kafka at ${brokers.join(",")} (attempt ${attempt}): ${error.reason.message}; ` +
        `retrying in ${formatDelay(delay)}`
    )
    yield* Effect.sleep(delay)
  }
})

/** A kafkajs client that connects on first use and can be swapped for a fresh one. */
export interface Client<C> {
  /** The client in use now. */
  readonly current: () => C
  /** Connects the current client; a no-op once connected. */
  readonly connect: Effect.Effect<void, KafkaError>
  /** Swaps in a fresh client (which forgets whatever state broke the old one), disconnects the old one, connects. */
  readonly replace: Effect.Effect<void, KafkaError>
}

/**
 * Makes a client with `create`; when the scope closes, the client in use disconnects within `closeTimeoutMs`
 * (`name` says which in the Debug line when it does not).
 */
export const makeClient = Effect.fnUntraced(function* <
  C extends { connect(): Promise<void>; disconnect(): Promise<void> }
>(name: string, create: () => C, closeTimeoutMs: number): Effect.fn.Return<Client<C>, never, Scope.Scope> {
  let client = create()
  let connected = false
  const disconnect = (c: C) =>
    disconnectWithin(
      c,
      closeTimeoutMs,
      Effect.logDebug(`the kafkajs ${name} did not disconnect within ${closeTimeoutMs} ms; leaving it`)
    )
  const connect = Effect.suspend(() =>
    connected
      ? Effect.void
      : attempt("connect", () => client.connect()).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              connected = true
            })
          ),
          // A failed connect may leave sockets behind; the next attempt starts clean.
          Effect.tapError(() => disconnect(client))
        )
  )
  yield* Effect.addFinalizer(() => Effect.suspend(() => disconnect(client)))
  return {
    current: () => client,
    connect,
    replace: Effect.suspend(() => {
      const old = client
      client = create()
      connected = false
      return Effect.andThen(disconnect(old), connect)
    })
  }
})
