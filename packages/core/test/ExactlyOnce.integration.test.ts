/**
 * Exactly-once against the real broker, when a transaction does not commit: the runner in this process
 * (`guarantee: "exactly_once"`) over a small echo topology (each input record becomes one output naming its input
 * partition and offset, task i writing output partition i), made to fail on purpose.
 *
 * The invariant every case checks, with a reader that shares no code with Sluice (support/independentRead.ts):
 * what a read_committed reader sees of the output is exactly the inputs below the group's committed offsets, each
 * once, in order. A transaction either commits its outputs and its input offsets together or neither; after a
 * restart, every input is in the output exactly once. The read_uncommitted reader shows what the log holds besides:
 * the records of an aborted transaction, which were written and must stay invisible.
 */
import { assert, layer } from "@effect/vitest"
import { Data, Effect, Exit, Fiber } from "effect"
import * as Batch from "../src/Batch.ts"
import * as Codec from "../src/Codec.ts"
import { Kafka } from "../src/Kafka.ts"
import * as KafkaJs from "../src/KafkaJs.ts"
import { bytes, type ConsumerRecord, type ProducerRecord, text } from "../src/Record.ts"
import * as Runner from "../src/Runner.ts"
import * as Topic from "../src/Topic.ts"
import * as Topology from "../src/Topology.ts"
import { brokers, connectRetry, unique } from "./support/brokers.ts"
import * as IndependentRead from "./support/independentRead.ts"

const partitions = 2

/** A processor failure that a retry can fix: the task retries the batch on its schedule. */
class Flaky extends Data.TaggedError("Flaky")<{ readonly attempt: number }> {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * How the echo topology misbehaves, switched by the test while it runs:
 * - `poison`: a record whose value is "poison" also emits a record without a key to a compacted topic, which the
 *   broker refuses (INVALID_RECORD) after it has appended the rest of the transaction's records: the transaction
 *   fails for good, part of it in the log.
 * - `die`: a record whose value is "die" makes the processor die (a defect), steps of the open transaction pending.
 * - `flaky`: a batch with a record whose value is "flaky" fails retryably `flakyLeft` times, then succeeds.
 */
interface Behaviour {
  mode: "none" | "poison" | "die" | "flaky"
  flakyLeft: number
  /** Input records processed (successful batches only). */
  processed: number
}

/** Fresh topics, group and topology; the input topic is created. */
const deployment = Effect.gen(function* () {
  const names = { in: unique("eos-in"), out: unique("eos-out"), bad: unique("eos-bad") }
  const input = Topic.make(names.in, { key: Codec.string, value: Codec.string })
  const out = Topic.make(names.out, { key: Codec.string, value: Codec.string })
  const bad = Topic.raw(names.bad)
  const behaviour: Behaviour = { mode: "none", flakyLeft: 0, processed: 0 }
  const topology = Topology.make({
    name: names.in,
    input,
    outputs: [
      { name: names.out, partitions },
      { name: names.bad, partitions: 1, config: { "cleanup.policy": "compact" } }
    ],
    process: (records, ctx) =>
      Effect.suspend(() => {
        if (behaviour.mode === "die" && records.some((r) => r.value === "die"))
          return Effect.die(new Error("the processor died mid-transaction"))
        if (behaviour.mode === "flaky" && behaviour.flakyLeft > 0 && records.some((r) => r.value === "flaky")) {
          behaviour.flakyLeft--
          return Effect.fail(new Flaky({ attempt: behaviour.flakyLeft }))
        }
        behaviour.processed += records.length
        return Effect.succeed(
          Batch.forEach(records, (r, o) => {
            o.emit(out, r.key, `${r.record.partition}@${r.record.offset}`, { partition: ctx.task })
            if (behaviour.mode === "poison" && r.value === "poison") o.emit(bad, null, bytes("a record without a key"))
          })
        )
      })
  })
  const group = `${names.in}-group`
  yield* Kafka.use((kafka) => kafka.createTopics([{ name: names.in, partitions }]))
  return { names, topology, behaviour, group }
})
type Deployment = Effect.Success<typeof deployment>

/** `perPartition` records for each partition, values `v<n>` except where `special` says otherwise. */
const records = (
  d: Deployment,
  perPartition: number,
  from: number,
  special: (partition: number, n: number) => string | undefined = () => undefined
): Array<ProducerRecord> =>
  Array.from({ length: partitions * perPartition }, (_, i) => {
    const partition = i % partitions
    const n = from + Math.floor(i / partitions)
    return {
      topic: d.names.in,
      partition,
      key: bytes(`k${n % 7}`),
      value: bytes(special(partition, n) ?? `v${n}`)
    }
  })

const send = (rs: ReadonlyArray<ProducerRecord>) => Kafka.use((kafka) => kafka.send(rs))

/** Polls (real time) until `check` holds, failing with `what` after `timeoutMs`. */
const waitFor = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeoutMs = 60_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline) return assert.fail(`timed out waiting until ${what}`)
      yield* Effect.sleep("100 millis")
    }
  })

