/**
 * `sluice demo`: the click-enrichment join on the in-memory broker, end to end, with nothing to install. Generates
 * profiles and clicks, runs the topology with the in-memory table strategy, prints enriched events the way the lab
 * did, verifies every one against the generator's truth, and prints a summary. Exits non-zero if any is wrong.
 */
import * as MemoryBroker from "@sluice/core/MemoryBroker"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import * as JoinRun from "@sluice/processors/JoinRun"
import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import * as Flags from "./Flags.ts"

export const command = Flags.command(
  "demo",
  {
    events: Flags.int("events", { description: "clicks to enrich", alias: "n", min: 1, default: 1_000 }),
    users: Flags.int("users", { description: "user profiles", min: 1, default: 100 }),
    print: Flags.int("print", { description: "enriched events to print", min: 0, default: 10 })
  },
  (o) =>
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
        return yield* Effect.fail(
          new JoinRun.JoinRunFailed({ reason: `verification failed: ${v.problems.join("; ")}` })
        )
      }
    }).pipe(Effect.provide(MemoryBroker.layer))
).pipe(Command.withDescription("Enrich generated clicks with user profiles on the in-memory broker, verify, summarize"))
