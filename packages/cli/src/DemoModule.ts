/**
 * `sluice demo ./topology.ts --input TOPIC=FILE`: a user's topology on the in-memory broker, fed from files, run
 * until it has consumed and committed every input record, then its outputs, dead letters and stores printed (the
 * role of Kafka Streams' TopologyTestDriver, from the command line).
 *
 * Each non-empty line of an input file is one record's value, as written (JSON lines give JSON records); with
 * `--key-field NAME` each line must be a JSON object and its field NAME (a string or a number) is the record's key,
 * so that records of one key land in one partition and one task, as a keyed producer would send them. The run is
 * at-least-once with a short commit interval; it ends when every input partition's committed offset reaches its end,
 * or fails after `--timeout-ms` saying how far it got.
 */
import { readFileSync } from "node:fs"
import { ConfigInvalid } from "@sluice/core/Errors"
import { Kafka, type PartitionOffsets } from "@sluice/core/Kafka"
import * as MemoryBroker from "@sluice/core/MemoryBroker"
import * as Reader from "@sluice/core/Reader"
import { bytes, type ConsumerRecord, type ProducerRecord } from "@sluice/core/Record"
import * as Runner from "@sluice/core/Runner"
import { Tables } from "@sluice/core/Tables"
import type { Topology } from "@sluice/core/Topology"
import { Clock, Console, Effect, Fiber, Option, Predicate, Schema, Stream } from "effect"
import * as Inspect from "./Inspect.ts"
import * as RunModule from "./RunModule.ts"

/** The demo of a user's topology did not get through its input (or its topology failed). */
export class DemoFailed extends Schema.TaggedError<DemoFailed>()("DemoFailed", {
  message: Schema.String
}) {}

export interface Options {
  readonly inputs: Readonly<Record<string, string>>
  readonly keyField: Option.Option<string>
  readonly partitions: number
  readonly print: number
  readonly json: boolean
  readonly timeoutMs: number
}

/** The records of one input file: its lines as values, keyed by `keyField` when given. */
export const recordsOf = (
  topic: string,
  file: string,
  text: string,
  keyField: Option.Option<string>
): Effect.Effect<ReadonlyArray<ProducerRecord>, ConfigInvalid> =>
  Effect.gen(function* () {
    const records: Array<ProducerRecord> = []
    const lines = text.split(/\r?\n/)
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!
      if (line.trim() === "") continue
      const where = `--input ${topic}=${file}, line ${i + 1}`
      let key: Uint8Array | null = null
      if (Option.isSome(keyField)) {
        const name = keyField.value
        const parsed = yield* Effect.try({
          try: (): unknown => JSON.parse(line),
          catch: (e) =>
            new ConfigInvalid({
              reason: `${where}: not JSON (${e instanceof Error ? e.message : String(e)}); --key-field ${name} needs a JSON object per line`
            })
        })
        const value = Predicate.isObject(parsed) && Predicate.hasProperty(parsed, name) ? parsed[name] : undefined
        if (typeof value !== "string" && typeof value !== "number") {
          return yield* new ConfigInvalid({
            reason: `${where}: --key-field ${name}: the line has no string or number field "${name}" (found ${value === undefined ? "none" : JSON.stringify(value)})`
          })
        }
        key = bytes(String(value))
      }
      records.push({ topic, key, value: bytes(line) })
    }
    return records
  })

/** Input records not yet committed by the group, over every input partition (0 when the run is through). */
const behind = (groupId: string, topics: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    let left = 0
    for (const topic of topics) {
      const ends: ReadonlyArray<PartitionOffsets> = yield* kafka.offsets(topic)
      const committed = new Map((yield* kafka.committedOffsets(groupId, topic)).map((o) => [o.partition, o.offset]))
      for (const p of ends) left += Math.max(0, p.high - Math.max(p.low, committed.get(p.partition) ?? p.low))
    }
    return left
  })

const readAll = (topic: string) =>
  Stream.runCollect(Reader.readToEnd(topic)).pipe(Effect.map((chunks): ReadonlyArray<ConsumerRecord> => chunks.flat()))

