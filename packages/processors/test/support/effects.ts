/** Small Effect helpers shared by the processors' tests. */
import { Kafka } from "@sluice/core/Kafka"
import * as Runner from "@sluice/core/Runner"
import type * as Topology from "@sluice/core/Topology"
import { Effect, Fiber } from "effect"
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

/** Whether `group` has committed every record of `topic` (on whichever broker layer is provided). */
export const committedToEnd = (group: string, topic: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(topic)
    const committed = new Map((yield* kafka.committedOffsets(group, topic)).map((c) => [c.partition, c]))
    return highs.every((h) => (committed.get(h.partition)?.offset ?? 0) === h.high)
  })

/** A worker's run on the test clock: started, left to run until `condition` holds, then stopped. */
export const runUntil = <E, R, E2, R2>(
  topology: Topology.Topology<E, R>,
  group: string,
  what: string,
  condition: Effect.Effect<boolean, E2, R2>
) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(Runner.run(topology, { groupId: group }))
    yield* settle(what, condition)
    const stop = yield* Effect.forkChild(Fiber.interrupt(fiber))
    for (let i = 0; i < 10 && stop.pollUnsafe() === undefined; i++) yield* TestClock.adjust("1 second")
    yield* Fiber.join(stop)
  })

/** A worker's run on the test clock: started, left to process and commit all of `topic` in `group`, then stopped. */
export const runToEnd = <E, R>(topology: Topology.Topology<E, R>, group: string, topic: string) =>
  runUntil(topology, group, "every input record committed", committedToEnd(group, topic))
