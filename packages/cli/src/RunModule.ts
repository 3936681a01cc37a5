/**
 * `sluice run ./path/to/topology.ts`: a user's topology, loaded from a module, run with the same flags as the
 * built-in ones.
 *
 * The module exports the topology as `default` or as `topology`: a `Topology.make(...)` value, or a function of
 * `{ prefix }` (the `--topic-prefix`) that returns one, so the same module serves several environments. Node runs `.ts`
 * files by stripping their types (outside node_modules), and `.js`/`.mjs` as they are. The topology may need only
 * what `sluice run` provides (the Kafka service, the health and tables registries); one that needs more services
 * is run from the user's own `main.ts` with `Runner.run` and its layers.
 */
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { ConfigInvalid } from "@sluice/core/Errors"
import type { Topology } from "@sluice/core/Topology"
import { Effect, Predicate } from "effect"

/** Whether `u` is a topology as `Topology.make` builds it (checked field by field: it comes from user code). */
export const isTopology = (u: unknown): u is Topology<unknown, never> =>
  Predicate.isObject(u) &&
  Predicate.hasProperty(u, "name") &&
  typeof u.name === "string" &&
  Predicate.hasProperty(u, "inputs") &&
  Array.isArray(u.inputs) &&
  u.inputs.length > 0 &&
  u.inputs.every(
    (i: unknown) =>
      Predicate.hasProperty(i, "topic") &&
      typeof i.topic === "string" &&
      Predicate.hasProperty(i, "prepare") &&
      typeof i.prepare === "function"
  ) &&
  Predicate.hasProperty(u, "stores") &&
  Array.isArray(u.stores) &&
  Predicate.hasProperty(u, "timers") &&
  Array.isArray(u.timers) &&
  Predicate.hasProperty(u, "outputs") &&
  Array.isArray(u.outputs) &&
  Predicate.hasProperty(u, "sinks") &&
  Array.isArray(u.sinks) &&
  Predicate.hasProperty(u, "lifecycle") &&
  Predicate.isObject(u.lifecycle)

/** Whether the argument of `sluice run` names a module rather than a built-in topology. */
export const isModulePath = (arg: string): boolean =>
  arg.startsWith(".") || arg.startsWith("/") || /\.(?:[cm]?[jt]s)$/.test(arg)

/** Loads the topology `path` exports; the failure says what is wrong and what the module must export. */
export const load = (
  path: string,
  options: { readonly prefix: string }
): Effect.Effect<Topology<unknown, never>, ConfigInvalid> =>
  Effect.gen(function* () {
    const file = resolve(path)
    if (!existsSync(file)) return yield* new ConfigInvalid({ reason: `no such file: ${path} (resolved to ${file})` })
    const loaded: unknown = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(file).href),
      catch: (e) => new ConfigInvalid({ reason: `cannot load ${path}: ${e instanceof Error ? e.message : String(e)}` })
    })
    const candidates = Predicate.isObject(loaded)
      ? [
          Predicate.hasProperty(loaded, "default") ? loaded.default : undefined,
          Predicate.hasProperty(loaded, "topology") ? loaded.topology : undefined
        ]
      : []
    const built = yield* Effect.try({
      try: () => candidates.map((c) => (typeof c === "function" ? c({ prefix: options.prefix }) : c)),
      catch: (e) =>
        new ConfigInvalid({
          reason: `${path}: building the topology failed: ${e instanceof Error ? e.message : String(e)}`
        })
    })
    const topology = built.find(isTopology)
    if (topology === undefined) {
      return yield* new ConfigInvalid({
        reason: `${path} exports no topology: export one built with Topology.make (or a function of { prefix } returning one) as \`export default\` or \`export const topology\``
      })
    }
    return topology
  })
