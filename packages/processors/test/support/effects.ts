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
