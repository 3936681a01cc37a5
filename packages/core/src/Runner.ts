/**
 * Runs a topology as a member of a consumer group, until it is interrupted or fails: the task runtime.
 *
 * The group's assignor gives this member whole tasks (partition i of every input, co-partitioned, sticky); each
 * task is an actor (internal/task.ts) with a bounded mailbox, its stores restored from their changelogs before its
 * first batch. Fetched batches go to their task's mailbox; tasks hand their outputs, dead letters and changelog
 * records to the delivery path, which commits an input offset only after all of it is durable.
 *
 * One owner at a time: before the member rejoins its group in a rebalance (`ConsumeHandlers.onRevoke`), every task
 * handles what it holds, makes it durable and the member commits; only then does the group hand a task to another
 * member. After the rebalance, tasks kept resume with their state warm, tasks lost are closed, new tasks restore.
 * A task that cannot finish within the bound abandons its in-flight work uncommitted (re-delivered: at-least-once).
 *
 * Shutdown (interruption, SIGINT/SIGTERM through `Main.runMain`) follows the same order: stop fetching, let the tasks
 * drain, commit, then leave. The whole stop is bounded by `shutdownTimeout` and reported as unclean when cut short.
 *
 * Nothing stalls silently: a task that fails for good, the client leaving its group for good, the commit fiber
 * dying, or a part of the worker registered with `Health` (a global table, a Redis loader) dying ends the worker
 * with that cause. A task busy on one step for longer than `stuckAfter` makes `/health` fail.
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Option, Scope, Stream } from "effect"
import * as Assignor from "./Assignor.ts"
import * as DeadLetter from "./DeadLetter.ts"
import * as Delivery from "./Delivery.ts"
import { ConfigInvalid, isRetryable, KafkaError, type SinkError } from "./Errors.ts"
import { type ComponentFailed, Health } from "./Health.ts"
import * as Task from "./internal/task.ts"
import { type GroupConsumer, Kafka } from "./Kafka.ts"
import type { RecordBatch, TopicPartition, TopicPartitionOffset } from "./Record.ts"
import * as Store from "./Store.ts"
import { Tables } from "./Tables.ts"
import type { Topology } from "./Topology.ts"

export interface RunOptions {
  /**
   * The consumer group, which is also the application id its changelog topics are named after
   * (`<group>-<store>-changelog`). Default: the topology's name.
   */
  readonly groupId?: string
  /** Where a partition without a committed offset starts. Default: the earliest offset. */
  readonly fromBeginning?: boolean
  /** Batches a task's mailbox holds before its partitions are paused. Default 4. */
  readonly mailboxCapacity?: number
  /**
   * The most input records a task processes in one step: what it holds, with the step's outputs, until they are
   * acknowledged. Default 5,000.
   */
  readonly maxStepRecords?: number
  /**
   * A task pauses its partitions once it holds this many input records not yet processed (in its mailbox and
   * buffers), and resumes them at half. Default 20,000.
   */
  readonly maxHeldRecords?: number
  /**
   * At-least-once (the default): outputs are durable before their input offsets are committed; a crash re-processes
   * what was not committed. Exactly-once: each task's outputs, dead letters, changelog records and input offsets
   * are committed in one Kafka transaction (Delivery.ts).
   */
  readonly guarantee?: Delivery.Guarantee
  /** Commit once this many records were processed since the last commit. Default 10,000. */
  readonly commitEveryRecords?: number
  /**
   * A task's stores hold their writes for up to half the commit interval (and until a commit by count), so that a
   * key written by many steps goes to the changelog once (Kafka Streams' record cache); the steps' offsets are
   * committable once the writes are sent. They are sent sooner once they hold this many keys. Default 50,000.
   */
  readonly maxHeldWrites?: number
  /** Commit at least this often while records are processed. Default 1 s; 100 ms under exactly-once. */
  readonly commitInterval?: Duration.Input
  /** The bound on a graceful stop (drain, flush, commit), and on a task's drain when a rebalance moves it. Default 5 s. */
  readonly shutdownTimeout?: Duration.Input
  /** A task busy on one step for longer than this is reported stuck by `/health`. Default 60 s. */
  readonly stuckAfter?: Duration.Input
  /** How long records of one input wait for another input of the task that has nothing buffered. Default 200 ms. */
  readonly taskIdle?: Duration.Input
  /** Where the tasks' stores live. Default: in memory (`Store.memory`); `Store.sqlite({ dir })` persists them. */
  readonly stateStore?: Store.BackendFactory
  readonly sessionTimeoutMs?: number
  readonly maxWaitMs?: number
  /** Flushes the topology's extra sinks before each commit. */
  readonly flush?: Effect.Effect<void, SinkError>
  /**
   * Called when a stop is not clean: a drain abandoned at the bound, a final commit that failed (`sluice run` passes
   * `Main.markUncleanStop`, so the process exits with code 3).
   */
  readonly onUncleanStop?: (reason: string) => void
}