const committed = (d: Deployment) =>
  Kafka.use((kafka) => kafka.committedOffsets(d.group, d.names.in)).pipe(
    Effect.map((offsets) => new Map(offsets.map((o) => [o.partition, o.offset])))
  )

const committedAtLeast = (d: Deployment, each: number) =>
  Effect.map(committed(d), (c) => Array.from({ length: partitions }, (_, p) => c.get(p) ?? 0).every((o) => o >= each))

/** The input coordinates each output names, per output partition, in output order. */
const named = (outputs: ReadonlyArray<ConsumerRecord>) => {
  const byPartition = new Map<number, Array<string>>()
  for (const o of outputs) {
    const list = byPartition.get(o.partition) ?? []
    list.push(text(o.value ?? new Uint8Array()))
    byPartition.set(o.partition, list)
  }
  return byPartition
}

/**
 * The invariant: a read_committed reader sees exactly the inputs below the committed offsets, each once, in order;
 * returns what the log holds besides (records of aborted transactions).
 */
const assertVisibleIsCommitted = (d: Deployment, context: string) =>
  Effect.gen(function* () {
    const offsets = yield* committed(d)
    const visible = named(yield* IndependentRead.readTopic(brokers, d.names.out, "read_committed"))
    const inLog = yield* IndependentRead.readTopic(brokers, d.names.out, "read_uncommitted")
    for (let p = 0; p < partitions; p++) {
      const expected = Array.from({ length: offsets.get(p) ?? 0 }, (_, offset) => `${p}@${offset}`)
      assert.deepStrictEqual(
        visible.get(p) ?? [],
        expected,
        `${context}: partition ${p}'s committed outputs are exactly its inputs below the committed offset ${offsets.get(p) ?? "(none)"}`
      )
    }
    const visibleCount = [...visible.values()].reduce((n, l) => n + l.length, 0)
    return { committed: offsets, visible: visibleCount, aborted: inLog.length - visibleCount }
  })

const describeState = (s: { committed: ReadonlyMap<number, number>; visible: number; aborted: number }) =>
  `committed ${[...s.committed].map(([p, o]) => `${p}@${o}`).join(" ") || "nothing"}, ${s.visible} visible, ${s.aborted} aborted in the log`

const exactlyOnce = (d: Deployment, options: Partial<Runner.RunOptions> = {}) =>
  Runner.run(d.topology, { groupId: d.group, guarantee: "exactly_once", ...options })

/** Restarts the runner without the failure and lets it process every input; then all must be there exactly once. */
const restartToEnd = (d: Deployment, total: number) =>
  Effect.gen(function* () {
    d.behaviour.mode = "none"
    const fiber = yield* Effect.forkChild(exactlyOnce(d))
    yield* waitFor("the restarted runner has committed every input", committedAtLeast(d, total / partitions))
    yield* Fiber.interrupt(fiber)
    const state = yield* assertVisibleIsCommitted(d, "after the restart")
    assert.strictEqual(state.visible, total, "every input exactly once")
    return state
  })

