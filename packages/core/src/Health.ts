/**
 * What the worker's parts say about themselves: whether each is live (doing its work) and ready (loaded, assigned),
 * and whether one of them died for good. `/health` and `/ready` (Http.ts) answer from it, and the runner stops the
 * worker when a part dies, so no process keeps running while it does no work.
 *
 * Parts register for as long as their scope lives: the runner (running, partitions assigned, none stuck), global
 * tables and Redis loaders (loaded, loader alive). A `Context.Reference`, so every part of one process reports to the
 * same registry without wiring; tests provide their own with `Health.layer`.
 */
import { Context, Deferred, Effect, Layer, Schema, type Scope } from "effect"

/** One part's answer. `detail` says what is wrong, or what it is doing, in a few words. */
export interface Probe {
  readonly live: boolean
  readonly ready: boolean
  readonly detail?: string | undefined
}

/** A part of the worker died for good (its retries ran out, or it hit a defect). */
export class ComponentFailed extends Schema.TaggedError<ComponentFailed>()("ComponentFailed", {
  component: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `${this.component} died: ${this.reason}`
  }
}

export interface Check extends Probe {
  readonly name: string
}

export interface Report {
  readonly live: boolean
  readonly ready: boolean
  readonly checks: ReadonlyArray<Check>
}

/** What a registered part holds to report its own death. */
export interface Registration {
  /** Marks the part dead for good: `/health` fails and `failures` fails with it. */
  readonly die: (reason: string, cause?: unknown) => Effect.Effect<void>
}

export interface HealthShape {
  /** Registers a part until the current scope closes. */
  readonly register: (name: string, probe: Effect.Effect<Probe>) => Effect.Effect<Registration, never, Scope.Scope>
  readonly report: Effect.Effect<Report>
  /** Fails as soon as a registered part dies (at once if one is dead already); never succeeds. */
  readonly failures: Effect.Effect<never, ComponentFailed>
}

interface Part {
  readonly name: string
  readonly probe: Effect.Effect<Probe>
  dead: ComponentFailed | undefined
}

export const make = (): HealthShape => {
  const parts = new Set<Part>()
  // Completed and replaced whenever a part dies, so waiters look again.
  let changed = Deferred.makeUnsafe<void>()
  const signal = () => {
    const done = changed
    changed = Deferred.makeUnsafe<void>()
    Deferred.doneUnsafe(done, Effect.void)
  }
  const firstDead = (): ComponentFailed | undefined => {
    for (const part of parts) if (part.dead !== undefined) return part.dead
    return undefined
  }
  const failures: Effect.Effect<never, ComponentFailed> = Effect.suspend(() => {
    const dead = firstDead()
    if (dead !== undefined) return Effect.fail(dead)
    return Effect.andThen(Deferred.await(changed), failures)
  })
  return {
    register: (name, probe) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const part: Part = { name, probe, dead: undefined }
          parts.add(part)
          const registration: Registration = {
            die: (reason, cause) =>
              Effect.sync(() => {
                part.dead ??= new ComponentFailed({ component: name, reason, cause })
                signal()
              })
          }
          return { part, registration }
        }),
        ({ part }) => Effect.sync(() => parts.delete(part))
      ).pipe(Effect.map(({ registration }) => registration)),
    report: Effect.suspend(() =>
      Effect.forEach([...parts], (part) =>
        part.dead === undefined
          ? Effect.map(part.probe, (probe): Check => ({ name: part.name, ...probe }))
          : Effect.succeed<Check>({ name: part.name, live: false, ready: false, detail: part.dead.reason })
      ).pipe(
        Effect.map((checks) => ({
          live: checks.every((c) => c.live),
          ready: checks.every((c) => c.ready),
          checks
        }))
      )
    ),
    failures
  }
}

/** The process's health registry; `layer` gives a test its own. */
export const Health: Context.Reference<HealthShape> = Context.Reference<HealthShape>("@sluice/core/Health", {
  defaultValue: make
})

/** A fresh registry, for tests that must not see other tests' parts. */
export const layer: Layer.Layer<never> = Layer.sync(Health, make)
