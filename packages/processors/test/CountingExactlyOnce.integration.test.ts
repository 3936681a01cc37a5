/**
 * Exactly-once, as operators run it: `sluice run counts --guarantee exactly_once` worker processes against the
 * real broker, killed with SIGKILL, or stopped with SIGSTOP past their session timeout and woken as zombies.
 *
 * The judge is a reader that shares no code with Sluice (kafkajs directly, isolation read_committed, see
 * core/test/support/independentRead.ts) and the audit of CountingAudit.ts: every input offset has exactly one
 * committed output, each count is the key's number of records up to that one, and each output partition lists its
 * input offsets in order. The same read with read_uncommitted shows what the log holds besides: records of
 * transactions that were aborted (a killed worker's, a zombie's), which a committed read must never see.
 *
 * The kill test keeps its store in SQLite under --state-dir, shared by every life of the worker: the harder case,
 * since a restart resumes from a local checkpoint rather than rebuilding from the committed changelog.
 */
import { assert, layer } from "@effect/vitest"
import { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import type { ProducerRecord, RecordMetadata } from "@sluice/core/Record"
import { Effect, Fiber } from "effect"
import { afterEach } from "vitest"
import * as IndependentRead from "../../core/test/support/independentRead.ts"
import { tempDir } from "../../core/test/support/tempDir.ts"
import * as Counting from "../src/Counting.ts"
import * as CountingAudit from "../src/CountingAudit.ts"
import * as Random from "../src/Random.ts"
import {
  assignments,
  awaitCommittedToEnd,
  brokers,
  createInput,
  type Deployment,
  fresh,
  hasEveryTask,
  outputCount,
  progress,
  splitBetween,
  stopGracefully
} from "./support/deployment.ts"
import * as Workers from "./support/workers.ts"

afterEach(() => Workers.killAll())

/**
 * Produces `perTick` records every 100 ms in a fiber of the scope, until there are `total` (or, without one, until
 * the fiber is interrupted). A send is never interrupted between reaching the broker and being recorded, so `sent`
 * and `written` (where each record went, in the same order) are the whole truth.
 */
const feed = (d: Deployment, options: { readonly keys: number; readonly perTick: number; readonly total?: number }) =>
  Effect.gen(function* () {
    const kafka = yield* Kafka
    const total = options.total ?? Number.POSITIVE_INFINITY
    const sent: Array<ProducerRecord> = []
    const written: Array<RecordMetadata> = []
    const fiber = yield* Effect.gen(function* () {
      while (sent.length < total) {
        const count = Math.min(options.perTick, total - sent.length)
        const records = Counting.generate({ count, keys: options.keys, from: sent.length, topic: d.topics.input.name })
        yield* Effect.uninterruptible(
          Effect.map(kafka.send(records), (metadata) => {
            written.push(...metadata)
            sent.push(...records)
          })
        )
        yield* Effect.sleep("100 millis")
      }
    }).pipe(Effect.forkScoped)
    return { sent, written, fiber, done: () => sent.length >= total }
  })

/** The outputs as a read_committed reader and as a read_uncommitted one see them, read independently of Sluice. */
const readBoth = (d: Deployment) =>
  Effect.gen(function* () {
    const committed = yield* IndependentRead.readTopic(brokers, d.topics.output.name, "read_committed")
    const all = yield* IndependentRead.readTopic(brokers, d.topics.output.name, "read_uncommitted")
    return { committed: Counting.decodeOutputs(committed, d.topics), inLog: Counting.decodeOutputs(all, d.topics) }
  })

const perWorker = (outputs: ReadonlyArray<Counting.Written>) => {
  const n = new Map<string, number>()
  for (const o of outputs) n.set(o.worker, (n.get(o.worker) ?? 0) + 1)
  return n
}

/** The audit of the committed outputs and the final counts against the truth; `assertExactlyOnce` judges them. */
const check = (
  sent: ReadonlyArray<ProducerRecord>,
  written: ReadonlyArray<RecordMetadata>,
  outputs: ReadonlyArray<Counting.Written>
) => ({
  audit: CountingAudit.audit(CountingAudit.inputsOf(sent, written), outputs),
  counts: Counting.verify(Counting.recompute(sent), Counting.finalCounts(outputs))
})

const assertExactlyOnce = ({ audit, counts }: ReturnType<typeof check>, total: number) => {
  assert.isTrue(CountingAudit.isExactlyOnce(audit), CountingAudit.describe(audit))
  assert.strictEqual(audit.outputs, total, "one committed output per input record")
  assert.strictEqual(
    counts.exact,
    counts.keys,
    `every key's final count is the recomputation: ${Counting.describe(counts)}`
  )
  assert.deepStrictEqual(counts.unexpected, [])
}

layer(KafkaJs.layer({ brokers, clientId: "sluice-counts-eos-it" }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("counting workers, exactly-once, against a real broker", (it) => {
  it.effect(
    "kill -9 five times during 50,000 records (SQLite state): every input offset exactly once, counts exact",
    () =>
      Effect.gen(function* () {
        const stateDir = yield* tempDir("sluice-eos-kill-")
        const d = fresh({ guarantee: "exactly_once", stateDir })
        yield* createInput(d)
        const total = 50_000
        const keys = 1_000
        // About 1,000 records a second for the whole test, so that every life has records coming and each restart a
        // backlog (what arrived while the group waited out the killed member's session) to work through.
        const input = yield* feed(d, { keys, perTick: 100, total })
        const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 2 ** 32)
        const random = Random.make(seed)

        // Each life is killed a random 0-200 ms after a random 1,000-4,000 more outputs have reached the log (polled
        // every 20 ms; outputs reach the log while their transaction is open, so without the delay every kill would
        // land in one), while records are still being produced.
        const kills: Array<{
          life: string
          outputs: number
          sinceStart: number
          delayMs: number
          committed: number
          produced: number
        }> = []
        for (let life = 1; life <= 5; life++) {
          const name = `life-${life}`
          const from = yield* outputCount(d)
          const after = random.int(1_000, 4_000)
          const delayMs = random.int(0, 200)
          const worker = yield* d.worker(name)
          let outputs = from
          yield* Workers.waitUntil(
            `${name} has written ${after} more outputs (from ${from})`,
            "90 seconds",
            Effect.map(outputCount(d), (n) => {
              outputs = n
              return n >= from + after
            }),
            [worker],
            Effect.map(progress(d), (p) => p.text),
            "20 millis"
          )
          if (delayMs > 0) yield* Effect.sleep(`${delayMs} millis`)
          yield* worker.signal("SIGKILL")
          assert.strictEqual((yield* worker.exit("10 seconds")).signal, "SIGKILL")
          const { committed } = yield* progress(d)
          kills.push({
            life: name,
            outputs: yield* outputCount(d),
            sinceStart: outputs - from,
            delayMs,
            committed,
            produced: input.sent.length
          })
        }
        const last = yield* d.worker("life-6")
        yield* Fiber.join(input.fiber)
        yield* awaitCommittedToEnd(d, [last])
        yield* stopGracefully(last)

        const { committed, inLog } = yield* readBoth(d)
        const { sent, written } = input
        const checked = check(sent, written, committed)
        const a = checked.audit
        const logAudit = CountingAudit.audit(CountingAudit.inputsOf(sent, written), inLog)
        console.log(
          `exactly-once kill -9 x${kills.length} (seed ${seed}): ` +
            kills
              .map(
                (k) =>
                  `${k.life} killed ${k.delayMs} ms after +${k.sinceStart} outputs: ${k.outputs} outputs in the log, ${k.committed} of ${k.produced} inputs committed`
              )
              .join("; ") +
            `; committed outputs per life: ${[...perWorker(committed)].map(([w, n]) => `${w}=${n}`).join(" ")}` +
            `; read_committed: ${CountingAudit.describe(a)}` +
            `; the log (read_uncommitted) holds ${inLog.length} outputs, ${inLog.length - committed.length} of them ` +
            `aborted, with ${logAudit.duplicates} duplicate(s) a reader without isolation would see`
        )
        assertExactlyOnce(checked, total)
        assert.strictEqual(kills.length, 5)
        for (const k of kills) assert.isBelow(k.produced, total, `${k.life} was killed while records were still coming`)
        assert.strictEqual(a.duplicates, 0, "duplicates found")
      }).pipe(Effect.scoped),
    // Each of the six lives waits out the killed one's 6 s session timeout before it gets the tasks.
    240_000
  )

  it.effect(
    "zombie: worker-a stopped past its session timeout, worker-b takes over; a's next transaction is fenced, a stays up, nothing it wrote after the takeover is visible",
    () =>
      Effect.gen(function* () {
        // A commit interval of 1 s keeps steps waiting in an open transaction most of the time, so the zombie has
        // something to commit when it wakes up.
        const d = fresh({ guarantee: "exactly_once", commitIntervalMs: 1_000 })
        yield* createInput(d)
        const kafka = yield* Kafka
        const keys = 600
        // 300 records every 100 ms throughout, so both workers always have records in flight.
        const input = yield* feed(d, { keys, perTick: 300 })
        const { sent, written } = input
        const a = yield* d.worker("worker-a")
        yield* Workers.waitUntil(
          "worker-a has every task and has committed 3,000 records",
          "60 seconds",
          Effect.zipWith(hasEveryTask(d, a), progress(d), (all, p) => all && p.committed >= 3_000),
          [a],
          Effect.map(progress(d), (p) => p.text)
        )
        yield* a.signal("SIGSTOP")
        const stoppedAt = Date.now()
        const b = yield* d.worker("worker-b")
        // The group gives worker-b the tasks only once worker-a's session (6 s in the CLI) has expired.
        yield* Workers.waitUntil("worker-b has every task", "60 seconds", hasEveryTask(d, b), [b], assignments([b]))
        const takeoverMs = Date.now() - stoppedAt
        const members = yield* kafka.describeGroup(d.group)
        const atTakeover = (yield* progress(d)).committed
        yield* Workers.waitUntil(
          "worker-b has committed 3,000 records since the takeover",
          "60 seconds",
          Effect.map(progress(d), (p) => p.committed >= atTakeover + 3_000),
          [b],
          Effect.map(progress(d), (p) => p.text)
        )
        // Stopped well past the session timeout, whatever the takeover took.
        const longEnough = stoppedAt + 8_000 - Date.now()
        if (longEnough > 0) yield* Effect.sleep(`${longEnough} millis`)
        const stoppedMs = Date.now() - stoppedAt
        yield* a.signal("SIGCONT")
        const fenced = yield* a.waitForLog(/task \d+ retired: its producer was fenced[^\n]*/, "30 seconds")
        assert.isTrue(a.isRunning(), "worker-a noticed it was fenced and is still running")
        // It rejoins the group as a new member and gets tasks again: a fenced task is retired, not the worker.
        yield* Workers.waitUntil(
          "worker-a and worker-b split the tasks",
          "60 seconds",
          splitBetween(d, [a, b]),
          [a, b],
          assignments([a, b])
        )
        const atSplit = (yield* progress(d)).committed
        yield* Workers.waitUntil(
          "the two workers have committed 2,000 more records",
          "60 seconds",
          Effect.map(progress(d), (p) => p.committed >= atSplit + 2_000),
          [a, b],
          Effect.map(progress(d), (p) => p.text)
        )
        yield* Fiber.interrupt(input.fiber)
        yield* awaitCommittedToEnd(d, [a, b])
        yield* Effect.all([stopGracefully(a), stopGracefully(b)], { concurrency: "unbounded" })

        const { committed, inLog } = yield* readBoth(d)
        const checked = check(sent, written, committed)
        const audit = checked.audit
        const h = Counting.handoffs(committed)
        const aborted = (perWorker(inLog).get(a.name) ?? 0) - (perWorker(committed).get(a.name) ?? 0)
        console.log(
          `exactly-once zombie: worker-a stopped for ${stoppedMs} ms (past its 6 s session); worker-b had every task ` +
            `after ${takeoverMs} ms (group members then: ${members.length}); worker-a logged "${fenced[0]}" and kept ` +
            `running; owners per task: ${[...h.owners].map(([p, o]) => `${p}: ${o.join(",")}`).join("; ")}; ` +
            `worker-a outputs in the log but never committed (its aborted, fenced transactions): ${aborted}; ` +
            `read_committed: ${CountingAudit.describe(audit)}`
        )
        assertExactlyOnce(checked, sent.length)
        assert.isAbove(stoppedMs, 6_000, "worker-a was stopped for longer than its session timeout")
        assert.strictEqual(members.length, 1, "worker-a was out of the group when worker-b took over")
        for (const w of [a, b])
          assert.isTrue(
            committed.some((o) => o.worker === w.name),
            `${w.name} committed outputs`
          )
        // A zombie's transaction, had it committed, would repeat input offsets worker-b processed after the
        // takeover (it started from the last offsets worker-a committed): a duplicate, out of order.
        assert.strictEqual(audit.duplicates, 0, "no input offset committed twice")
        assert.strictEqual(audit.outOfOrder, 0, "no output partition goes back in its input's offsets")
      }).pipe(Effect.scoped),
    180_000
  )
})
