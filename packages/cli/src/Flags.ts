/**
 * Flags shared by several commands, the Kafka layer they select (`--brokers memory` runs on the in-memory broker,
 * for the demo and tests; anything else is a comma-separated list of `host:port` for the kafkajs layer), and the
 * one place numeric flags are checked.
 *
 * A numeric flag is made with `int` or `finite`, which records its accepted range and writes it into `--help`;
 * a command made with `command` checks every such flag before its handler runs, so a bad value fails with a
 * `ConfigInvalid` that names the flag, the value and the range (exit code 2) before anything connects. The check
 * is not an effect/cli parse-time filter because those fail with a `CliError` printed with the whole help, while
 * Sluice reports invalid arguments like every other error it knows: one line and a hint.
 */

import { ConfigInvalid, type KafkaError } from "@sluice/core/Errors"
import type { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as MemoryBroker from "@sluice/core/MemoryBroker"
import { Config, Effect, type Layer, Option, Predicate } from "effect"
import { Command, Flag } from "effect/cli"
import * as Report from "./Report.ts"

/** Where Kafka is when neither `--brokers` nor SLUICE_BROKERS says. */
export const defaultBrokers = "127.0.0.1:9092"

export const brokers = Flag.String("brokers").pipe(
  Flag.withDescription(
    "Kafka bootstrap servers (host:port,...), or 'memory' for the in-memory broker (default: SLUICE_BROKERS, else 127.0.0.1:9092)"
  ),
  Flag.withFallbackConfig(Config.String("SLUICE_BROKERS")),
  Flag.withDefault(defaultBrokers)
)

/**
 * The Kafka layer for `--brokers`. A worker (`sluice run`) waits for its broker as long as it takes; the one-shot
 * commands give up after 30 s of trying to connect.
 */
export const kafkaLayer = (
  brokers: string,
  options: { readonly waitForBroker?: "forever" | "30 s" } = {}
): Layer.Layer<Kafka, KafkaError | ConfigInvalid> =>
  brokers === "memory"
    ? MemoryBroker.layer
    : KafkaJs.layer({
        brokers: brokers.split(","),
        clientId: "sluice-cli",
        ...(options.waitForBroker === "forever" ? {} : { connectRetry: { maxDurationMs: 30_000 } })
      })

export const prefix = Flag.String("topic-prefix").pipe(
  Flag.withDescription(
    "prefix for every topic name and for the default consumer group of `sluice run`, to isolate environments and tests (default: none)"
  ),
  Flag.withDefault("")
)

// ---------------------------------------------------------------------------------------------------------------
// Numeric flags and their ranges
// ---------------------------------------------------------------------------------------------------------------

/** The values a numeric flag accepts: `min` up to `max` (inclusive; no upper bound without one). */
export interface Range {
  readonly min: number
  readonly max?: number
}

interface Bounds extends Range {
  readonly flag: string
}

/** How a range reads in `--help`: `at least 1`, `1..65535`. */
export const formatRange = (range: Range): string =>
  range.max === undefined ? `at least ${range.min}` : `${range.min}..${range.max}`

/** Why `value` is not accepted by `--flag`, or undefined when it is. */
export const outOfRange = (flag: string, value: number, range: Range): string | undefined => {
  if (value >= range.min && (range.max === undefined || value <= range.max)) return undefined
  const accepted = range.max === undefined ? `at least ${range.min}` : `between ${range.min} and ${range.max}`
  return `--${flag} must be ${accepted} (got ${value})`
}

// The range of every flag made by `int` or `finite`, keyed by the flag itself: `command` finds the ranges of its
// own flags here, so a command does not list its flags once and their checks again. The key is the flag as `int`
// returns it: piping it through another combinator makes a new flag, which has no range.
const ranges = new WeakMap<object, Bounds>()

interface NumericOptions extends Range {
  /** What the value is, for `--help`; the range and the default are appended. */
  readonly description: string
  readonly alias?: string
}

type WithDefault = NumericOptions & { readonly default: number }
/** No default: the flag is optional, and `whenAbsent` says in `--help` what its absence means. */
type WithoutDefault = NumericOptions & { readonly whenAbsent: string }

const numeric = (
  base: Flag.Flag<number>,
  name: string,
  options: WithDefault | WithoutDefault
): Flag.Flag<number> | Flag.Flag<Option.Option<number>> => {
  const range: Range = options.max === undefined ? { min: options.min } : { min: options.min, max: options.max }
  const described = (defaultText: string) =>
    base.pipe(
      (f) => (options.alias === undefined ? f : Flag.withAlias(f, options.alias)),
      Flag.withDescription(`${options.description} (${formatRange(range)}; ${defaultText})`)
    )
  const flag =
    "default" in options
      ? Flag.withDefault(described(`default ${options.default}`), options.default)
      : Flag.optional(described(`default: ${options.whenAbsent}`))
  ranges.set(flag, { flag: name, ...range })
  return flag
}

/** An integer flag whose value must lie in a range (checked by `command`). */
export function int(name: string, options: WithDefault): Flag.Flag<number>
export function int(name: string, options: WithoutDefault): Flag.Flag<Option.Option<number>>
export function int(name: string, options: WithDefault | WithoutDefault) {
  return numeric(Flag.Int(name), name, options)
}

/** A finite number flag whose value must lie in a range (checked by `command`). */
export function finite(name: string, options: WithDefault): Flag.Flag<number>
export function finite(name: string, options: WithoutDefault): Flag.Flag<Option.Option<number>>
export function finite(name: string, options: WithDefault | WithoutDefault) {
  return numeric(Flag.Finite(name), name, options)
}

/**
 * Checks the values of a command's ranged flags (a flat config, as all of Sluice's are), every one of them, and
 * fails with one `ConfigInvalid` listing each value out of range.
 */
export const check = (config: Command.Command.Config, input: unknown): Effect.Effect<void, ConfigInvalid> => {
  const problems: Array<string> = []
  for (const key of Object.keys(config)) {
    const bounds = ranges.get(config[key]!)
    if (bounds === undefined) continue
    const raw = Predicate.hasProperty(input, key) ? input[key] : undefined
    const value = Option.isOption(raw) ? Option.getOrUndefined(raw) : raw
    if (typeof value !== "number") continue
    const problem = outOfRange(bounds.flag, value, bounds)
    if (problem !== undefined) problems.push(problem)
  }
  return problems.length === 0 ? Effect.void : Effect.fail(new ConfigInvalid({ reason: problems.join("; ") }))
}

/**
 * `Command.make` for Sluice's commands: the handler runs only once every ranged flag is in range (see `check`),
 * and its known failures are reported with a hint that can name the command's `--brokers`.
 */
export const command = <Name extends string, const Config extends Command.Command.Config, E, R>(
  name: Name,
  config: Config,
  handler: (input: Command.Command.Config.Infer<Config>) => Effect.Effect<void, E, R>
) =>
  Command.make(name, config, (input) =>
    Effect.andThen(
      check(config, input),
      Effect.suspend(() => handler(input))
    ).pipe(
      Report.reportErrors(
        Predicate.hasProperty(input, "brokers") && typeof input.brokers === "string" ? { brokers: input.brokers } : {}
      )
    )
  )

// ---------------------------------------------------------------------------------------------------------------
// Shared numeric flags
// ---------------------------------------------------------------------------------------------------------------

/** `Random.make` keeps 32 bits of the seed: a wider range would make different seeds give the same data. */
export const seed = int("seed", {
  description: "seed of the deterministic generator",
  min: 0,
  max: 4_294_967_295,
  default: 42
})
