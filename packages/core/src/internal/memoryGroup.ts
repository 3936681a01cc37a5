/**
 * Consumer groups of the in-memory broker: membership, Sluice's task assignor (co-partitioned and sticky, the
 * kafkajs layer's too), eager rebalances with a revoke phase, and one fetcher fiber per assigned partition.
 *
 * A rebalance runs in a fiber of the broker's scope, serialized per group by a semaphore. It first quiesces every
 * member (no new batch starts, in-flight `onBatch` calls finish, fetchers end), then runs the `onRevoke` of every
 * member that owns partitions (finish, make durable, commit), then assigns, then runs every member's
 * `onAssignment`, and only then starts the new generation's fetchers. `consume` does not wait for it: the
 * handlers may wait for `consume` to return (the runner does), as with kafkajs' `run`.
 *
 * Commits must come from the partition's owner. The one exception is the revoke window: while the rebalance runs
 * the `onAssignment` handlers, a member may still commit the partitions it just lost. The new owners start
 * fetching only afterwards, from those commits.
 *
 * Group state is mutated only inside synchronous steps, which are atomic in the single-threaded runtime; a fetcher
 * decides to deliver and marks its batch in flight in one such step, so a quiesce can never miss a batch.
 *
 * Fetchers read with isolation read_committed: only below the partition's last stable offset, skipping markers and
 * aborted records (a range with nothing else is passed over without a delivery, as kafkajs does). `seek` moves a
 * fetcher's position; a seek from `onAssignment` sets where the new generation's fetchers start.
 */
import { Cause, type Context, Deferred, Effect, Exit, Fiber, Scope, Semaphore } from "effect"
import { taskAssign } from "../Assignor.ts"
import { Closed, KafkaError, Rebalance } from "../Errors.ts"
import type { ConsumeHandlers, ConsumeOptions, GroupConsumer } from "../Kafka.ts"
import { type RecordBatch, type TopicPartition, type TopicPartitionOffset, tpKey } from "../Record.ts"
import { batchOver, type PartitionLog, stableEnd, type TopicLog, wake } from "./memoryLog.ts"

/** What groups need from the broker. */
export interface Env {
  readonly topics: ReadonlyMap<string, TopicLog>
  readonly groups: Map<string, Group>
  /** The broker's scope: rebalances run in it, member scopes are children of it. */
  readonly scope: Scope.Scope
  readonly maxBatchSize: number
}

export interface Group {
  readonly id: string
  readonly members: Map<string, Member>
  readonly committed: Map<string, number>
  readonly lock: Semaphore.Semaphore
  generation: number
  rebalanceQueued: boolean
  /** Completed and replaced on every commit, for `MemoryBroker.awaitCommitted`. */
  commitSignal: Deferred.Deferred<void>
  nextMember: number
}

interface Member {
  readonly id: string
  readonly seq: number
  readonly options: ConsumeOptions
  readonly handlers: ConsumeHandlers
  /** The context of the fiber that called `consume`: handlers run with its services (clock, logger, tracer). */
  readonly context: Context.Context<never>
  /** Fetchers and `onAssignment` calls run here, so leaving interrupts all of them. */
  readonly scope: Scope.Closeable
  readonly paused: Set<string>
  assignment: ReadonlyArray<TopicPartition>
  owned: ReadonlySet<string>
  /** Partitions the current rebalance took away, still committable until the new generation starts fetching. */
  revoked: ReadonlySet<string>
  /** Seeks of owned partitions that have no fetcher yet (from `onAssignment`): where their fetchers start. */
  readonly seeks: Map<string, number>
  generation: number
  fetchers: Array<Fetcher>
  stopped: boolean
  left: boolean
}

interface Fetcher {
  readonly key: string
  readonly log: PartitionLog
  /** The offset the next batch starts at. */
  position: number
  /** Counts `seek`s: a batch taken before one is not delivered, and does not move `position` once delivered. */
  seeks: number
  halted: boolean
  inFlight: Deferred.Deferred<void> | undefined
  /** Completed by `resume`; a paused fetcher waits on it rather than on new data. */
  wake: Deferred.Deferred<void>
  fiber: Fiber.Fiber<void> | undefined
}

const none: ReadonlySet<string> = new Set()

