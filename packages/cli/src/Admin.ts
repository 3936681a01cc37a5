/**
 * `sluice topics list|create|describe|delete` and `sluice groups describe <group>`: everyday inspection without
 * another Kafka tool (rpk and kcat are the anchors). Every command that prints data prints a table by default and
 * JSON with `--json` (one document, for `jq`).
 */

import { ConfigInvalid } from "@sluice/core/Errors"
import { Kafka, type KafkaShape } from "@sluice/core/Kafka"
import type { TopicPartitionOffset } from "@sluice/core/Record"
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"

const json = Flag.Boolean("json").pipe(Flag.withDescription("print JSON instead of a table"), Flag.withDefault(false))

/** Columns padded to their widest cell; the first row is the header. */
export const table = (rows: ReadonlyArray<ReadonlyArray<string | number>>): string => {
  const cells = rows.map((row) => row.map(String))
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0))) ?? []
  return cells
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

const withKafka = <A, E, R>(brokers: string, effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, Flags.kafkaLayer(brokers))

const describeTopic = Effect.fnUntraced(function* (kafka: KafkaShape, name: string) {
  const offsets = yield* kafka.offsets(name)
  const maxMessageBytes = yield* kafka.maxRecordBytes(name)
  return {
    name,
    partitions: offsets.length,
    maxMessageBytes,
    records: offsets.reduce((n, p) => n + (p.high - p.low), 0),
    offsets: offsets.map((p) => ({ partition: p.partition, low: p.low, high: p.high }))
  }
})

const list = Flags.command(
  "list",
  {
    brokers: Flags.brokers,
    json,
    internal: Flag.Boolean("internal").pipe(
      Flag.withDescription("also list Kafka's internal topics (__consumer_offsets, __transaction_state)"),
      Flag.withDefault(false)
    )
  },
  (o) =>
    withKafka(
      o.brokers,
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const names = (yield* kafka.listTopics).filter((n) => o.internal || !n.startsWith("__")).sort()
        const topics = yield* Effect.forEach(names, (name) =>
          Effect.map(kafka.describeTopic(name), (d) => ({ name, partitions: d.partitions }))
        )
        if (o.json) return yield* Console.log(JSON.stringify(topics))
        yield* Console.log(
          topics.length === 0
            ? "no topics"
            : table([["TOPIC", "PARTITIONS"], ...topics.map((t) => [t.name, t.partitions])])
        )
      })
    )
).pipe(Command.withDescription("List the topics, with their partition counts"))

const create = Flags.command(
  "create",
  {
    topic: Argument.String("topic").pipe(Argument.withDescription("the topic to create")),
    brokers: Flags.brokers,
    partitions: Flags.int("partitions", { description: "partitions of the topic", min: 1, max: 10_000, default: 6 }),
    compact: Flag.Boolean("compact").pipe(
      Flag.withDescription("cleanup.policy=compact (a table's or a changelog's topic)"),
      Flag.withDefault(false)
    ),
    config: Flag.String("config").pipe(
      Flag.withDescription("a topic config as name=value, e.g. --config max.message.bytes=2097152 (repeatable)"),
      Flag.atLeast(0)
    )
  },
  (o) =>
    withKafka(
      o.brokers,
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const config: Record<string, string> = o.compact ? { "cleanup.policy": "compact" } : {}
        for (const entry of o.config) {
          const at = entry.indexOf("=")
          if (at <= 0)
            return yield* new ConfigInvalid({
              reason: `--config ${entry}: expected name=value, e.g. retention.ms=86400000`
            })
          config[entry.slice(0, at)] = entry.slice(at + 1)
        }
        const existed = (yield* kafka.listTopics).includes(o.topic)
        yield* kafka.createTopics([{ name: o.topic, partitions: o.partitions, config }])
        yield* Console.log(
          existed
            ? `topic ${o.topic} already exists (left as it is)`
            : `created ${o.topic} with ${o.partitions} partition(s)`
        )
      })
    )
).pipe(Command.withDescription("Create a topic (an existing one is left as it is)"))

const describe = Flags.command(
  "describe",
  {
    topic: Argument.String("topic").pipe(Argument.withDescription("the topic to describe")),
    brokers: Flags.brokers,
    json
  },
  (o) =>
    withKafka(
      o.brokers,
      Effect.gen(function* () {
        const d = yield* describeTopic(yield* Kafka, o.topic)
        if (o.json) return yield* Console.log(JSON.stringify(d))
        yield* Console.log(
          `topic ${d.name}: ${d.partitions} partition(s), ${d.records} record(s) between the low and high offsets, max.message.bytes ${d.maxMessageBytes}\n` +
            table([["PARTITION", "LOW", "HIGH"], ...d.offsets.map((p) => [p.partition, p.low, p.high])])
        )
      })
    )
).pipe(Command.withDescription("Describe a topic: partitions, low and high offsets, max.message.bytes"))

