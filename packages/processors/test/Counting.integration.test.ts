/**
 * The counting topology as operators run it: `sluice run counts` worker processes against the real broker
 * (SLUICE_BROKERS, default 127.0.0.1:9092), joining, leaving and killed while records flow.
 *
 * These are the acceptance tests of the task runtime's ownership and state: every output names its worker and
 * carries the count its store held, and task i writes output partition i, so each output partition is one task's
 * history in the order it was written (Counting.handoffs reads it). The final count of each key (its last
 * output) must equal the recomputation from the input, or exceed it by records re-delivered after a crash
 * (at-least-once); the tests say by how much.
 */
import { assert, layer } from "@effect/vitest"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import type { ProducerRecord, RecordMetadata } from "@sluice/core/Record"
import * as Store from "@sluice/core/Store"
import { Effect, Fiber } from "effect"
import { afterEach } from "vitest"
import * as Counting from "../src/Counting.ts"
import {
  assignments,
  awaitCommittedToEnd,
  brokers,
  createInput,
  fresh,
  hasEveryTask,
  outputCount,
  progress,
  readOutputs,
  splitBetween,
  stopGracefully
} from "./support/deployment.ts"
import * as Workers from "./support/workers.ts"

afterEach(() => Workers.killAll())

/**
 * What the survivor restored beyond its tasks' committed offsets: for each key of a task it took over, its first
 * count minus one is the restored count, and the key's records before the offset it started from are what that
 * count should have been. The difference is records the dead worker counted (its changelog written) but did not
 * commit, which the survivor counted again: the at-least-once re-delivery, key by key. A difference larger than
 * the key's records from that offset on would be counts from nowhere.
 */
const redelivered = (
  outputs: ReadonlyArray<Counting.Written>,
  sent: ReadonlyArray<ProducerRecord>,
  written: ReadonlyArray<RecordMetadata>,
  survivor: string
) => {
  const inOrder = [...outputs].sort((x, y) => x.partition - y.partition || x.at - y.at)
  // Where the survivor started on each partition it took over: its first output after another worker's.
  const start = new Map<number, number>()
  for (let i = 1; i < inOrder.length; i++) {
    const [previous, o] = [inOrder[i - 1]!, inOrder[i]!]
    if (o.worker === survivor && previous.partition === o.partition && previous.worker !== survivor) {
      if (!start.has(o.partition)) start.set(o.partition, o.offset)
    }
  }
  const first = new Map<string, Counting.Written>()
  for (const o of inOrder) if (o.worker === survivor && start.has(o.partition) && !first.has(o.key)) first.set(o.key, o)
  const keyAt = (i: number) => new TextDecoder().decode(sent[i]!.key ?? new Uint8Array())
  const prior = new Map<string, number>()
  const after = new Map<string, number>()
  for (const [i, m] of written.entries()) {
    const from = start.get(m.partition)
    if (from === undefined) continue
    const counts = m.offset < from ? prior : after
    counts.set(keyAt(i), (counts.get(keyAt(i)) ?? 0) + 1)
  }
  let counted = 0
  const impossible: Array<string> = []
  for (const [key, o] of first) {
    const extra = o.count - 1 - (prior.get(key) ?? 0)
    if (extra < 0 || extra > (after.get(key) ?? 0)) impossible.push(`${key}: restored ${o.count - 1}`)
    counted += extra
  }
  return { counted, impossible }
}

