/** Small Effect helpers shared by the processors' tests. */
import { Effect } from "effect"
import { TestClock } from "effect/testing"

/**
 * Moves the test clock on in 10 ms steps until `check` holds (commit intervals and retry backoffs pass, no real
 * time does); dies with `what` after 10 s of test time, so a stuck test says what it waited for.
 */
export const waitUntil = <R>(what: string, check: Effect.Effect<boolean, never, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* TestClock.adjust("10 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting until ${what}`))
  })

/**
 * Lets the runner's fibers run, a second of test time at a time, until `condition` holds (commit intervals and
 * timers pass; no real time does); dies with `what` after 300 s of test time.
 */
export const settle = Effect.fnUntraced(function* <E, R>(what: string, condition: Effect.Effect<boolean, E, R>) {
  for (let i = 0; i < 300; i++) {
    if (yield* condition) return
    for (let j = 0; j < 20; j++) yield* Effect.yieldNow
    yield* TestClock.adjust("1 second")
  }
  return yield* Effect.die(new Error(`never: ${what}`))
})