export interface MemberInfo {
  readonly memberId: string
  readonly topics: ReadonlyArray<string>
  readonly assignment: ReadonlyArray<TopicPartition>
  /** The generation this member's assignment belongs to. */
  readonly generation: number
  readonly stopped: boolean
}

export const getGroup = (env: Env, groupId: string): Group => {
  const existing = env.groups.get(groupId)
  if (existing !== undefined) return existing
  const group: Group = {
    id: groupId,
    members: new Map(),
    committed: new Map(),
    lock: Semaphore.makeUnsafe(1),
    generation: 0,
    rebalanceQueued: false,
    commitSignal: Deferred.makeUnsafe<void>(),
    nextMember: 0
  }
  env.groups.set(groupId, group)
  return group
}

export const membersOf = (group: Group): ReadonlyArray<MemberInfo> =>
  [...group.members.values()]
    .sort((a, b) => a.seq - b.seq)
    .map((m) => ({
      memberId: m.id,
      topics: m.options.topics,
      assignment: m.assignment,
      generation: m.generation,
      stopped: m.stopped
    }))

/** Joins the group and returns at once; the rebalance that follows delivers the first assignment. */
export const consume = Effect.fnUntraced(function* (env: Env, options: ConsumeOptions, handlers: ConsumeHandlers) {
  const scope = yield* Effect.scope
  const context = yield* Effect.context<never>()
  const group = getGroup(env, options.groupId)
  const member: Member = {
    id: `${options.groupId}-${++group.nextMember}`,
    seq: group.nextMember,
    options,
    handlers,
    context,
    // A child of the broker's scope rather than the caller's: `leave` closes it itself, after marking the member
    // gone, whatever the caller's scope's finalizer strategy is.
    scope: yield* Scope.fork(env.scope),
    paused: new Set(),
    assignment: [],
    owned: new Set(),
    revoked: none,
    seeks: new Map(),
    generation: 0,
    fetchers: [],
    stopped: false,
    left: false
  }
  // Registered before joining, so an interruption from here on still leaves the group.
  yield* Scope.addFinalizer(scope, leave(env, group, member))
  group.members.set(member.id, member)
  yield* requestRebalance(env, group)
  return handle(group, member)
})

const handle = (group: Group, member: Member): GroupConsumer => ({
  commit: (offsets: ReadonlyArray<TopicPartitionOffset>) =>
    Effect.suspend(() => {
      if (member.left) {
        return Effect.fail(
          new KafkaError({
            operation: "commit",
            reason: new Closed({ message: `member ${member.id} has left group ${group.id}` })
          })
        )
      }
      for (const o of offsets) {
        const key = tpKey(o.topic, o.partition)
        if (!member.owned.has(key) && !member.revoked.has(key)) {
          return Effect.fail(
            commitError(
              `${o.topic}[${o.partition}] is not assigned to member ${member.id} of group ${group.id} (the group rebalanced)`
            )
          )
        }
      }
      commitOffsets(group, offsets)
      return Effect.void
    }),
  pause: (partitions) =>
    Effect.sync(() => {
      for (const tp of partitions) member.paused.add(tpKey(tp.topic, tp.partition))
    }),
  resume: (partitions) =>
    Effect.sync(() => {
      const keys = new Set(partitions.map((tp) => tpKey(tp.topic, tp.partition)))
      for (const key of keys) member.paused.delete(key)
      for (const fetcher of member.fetchers) {
        if (!keys.has(fetcher.key)) continue
        const wake = fetcher.wake
        fetcher.wake = Deferred.makeUnsafe<void>()
        Deferred.doneUnsafe(wake, Effect.void)
      }
    }),
  seek: (offsets) =>
    Effect.sync(() => {
      for (const o of offsets) {
        const key = tpKey(o.topic, o.partition)
        if (!member.owned.has(key)) continue
        const offset = Math.max(0, o.offset)
        const fetcher = member.fetchers.find((f) => f.key === key)
        if (fetcher === undefined) {
          member.seeks.set(key, offset)
          continue
        }
        fetcher.position = offset
        fetcher.seeks++
        // A fetcher idle at the end waits on the log: a seek back must get it going.
        wake(fetcher.log)
      }
    }),
  stop: Effect.suspend(() => {
    member.stopped = true
    return quiesce(member)
  }),
  // The in-memory broker never drops a member on its own.
  failed: Effect.never
})

