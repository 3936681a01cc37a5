/**
 * The events-to-Postgres lab (seed 002): raw JSON events from `events.raw` land in the table `events_raw`, one row
 * per input record, and the view `hourly_aggregate` counts them per hour and event type.
 *
 * Each row keeps the record's key, its JSON as `jsonb`, and its source (topic, partition, offset), which is unique:
 * the sink's `ON CONFLICT DO NOTHING` makes a record re-delivered after a crash insert no second row, so
 * at-least-once delivery gives exactly one row per input offset. A record whose value is not a JSON object is
 * dead-lettered (to `events.raw.dlq`) with the reason; a JSON object that Postgres refuses (a `\u0000` in a string,
 * which jsonb cannot hold) is dead-lettered by the sink with the server's message.
 *
 * Exactly-once into Postgres (`exactlyOnce`): the sink writes the rows and the consumed offsets in one transaction
 * (`sluice_offsets`), and each task starts from the offsets stored there rather than from the group's commits.
 * Kafka delivery itself stays at-least-once: the only Kafka outputs are dead letters, which a crash can repeat.
 */

import * as Batch from "@sluice/core/Batch"
import * as Codec from "@sluice/core/Codec"
import * as Errors from "@sluice/core/Errors"
import * as PostgresSink from "@sluice/core/PostgresSink"
import type { ProducerRecord } from "@sluice/core/Record"
import { bytes } from "@sluice/core/Record"
import type * as Sink from "@sluice/core/Sink"
import * as Topic from "@sluice/core/Topic"
import * as Topology from "@sluice/core/Topology"
import { type Duration, Effect, type Schedule } from "effect"
import { SqlClient } from "effect/sql"
import * as BadRecords from "./BadRecords.ts"
import * as Random from "./Random.ts"

/** The input topic of a deployment; `named(prefix)` gives fresh ones (tests, parallel environments). */
export const named = (prefix = "") => ({
  raw: Topic.make(`${prefix}events.raw`, { key: Codec.nullable(Codec.string), value: Codec.string })
})
export type Topics = ReturnType<typeof named>
export const defaultTopics = named()

/** One row of `events_raw`, as the sink writes it (`id` and `received_at` are the table's defaults). */
export interface EventRow {
  readonly msg_key: string | null
  /** The record's value: JSON text of an object. */
  readonly payload: string
  readonly source_topic: string
  readonly source_partition: number
  readonly source_offset: number
}

const columns = {
  msg_key: "text",
  payload: "jsonb",
  source_topic: "text",
  source_partition: "int4",
  source_offset: "int8"
} as const

/** The relations of a deployment in Postgres schema `schema` (default `public`). */
export const relations = (schema = "public") => ({
  schema,
  events: `${schema}.events_raw`,
  view: `${schema}.hourly_aggregate`,
  offsets: `${schema}.sluice_offsets`
})
export type Relations = ReturnType<typeof relations>

/**
 * Creates what is missing: the schema, `events_raw` (the lab's columns), the view `hourly_aggregate` and the
 * offsets table. An existing table or view is left as it is. One worker at a time (an advisory lock).
 */
