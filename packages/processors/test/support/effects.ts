/** Small Effect helpers shared by the processors' tests. */
import { Effect } from "effect"

/** Polls `check` every 10 ms until it holds; dies with `what` after ~10 s so a stuck test says what it waited for. */
export const waitUntil = <R>(what: string, check: Effect.Effect<boolean, never, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting until ${what}`))
  })
