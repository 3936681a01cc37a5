/** `sluice inspect <topic>`: print a topic's records (dead-letter headers included), as text or JSON lines. */
import { Kafka } from "@sluice/core/Kafka"
import * as Reader from "@sluice/core/Reader"
import { type ConsumerRecord, textStrict } from "@sluice/core/Record"
import { Console, Effect, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"

/** Bytes as their UTF-8 text; bytes that are not valid UTF-8 as `base64:<...>`, so nothing is shown altered. */
export const show = (b: Uint8Array | null): string | null =>
  b === null
    ? null
    : (textStrict(b) ?? `base64:${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64")}`)

const showHeaders = (headers: ConsumerRecord["headers"]): Record<string, string | null> => {
  const out: Record<string, string | null> = {}
  for (const name in headers) out[name] = show(headers[name]!)
  return out
}

export const toJson = (r: ConsumerRecord) => ({
  topic: r.topic,
  partition: r.partition,
  offset: r.offset,
  timestamp: r.timestamp,
  key: show(r.key),
  value: show(r.value),
  headers: showHeaders(r.headers)
})

export const toLine = (r: ConsumerRecord): string => {
  const headers = Object.entries(r.headers)
  return `${r.topic}[${r.partition}]@${r.offset} key=${show(r.key) ?? "null"} value=${show(r.value) ?? "null"}${
    headers.length > 0 ? ` headers=${JSON.stringify(showHeaders(r.headers))}` : ""
  }`
}

export const command = Flags.command(
  "inspect",
  {
    topic: Argument.String("topic").pipe(Argument.withDescription("the topic to read")),
    brokers: Flags.brokers,
    limit: Flags.int("limit", { description: "stop after this many records", alias: "n", min: 1, default: 20 }),
    fromBeginning: Flag.Boolean("from-beginning").pipe(
      Flag.withDescription("read what the topic holds now, from the earliest offset (default: wait for new records)"),
      Flag.withDefault(false)
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("one JSON object per record"), Flag.withDefault(false))
  },
  (o) =>
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const topic = yield* kafka.describeTopic(o.topic)
      const records = o.fromBeginning
        ? Reader.readToEnd(o.topic)
        : Stream.map(kafka.read({ topics: [o.topic], from: "latest" }), (b) => b.records)
      if (!o.fromBeginning)
        yield* Console.error(`waiting for new records on ${o.topic} (${topic.partitions} partitions); Ctrl-C stops`)
      const printed = yield* records.pipe(
        Stream.flattenIterable,
        Stream.take(o.limit),
        Stream.runFold(
          () => 0,
          (n, r) => {
            console.log(o.json ? JSON.stringify(toJson(r)) : toLine(r))
            return n + 1
          }
        )
      )
      yield* Console.error(`${printed} record(s)`)
    }).pipe(Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription(
    "Print the records of a topic, with their headers (dead-letter reasons included); bytes that are not valid UTF-8 print as base64:..."
  )
)
