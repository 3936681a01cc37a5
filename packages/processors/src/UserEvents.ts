/**
 * The user-activity lab: a producer of user events (login, purchase, logout; keyed by user id) and a consumer with
 * one handler per event type that counts events per type and emits one activity record per event.
 *
 * Each activity record names its source partition and offset, so a test can check that every input offset has an
 * output after a crash (at-least-once: some may have two, none may have none).
 */

import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import * as Errors from "@sluice/core/Errors"
import type { ProducerRecord } from "@sluice/core/Record"
import { bytes } from "@sluice/core/Record"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { Context, Effect, Layer, Ref, Result, Schema } from "effect"
import * as BadRecords from "./BadRecords.ts"
import * as Random from "./Random.ts"

export const EventType = Schema.Literals(["login", "purchase", "logout"])
export type EventType = typeof EventType.Type

export const UserEvent = Schema.Struct({
  event_id: Schema.String,
  user_id: Schema.Int,
  event_type: EventType,
  timestamp: Schema.Finite,
  amount: Schema.optional(Schema.Finite)
})
export type UserEvent = typeof UserEvent.Type

export const Activity = Schema.Struct({
  event_id: Schema.String,
  user_id: Schema.Int,
  event_type: EventType,
  summary: Schema.String,
  source_partition: Schema.Int,
  source_offset: Schema.Int
})
export type Activity = typeof Activity.Type

export const eventsTopic = (name: string) => Topic.make(name, { key: Codec.string, value: Codec.json(UserEvent) })
export const activityTopic = (name: string) => Topic.make(name, { key: Codec.string, value: Codec.json(Activity) })

/** The topics of a deployment; `named(prefix)` gives fresh ones (tests, parallel environments). */
export const named = (prefix = "") => ({
  events: eventsTopic(`${prefix}user-events`),
  activity: activityTopic(`${prefix}user-activity`)
})
export type Topics = ReturnType<typeof named>

export const defaultTopics = named()
export const { events, activity } = defaultTopics

/** Counts per event type, kept by the consumer. */
export class EventCounts extends Context.Service<EventCounts, Ref.Ref<Readonly<Record<EventType, number>>>>()(
  "@sluice/processors/UserEvents/EventCounts"
) {
  static readonly layer = Layer.effect(EventCounts, Ref.make({ login: 0, purchase: 0, logout: 0 }))
}

/** One handler per event type: what the activity record says about the event. */
const handlers: { readonly [T in EventType]: (e: UserEvent) => string } = {
  login: (e) => `user ${e.user_id} logged in`,
  purchase: (e) => `user ${e.user_id} bought for ${(e.amount ?? 0).toFixed(2)}`,
  logout: (e) => `user ${e.user_id} logged out`
}

export const topology = (topics: Topics = defaultTopics) =>
  Topology.make({
    name: "user-events",
    input: topics.events,
    outputs: [{ name: topics.activity.name, partitions: 3 }],
    process: (records) =>
      Effect.gen(function* () {
        const counts = yield* EventCounts
        const delta = { login: 0, purchase: 0, logout: 0 }
        const result = Batch.forEach(records, ({ key, value, record }, out) => {
          if (value.event_type === "purchase" && (value.amount === undefined || value.amount < 0)) {
            return out.reject(
              new Errors.RecordRejected({ tag: "InvalidPurchase", reason: "a purchase needs a non-negative amount" })
            )
          }
          delta[value.event_type]++
          out.emit(topics.activity, key, {
            event_id: value.event_id,
            user_id: value.user_id,
            event_type: value.event_type,
            summary: handlers[value.event_type](value),
            source_partition: record.partition,
            source_offset: record.offset
          })
        })
        yield* Ref.update(counts, (c) => ({
          login: c.login + delta.login,
          purchase: c.purchase + delta.purchase,
          logout: c.logout + delta.logout
        }))
        return result
      })
  })

/** The kinds of malformed record `generate` mixes in with `badRatio`. */
export const badKinds = ["invalid-json", "wrong-types", "missing-fields", "empty-value"] as const

/**
 * Deterministic user events for `count` records over `users` users. With `badRatio`, that share of the records is
 * malformed, cycling through `badKinds`, so dead-letter handling can be checked exactly.
 */
export const generate = (options: {
  readonly count: number
  readonly users?: number
  readonly seed?: number
  readonly badRatio?: number
  readonly startTime?: number
  readonly topic?: string
}): ReadonlyArray<ProducerRecord> => {
  const topic = options.topic ?? events.name
  const rng = Random.make(options.seed ?? 42)
  const users = options.users ?? 100
  const badAt = BadRecords.schedule(options.badRatio, badKinds)
  const start = options.startTime ?? 1_700_000_000_000
  const out: Array<ProducerRecord> = []
  const encode = Codec.json(UserEvent).encode
  for (let i = 0; i < options.count; i++) {
    const userId = rng.int(1, users)
    const key = bytes(String(userId))
    const type = rng.pick(["login", "purchase", "logout"] as const)
    const kind = badAt(i)?.kind
    if (kind !== undefined) {
      const value =
        kind === "invalid-json"
          ? bytes(`{"event_id": "e${i}", "user_id": ${userId},`)
          : kind === "wrong-types"
            ? bytes(JSON.stringify({ event_id: `e${i}`, user_id: "not-a-number", event_type: type, timestamp: "now" }))
            : kind === "missing-fields"
              ? bytes(JSON.stringify({ event_id: `e${i}`, event_type: type }))
              : new Uint8Array(0)
      out.push({ topic, key, value, headers: { [BadRecords.header]: bytes(kind) } })
      continue
    }
    const event: UserEvent = {
      event_id: `e${i}`,
      user_id: userId,
      event_type: type,
      timestamp: start + i * 1000,
      ...(type === "purchase" ? { amount: rng.int(100, 50_000) / 100 } : {})
    }
    out.push({ topic, key, value: Result.getOrThrow(encode(event)) })
  }
  return out
}