/** Writes committed offsets (from a member or a transaction) and wakes `MemoryBroker.awaitCommitted`. */
export const commitOffsets = (group: Group, offsets: ReadonlyArray<TopicPartitionOffset>): void => {
  for (const o of offsets) group.committed.set(tpKey(o.topic, o.partition), o.offset)
  const signal = group.commitSignal
  group.commitSignal = Deferred.makeUnsafe<void>()
  Deferred.doneUnsafe(signal, Effect.void)
}

const commitError = (message: string) => new KafkaError({ operation: "commit", reason: new Rebalance({ message }) })

/** Leaving: no more deliveries, the member's fibers end, and the others rebalance without waiting for it. */
const leave = Effect.fnUntraced(function* (env: Env, group: Group, member: Member) {
  member.left = true
  yield* Scope.close(member.scope, Exit.void)
  group.members.delete(member.id)
  member.owned = none
  yield* requestRebalance(env, group)
})

/** Topics were created or deleted: groups subscribed to one of them rebalance, as a metadata change makes them. */
export const topicsChanged = (env: Env, names: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.forEach(
    [...env.groups.values()].filter((g) =>
      [...g.members.values()].some((m) => !m.left && m.options.topics.some((t) => names.includes(t)))
    ),
    (group) => requestRebalance(env, group),
    { discard: true }
  )

/** Requests that arrive while one is queued and not yet started are served by it. */
const requestRebalance = (env: Env, group: Group): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (group.rebalanceQueued) return Effect.void
    group.rebalanceQueued = true
    return Effect.forkIn(group.lock.withPermits(1)(rebalance(env, group)), env.scope).pipe(Effect.asVoid)
  })

const rebalance = Effect.fnUntraced(function* (env: Env, group: Group) {
  group.rebalanceQueued = false
  yield* Effect.forEach(group.members.values(), quiesce, { concurrency: "unbounded", discard: true })
  // Members that joined during the quiesce are included: they have no fetchers to stop.
  const active = [...group.members.values()].filter((m) => !m.stopped && !m.left).sort((a, b) => a.seq - b.seq)
  // Before anyone's assignment changes, every member that owns partitions finishes its work on them (Kafka's
  // onPartitionsRevoked, before the JoinGroup): no partition is ever worked on by two members at once.
  yield* Effect.forEach(
    active.filter((m) => m.owned.size > 0 && m.handlers.onRevoke !== undefined),
    (m) => runIn(m, "onRevoke", m.handlers.onRevoke!),
    { concurrency: "unbounded", discard: true }
  )
  const plan = taskAssign(
    active.map((m) => ({ id: m.id, topics: m.options.topics, owned: m.assignment, generation: m.generation })),
    env.topics
  )
  const generation = ++group.generation
  // Stopped members lose their partitions too, so their later commits fail like a fenced member's would.
  for (const m of group.members.values()) {
    m.assignment = plan.get(m.id) ?? []
    const owned = new Set(m.assignment.map((tp) => tpKey(tp.topic, tp.partition)))
    m.revoked = new Set([...m.owned].filter((key) => !owned.has(key)))
    m.owned = owned
    m.generation = generation
    // Positions do not survive an eager rebalance: only seeks from the coming onAssignment count.
    m.seeks.clear()
  }
  yield* Effect.forEach(active, (m) => runIn(m, "onAssignment", m.handlers.onAssignment(m.assignment)), {
    concurrency: "unbounded",
    discard: true
  })
  // The revoke window ends here: the new owners start from the commits the old ones made in their onAssignment
  // (the last chance to commit a revoked partition, as in Kafka's onPartitionsRevoked), so a handoff duplicates
  // nothing that was committed.
  for (const m of group.members.values()) m.revoked = none
  for (const m of active) yield* startFetchers(env, group, m)
})

/** Runs a handler in the member's scope and context; a defect is logged, since handlers must not fail. */
const runIn = Effect.fnUntraced(function* (member: Member, name: string, effect: Effect.Effect<void>) {
  const fiber = yield* Effect.forkIn(effect.pipe(Effect.provideContext(member.context)), member.scope)
  const exit = yield* Fiber.await(fiber)
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    yield* Effect.logError(`memory broker: ${name} of ${member.id} failed`, exit.cause)
  }
})

