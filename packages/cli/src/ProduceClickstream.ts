/**
 * `sluice produce clickstream` and `sluice produce user-profiles-redis`: the data of the clickstream-sessions lab
 * (processors' ClickstreamData.ts): click events keyed by session id, and the user profiles it reads from Redis.
 *
 * Built by a function, called by Produce.ts where it registers the subcommands: this module uses Produce.ts's flags
 * and `sendAll`, and Produce.ts imports it, so nothing here may run before Produce.ts has finished loading.
 */
import { Kafka } from "@sluice/core/Kafka"
import * as Redis from "@sluice/core/Redis"
import * as ClickstreamData from "@sluice/processors/ClickstreamData"
import * as ClickstreamSessions from "@sluice/processors/ClickstreamSessions"
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Produce from "./Produce.ts"

/** Profiles per MSET. */
const chunk = 5_000

export function commands() {
  const clickstream = Flags.command(
    "clickstream",
    {
      brokers: Flags.brokers,
      prefix: Flags.prefix,
      count: Produce.count,
      users: Produce.users,
      sessions: Flags.int("sessions", { description: "how many distinct sessions", min: 1, default: 200 }),
      seed: Flags.seed,
      timeOrder: Flag.Boolean("time-order").pipe(
        Flag.withDescription(
          "produce the events in event-time order, as a live clickstream arrives (default: as drawn, each session in order but sessions' clocks minutes apart, which event-time windows with a short grace read as late)"
        ),
        Flag.withDefault(false)
      ),
      partitions: Flags.int("partitions", {
        description: "partitions of the clickstream topic when it is created (tasks of clickstream-sessions)",
        min: 1,
        max: 10_000,
        default: 3
      })
    },
    (o) =>
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const topics = ClickstreamSessions.named(o.prefix)
        yield* kafka.createTopics([{ name: topics.events.name, partitions: o.partitions }])
        const events = ClickstreamData.generate({
          count: o.count,
          users: o.users,
          sessions: o.sessions,
          seed: o.seed,
          inTimeOrder: o.timeOrder
        })
        const ms = yield* Produce.sendAll(ClickstreamData.records(events, topics), topics.events.name)
        yield* Console.log(
          `produced ${o.count} events over ${Math.min(o.sessions, o.count)} sessions of ${Math.min(o.users, o.sessions)} users to ${topics.events.name} (keyed by session_id) in ${ms} ms`
        )
      }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
  ).pipe(
    Command.withDescription(
      "Produce click events {event_id, event_type, user_id, session_id, timestamp, page_url, ...} keyed by session_id to clickstream"
    )
  )

  const format = Flag.Literals("format", ["json", "hash"]).pipe(
    Flag.withDescription(
      "json (default): each profile a string of JSON (SET); hash: a hash of its fields (HSET), which clickstream-sessions reads as absent and a JSON pipeline's enrichment reads as a profile"
    ),
    Flag.withDefault("json")
  )
  const profiles = Flags.command("user-profiles-redis", { prefix: Flags.prefix, users: Produce.users, format }, (o) =>
    Effect.gen(function* () {
      const redis = yield* Redis.Redis
      const keyPrefix = ClickstreamSessions.named(o.prefix).profileKeyPrefix
      if (o.format === "hash") {
        const entries = ClickstreamData.profileHashes(o.users, keyPrefix)
        for (let i = 0; i < entries.length; i += chunk) yield* redis.setHashes(entries.slice(i, i + chunk))
      } else {
        const entries = ClickstreamData.profileEntries(o.users, keyPrefix)
        for (let i = 0; i < entries.length; i += chunk) yield* redis.setMany(entries.slice(i, i + chunk))
      }
      yield* Console.log(
        `wrote ${o.users} profiles to Redis (${o.format === "hash" ? "hashes" : "JSON strings"}): ${keyPrefix}user_1 .. ${keyPrefix}user_${o.users}`
      )
    }).pipe(Effect.provide(Redis.layerConfig))
  ).pipe(
    Command.withDescription(
      "Write user profiles to Redis keys user:profile:user_<n>, n = 1..--users, as JSON strings or hashes (REDIS_URL, default redis://127.0.0.1:6379)"
    )
  )

  return [clickstream, profiles] as const
}
