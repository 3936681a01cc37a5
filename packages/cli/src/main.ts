/**
 * The `sluice` command: composes the subcommands and runs them with graceful shutdown on SIGINT/SIGTERM.
 *
 * Each top-level subcommand's module is imported when it is needed: `sluice run ...` loads the `run` tree, not the
 * benchmarks, the producers or the admin commands (start-up time: every module Node loads costs ~0.5 ms). The whole
 * tree is loaded when the first argument is not a subcommand's name (`sluice --help`, `--completions`, a global
 * flag first, a typo), so the root's help, completions and suggestions always see every subcommand.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Main from "@sluice/core/Main"
import { Effect, Layer, Logger, References } from "effect"
import { Command } from "effect/cli"
import * as Report from "./Report.ts"

/** The top-level subcommands, in the order `sluice --help` lists them. */
const names = ["demo", "produce", "run", "pipeline", "inspect", "topics", "groups", "bench"] as const

/** Each top-level subcommand, imported on demand. */
const subcommands = {
  demo: async () => (await import("./Demo.ts")).command,
  produce: async () => (await import("./Produce.ts")).command,
  run: async () => (await import("./Run.ts")).command,
  pipeline: async () => (await import("./Pipeline.ts")).command,
  inspect: async () => (await import("./Inspect.ts")).command,
  topics: async () => (await import("./Admin.ts")).topics,
  groups: async () => (await import("./Admin.ts")).groups,
  bench: async () => (await import("./Bench.ts")).command
} satisfies Record<(typeof names)[number], () => Promise<unknown>>

/** The subcommands `argv` can reach: the one it names first, else all of them. */
export const subcommandsFor = (argv: ReadonlyArray<string>): ReadonlyArray<(typeof names)[number]> => {
  const named = names.find((name) => name === argv[0])
  return named === undefined ? names : [named]
}

const sluice = (argv: ReadonlyArray<string>) =>
  Effect.map(
    Effect.promise(() => Promise.all(subcommandsFor(argv).map((name) => subcommands[name]()))),
    (loaded) =>
      Command.make("sluice").pipe(
        Command.withDescription("Sluice: typed stream processing on Effect 4 and Apache Kafka"),
        Command.withSubcommands(loaded)
      )
  )

/** Logs go to stderr: stdout carries only what a command prints as its result (tables, records, `--json`). */
const Logging = Layer.mergeAll(
  Logger.layer([Logger.consolePretty()]),
  Layer.succeed(Logger.LogToStderr, true),
  Layer.succeed(References.MinimumLogLevel, "Info")
)

export const main = (argv: ReadonlyArray<string>) =>
  Effect.flatMap(sluice(argv), (command) => Command.runWith(command, { version: "0.1.0" })(argv)).pipe(
    Report.reportErrors(),
    Effect.provide(Layer.mergeAll(NodeServices.layer, Logging))
  )

export const run = () => Main.runMain()(main(process.argv.slice(2)))