/**
 * Stops the member's fetchers after their in-flight `onBatch` calls. Called from inside an `onBatch` (a handler
 * calling `stop`), it skips the calling fetcher, which ends by itself once its batch returns.
 */
const quiesce = Effect.fnUntraced(function* (member: Member) {
  const self = yield* Effect.fiber
  const fetchers = member.fetchers
  member.fetchers = []
  const inFlight: Array<Deferred.Deferred<void>> = []
  const fibers: Array<Fiber.Fiber<void>> = []
  for (const f of fetchers) {
    f.halted = true
    if (f.fiber === self) continue
    if (f.inFlight !== undefined) inFlight.push(f.inFlight)
    if (f.fiber !== undefined) fibers.push(f.fiber)
  }
  yield* Effect.forEach(inFlight, Deferred.await, { discard: true })
  yield* Fiber.interruptAll(fibers)
})

const startFetchers = Effect.fnUntraced(function* (env: Env, group: Group, member: Member) {
  for (const tp of member.assignment) {
    const log = env.topics.get(tp.topic)?.partitions[tp.partition]
    if (log === undefined) continue
    const key = tpKey(tp.topic, tp.partition)
    const committed = group.committed.get(key)
    // Like auto.offset.reset, a committed offset past the log end counts as no commit; "latest" is the LSO under
    // read_committed.
    const start =
      member.seeks.get(key) ??
      (committed !== undefined && committed <= log.records.length
        ? committed
        : member.options.fromBeginning === false
          ? stableEnd(log)
          : 0)
    const fetcher: Fetcher = {
      key,
      log,
      position: start,
      seeks: 0,
      halted: false,
      inFlight: undefined,
      wake: Deferred.makeUnsafe<void>(),
      fiber: undefined
    }
    member.fetchers.push(fetcher)
    fetcher.fiber = yield* Effect.forkIn(
      fetch(member, fetcher, env.maxBatchSize).pipe(Effect.provideContext(member.context)),
      member.scope
    )
  }
  member.seeks.clear()
})

type Step =
  | { readonly _tag: "Stop" }
  | { readonly _tag: "Wait"; readonly signal: Deferred.Deferred<void> }
  | {
      readonly _tag: "Deliver"
      readonly batch: RecordBatch
      /** Where the batch's range ends, and so the next position. */
      readonly to: number
      readonly seeks: number
      readonly done: Deferred.Deferred<void>
    }

const finished: Step = { _tag: "Stop" }

/** One partition of one generation, in order, one batch at a time: awaiting `onBatch` is the backpressure. */
const fetch = Effect.fnUntraced(
  function* (member: Member, fetcher: Fetcher, maxBatchSize: number) {
    const log = fetcher.log
    while (true) {
      const step = yield* Effect.sync((): Step => {
        if (fetcher.halted || member.stopped || member.left || log.deleted) return finished
        if (member.paused.has(fetcher.key)) return { _tag: "Wait", signal: fetcher.wake }
        const end = stableEnd(log)
        while (fetcher.position < end) {
          const to = Math.min(end, fetcher.position + maxBatchSize)
          const batch = batchOver(log, fetcher.position, to)
          if (batch.records.length === 0) {
            fetcher.position = to
            continue
          }
          const done = Deferred.makeUnsafe<void>()
          fetcher.inFlight = done
          return { _tag: "Deliver", batch, to, seeks: fetcher.seeks, done }
        }
        return { _tag: "Wait", signal: log.signal }
      })
      if (step._tag === "Stop") return
      if (step._tag === "Wait") {
        yield* Deferred.await(step.signal)
        continue
      }
      const current = () => fetcher.seeks === step.seeks
      yield* Effect.suspend(() => (current() ? member.handlers.onBatch(step.batch) : Effect.void)).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            fetcher.inFlight = undefined
            Deferred.doneUnsafe(step.done, Effect.void)
          })
        )
      )
      if (current()) fetcher.position = step.to
    }
  },
  (effect, member, fetcher) =>
    Effect.tapCause(effect, (cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Effect.logError(
            `memory broker: onBatch of ${member.id} failed; ${fetcher.key} stops until the next rebalance`,
            cause
          )
    )
)