export const setup = (relations: Relations) =>
  PostgresSink.migrate(
    "sluice:events-to-postgres",
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE SCHEMA IF NOT EXISTS ${sql(relations.schema)}`
      yield* sql`CREATE TABLE IF NOT EXISTS ${sql(relations.events)} (
        id bigserial PRIMARY KEY,
        msg_key text,
        payload jsonb NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        source_topic text NOT NULL,
        source_partition int NOT NULL,
        source_offset bigint NOT NULL,
        UNIQUE (source_topic, source_partition, source_offset)
      )`
      // Postgres has no CREATE VIEW IF NOT EXISTS, and OR REPLACE would overwrite a view someone changed.
      const [view] = yield* sql<{
        readonly exists: boolean
      }>`SELECT to_regclass(${relations.view}) IS NOT NULL AS exists`
      if (view?.exists !== true) {
        yield* sql`CREATE VIEW ${sql(relations.view)} AS
          SELECT date_trunc('hour', received_at) AS event_hour,
                 COALESCE(payload->>'event_type', 'unknown') AS event_type,
                 count(*) AS event_count
          FROM ${sql(relations.events)}
          GROUP BY 1, 2`
      }
      yield* PostgresSink.createOffsetsTable(relations.offsets)
    })
  )

/** The `events_raw` sink; with `offsetsGroup`, it stores the offsets of that consumer group with the rows. */
export const sink = (
  relations: Relations,
  options: {
    readonly offsetsGroup?: string
    readonly batchSize?: number
    readonly flushInterval?: Duration.Input
    readonly retry?: Schedule.Schedule<unknown, unknown>
  } = {}
): Sink.Sink<EventRow, SqlClient.SqlClient> =>
  PostgresSink.make<EventRow>({
    name: "events_raw",
    table: relations.events,
    columns,
    ...(options.offsetsGroup === undefined
      ? {}
      : { offsets: { group: options.offsetsGroup, table: relations.offsets } }),
    ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
    ...(options.flushInterval === undefined ? {} : { flushInterval: options.flushInterval }),
    ...(options.retry === undefined ? {} : { retry: options.retry })
  })

/** Why a value is not a JSON object, or `undefined` when it is one. */
export const notAnObject = (value: string): string | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (error) {
    return `not JSON: ${error instanceof Error ? error.message : String(error)}`
  }
  if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return undefined
  return `a JSON ${parsed === null ? "null" : Array.isArray(parsed) ? "array" : typeof parsed}, not an object`
}

/**
 * The topology: one row per record whose value is a JSON object. With `exactlyOnce`, tasks start from the offsets
 * the sink stored (the sink must have been made with `offsetsGroup`).
 */
export const topology = <R>(options: {
  readonly sink: Sink.Sink<EventRow, R>
  readonly topics?: Topics
  readonly exactlyOnce?: boolean
}) => {
  const topics = options.topics ?? defaultTopics
  const sink = options.sink
  return Topology.make({
    name: "events-to-postgres",
    input: topics.raw,
    sinks: [sink],
    ...(options.exactlyOnce === true ? { startOffsets: (_task, partitions) => sink.readOffsets(partitions) } : {}),
    process: (records) =>
      Effect.sync(() =>
        Batch.forEach(records, ({ key, value, record }, out) => {
          const why = notAnObject(value)
          if (why !== undefined) return out.reject(new Errors.RecordRejected({ tag: "NotAJsonObject", reason: why }))
          out.write(sink, {
            msg_key: key,
            payload: value,
            source_topic: record.topic,
            source_partition: record.partition,
            source_offset: record.offset
          })
        })
      )
  })
}

// ---------------------------------------------------------------------------------------------------------------
// The lab's producer
// ---------------------------------------------------------------------------------------------------------------

export const eventTypes = ["page_view", "click", "add_to_cart", "purchase", "signup"] as const

/** Every this many good events, one has no `event_type` (the view counts it as `unknown`). */
export const untypedEvery = 20

/**
 * The malformed records `generate` mixes in: the first four are not JSON objects (dead-lettered by the topology
 * or, for bytes that are not UTF-8, by the runtime's decoding); the last is a JSON object that Postgres refuses
 * (jsonb cannot hold `\u0000`), dead-lettered by the sink with the server's message.
 */
export const badKinds = ["invalid-json", "not-an-object", "empty-value", "invalid-utf8", "nul-in-jsonb"] as const
export type BadKind = (typeof badKinds)[number]

/** The header that marks a generated malformed record with its kind. */
export const badHeader = BadRecords.header

/** The `round`th malformed record of its kind, the `i`th record generated. */
const badValue = (kind: BadKind, i: number, round: number): Uint8Array => {
  switch (kind) {
    case "invalid-json":
      return bytes(`{"event_id": "e${i}", "event_type": "click",`)
    case "not-an-object":
      return bytes(round % 2 === 0 ? `["e${i}", "click"]` : `"e${i}"`)
    case "empty-value":
      return new Uint8Array(0)
    case "invalid-utf8":
      return new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])
    case "nul-in-jsonb":
      return bytes(JSON.stringify({ event_id: `e${i}`, event_type: "click", note: "a\u0000b" }))
  }
}

/**
 * `count` deterministic events over `users` users, keyed by user id: `{event_id, event_type, user_id, timestamp,
 * properties}`, every `untypedEvery`th without `event_type`. With `badRatio`, that share of the records is
 * malformed, cycling through `badKinds`.
 */
export const generate = (options: {
  readonly count: number
  readonly users?: number
  readonly seed?: number
  readonly badRatio?: number
  readonly startTime?: number
  readonly topic?: string
}): ReadonlyArray<ProducerRecord> => {
  const topic = options.topic ?? defaultTopics.raw.name
  const rng = Random.make(options.seed ?? 42)
  const users = options.users ?? 100
  const badAt = BadRecords.schedule(options.badRatio, badKinds)
  const start = options.startTime ?? 1_700_000_000_000
  const out = new Array<ProducerRecord>(options.count)
  let good = 0
  for (let i = 0; i < options.count; i++) {
    const userId = rng.int(1, users)
    const key = bytes(String(userId))
    const bad = badAt(i)
    if (bad !== undefined) {
      out[i] = { topic, key, value: badValue(bad.kind, i, bad.round), headers: { [badHeader]: bytes(bad.kind) } }
      continue
    }
    const type = rng.pick(eventTypes)
    const event = {
      event_id: `e${i}`,
      ...(good++ % untypedEvery === untypedEvery - 1 ? {} : { event_type: type }),
      user_id: userId,
      timestamp: new Date(start + i * 1000).toISOString(),
      properties: type === "purchase" ? { amount: rng.int(100, 50_000) / 100 } : { page: `/p/${rng.int(1, 50)}` }
    }
    out[i] = { topic, key, value: bytes(JSON.stringify(event)) }
  }
  return out
}
