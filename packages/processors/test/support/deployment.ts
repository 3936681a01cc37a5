/**
 * A counting deployment for integration tests: fresh topics under a random prefix, a fresh group, `sluice run
 * counts` workers in it, and the checks on the group's progress the tests wait on. Shared by the at-least-once
 * tests (Counting.integration.test.ts) and the exactly-once ones (CountingExactlyOnce.integration.test.ts).
 */
import { assert } from "@effect/vitest"
import { isRetryable } from "@sluice/core/Errors"
import { brokersConfig, Kafka } from "@sluice/core/Kafka"
import * as Reader from "@sluice/core/Reader"
import type { ConsumerRecord } from "@sluice/core/Record"
import { Effect, Schedule } from "effect"
import * as Counting from "../../src/Counting.ts"
import * as Workers from "./workers.ts"

export const brokers = Effect.runSync(brokersConfig)

/** What every worker of a deployment runs with, beyond its topics and group. */
export type WorkerOptions = Pick<Workers.RunArgs, "guarantee" | "commitIntervalMs"> & { readonly stateDir?: string }

/** Fresh topics under a random prefix and a fresh group, for workers of `sluice run counts`. */
export const fresh = (options: WorkerOptions & { readonly partitions?: number } = {}) => {
  const id = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`
  const prefix = `it-${id}-`
  const topics = Counting.named(prefix)
  const group = `it-counts-${id}`
  const { partitions = 6, ...common } = options
  return {
    topics,
    group,
    partitions,
    worker: (name: string, own: WorkerOptions = {}) =>
      Workers.counts(name, { brokers, prefix, group, shutdownTimeoutMs: 10_000, ...common, ...own })
  }
}
export type Deployment = ReturnType<typeof fresh>

export const createInput = (d: Deployment) =>
  Kafka.use((kafka) => kafka.createTopics([{ name: d.topics.input.name, partitions: d.partitions }]))

/** The group's committed offsets against the input's ends, and the input records committed in all. */
export const progress = (d: Deployment) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const highs = yield* kafka.offsets(d.topics.input.name)
    const committed = new Map(
      (yield* kafka.committedOffsets(d.group, d.topics.input.name)).map((c) => [c.partition, c.offset])
    )
    return {
      done: highs.every((h) => committed.get(h.partition) === h.high),
      committed: highs.reduce((n, h) => n + Math.max(0, (committed.get(h.partition) ?? h.low) - h.low), 0),
      text: `committed ${highs.map((h) => `${h.partition}@${committed.get(h.partition) ?? "-"}/${h.high}`).join(" ")}`
    }
  })

export const awaitCommittedToEnd = (d: Deployment, workers: ReadonlyArray<Workers.Worker>) =>
  Workers.waitUntil(
    "the group has committed every input record",
    "90 seconds",
    Effect.map(progress(d), (p) => p.done),
    workers,
    Effect.map(progress(d), (p) => p.text)
  )

/**
 * Records in a topic's log so far, committed or not (sum of high - low; 0 while the topic does not exist). A topic
 * a worker has just created may not have a leader yet: retryable answers are asked again.
 */
export const recordCount = (topic: string) =>
  Kafka.use((kafka) => kafka.offsets(topic)).pipe(
    Effect.retry({ while: isRetryable, schedule: Schedule.spaced("100 millis"), times: 50 }),
    Effect.map((offsets) => offsets.reduce((n, p) => n + p.high - p.low, 0)),
    Effect.catchReason("KafkaError", "UnknownTopic", () => Effect.succeed(0))
  )

/** Records in the output's log so far (`recordCount`). */
export const outputCount = (d: Deployment) => recordCount(d.topics.output.name)

/** Every output so far, through Sluice's own reader (read_committed). */
export const readOutputs = (d: Deployment) =>
  Reader.foldToEnd(d.topics.output.name, [] as Array<ConsumerRecord>, (acc, r) => {
    acc.push(r)
    return acc
  }).pipe(
    Effect.map((records) => Counting.decodeOutputs(records, d.topics)),
    Effect.timeout("60 seconds")
  )

/** Whether the live workers' current assignments split the tasks between all of them, each task once. */
export const splitBetween = (d: Deployment, workers: ReadonlyArray<Workers.Worker>) =>
  Effect.sync(() => {
    const current = workers.map((w) => w.assignments().at(-1) ?? [])
    const all = current.flat()
    return current.every((a) => a.length > 0) && all.length === d.partitions && new Set(all).size === d.partitions
  })

/** Whether `worker`'s current assignment is every task. */
export const hasEveryTask = (d: Deployment, worker: Workers.Worker) =>
  Effect.sync(() => (worker.assignments().at(-1) ?? []).length === d.partitions)

export const assignments = (workers: ReadonlyArray<Workers.Worker>) =>
  Effect.sync(() => workers.map((w) => `${w.name}=${(w.assignments().at(-1) ?? []).join(",")}`).join(" "))

/** SIGTERM, and the worker must stop cleanly (exit code 0). */
export const stopGracefully = (worker: Workers.Worker) =>
  Effect.gen(function* () {
    yield* worker.signal("SIGTERM")
    const exit = yield* worker.exit("30 seconds")
    assert.strictEqual(exit.code, 0, `${worker.name} exit code after SIGTERM\n${worker.output().slice(-3000)}`)
  })
