/**
 * `sluice produce events`: the events-to-Postgres lab's producer, raw JSON events to `events.raw` (3 partitions),
 * with `--include-bad R` that share of malformed records (processors' EventsToPostgres.ts lists the kinds).
 *
 * Built by a function, called by Produce.ts where it registers the subcommand: this module uses Produce.ts's flags
 * and `sendAll`, and Produce.ts imports it, so nothing here may run before Produce.ts has finished loading.
 */
import { Kafka } from "@sluice/core/Kafka"
import { header } from "@sluice/core/Record"
import * as EventsToPostgres from "@sluice/processors/EventsToPostgres"
import { Console, Effect } from "effect"
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
      includeBad: Flags.finite("include-bad", {
        description: `share of malformed records (${EventsToPostgres.badKinds.join(", ")})`,
        min: 0,
        max: 1,
        default: 0
      })
    },
    (o) =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topic = EventsToPostgres.named(o.prefix).raw.name
        yield* kafka.createTopics([{ name: topic, partitions: 3 }])
        const records = EventsToPostgres.generate({
          count: o.count,
          users: o.users,
          seed: o.seed,
          badRatio: o.includeBad,
          topic
        })
        const ms = yield* Produce.sendAll(records, topic)
        const bad = records.filter((r) => header(r.headers ?? {}, EventsToPostgres.badHeader) !== undefined).length
        yield* Console.log(`produced ${records.length} events to ${topic} (${bad} malformed) in ${ms} ms`)
      }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
  ).pipe(
    Command.withDescription(
      "Produce raw JSON events {event_id, event_type, user_id, timestamp, properties} keyed by user id to events.raw (every 20th has no event_type)"
    )
  )
}