const remove = Flags.command(
  "delete",
  {
    topics: Argument.String("topic").pipe(Argument.withDescription("the topics to delete"), Argument.atLeast(1)),
    brokers: Flags.brokers
  },
  (o) =>
    withKafka(
      o.brokers,
      Effect.gen(function* () {
        const kafka = yield* Kafka
        const existing = new Set(yield* kafka.listTopics)
        const missing = o.topics.filter((t) => !existing.has(t))
        yield* kafka.deleteTopics(o.topics.filter((t) => existing.has(t)))
        for (const t of o.topics) yield* Console.log(missing.includes(t) ? `${t} does not exist` : `deleted ${t}`)
      })
    )
).pipe(Command.withDescription("Delete topics (a topic that does not exist is reported and skipped)"))

export const topics = Command.make("topics").pipe(
  Command.withDescription("List, create, describe and delete topics"),
  Command.withSubcommands([list, create, describe, remove])
)

/** A group's state: its members and their assignments, and per partition the committed offset and the lag. */
export const groupState = Effect.fnUntraced(function* (kafka: KafkaShape, groupId: string) {
  const members = yield* kafka.describeGroup(groupId)
  const committed = yield* kafka.groupOffsets(groupId)
  const ownerOf = new Map<string, string>()
  for (const m of members) for (const tp of m.assignment) ownerOf.set(`${tp.topic}:${tp.partition}`, m.memberId)
  const topicNames = [...new Set([...committed.map((c) => c.topic), ...ownerOf.keys()].map((k) => k.split(":")[0]!))]
  const existing = new Set(yield* kafka.listTopics)
  const partitions: Array<{
    topic: string
    partition: number
    committed: number | null
    high: number
    lag: number | null
    member: string | null
  }> = []
  for (const topic of topicNames.filter((t) => existing.has(t)).sort()) {
    const ends = yield* kafka.offsets(topic)
    for (const end of ends) {
      const commit: TopicPartitionOffset | undefined = committed.find(
        (c) => c.topic === topic && c.partition === end.partition
      )
      partitions.push({
        topic,
        partition: end.partition,
        committed: commit?.offset ?? null,
        high: end.high,
        lag: commit === undefined ? null : Math.max(0, end.high - commit.offset),
        member: ownerOf.get(`${topic}:${end.partition}`) ?? null
      })
    }
  }
  return {
    group: groupId,
    state: members.length === 0 ? "empty (or rebalancing)" : "stable",
    members: members.map((m) => ({
      memberId: m.memberId,
      clientId: m.clientId,
      host: m.host,
      assignment: m.assignment
    })),
    partitions
  }
})

const describeGroup = Flags.command(
  "describe",
  {
    group: Argument.String("group").pipe(Argument.withDescription("the consumer group")),
    brokers: Flags.brokers,
    json
  },
  (o) =>
    withKafka(
      o.brokers,
      Effect.gen(function* () {
        const g = yield* groupState(yield* Kafka, o.group)
        if (o.json) return yield* Console.log(JSON.stringify(g))
        const lag = g.partitions.reduce((n, p) => n + (p.lag ?? 0), 0)
        const lines = [
          `group ${g.group}: ${g.members.length} member(s), ${g.state}; total lag ${lag}`,
          g.members.length === 0
            ? "no members"
            : table([
                ["MEMBER", "CLIENT", "HOST", "ASSIGNMENT"],
                ...g.members.map((m) => [
                  m.memberId,
                  m.clientId,
                  m.host,
                  m.assignment.map((tp) => `${tp.topic}[${tp.partition}]`).join(",") || "-"
                ])
              ]),
          g.partitions.length === 0
            ? "no committed offsets"
            : table([
                ["TOPIC", "PARTITION", "COMMITTED", "HIGH", "LAG", "MEMBER"],
                ...g.partitions.map((p) => [
                  p.topic,
                  p.partition,
                  p.committed ?? "-",
                  p.high,
                  p.lag ?? "-",
                  p.member ?? "-"
                ])
              ])
        ]
        yield* Console.log(lines.join("\n\n"))
      })
    )
).pipe(
  Command.withDescription(
    "Describe a consumer group: members and their assignment; per partition the committed offset, the high-water mark and the lag"
  )
)

export const groups = Command.make("groups").pipe(
  Command.withDescription("Inspect consumer groups"),
  Command.withSubcommands([describeGroup])
)
