/**
 * Group consumption (`consume`) on a kafkajs consumer.
 *
 * Assignment is Sluice's own (kafkajsAssigner.ts: co-partitioned tasks, sticky). Assignments are observed through
 * kafkajs' GROUP_JOIN event. kafkajs has no revoke hook: `onRevoke` runs in the JoinGroup barrier
 * (kafkajsBarrier.ts), before every JoinGroup of a member that owns partitions, and no batch is handled from then
 * until the next assignment.
 */

import { Cause, type Context, Deferred, Effect, Exit, Option, type Scope } from "effect"
import type * as KafkaJS from "kafkajs"
import { Closed, KafkaError, Transient } from "../Errors.ts"
import type { ConsumeHandlers, ConsumeOptions, GroupConsumer } from "../Kafka.ts"
import { type TopicPartition, tpKey } from "../Record.ts"
import { noOwnership, type Ownership, sluiceTaskAssigner } from "./kafkajsAssigner.ts"
import { installJoinBarrier, type KeepAlive } from "./kafkajsBarrier.ts"
import {
  type ConsumerSettings,
  connectScoped,
  consumerConfig,
  disconnect,
  heartbeatIntervalFor,
  revokeBoundFor,
  startRunning,
  subscribe,
  whileHeartbeating
} from "./kafkajsConsumerBase.ts"
import { attempt, toKafkaError } from "./kafkajsErrors.ts"
import { toRecordBatch } from "./kafkajsRecords.ts"

const byTopic = (partitions: ReadonlyArray<TopicPartition>): Array<{ topic: string; partitions: Array<number> }> => {
  const grouped = new Map<string, Array<number>>()
  for (const { topic, partition } of partitions) {
    const list = grouped.get(topic)
    if (list === undefined) grouped.set(topic, [partition])
    else list.push(partition)
  }
  return Array.from(grouped, ([topic, partitions]) => ({ topic, partitions }))
}

/** Counts `eachBatch` calls in progress, so `stop` can wait for them. */
const makeInFlight = () => {
  let count = 0
  const waiters = new Set<() => void>()
  return {
    enter: () => {
      count++
    },
    exit: () => {
      if (--count > 0) return
      for (const wake of waiters) wake()
      waiters.clear()
    },
    idle: Effect.callback<void>((resume) => {
      if (count === 0) return resume(Effect.void)
      const wake = () => resume(Effect.void)
      waiters.add(wake)
      return Effect.sync(() => {
        waiters.delete(wake)
      })
    })
  }
}

type Phase =
  | { readonly _tag: "joining" }
  | { readonly _tag: "running" }
  | { readonly _tag: "restarting"; readonly error: KafkaError }
  | { readonly _tag: "crashed"; readonly error: KafkaError }
  | { readonly _tag: "closed" }

