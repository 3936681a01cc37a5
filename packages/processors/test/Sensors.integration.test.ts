/**
 * The sensor pipeline as operators run it: `sluice run sensor-pipeline` worker processes against the real broker
 * (SLUICE_BROKERS, default 127.0.0.1:9092), checked against a recomputation from what was sent.
 */
import * as Net from "node:net"
import { assert, layer } from "@effect/vitest"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import { partitionForKey } from "@sluice/core/Partitioner"
import type { ProducerRecord } from "@sluice/core/Record"
import { Effect, Schema } from "effect"
import { afterEach } from "vitest"
import * as SensorData from "../src/SensorData.ts"
import * as Sensors from "../src/Sensors.ts"
import * as Workers from "./support/workers.ts"

const brokers = Effect.runSync(brokersConfig)
const partitions = 4
const lateByMs = Sensors.windowMs + Sensors.defaultGraceMs

afterEach(() => Workers.killAll())

/** Fresh topics under a random prefix, for workers of `sluice run sensor-pipeline`. */
const fresh = () => {
  const id = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`
  const prefix = `it-${id}-`
  const topics = Sensors.named(prefix)
  return {
    topics,
    prefix,
    worker: (
      name: string,
      group: string,
      more: { readonly http?: string; readonly extra?: ReadonlyArray<string> } = {}
    ) =>
      Workers.sensorPipeline(name, { brokers, prefix, group: `${prefix}${group}`, shutdownTimeoutMs: 10_000, ...more })
  }
}
type Deployment = ReturnType<typeof fresh>

/** A port nobody listens on now (the worker binds it a moment later). */
const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const bound = server.address()
    const port = typeof bound === "object" && bound !== null ? bound.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const getJson = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    const body: unknown = await res.json()
    return { status: res.status, body }
  })

/** The group's committed offsets against the input's ends. */
const committedToEnd = (d: Deployment, group: string) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.readings.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(`${d.prefix}${group}`, d.topics.readings.name)).map((c) => [c.partition, c.offset])
    )
    return highs.every((h) => committed.get(h.partition) === h.high)
  })

const stopGracefully = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("30 seconds")
    assert.strictEqual(exit.code, 0, `${worker.name} exit code after SIGTERM\n${worker.output().slice(-3000)}`)
  })

/** Readings per sensor that the table must hold: every one that is not malformed, late ones included. */
const countsOf = (sent: ReadonlyArray<ProducerRecord>) => {
  const counts = new Map<string, number>()
  for (const r of sent) {
    if (r.headers?.[SensorData.badHeader] !== undefined) continue
    const key = new TextDecoder().decode(r.key ?? new Uint8Array())
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return counts
}

const TableEntry = Schema.Struct({ partition: Schema.Int, key: Schema.String, value: Schema.Int })
type TableEntry = typeof TableEntry.Type
const TableBody = Schema.Struct({ tasks: Schema.Array(Schema.Int), entries: Schema.Array(TableEntry) })
const Elsewhere = Schema.Struct({ partition: Schema.Int, owner: Schema.NullOr(Schema.String) })

/** `/tables/sensor-counts` of one worker: its tasks and their entries. */
const tableOf = (port: number) =>
  Effect.map(getJson(`http://127.0.0.1:${port}/tables/sensor-counts?limit=100000`), ({ status, body }) => {
    assert.strictEqual(status, 200, JSON.stringify(body))
    return Schema.decodeUnknownSync(TableBody)(body)
  })

const asMap = (entries: ReadonlyArray<TableEntry>) => new Map(entries.map((e) => [e.key, e.value]))

layer(KafkaJs.layer({ brokers, clientId: "sluice-sensors-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("sensor pipeline workers against a real broker", (it) => {
  it.effect(
    "two workers split the sensors: the union of their tables is the single worker's; a key is served by its owner, 421 elsewhere",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        const kafka = yield* Kafka
        yield* kafka.createTopics([{ name: d.topics.readings.name, partitions }])
        const sent = SensorData.generate({
          count: 5_000,
          sensors: 40,
          badRatio: 0.1,
          lateRatio: 0.05,
          stepMs: 100,
          lateByMs,
          topic: d.topics.readings.name
        })
        yield* kafka.send(sent)
        const truth = countsOf(sent)

        const [p1, p2, p3] = [yield* freePort, yield* freePort, yield* freePort]
        const single = yield* d.worker("single", "one", { http: `127.0.0.1:${p1}` })
        yield* Workers.waitUntil("the single worker committed everything", "60 seconds", committedToEnd(d, "one"), [
          single
        ])
        const alone = yield* tableOf(p1)
        assert.deepStrictEqual(alone.tasks, [0, 1, 2, 3])
        assert.deepStrictEqual(asMap(alone.entries), truth, "the single worker's table is the recomputation")
        yield* stopGracefully(single)

        const a = yield* d.worker("worker-a", "two", { http: `127.0.0.1:${p2}` })
        const b = yield* d.worker("worker-b", "two", { http: `127.0.0.1:${p3}` })
        const split = Effect.sync(() => {
          const [ta, tb] = [a.assignments().at(-1) ?? [], b.assignments().at(-1) ?? []]
          return ta.length > 0 && tb.length > 0 && new Set([...ta, ...tb]).size === partitions
        })
        yield* Workers.waitUntil("the two workers split the tasks", "60 seconds", split, [a, b])
        yield* Workers.waitUntil("the two workers committed everything", "60 seconds", committedToEnd(d, "two"), [a, b])
        const [ta, tb] = [yield* tableOf(p2), yield* tableOf(p3)]
        assert.isEmpty(
          ta.tasks.filter((t) => tb.tasks.includes(t)),
          "each task on one worker"
        )
        const union = new Map([...asMap(ta.entries), ...asMap(tb.entries)])
        assert.strictEqual(ta.entries.length + tb.entries.length, union.size, "no sensor in both tables")
        assert.deepStrictEqual(union, asMap(alone.entries))
        assert.isNotEmpty(ta.entries)
        assert.isNotEmpty(tb.entries)

        // A sensor of worker-a's tasks: worker-a answers with its count, worker-b says where it is.
        const sensor = ta.entries[0]!.key
        const owned = yield* getJson(`http://127.0.0.1:${p2}/tables/sensor-counts/${sensor}`)
        assert.strictEqual(owned.status, 200)
        assert.deepInclude(owned.body, {
          key: sensor,
          value: truth.get(sensor),
          partition: partitionForKey(new TextEncoder().encode(sensor), partitions)
        })
        const elsewhere = yield* getJson(`http://127.0.0.1:${p3}/tables/sensor-counts/${sensor}`)
        assert.strictEqual(elsewhere.status, 421, JSON.stringify(elsewhere.body))
        const { owner, partition } = Schema.decodeUnknownSync(Elsewhere)(elsewhere.body)
        assert.strictEqual(partition, ta.entries[0]!.partition)
        assert.isString(owner, "names the owner")
        console.log(
          `two workers: worker-a has tasks ${ta.tasks.join(",")} (${ta.entries.length} sensors), worker-b ${tb.tasks.join(",")} ` +
            `(${tb.entries.length} sensors); ${sensor} from worker-b: 421, owner ${owner}`
        )
        yield* Effect.all([stopGracefully(a), stopGracefully(b)], { concurrency: "unbounded" })
      }).pipe(Effect.scoped),
    180_000
  )
})
