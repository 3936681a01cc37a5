/**
 * `sluice demo`: the click-enrichment join on the in-memory broker, end to end, with nothing to install. Generates
 * profiles and clicks, runs the topology with the in-memory table strategy, prints enriched events the way the lab
 * did, verifies every one against the generator's truth, and prints a summary. Exits non-zero if any is wrong.
 *
 * `sluice demo ./topology.ts --input TOPIC=FILE`: a user's topology on the in-memory broker instead (DemoModule.ts).
 */
import * as MemoryBroker from "@sluice/core/MemoryBroker"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as JoinRun from "@sluice/processors/JoinRun"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as DemoModule from "./DemoModule.ts"
import * as Flags from "./Flags.ts"

export const command = Flags.command(
  "demo",
  {
    module: Argument.String("topology").pipe(
      Argument.withDescription(
        "a module of yours that exports a topology (as for sluice run), e.g. ./topology.ts, to run on the in-memory broker over --input files instead of the click-enrichment demo"
      ),
      Argument.optional
    ),
    events: Flags.int("events", { description: "clicks to enrich", alias: "n", min: 1, default: 1_000 }),
    users: Flags.int("users", { description: "user profiles", min: 1, default: 100 }),
    print: Flags.int("print", {
      description: "enriched events to print; with a module, records per output topic and entries per store",
      min: 0,
      default: 10
    }),
    input: Flag.KeyValuePair("input").pipe(
      Flag.withDescription(
        "with a module: TOPIC=FILE, the records of an input topic, one record value per line of FILE (repeat for several topics)"
      ),
      Flag.optional
    ),
    keyField: Flag.String("key-field").pipe(
      Flag.withDescription(
        "with a module: each input line is a JSON object and its field NAME (string or number) is the record's key (default: no keys)"
      ),
      Flag.optional
    ),
    partitions: Flags.int("partitions", {
      description: "with a module: partitions of each input topic",
      min: 1,
      max: 1_000,
      default: 1
    }),
    timeoutMs: Flags.int("timeout-ms", {
      description: "with a module: fail if the topology has not committed all its input by then",
      min: 1,
      max: 3_600_000,
      default: 30_000
    }),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription(
        "with a module: print one JSON object (input counts, every output record as sluice inspect --json prints it, store entries)"
      ),
      Flag.withDefault(false)
    )
  },
  (o) =>
    Option.isSome(o.module)
      ? DemoModule.run(o.module.value, {
          inputs: Option.getOrElse(o.input, () => ({})),
          keyField: o.keyField,
          partitions: o.partitions,
          print: o.print,
          json: o.json,
          timeoutMs: o.timeoutMs
        })
      : clickDemo(o)
).pipe(
  Command.withDescription(
    "Enrich generated clicks with user profiles on the in-memory broker, verify, summarize; or run a topology of yours over input files (sluice demo ./topology.ts --input TOPIC=FILE)"
  )
)

/** The built-in demo: the click-enrichment join, verified. */
const clickDemo = (o: { readonly events: number; readonly users: number; readonly print: number }) =>
  Effect.gen(function* () {
    const topics = ClickEnrichment.defaultTopics
    yield* Console.log(
      `Sluice demo: ${o.events} clicks joined with ${o.users} user profiles on the in-memory broker (table strategy)\n`
    )
    const report = yield* JoinRun.run({
      strategy: "table",
      events: o.events,
      users: o.users,
      topics,
      lookup: ClickEnrichment.ProfileLookup.table(topics)
    })
    for (const e of report.sample.slice(0, o.print)) yield* Console.log(ClickEnrichment.formatEnriched(e))
    const v = report.verification
    yield* Console.log(
      [
        "",
        `enriched:    ${v.present}/${v.expected} clicks (${v.duplicates} duplicates)`,
        `correct:     ${v.correct}/${v.expected} user names and cities match the profiles`,
        `table load:  ${report.loadMs} ms for ${o.users} profiles`,
        `elapsed:     ${report.elapsedMs} ms (first click consumed -> last enriched record acknowledged)`,
        `throughput:  ${report.eventsPerSec} events/s; latency p50 ${report.p50Ms} ms, p99 ${report.p99Ms} ms`,
        `peak RSS:    ${report.peakRssMb} MB`,
        "",
        "Next: run it against Kafka with `npx sluice run click-enrichment --help`, or compare join strategies with",
        "`npx sluice bench join --strategy all --events 1000 --users 100`."
      ].join("\n")
    )
    if (!report.correct) {
      return yield* Effect.fail(new JoinRun.JoinRunFailed({ reason: `verification failed: ${v.problems.join("; ")}` }))
    }
  }).pipe(Effect.provide(MemoryBroker.layer))
