/** The `sluice` command: composes the subcommands and runs them with graceful shutdown on SIGINT/SIGTERM. */
import { NodeServices } from "@effect/platform-node"
import { Main } from "@sluice/core"
import { Effect, Layer, Logger, References } from "effect"
import { Command } from "effect/cli"
import * as Admin from "./Admin.ts"
import * as Bench from "./Bench.ts"
import * as Demo from "./Demo.ts"
import * as Inspect from "./Inspect.ts"
import * as Pipeline from "./Pipeline.ts"
import * as Produce from "./Produce.ts"
import * as Report from "./Report.ts"
import * as Run from "./Run.ts"

const sluice = Command.make("sluice").pipe(
  Command.withDescription("Sluice: typed stream processing on Effect 4 and Apache Kafka"),
  Command.withSubcommands([
    Demo.command,
    Produce.command,
    Run.command,
    Pipeline.command,
    Inspect.command,
    Admin.topics,
    Admin.groups,
    Bench.command
  ])
)

/** Logs go to stderr: stdout carries only what a command prints as its result (tables, records, `--json`). */
const Logging = Layer.mergeAll(
  Logger.layer([Logger.consolePretty()]),
  Layer.succeed(Logger.LogToStderr, true),
  Layer.succeed(References.MinimumLogLevel, "Info")
)

export const main = (argv: ReadonlyArray<string>) =>
  Command.runWith(sluice, { version: "0.1.0" })(argv).pipe(
    Report.reportErrors(),
    Effect.provide(Layer.mergeAll(NodeServices.layer, Logging))
  )

export const run = () => Main.runMain()(main(process.argv.slice(2)))