layer(KafkaJs.layer({ brokers, clientId: "sluice-counts-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("counting workers against a real broker", (it) => {
  it.effect(
    "handoff, 2 -> 3 -> 2 workers with records flowing: one owner per task at a time, final counts = recomputation",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        yield* createInput(d)
        const keys = 60
        const sent: Array<ProducerRecord> = []
        // A producer that keeps going through every membership change: 300 records every 100 ms.
        const producer = yield* Effect.gen(function* () {
          const kafka = yield* Kafka
          while (true) {
            const records = Counting.generate({ count: 300, keys, from: sent.length, topic: d.topics.input.name })
            yield* kafka.send(records)
            sent.push(...records)
            yield* Effect.sleep("100 millis")
          }
        }).pipe(Effect.forkChild)
        /** When the group's membership changed, for Counting.handoffs' epochs. */
        const changes: Array<number> = []
        const flowing = (workers: ReadonlyArray<Workers.Worker>, what: string) =>
          Workers.waitUntil(what, "60 seconds", splitBetween(d, workers), workers, assignments(workers)).pipe(
            // Records flow for a while under each membership before the next change.
            Effect.andThen(Effect.sleep("4 seconds"))
          )

        const a = yield* d.worker("worker-a")
        yield* flowing([a], "worker-a has every task")
        changes.push(Date.now())
        const b = yield* d.worker("worker-b")
        yield* flowing([a, b], "worker-a and worker-b split the tasks")
        changes.push(Date.now())
        const c = yield* d.worker("worker-c")
        yield* flowing([a, b, c], "the three workers split the tasks")
        const before = (yield* assignments([a, b, c])).toString()
        // The one there from the start leaves: under a sticky assignor no task then ever goes back to a worker
        // that had it before, so any A, B, A in a partition's history is two owners at once.
        changes.push(Date.now())
        yield* stopGracefully(a)
        yield* flowing([b, c], "worker-b and worker-c split the tasks")
        yield* Fiber.interrupt(producer)
        yield* awaitCommittedToEnd(d, [b, c])
        yield* Effect.all([stopGracefully(b), stopGracefully(c)], { concurrency: "unbounded" })

        const outputs = yield* readOutputs(d)
        const h = Counting.handoffs(outputs, changes)
        const v = Counting.verify(Counting.recompute(sent), Counting.finalCounts(outputs))
        const history = [...h.owners].map(([p, owners]) => `${p}: ${owners.join(",")}`).join("; ")
        console.log(
          `handoff 2 -> 3 -> 2: ${sent.length} records over ${keys} keys, ${outputs.length} outputs; ` +
            `owners per task: ${history}; three workers: ${before}; ` +
            `overlap measured: ${h.interleaved} interleaved output(s) over ${h.overlapMs} ms, ${h.returns} return(s); ` +
            `counts: ${Counting.describe(v)} (excess over the truth: ${v.excess})`
        )
        for (const w of [a, b, c])
          assert.isTrue(
            outputs.some((o) => o.worker === w.name),
            `${w.name} wrote outputs`
          )
        assert.strictEqual(h.interleaved, 0, `no task written by two workers at once: ${history}`)
        assert.strictEqual(h.overlapMs, 0, history)
        assert.strictEqual(h.returns, 0, `no task goes back to a worker that had it (no A, B, A): ${history}`)
        assert.isAtMost(h.maxChangesPerEpoch, 1, `a task changes owner at most once per membership change: ${history}`)
        assert.isTrue(Counting.isComplete(v), Counting.describe(v))
        assert.strictEqual(
          v.excess,
          0,
          `a handoff with one owner at a time re-delivers nothing: ${Counting.describe(v)}`
        )
      }).pipe(Effect.scoped),
    180_000
  )

  it.effect(
    "kill -9 of one of two workers during 100,000 records: the survivor restores its tasks, counts = recomputation",
    () =>
      Effect.gen(function* () {
        const d = fresh()
        yield* createInput(d)
        const total = 100_000
        const sent = Counting.generate({ count: total, keys: 1_000, topic: d.topics.input.name })
        const a = yield* d.worker("worker-a")
        const b = yield* d.worker("worker-b")
        yield* Workers.waitUntil("the two workers split the tasks", "60 seconds", splitBetween(d, [a, b]), [a, b])
        const kafka = yield* Kafka
        const written: Array<RecordMetadata> = []
        for (let i = 0; i < total; i += 10_000) written.push(...(yield* kafka.send(sent.slice(i, i + 10_000))))

        let atKill = 0
        // Stores send their writes with the commits (up to half the 1 s commit interval after a step): the kill
        // waits until worker-a has sent some, so that the survivor has state of its tasks to restore.
        const changelogOfA = Effect.map(kafka.offsets(Store.changelogTopic(d.group, Counting.counts)), (offsets) =>
          offsets.some((p) => (a.assignments().at(-1) ?? []).includes(p.partition) && p.high > p.low)
        )
        yield* Workers.waitUntil(
          "the output holds 20% of the records, and worker-a has sent state of its tasks",
          "90 seconds",
          Effect.gen(function* () {
            atKill = yield* outputCount(d)
            return atKill >= total * 0.2 && (yield* changelogOfA)
          }),
          [a, b]
        )
        const lost = a.assignments().at(-1) ?? []
        yield* a.signal("SIGKILL")
        assert.strictEqual((yield* a.exit("10 seconds")).signal, "SIGKILL")
        assert.isBelow(atKill, total * 0.8, "killed in the middle, not at the end")
        const committedAtKill = yield* progress(d)
        // What worker-a made durable of its tasks' state: worker-b takes them over only after the session timeout.
        const changelogAtKill = yield* kafka.offsets(Store.changelogTopic(d.group, Counting.counts))

        // The group gives up on the killed member after its session timeout (6 s in the CLI).
        yield* Workers.waitUntil("worker-b has every task", "60 seconds", hasEveryTask(d, b), [b])
        yield* awaitCommittedToEnd(d, [b])
        yield* stopGracefully(b)

        const outputs = yield* readOutputs(d)
        const v = Counting.verify(Counting.recompute(sent), Counting.finalCounts(outputs))
        const r = redelivered(outputs, sent, written, b.name)
        const restored = b.restores().map((x) => `task ${x.task}: ${x.records} from ${x.from}`)
        console.log(
          `kill -9 at ${atKill} of ${total} outputs (${committedAtKill.text}); worker-a had tasks ${lost.join(",")}; ` +
            `worker-b restored ${restored.join(", ")}; ${outputs.length} outputs for ${total} records; ` +
            `counts: ${Counting.describe(v)}; at-least-once: ${v.excess} count(s) over the truth, ${r.counted} of them ` +
            `records worker-a had counted past its last commit and worker-b counted again (${outputs.length - total} ` +
            "of all re-processed records with worker-a's output written too: a step's outputs are durable before its changelog)"
        )
        // A task worker-a had made state durable for is restored from its changelog (a task whose changelog it had
        // not written yet has nothing to restore, even if some outputs of its first step were written: a step's
        // changelog goes after its outputs; and the runtime logs only restores that read something).
        const restoredTasks = new Set(b.restores().map((x) => x.task))
        const started = lost.filter((task) => changelogAtKill.some((p) => p.partition === task && p.high > p.low))
        assert.isNotEmpty(started, "worker-a had made state of its tasks durable when it was killed")
        for (const task of started) assert.isTrue(restoredTasks.has(task), `worker-b restored task ${task} of worker-a`)
        assert.isTrue(Counting.isComplete(v), Counting.describe(v))
        assert.isAtLeast(outputs.length, total, "every record has an output")
        assert.deepStrictEqual(r.impossible, [], "no restored count covers records that are not there")
        assert.strictEqual(r.counted, v.excess, "every count over the truth is a re-delivered record")
      }).pipe(Effect.scoped),
    200_000
  )
})