/** Runs `topology` on the in-memory broker over the input files and prints what it produced. */
export const run = (path: string, options: Options) =>
  Effect.gen(function* () {
    const topology: Topology<unknown, never> = yield* RunModule.load(path, { prefix: "" })
    const inputTopics = [...new Set(topology.inputs.map((i) => i.topic))]
    const given = Object.entries(options.inputs)
    if (given.length === 0) {
      return yield* new ConfigInvalid({
        reason: `give the input records with --input TOPIC=FILE (one record value per line); ${topology.name} reads ${inputTopics.join(", ")}`
      })
    }
    for (const [topic] of given) {
      if (!inputTopics.includes(topic)) {
        return yield* new ConfigInvalid({
          reason: `--input ${topic}=...: ${topic} is not an input of ${topology.name}; its inputs are ${inputTopics.join(", ")}`
        })
      }
    }
    const records: Array<ProducerRecord> = []
    for (const [topic, file] of given) {
      const text = yield* Effect.try({
        try: () => readFileSync(file, "utf8"),
        catch: (e) =>
          new ConfigInvalid({
            reason: `--input ${topic}=${file}: cannot read the file (${e instanceof Error ? e.message : String(e)})`
          })
      })
      records.push(...(yield* recordsOf(topic, file, text, options.keyField)))
    }

    const kafka = yield* Kafka
    yield* kafka.createTopics(inputTopics.map((name) => ({ name, partitions: options.partitions })))
    yield* kafka.send(records)
    const groupId = `sluice-demo-${topology.name}`
    if (!options.json) {
      yield* Console.log(
        `Sluice demo: ${topology.name} from ${path} on the in-memory broker, ${records.length} input record(s) on ` +
          `${given.map(([t]) => t).join(", ")} (${options.partitions} partition(s) each)\n`
      )
    }
    const runner = yield* Effect.forkChild(
      Runner.run(topology, { groupId, commitInterval: "20 millis", shutdownTimeout: "5 seconds" })
    )
    const deadline = (yield* Clock.currentTimeMillis) + options.timeoutMs
    let left = yield* behind(groupId, inputTopics)
    while (left > 0) {
      const ended = runner.pollUnsafe()
      if (ended !== undefined) break
      if ((yield* Clock.currentTimeMillis) > deadline) {
        yield* Fiber.interrupt(runner)
        return yield* new DemoFailed({
          message: `${topology.name} did not get through its input in ${options.timeoutMs} ms: ${left} of ${records.length} input record(s) not committed (raise --timeout-ms, or run with --log-level debug to see what it does)`
        })
      }
      yield* Effect.sleep("20 millis")
      left = yield* behind(groupId, inputTopics)
    }
    const ended = runner.pollUnsafe()
    if (ended !== undefined) {
      // The runner never ends by itself: it failed (its cause is the worker's error).
      yield* Fiber.join(runner)
    }

    const tables = yield* Tables
    const stores = tables.stores().map((q) => {
      const found = tables.entries(q.store, options.print === 0 ? 1 : options.print)
      return { store: q.store, entries: found?.entries ?? [], truncated: found?.truncated ?? false }
    })
    yield* Fiber.interrupt(runner)

    const outputTopics = [
      ...new Set([...topology.outputs.map((t) => t.name), ...topology.inputs.map((i) => i.deadLetterTopic)])
    ].filter((t) => !inputTopics.includes(t))
    const existing = new Set(yield* kafka.listTopics)
    const outputs: Array<{ readonly topic: string; readonly records: ReadonlyArray<ConsumerRecord> }> = []
    for (const topic of outputTopics) outputs.push({ topic, records: existing.has(topic) ? yield* readAll(topic) : [] })

    if (options.json) {
      yield* Console.log(
        JSON.stringify({
          topology: topology.name,
          inputs: Object.fromEntries(inputTopics.map((t) => [t, records.filter((r) => r.topic === t).length])),
          outputs: Object.fromEntries(outputs.map((o) => [o.topic, o.records.map(Inspect.toJson)])),
          stores: Object.fromEntries(stores.map((s) => [s.store, s.entries]))
        })
      )
      return
    }
    for (const o of outputs) {
      yield* Console.log(`${o.topic}: ${o.records.length} record(s)`)
      for (const r of o.records.slice(0, options.print)) yield* Console.log(`  ${Inspect.toLine(r)}`)
      if (o.records.length > options.print) yield* Console.log(`  ... ${o.records.length - options.print} more`)
    }
    for (const s of stores) {
      yield* Console.log(`store ${s.store}:${s.entries.length === 0 ? " empty" : ""}`)
      for (const e of s.entries.slice(0, options.print))
        yield* Console.log(`  [${e.partition}] ${JSON.stringify(e.key)} = ${JSON.stringify(e.value)}`)
      if (s.truncated) yield* Console.log("  ... more")
    }
  }).pipe(Effect.provide(MemoryBroker.layer))