const Live = KafkaJs.layer({ brokers, connectRetry, clientId: "sluice-eos-it" })

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("exactly-once when a transaction fails", (it) => {
  it.effect(
    "a transaction the broker fails after appending part of it is aborted: none of it visible read_committed, all re-processed exactly once after a restart",
    () =>
      Effect.gen(function* () {
        const d = yield* deployment
        d.behaviour.mode = "poison"
        const fiber = yield* Effect.forkChild(exactlyOnce(d))
        yield* send(records(d, 100, 0))
        yield* waitFor("the first 100 records of each partition are committed", committedAtLeast(d, 100))
        // The next transaction of task 0 holds the poison: its outputs reach the log, the keyless record does not.
        yield* send(records(d, 100, 100, (p, n) => (p === 0 && n === 150 ? "poison" : undefined)))
        const exit = yield* Fiber.await(fiber).pipe(Effect.timeout("60 seconds"))
        assert.isTrue(Exit.isFailure(exit), "the worker fails: the broker refused a record for good")
        const failed = yield* assertVisibleIsCommitted(d, "after the failed transaction")
        assert.strictEqual(failed.committed.get(0), 100, "task 0's failed transaction committed no offset")
        assert.isAbove(failed.aborted, 0, "the failed transaction had appended records to the log before it failed")
        const restarted = yield* restartToEnd(d, 400)
        console.log(
          `failed transaction: worker exit ${Exit.isFailure(exit) ? "failure" : "success"}; then ${describeState(failed)}; after the restart ${describeState(restarted)}`
        )
      })
  )

  it.effect(
    "a processor that dies with steps of the open transaction pending: none of them visible, the restart processes every input exactly once",
    () =>
      Effect.gen(function* () {
        const d = yield* deployment
        d.behaviour.mode = "die"
        // Nothing commits on its own: every step waits in the open transaction.
        const fiber = yield* Effect.forkChild(
          exactlyOnce(d, { commitInterval: "1 hour", commitEveryRecords: 1_000_000 })
        )
        for (let i = 0; i < 3; i++) {
          yield* send(records(d, 50, i * 50))
          yield* waitFor(
            `batch ${i + 1} is processed`,
            Effect.sync(() => d.behaviour.processed >= (i + 1) * 100)
          )
        }
        yield* send(records(d, 50, 150, (p, n) => (p === 0 && n === 175 ? "die" : undefined)))
        const exit = yield* Fiber.await(fiber).pipe(Effect.timeout("60 seconds"))
        assert.isTrue(Exit.isFailure(exit), "the worker fails with the defect")
        const died = yield* assertVisibleIsCommitted(d, "after the defect")
        assert.isUndefined(
          died.committed.get(0),
          "task 0 committed nothing: its steps were all in the open transaction"
        )
        const restarted = yield* restartToEnd(d, 400)
        console.log(
          `processor defect after ${d.behaviour.processed} records processed in open transactions: ${describeState(died)}; after the restart ${describeState(restarted)}`
        )
      })
  )

  it.effect(
    "retryable processor failures inside an open transaction are retried in it: every input exactly once, nothing aborted",
    () =>
      Effect.gen(function* () {
        const d = yield* deployment
        d.behaviour.mode = "flaky"
        d.behaviour.flakyLeft = 3
        const fiber = yield* Effect.forkChild(exactlyOnce(d, { commitInterval: "2 seconds" }))
        yield* send(records(d, 100, 0))
        yield* waitFor(
          "the first batch is processed",
          Effect.sync(() => d.behaviour.processed >= 200)
        )
        yield* send(records(d, 100, 100, (p, n) => (p === 1 && n === 120 ? "flaky" : undefined)))
        yield* waitFor("every input is committed", committedAtLeast(d, 200))
        yield* Fiber.interrupt(fiber)
        const state = yield* assertVisibleIsCommitted(d, "after the retries")
        console.log(`retried ${3 - d.behaviour.flakyLeft} time(s): ${describeState(state)}`)
        assert.strictEqual(d.behaviour.flakyLeft, 0, "the flaky batch failed 3 times")
        assert.strictEqual(state.visible, 400)
        assert.strictEqual(state.aborted, 0, "a processor retry never reaches the transaction")
      })
  )
})
