/**
 * `sluice produce events`: the events-to-Postgres lab's producer, raw JSON events to `events.raw` (3 partitions),
 * with `--include-bad R` that share of malformed records (processors' EventsToPostgres.ts lists the kinds).
 *
 * Built by a function, called by Produce.ts where it registers the subcommand: this module uses Produce.ts's flags
 * and `sendAll`, and Produce.ts imports it, so nothing here may run before Produce.ts has finished loading.
 */
import * as EventsToPostgres from "@sluice/processors/EventsToPostgres"
import { Effect } from "effect"
import { Command } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Produce from "./Produce.ts"

export function command() {
  return Flags.command(
    "events",
    {
      brokers: Flags.brokers,
      prefix: Flags.prefix,
      count: Produce.count,
      users: Produce.users,
      seed: Flags.seed,
      includeBad: Produce.includeBad(EventsToPostgres.badKinds.join(", "))
    },
    (o) =>
      Effect.gen(function* () {
        const topic = EventsToPostgres.named(o.prefix).raw.name
        const records = EventsToPostgres.generate({
          count: o.count,
          users: o.users,
          seed: o.seed,
          badRatio: o.includeBad,
          topic
        })
        yield* Produce.produceGenerated(topic, records, "events")
      }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
  ).pipe(
    Command.withDescription(
      "Produce raw JSON events {event_id, event_type, user_id, timestamp, properties} keyed by user id to events.raw (every 20th has no event_type)"
    )
  )
}
