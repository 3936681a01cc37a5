/**
 * Bootstrap-then-tail: keeps a view of a (compacted) topic, shared by the global table and the Redis loader. A load
 * reads every partition from the earliest offset, reports ready once it has reached the end offsets the topic had
 * when the load started, and then keeps applying updates.
 *
 * Supervised, so a view never goes stale silently: a retryable failure (the broker, Redis) starts a fresh load after
 * a capped backoff, for as long as the failures last less than `retryFor`; a non-retryable failure, or one that
 * outlasts that bound, marks the loader dead in `Health`, which stops the worker with the cause. The backoff and
 * the bound start again once a load has caught up.
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Option, type Scope, Stream } from "effect"
import { isRetryable, type KafkaError, messageOf } from "../Errors.ts"
import { Health } from "../Health.ts"
import { Kafka } from "../Kafka.ts"
import { endTracker } from "../Reader.ts"
import type { RecordBatch } from "../Record.ts"

/** One load's sink: `apply` gets every batch in order, `caughtUp` runs once the load has reached the end offsets. */
export interface Load<E> {
  readonly apply: (batch: RecordBatch) => Effect.Effect<void, E>
  readonly caughtUp: Effect.Effect<void, E>
}

export interface LoaderOptions<E> {
  /** For logs and `/health`: "table user_profiles". */
  readonly name: string
  readonly topic: string
  /** Starts a load (the first, or a fresh one after a failure). */
  readonly begin: Effect.Effect<Load<E>>
  /** How long failures may last before the loader gives up. Default 2 minutes. */
  readonly retryFor?: Duration.Input
}

export interface Loader<E> {
  /** Completes once the first load has caught up; fails if the loader gave up before that. */
  readonly ready: Effect.Effect<void, KafkaError | E>
}

export const start = Effect.fnUntraced(function* <E>(
  options: LoaderOptions<E>
): Effect.fn.Return<Loader<E>, never, Kafka | Scope.Scope> {
  const kafka = yield* Kafka
  const health = yield* Health
  const retryForMs = Duration.toMillis(Duration.fromInputUnsafe(options.retryFor ?? "2 minutes"))
  const ready = yield* Deferred.make<void, KafkaError | E>()
  let loaded = false
  let state = "loading"

  const registration = yield* health.register(
    options.name,
    Effect.sync(() => ({ live: true, ready: loaded, detail: state }))
  )

  /** One load; never succeeds (the topic's tail never ends). Sets `caught` once it reached the end offsets. */
  const loadOnce = (caught: { value: boolean }) =>
    Effect.gen(function* () {
      const load = yield* options.begin
      const tracker = endTracker(yield* kafka.offsets(options.topic))
      const caughtUp = Effect.gen(function* () {
        caught.value = true
        yield* load.caughtUp
        loaded = true
        state = "up to date, applying updates"
        yield* Deferred.succeed(ready, undefined)
      })
      if (tracker.done()) yield* caughtUp
      yield* kafka.read({ topics: [options.topic], from: "earliest" }).pipe(
        Stream.runForEach((batch) =>
          Effect.gen(function* () {
            yield* load.apply(batch)
            if (caught.value) return
            tracker.take(batch)
            if (tracker.done()) yield* caughtUp
          })
        )
      )
      return yield* Effect.never
    })

  yield* Effect.forkScoped(
    Effect.gen(function* () {
      let failingSince: number | undefined
      let delayMs = 100
      while (true) {
        const caught = { value: false }
        const exit = yield* Effect.exit(loadOnce(caught))
        if (Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return
        const now = yield* Clock.currentTimeMillis
        if (caught.value) {
          failingSince = undefined
          delayMs = 100
        }
        failingSince ??= now
        const error = Option.getOrUndefined(Cause.findErrorOption(exit.cause))
        const retryable = error !== undefined && isRetryable(error)
        if (!retryable || now - failingSince >= retryForMs) {
          const reason =
            error === undefined
              ? Cause.pretty(exit.cause)
              : retryable
                ? `${messageOf(error)} (failing for ${Math.round((now - failingSince) / 1000)} s)`
                : messageOf(error)
          state = `stopped: ${reason}`
          if (error !== undefined) yield* Deferred.fail(ready, error)
          else yield* Deferred.failCause(ready, Cause.die(Cause.squash(exit.cause)))
          yield* Effect.logError(`${options.name} stopped for good: ${reason}`)
          return yield* registration.die(reason, Cause.squash(exit.cause))
        }
        state = `reloading after: ${messageOf(error)}`
        yield* Effect.logWarning(`${options.name} failed (${messageOf(error)}); a fresh load starts in ${delayMs} ms`)
        yield* Effect.sleep(delayMs)
        delayMs = Math.min(delayMs * 2, 5_000)
      }
    })
  )

  return { ready: Deferred.await(ready) }
})