export const consume = (kafka: KafkaJS.Kafka, settings: ConsumerSettings) =>
  Effect.fnUntraced(function* (
    options: ConsumeOptions,
    handlers: ConsumeHandlers
  ): Effect.fn.Return<GroupConsumer, KafkaError, Scope.Scope> {
    const context: Context.Context<never> = yield* Effect.context<never>()
    const abort = new AbortController()
    const run = (effect: Effect.Effect<void>) => Effect.runPromiseExitWith(context)(effect, { signal: abort.signal })
    const fork = (effect: Effect.Effect<void>) => {
      Effect.runForkWith(context)(effect)
    }
    const annotate = Effect.annotateLogs({ groupId: options.groupId })
    const logError = (message: string, cause?: Cause.Cause<unknown>) =>
      fork(Effect.logError(message, ...(cause === undefined ? [] : [cause])).pipe(annotate))
    const logWarning = (message: string) => fork(Effect.logWarning(message).pipe(annotate))

    const sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000
    const heartbeatIntervalMs = heartbeatIntervalFor(sessionTimeoutMs)
    // What this member owned since its last join, claimed in its next JoinGroup (stickiness), and whether it is
    // between a JoinGroup barrier and the next assignment, when no batch may be handled.
    let ownership: Ownership = noOwnership
    let joinedGeneration = -1
    let revoking = false
    const consumer = kafka.consumer(
      consumerConfig(options.groupId, sessionTimeoutMs, options.maxWaitMs ?? 100, settings, {
        partitionAssigners: [
          sluiceTaskAssigner(
            () => ownership,
            (cluster, groupId) =>
              installJoinBarrier(cluster, groupId, {
                beforeJoin: (keepAlive) => beforeJoin(keepAlive),
                joined: (generationId) => {
                  joinedGeneration = generationId
                }
              })
          )
        ]
      })
    )
    const topics = [...options.topics]
    const inFlight = makeInFlight()
    const paused = new Map<string, TopicPartition>()
    let phase: Phase = { _tag: "joining" }
    let stopped = false
    // The latest onAssignment run; every batch waits for it, so a new generation's batches follow its assignment.
    let assigned: Promise<unknown> = Promise.resolve()

    // kafkajs throws only while it rebuilds its group after a crash; GROUP_JOIN re-applies the pauses afterwards.
    const quietly = (f: () => void) => {
      try {
        f()
      } catch {}
    }
    const pauseEverything = () => consumer.pause(topics.map((topic) => ({ topic })))
    const applyPauses = () => {
      if (stopped) pauseEverything()
      else if (paused.size > 0) consumer.pause(byTopic([...paused.values()]))
    }

    const onAssignment = (assignment: ReadonlyArray<TopicPartition>) => {
      assigned = assigned
        // kafkajs emits GROUP_JOIN before its runner counts as running, and drops commits made before that
        // without an error; a macrotask later it is running.
        .then(() => new Promise((resolve) => setImmediate(resolve)))
        .then(() => run(handlers.onAssignment(assignment)))
        .then((exit) => {
          if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) logError("onAssignment failed", exit.cause)
        })
    }
    const assignmentSettled = async () => {
      let current: Promise<unknown>
      do {
        current = assigned
        await current
      } while (current !== assigned)
    }

    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      if (phase._tag === "closed") return
      const assignment: Array<TopicPartition> = []
      for (const [topic, partitions] of Object.entries(event.payload.memberAssignment)) {
        for (const partition of partitions) assignment.push({ topic, partition })
      }
      ownership = { generation: joinedGeneration, owned: assignment }
      revoking = false
      // Like the Java client, a pause does not survive losing the partition; kafkajs would keep it, and the
      // partition would stay paused when it comes back, though nobody remembers pausing it.
      const kept = new Set(assignment.map((tp) => tpKey(tp.topic, tp.partition)))
      const released: Array<TopicPartition> = []
      for (const [key, tp] of paused) {
        if (kept.has(key)) continue
        paused.delete(key)
        released.push(tp)
      }
      quietly(() => {
        if (!stopped && released.length > 0) consumer.resume(byTopic(released))
        applyPauses()
      })
      setImmediate(() => {
        if (phase._tag !== "closed") phase = { _tag: "running" }
      })
      if (!stopped) onAssignment(assignment)
    })

    const crashed = Deferred.makeUnsafe<never, KafkaError>()
    consumer.on(consumer.events.CRASH, (event) => {
      if (phase._tag === "closed") return
      const error = toKafkaError("consume", event.payload.error)
      phase = event.payload.restart ? { _tag: "restarting", error } : { _tag: "crashed", error }
      if (!event.payload.restart) Deferred.doneUnsafe(crashed, Effect.fail(error))
      // kafkajs' own entries about the crash go to Debug (kafkajsLog.ts); this line says what it means for Sluice:
      // a warning while kafkajs rejoins, an error once it gives up.
      const log = event.payload.restart ? logWarning : logError
      log(
        `kafkajs consumer crashed and ${event.payload.restart ? "will rejoin" : "stays down"}; ` +
          `its partitions are revoked: ${error.reason.message}`
      )
      // The crashed member has left the group: every partition it had is revoked, with its pauses.
      paused.clear()
      ownership = noOwnership
      if (!stopped) onAssignment([])
    })

    const eachBatch = async (payload: KafkaJS.EachBatchPayload): Promise<void> => {
      // Between the barrier and the next assignment nothing is handled: returned at once and unresolved, the batch
      // is fetched again by whoever owns its partition next. Waiting here instead would deadlock the barrier,
      // which waits for the batches in flight.
      if (revoking) return
      inFlight.enter()
      try {
        // Revoking partitions can take up to the shutdown bound; the member must keep heartbeating meanwhile or the
        // coordinator evicts it.
        await whileHeartbeating(assignmentSettled(), payload.heartbeat, heartbeatIntervalMs)
        const { batch } = payload
        if (stopped || revoking || !payload.isRunning() || payload.isStale()) return
        // Fetched before a pause: skipped without resolving, so it is fetched again after `resume`.
        if (paused.has(tpKey(batch.topic, batch.partition))) return
        const last = batch.messages[batch.messages.length - 1]
        if (last === undefined) return
        const exit = await whileHeartbeating(
          run(handlers.onBatch(toRecordBatch(batch))),
          payload.heartbeat,
          heartbeatIntervalMs
        )
        if (Exit.isFailure(exit)) {
          if (Cause.hasInterruptsOnly(exit.cause)) return
          // onBatch must not fail. Re-delivering the batch would spin on the same failure, so the partition stops
          // here; its records are re-delivered from the last commit to whoever owns it next.
          logError(`onBatch failed for ${batch.topic}[${batch.partition}]; pausing the partition`, exit.cause)
          const tp = { topic: batch.topic, partition: batch.partition }
          paused.set(tpKey(tp.topic, tp.partition), tp)
          quietly(() => consumer.pause(byTopic([tp])))
          return
        }
        // Moves kafkajs' fetch position; nothing is committed until `commit`.
        payload.resolveOffset(last.offset)
        await payload.heartbeat()
      } finally {
        inFlight.exit()
      }
    }

    /**
     * The JoinGroup barrier (kafkajsBarrier.ts). From here until the next assignment no batch is handled. A member
     * that owns partitions lets the last assignment's handler and the batches already in flight finish, so that
     * `onRevoke` sees all of it, then runs `onRevoke`; a member that is stopping holds its JoinGroup until it
     * leaves (the runner drains and commits first). Both heartbeat meanwhile, and give up at `revokeBoundFor`, or
     * when the group has already dropped the member, whose partitions may then belong to another one.
     */
    const beforeJoin = (keepAlive: () => Promise<KeepAlive>): Promise<void> => {
      revoking = true
      const onRevoke = handlers.onRevoke
      if (phase._tag === "closed" || ownership.owned.length === 0 || onRevoke === undefined) {
        return Promise.resolve()
      }
      const boundMs = revokeBoundFor(sessionTimeoutMs)
      const work = stopped
        ? Effect.never
        : Effect.promise(assignmentSettled).pipe(Effect.andThen(inFlight.idle), Effect.andThen(onRevoke))
      // Heartbeats go on until the barrier ends; they end it themselves if the group has dropped the member.
      const untilEvicted = Effect.gen(function* () {
        while ((yield* Effect.promise(keepAlive)) !== "evicted") yield* Effect.sleep(heartbeatIntervalMs)
      })
      const started = Date.now()
      return run(
        Effect.raceFirst(
          work.pipe(
            Effect.timeoutOption(boundMs),
            Effect.flatMap((done) =>
              Option.isSome(done) || stopped
                ? Effect.void
                : Effect.logWarning(
                    `onRevoke did not complete within ${boundMs} ms (inside the rebalance timeout); rejoining ` +
                      "anyway: what it had not committed is re-delivered"
                  )
            )
          ),
          untilEvicted.pipe(
            Effect.andThen(
              Effect.suspend(() =>
                Effect.logWarning(
                  `the group dropped this member while it revoked its partitions (${Date.now() - started} ms in); ` +
                    "rejoining as a new member: what it had not committed is re-delivered"
                )
              )
            )
          )
        ).pipe(annotate)
      ).then(() => undefined)
    }

    yield* connectScoped(consumer, abort, settings, options.groupId)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        phase = { _tag: "closed" }
        stopped = true
      })
    )
    yield* subscribe(consumer, settings, "subscribe", topics, options.fromBeginning ?? true).pipe(
      // Leave nothing connected until the caller's scope closes.
      Effect.onError(() => disconnect(consumer, settings, options.groupId))
    )
    // `run` resolves only after the first join; consume returns as soon as the consumer runs, and failures to join
    // arrive as CRASH events.
    yield* startRunning(consumer, settings, eachBatch, (reason) => logError(`kafkajs consumer.run failed: ${reason}`))

    const notInGroup = (message: string, retryable: boolean) =>
      Effect.fail(
        new KafkaError({
          operation: "commit",
          reason: retryable ? new Transient({ message }) : new Closed({ message })
        })
      )

    return {
      commit: (offsets) =>
        Effect.suspend(() => {
          if (offsets.length === 0) return Effect.void
          switch (phase._tag) {
            case "running":
              return attempt("commit", () =>
                consumer.commitOffsets(
                  offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: String(o.offset) }))
                )
              )
            case "joining":
              return notInGroup("the consumer has not joined its group yet", true)
            case "restarting":
              return notInGroup(
                `the consumer is rejoining its group after a crash: ${phase.error.reason.message}`,
                true
              )
            case "crashed":
              return notInGroup(`the consumer crashed: ${phase.error.reason.message}`, false)
            case "closed":
              return notInGroup("the consumer is closed", false)
          }
        }),
      pause: (partitions) =>
        Effect.sync(() => {
          for (const tp of partitions) paused.set(tpKey(tp.topic, tp.partition), tp)
          if (!stopped && partitions.length > 0) quietly(() => consumer.pause(byTopic(partitions)))
        }),
      resume: (partitions) =>
        Effect.sync(() => {
          for (const tp of partitions) paused.delete(tpKey(tp.topic, tp.partition))
          if (!stopped && partitions.length > 0) quietly(() => consumer.resume(byTopic(partitions)))
        }),
      // kafkajs drops a batch fetched before the seek of its partition, and fetches from the new offset next.
      seek: (offsets) =>
        Effect.sync(() => {
          for (const o of offsets) {
            quietly(() => consumer.seek({ topic: o.topic, partition: o.partition, offset: String(o.offset) }))
          }
        }),
      // kafkajs' own stop() leaves the group and drops its runner, after which commitOffsets fails. Pausing every
      // topic stops fetching while the member stays in the group (heartbeats go on), so commits keep working.
      stop: Effect.suspend(() => {
        if (!stopped) {
          stopped = true
          quietly(pauseEverything)
        }
        return inFlight.idle
      }),
      failed: Deferred.await(crashed)
    } satisfies GroupConsumer
  })