interface Entry<E> {
  readonly actor: Task.TaskActor<E>
  readonly scope: Scope.Closeable
  /** Per input: the offset after the last record handed to the task. kafkajs re-fetches a kept partition from its
   * last commit after every rebalance, and what the task already has must not be processed twice. */
  readonly next: Map<string, number>
}

export type RunError<E> = E | KafkaError | SinkError | Store.StoreError | ComponentFailed | ConfigInvalid

/** Runs `topology` until interrupted; fails when a task fails for good (retries exhausted). */
export const run = <E, R>(
  topology: Topology<E, R>,
  options: RunOptions = {}
): Effect.Effect<never, RunError<E>, R | Kafka> =>
  Effect.scoped(
    Effect.gen(function* () {
      const kafka = yield* Kafka
      const health = yield* Health
      const context = yield* Effect.context<R>()
      const shutdownMs = Duration.toMillis(Duration.fromInputUnsafe(options.shutdownTimeout ?? "5 seconds"))
      const stuckMs = Duration.toMillis(Duration.fromInputUnsafe(options.stuckAfter ?? "60 seconds"))
      const idleMs = Duration.toMillis(Duration.fromInputUnsafe(options.taskIdle ?? "200 millis"))
      // The stores' writes are held for half the commit interval, so that the periodic commit finds them sent.
      const holdStateMs =
        Duration.toMillis(
          Duration.fromInputUnsafe(
            options.commitInterval ?? (options.guarantee === "exactly_once" ? "100 millis" : "1 second")
          )
        ) / 2
      const capacity = options.mailboxCapacity ?? 4
      const groupId = options.groupId ?? topology.name
      const backends = options.stateStore ?? Store.memory
      const inputTopics = topology.inputs.map((i) => i.topic)
      const isInput = new Set(inputTopics)

      // Tasks need co-partitioned inputs: task i is partition i of each.
      const described = yield* Effect.forEach(inputTopics, (topic) => kafka.describeTopic(topic))
      const counted = Assignor.taskCount(described.map((d) => ({ topic: d.name, partitions: d.partitions })))
      if ("mismatch" in counted)
        return yield* new ConfigInvalid({ reason: `topology ${topology.name}: ${counted.mismatch}` })
      const taskCount = counted.count
      const changelogOf = (store: string) => Store.changelogTopic(groupId, { name: store })

      // Room for a dead letter of any record an input accepts, with its error headers. A dead-letter topic that
      // already exists keeps its config; dead letters over its limit are truncated (DeadLetter.ts).
      const deadLetterSpecs = yield* Effect.forEach(topology.inputs, (input) =>
        Effect.map(kafka.maxRecordBytes(input.topic), (limit) => ({
          name: input.deadLetterTopic,
          partitions: taskCount,
          config: { "max.message.bytes": String(limit + DeadLetter.headroom) }
        }))
      )
      yield* kafka.createTopics([
        ...deadLetterSpecs,
        ...topology.stores.map((s) => ({
          name: changelogOf(s.name),
          partitions: taskCount,
          config: { "cleanup.policy": "compact" }
        })),
        ...topology.outputs
      ])
      const changelogs = yield* Effect.forEach(topology.stores, (s) => kafka.describeTopic(changelogOf(s.name)))
      for (const c of changelogs) {
        if (c.partitions !== taskCount) {
          return yield* new ConfigInvalid({
            reason: `changelog topic ${c.name} has ${c.partitions} partitions, but the inputs of ${topology.name} have ${taskCount}: delete it (its state is rebuilt from the inputs' history only by reprocessing) or use another --group`
          })
        }
      }

      // The outputs' limits, read now (a metadata round trip; on a busy cluster a list of every topic) rather than
      // by the first step, which would wait for them; a failure here is met again, and reported, there.
      yield* Effect.forEach(topology.outputs, (o) => Effect.ignore(kafka.maxRecordBytes(o.name)), { discard: true })

      const failed = yield* Deferred.make<never, RunError<E>>()
      const sinkToken = {}
      const ready = yield* Deferred.make<{ consumer: GroupConsumer; delivery: Delivery.Delivery }>()
      const tasks = new Map<number, Entry<E>>()
      const paused = new Map<number, Array<TopicPartition>>()
      // Not a child of the run's scope: tasks must outlive the fetcher's shutdown so they can drain.
      const tasksScope = yield* Scope.make()
      let phase: "joining" | "running" | "rebalancing" | "stopping" = "joining"
      let assignments = 0

      yield* health.register(
        `worker ${topology.name} (group ${groupId})`,
        Effect.map(Clock.currentTimeMillis, (now) => {
          const stuck: Array<string> = []
          for (const [task, entry] of tasks) {
            const since = entry.actor.busySince()
            if (since !== undefined && now - since > stuckMs) {
              stuck.push(
                `${entry.actor.partitions.map((tp) => `${tp.topic}:${task}`).join("+")} for ${Math.round((now - since) / 1000)} s`
              )
            }
          }
          const live = phase !== "stopping" && stuck.length === 0
          const detail =
            phase === "stopping"
              ? "stopping"
              : stuck.length > 0
                ? `tasks stuck on one step: ${stuck.join(", ")}`
                : assignments === 0
                  ? "joining the group"
                  : `${tasks.size} task(s) of ${taskCount} assigned`
          return { live, ready: phase !== "joining" && phase !== "stopping" && assignments > 0, detail }
        })
      )

      // The stores of this worker's tasks, by store name, for `/tables` (Tables.ts).
      const localStores = new Map(topology.stores.map((s) => [s.name, new Map<number, Store.TaskStoreBytes>()]))
      const tables = yield* Tables
      for (const spec of topology.stores) {
        yield* tables.register({
          store: spec.name,
          group: groupId,
          taskCount,
          local: () => localStores.get(spec.name)!,
          toJson: spec.toJson,
          ownerOf: (task) =>
            Effect.map(kafka.describeGroup(groupId), (members) => {
              const owner = members.find((m) => m.assignment.some((tp) => tp.partition === task))
              return owner === undefined ? undefined : `${owner.memberId} (${owner.clientId} at ${owner.host})`
            })
        })
      }

      /** A task's stores, opened on the configured backend and restored from the changelog's tail. */
      const openStores = (task: number, token: object) =>
        Effect.forEach(topology.stores, (spec) =>
          Effect.gen(function* () {
            const topic = changelogOf(spec.name)
            const backend = yield* Effect.acquireRelease(
              backends.open({ application: groupId, task, store: spec.name }),
              (b) => Effect.sync(() => b.close())
            )
            const store = spec.bind(token, backend, topic)
            const from = store.checkpoint() ?? 0
            const started = Date.now()
            let restored = 0
            // A changelog just created may not have a leader yet: a retryable failure restores again from the
            // checkpoint reached so far (the store has applied everything before it).
            yield* Effect.suspend(() =>
              Stream.runForEach(
                kafka.readPartition({ topic, partition: task, from: store.checkpoint() ?? from }),
                (batch) =>
                  Effect.sync(() => {
                    store.restoreBatch(batch)
                    restored += batch.records.length
                  })
              )
            ).pipe(Effect.retry({ schedule: Delivery.defaultRetry, while: isRetryable }))
            const local = localStores.get(spec.name)!
            yield* Effect.acquireRelease(
              Effect.sync(() => local.set(task, store)),
              () => Effect.sync(() => local.delete(task))
            )
            if (restored > 0) {
              yield* Effect.logInfo(
                `restored ${spec.name} of task ${task}: ${restored} changelog record(s) from offset ${from} in ${Date.now() - started} ms`
              )
            }
            return store
          })
        )

      const retryable = { schedule: Delivery.defaultRetry, while: isRetryable }
      const partitionsOf = (task: number) => inputTopics.map((topic): TopicPartition => ({ topic, partition: task }))

      /**
       * Where a new task starts: the positions the topology keeps outside Kafka (`startOffsets`), or under
       * exactly-once the group's committed offsets as they are once the task's producer has fenced its previous owner
       * (whose last transaction is then committed or aborted for good), or the consumer's own position.
       */
      const startPositions = (task: number, delivery: Delivery.Delivery) =>
        topology.startOffsets !== undefined
          ? Effect.retry(
              Effect.suspend(() => topology.startOffsets!(task, partitionsOf(task))),
              retryable
            )
          : delivery.guarantee === "exactly_once"
            ? Effect.forEach(inputTopics, (topic) =>
                Effect.retry(kafka.committedOffsets(groupId, topic), retryable).pipe(
                  Effect.map((offsets) => offsets.filter((o) => o.partition === task))
                )
              ).pipe(Effect.map((perTopic) => perTopic.flat()))
            : Effect.succeed<ReadonlyArray<TopicPartitionOffset>>([])

      /** Starts a task; `undefined` when it could not start (the worker then fails with the cause). */
      const start = Effect.fnUntraced(function* (task: number) {
        const { consumer, delivery } = yield* Deferred.await(ready)
        const scope = yield* Scope.fork(tasksScope)
        const started = yield* Effect.exit(
          Effect.gen(function* () {
            // First the producer (under exactly-once this fences the previous owner), then the position to start
            // from, then the stores' restore (in the task, read_committed).
            const taskDelivery = yield* delivery.open(inputTopics[0]!, task)
            const from = yield* startPositions(task, delivery)
            const actor = yield* Task.make(task, topology, taskDelivery, {
              application: groupId,
              capacity,
              retry: Delivery.defaultRetry,
              idleMs,
              maxStepRecords: options.maxStepRecords ?? 5_000,
              maxHeldRecords: options.maxHeldRecords ?? 20_000,
              holdStateMs,
              maxHeldWrites: options.maxHeldWrites ?? 50_000,
              onDrained: Effect.suspend(() => {
                const tps = paused.get(task)
                if (tps === undefined) return Effect.void
                paused.delete(task)
                return consumer.resume(tps)
              }),
              maxRecordBytes: kafka.maxRecordBytes,
              openStores
            })
            return { actor, from }
          }).pipe(Scope.provide(scope), Effect.provideContext(context))
        )
        if (Exit.isFailure(started)) {
          yield* Scope.close(scope, Exit.void)
          if (!Cause.hasInterruptsOnly(started.cause)) yield* Deferred.failCause(failed, started.cause)
          return undefined
        }
        const { actor, from } = started.value
        const entry: Entry<E> = { actor, scope, next: new Map() }
        if (from.length > 0) {
          yield* consumer.seek(from)
          for (const o of from) entry.next.set(o.topic, o.offset)
          yield* Effect.logInfo(
            `task ${task} starts from ${from.map((o) => `${o.topic}[${o.partition}]@${o.offset}`).join(", ")}`
          )
        }
        // A task that fails for good (an error or a defect) fails the worker: its offsets stay uncommitted. A task
        // whose producer was fenced belongs to another member now: it is retired, and the worker goes on.
        yield* Effect.forkIn(
          actor.await.pipe(
            Effect.catchCause((cause) => {
              if (Cause.hasInterruptsOnly(cause)) return Effect.void
              const error = Cause.findErrorOption(cause)
              if (Option.isSome(error) && isFenced(error.value)) return retireFenced(task, entry, error.value)
              return Deferred.failCause(failed, cause)
            })
          ),
          tasksScope
        )
        tasks.set(task, entry)
        return entry
      })

      // Tasks retired because their producer was fenced, until the next assignment: their batches are dropped and
      // their partitions paused, so that this member does not take the task back from its new owner.
      const fenced = new Set<number>()
      const retireFenced = Effect.fnUntraced(function* (task: number, entry: Entry<E>, error: KafkaError) {
        const { consumer } = yield* Deferred.await(ready)
        if (tasks.get(task) === entry) tasks.delete(task)
        paused.delete(task)
        fenced.add(task)
        yield* consumer.pause(entry.actor.partitions)
        yield* Scope.close(entry.scope, Exit.void)
        yield* Effect.logWarning(
          `task ${task} retired: its producer was fenced (${error.reason.message}); another member owns it now, its state was dropped and its uncommitted transaction aborted; this worker goes on with its other tasks`
        )
      })

      /** A task moves away or the worker stops: let it finish within the bound, then release its partitions. */
      const retire = Effect.fnUntraced(function* (task: number, entry: Entry<E>, boundMs: number) {
        const { delivery } = yield* Deferred.await(ready)
        tasks.delete(task)
        paused.delete(task)
        yield* entry.actor.end
        const drained = yield* Effect.exit(entry.actor.await).pipe(Effect.timeoutOption(boundMs))
        if (Option.isNone(drained))
          yield* Effect.logWarning(`task ${task}: drain timed out; in-flight work is re-delivered`)
        yield* Scope.close(entry.scope, Exit.void)
        // Commits what the task completed, after writing the sinks' buffers; what is left of them is not its any more.
        yield* delivery.release(entry.actor.partitions)
        for (const sink of sinks) sink.forget(task)
      })

      // Before the member rejoins: every task finishes what it holds and the member commits, so no task is ever
      // processed by two members at once. Kept tasks go on afterwards with their state.
      const onRevoke = Effect.gen(function* () {
        const { delivery } = yield* Deferred.await(ready)
        if (phase === "stopping") return
        phase = "rebalancing"
        const entries = [...tasks.values()]
        const suspended = yield* Effect.forEach(entries, (e) => e.actor.suspend, {
          concurrency: "unbounded",
          discard: true
        }).pipe(Effect.timeoutOption(shutdownMs))
        if (Option.isNone(suspended)) {
          // Whatever is still in flight must not be committed later by a member that no longer owns it.
          yield* Effect.logWarning(
            "rebalance: tasks did not finish within the bound; their in-flight work is abandoned"
          )
          yield* Effect.forEach([...tasks], ([task, entry]) => retire(task, entry, 0), { discard: true })
        }
        yield* delivery.commit.pipe(
          Effect.catch((e) =>
            Effect.logWarning(`commit before rebalance failed (retried at the next commit): ${e.message}`)
          )
        )
      })

      const onAssignment = (assignment: ReadonlyArray<TopicPartition>) =>
        Effect.gen(function* () {
          const { consumer, delivery } = yield* Deferred.await(ready)
          if (phase === "stopping") return
          // A group shared with members that read other topics (the same --group with another --topic-prefix)
          // may hand this member their partitions: it must not decode them as its own input. They stay paused
          // and unprocessed, so say so loudly.
          const foreign = assignment.filter((tp) => !isInput.has(tp.topic))
          const own = foreign.length === 0 ? assignment : assignment.filter((tp) => isInput.has(tp.topic))
          if (foreign.length > 0) {
            yield* consumer.pause(foreign)
            yield* Effect.logWarning(
              `group ${groupId} assigned this member partitions of topics ${topology.name} does not read ` +
                `(${[...new Set(foreign.map((tp) => tp.topic))].join(", ")}): another member of the group subscribes ` +
                "to other topics, so those partitions are not processed by anyone. Give each topology its own group."
            )
          }
          const assigned = new Set(own.map((tp) => tp.partition))
          const incomplete = [...assigned].filter(
            (t) => own.filter((tp) => tp.partition === t).length < inputTopics.length
          )
          if (incomplete.length > 0) {
            yield* Effect.logWarning(
              `the assignment is not co-partitioned (tasks ${incomplete.join(",")} lack some of their inputs): the group's other members do not use Sluice's task assignor`
            )
          }
          const revoked = [...tasks].filter(([task]) => !assigned.has(task))
          yield* Effect.forEach(revoked, ([task, entry]) => retire(task, entry, shutdownMs), {
            concurrency: "unbounded",
            discard: true
          })
          // Tasks kept across the rebalance: commit what completed (records the tasks already hold are filtered out
          // in onBatch when the client re-fetches them).
          yield* delivery.commit.pipe(
            Effect.catch((e) =>
              Effect.logWarning(`commit after rebalance failed (retried at the next commit): ${e.message}`)
            )
          )
          // Fenced tasks given back to this member start again from their last commit.
          const unfenced = [...fenced].filter((task) => assigned.has(task))
          fenced.clear()
          if (unfenced.length > 0) yield* consumer.resume(unfenced.flatMap(partitionsOf))
          for (const task of [...assigned].sort((a, b) => a - b)) if (!tasks.has(task)) yield* start(task)
          assignments++
          phase = "running"
          if (assigned.size === 0) {
            yield* Effect.logWarning(
              `assigned no partition of ${inputTopics.join(", ")} (${taskCount} partition(s)) in group ${groupId}: ` +
                "the group has more members than partitions, or its other members take them all"
            )
          } else {
            yield* Effect.logInfo(
              `assigned ${assigned.size} partition(s): ${[...assigned].sort((a, b) => a - b).join(",")} of ${inputTopics.join(", ")}`
            )
          }
        })

      const onBatch = (batch: RecordBatch) =>
        Effect.gen(function* () {
          const { consumer } = yield* Deferred.await(ready)
          if (phase === "stopping" || !isInput.has(batch.topic) || fenced.has(batch.partition)) return
          const known = tasks.get(batch.partition)
          const entry = known ?? (yield* start(batch.partition))
          if (entry === undefined) return
          // A task started here may have moved the fetch position (`seek`): this batch was fetched before it.
          if (known === undefined && entry.next.size > 0) return
          const last = batch.records[batch.records.length - 1]
          const next = entry.next.get(batch.topic) ?? 0
          if (last === undefined || last.offset < next) return
          const fresh =
            batch.records[0]!.offset >= next
              ? batch
              : { ...batch, records: batch.records.filter((r) => r.offset >= next) }
          entry.next.set(batch.topic, last.offset + 1)
          if (entry.actor.isFull()) {
            const tp = { topic: batch.topic, partition: batch.partition }
            const list = paused.get(batch.partition) ?? []
            if (!list.some((p) => p.topic === tp.topic)) {
              list.push(tp)
              paused.set(batch.partition, list)
              yield* consumer.pause([tp])
            }
          }
          yield* entry.actor.offer(fresh)
        })

      // Before the consumer, so that they close after it: the last commit writes their buffers first.
      const sinks = yield* Effect.forEach(topology.sinks, (sink) =>
        sink.start(sinkToken, {
          kafka,
          application: topology.name,
          deadLetterTopic: (topic) =>
            topology.inputs.find((i) => i.topic === topic)?.deadLetterTopic ?? DeadLetter.topicFor(topic)
        })
      ).pipe(Effect.provideContext(context))

      const consumer = yield* kafka.consume(
        {
          groupId,
          topics: inputTopics,
          fromBeginning: options.fromBeginning ?? true,
          ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
          ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs })
        },
        { onBatch, onAssignment, onRevoke }
      )
      const commitOptions = {
        sinks,
        ...(options.commitEveryRecords === undefined ? {} : { commitEveryRecords: options.commitEveryRecords }),
        ...(options.commitInterval === undefined ? {} : { commitInterval: options.commitInterval }),
        ...(options.flush === undefined ? {} : { flush: options.flush })
      }
      const delivery =
        options.guarantee === "exactly_once"
          ? Delivery.exactlyOnce(kafka, { groupId, ...commitOptions })
          : yield* Delivery.atLeastOnce(kafka, consumer, commitOptions)

      yield* Deferred.succeed(ready, { consumer, delivery })

      // Registered after the consumer, so it runs before the consumer leaves the group. The whole stop fits in
      // `shutdownTimeout`: a stuck task (retrying an outage) must not keep the process from committing what is
      // done and leaving. The drain gets 60% of it, the final commit what is left.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const started = Date.now()
          const remaining = () => Math.max(0, shutdownMs - (Date.now() - started))
          const unclean = (reason: string) =>
            Effect.suspend(() => {
              options.onUncleanStop?.(reason)
              return Effect.logWarning(`shutdown: ${reason}`)
            })
          phase = "stopping"
          const entries = [...tasks.values()]
          // Ending the mailboxes first lets a fetcher parked in `offer` finish as its task drains.
          yield* Effect.forEach(entries, (e) => e.actor.end, { discard: true })
          const drained = yield* Effect.all(
            [consumer.stop, Effect.forEach(entries, (e) => Effect.exit(e.actor.await), { discard: true })],
            { concurrency: "unbounded" }
          ).pipe(Effect.timeoutOption(shutdownMs * 0.6))
          if (Option.isNone(drained)) yield* unclean("the drain timed out; in-flight batches are re-delivered")
          // Interrupts tasks still busy; their mailboxes shut down, which releases any fetcher still in `offer`.
          yield* Scope.close(tasksScope, Exit.void)
          yield* consumer.stop.pipe(Effect.timeoutOption(Math.min(1_000, remaining() * 0.25)))
          const committed = yield* delivery.commit.pipe(
            Effect.timeoutOption(remaining()),
            Effect.catch((e) => Effect.as(unclean(`the final commit failed: ${e.message}`), Option.some(undefined)))
          )
          if (Option.isNone(committed)) yield* unclean("the final commit timed out")
          yield* Effect.logInfo(`stopped ${topology.name} in ${Date.now() - started} ms`)
        })
      )
      // A task failing for good, the client leaving the group for good, the commit fiber dying or a part of the
      // worker dying ends the worker.
      return yield* Effect.raceAllFirst([
        Deferred.await(failed),
        consumer.failed,
        delivery.failed,
        health.failures,
        ...sinks.map((s) => s.failed)
      ])
    })
  )

const isFenced = (error: unknown): error is KafkaError => error instanceof KafkaError && error.reason._tag === "Fenced"
