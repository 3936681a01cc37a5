/** Helpers for runtime tests on the in-memory broker and the test clock: waiting without time, stopping, a word count. */
import { Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Batch from "../../src/Batch.ts"
import * as Codec from "../../src/Codec.ts"
import * as Store from "../../src/Store.ts"
import * as Topic from "../../src/Topic.ts"
import * as Topology from "../../src/Topology.ts"

/** Lets the runtime's fibers run until `condition` holds; no time passes. Dies naming `what` if it never does. */
export const settle = Effect.fnUntraced(function* <E, R>(what: string, condition: Effect.Effect<boolean, E, R>) {
  for (let i = 0; i < 5_000; i++) {
    if (yield* condition) return
    yield* Effect.yieldNow
  }
  return yield* Effect.die(new Error(`never: ${what}`))
})

/** Stops a runner whose stop is bounded by timeouts on the test clock, moving the clock along. */
export const stopOnTestClock = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    const stopping = yield* Effect.forkChild(Fiber.interrupt(fiber))
    for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
    yield* Fiber.join(stopping)
  })

export const counts = Store.make("counts", { key: Codec.string, value: Codec.json(Schema.Finite) })

/**
 * Counts words (record keys) of `words` in the store `counts`; `emit` (if given) says what to write per record,
 * from the worker's id, the task, the key and its new count.
 */
export const wordCount = (
  emit?: {
    readonly topic: Topic.Topic<string | null, string>
    readonly line: (task: number, key: string, n: number) => string
  },
  extra: { readonly startOffsets?: Topology.StartOffsets<never, never> } = {}
) =>
  Topology.make({
    name: "wc",
    ...extra,
    input: Topic.make("words", { key: Codec.string, value: Codec.raw }),
    stores: [counts],
    process: (records, ctx) =>
      Effect.sync(() => {
        const store = ctx.store(counts)
        return Batch.forEach(records, (r, o) => {
          const n = (store.get(r.key) ?? 0) + 1
          store.put(r.key, n)
          if (emit !== undefined) o.emit(emit.topic, r.key, emit.line(ctx.task, r.key, n))
        })
      })
  })
