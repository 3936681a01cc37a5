/**
 * One actor per assigned task (partition i of every input): a fiber with a bounded mailbox of fetched batches,
 * timer ticks and control messages, handled one at a time, in order.
 *
 * Before its first batch the task restores its stores from their changelogs and runs the lifecycle hooks. Each
 * step then takes what the mailbox holds; with several inputs, it processes the buffered records with the lowest
 * timestamps first (stream-time alignment, like Kafka Streams), waiting at most `idleMs` for an input that has
 * nothing buffered and has not caught up. A step decodes in a plain loop, runs the input's processor once, checks
 * that every output fits its topic, and hands outputs, dead letters and the stores' changelog records to the
 * delivery path (Delivery.ts: at-least-once sends the changelog after the outputs); only once they are acknowledged
 * do the store writes become durable locally and the input positions committable.
 *
 * Failures are narrowed to the records that cause them: a non-retryable failure of a batch, or an output over its
 * topic's `max.message.bytes`, re-runs the batch record by record, each from a savepoint of the stores, so a
 * dead-lettered record leaves neither outputs nor state changes behind. A dead letter over its own topic's limit is
 * truncated to fit (DeadLetter.ts).
 */
import {
  type Cause,
  Clock,
  Deferred,
  Effect,
  Fiber,
  Metric,
  Option,
  Queue,
  Result,
  type Schedule,
  type Scope
} from "effect"
import * as Batch from "../Batch.ts"
import * as DeadLetter from "../DeadLetter.ts"
import type { Outgoing, TaskDelivery } from "../Delivery.ts"
import { isRetryable, KafkaError, MessageTooLarge, messageOf, type SinkError } from "../Errors.ts"
import * as Metrics from "../Metrics.ts"
import {
  type ConsumerRecord,
  defaultMaxMessageBytes,
  type ProducerRecord,
  type RecordBatch,
  sizeOf,
  type TopicPartition,
  type TopicPartitionOffset
} from "../Record.ts"
import type * as Store from "../Store.ts"
import type { TaskContext } from "../Task.ts"
import type { Input, Prepared, Topology } from "../Topology.ts"

export interface TaskActor<E> {
  readonly task: number
  /** The input partitions of this task. */
  readonly partitions: ReadonlyArray<TopicPartition>
  /** Suspends while the mailbox is full. */
  readonly offer: (batch: RecordBatch) => Effect.Effect<void>
  readonly isFull: () => boolean
  /**
   * Handles everything offered so far (ignoring the idle wait), makes it durable and completes; the task then goes
   * on. A rebalance suspends every task this way before the member rejoins its group.
   */
  readonly suspend: Effect.Effect<void>
  /** Lets the task finish what it holds, then stop. */
  readonly end: Effect.Effect<void>
  /** Completes when the task has stopped: after `end` and the drain, or on failure. */
  readonly await: Effect.Effect<void, E | KafkaError | SinkError | Store.StoreError>
  /** When the step in progress started (epoch ms), or `undefined` while the task waits for work. */
  readonly busySince: () => number | undefined
}

export interface TaskOptions {
  readonly application: string
  readonly capacity: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** How long records of one input wait for an input with nothing buffered. */
  readonly idleMs: number
  /** The most input records one step processes (and so holds, with their outputs, until they are acknowledged). */
  readonly maxStepRecords: number
  /**
   * The task counts as full (`isFull`, its partitions are paused) once it holds this many input records not yet
   * processed, in its mailbox and its buffers: a bound on memory when fetched batches are large.
   */
  readonly maxHeldRecords: number
  /** Called when the mailbox has drained to half its capacity (to resume paused partitions). */
  readonly onDrained: Effect.Effect<void>
  /**
   * How long the stores' writes may be held before they go to the changelog (the commit interval): a key that many
   * steps write goes once. Until they go, the steps' input positions are not handed on as committable.
   */
  readonly holdStateMs: number
  /** The stores' writes go to the changelog once they hold this many keys, whatever the time. */
  readonly maxHeldWrites: number
  /** The largest record a topic accepts (`Kafka.maxRecordBytes`). */
  readonly maxRecordBytes: (topic: string) => Effect.Effect<number, KafkaError>
  /** Opens this task's stores, restored from their changelogs, bound to `token` for `ctx.store`. */
  readonly openStores: (
    task: number,
    token: object
  ) => Effect.Effect<ReadonlyArray<Store.TaskStoreBytes>, KafkaError | Store.StoreError, Scope.Scope>
}

/** The most input records of a task's first step; each step after it may take twice as many, up to maxStepRecords. */
export const firstStepRecords = 250

type Item =
  | { readonly _tag: "Batch"; readonly batch: RecordBatch }
  | { readonly _tag: "Tick"; readonly timer: string }
  | { readonly _tag: "Suspend"; readonly done: Deferred.Deferred<void> }

interface Buffered {
  readonly input: Input<unknown, unknown> | undefined
  records: Array<ConsumerRecord>
  /** The last batch reached the partition's high-water mark: nothing more to wait for. */
  caughtUp: boolean
}

const isTooLarge = (e: unknown): e is KafkaError => e instanceof KafkaError && e.reason._tag === "MessageTooLarge"

export const make = Effect.fnUntraced(function* <E, R>(
  task: number,
  topology: Topology<E, R>,
  delivery: TaskDelivery,
  options: TaskOptions
) {
  const mailbox = yield* Queue.bounded<Item, Cause.Done>(options.capacity + 2)
  const partitions = topology.inputs.map((i): TopicPartition => ({ topic: i.topic, partition: task }))
  const metricsOf = new Map(topology.inputs.map((i) => [i.topic, Metrics.forPartition(i.topic, task)]))
  const retryable = { schedule: options.retry, while: isRetryable }
  const token = {}
  let stores: ReadonlyArray<Store.TaskStoreBytes> = []
  let streamTime = -1
  // Per input: its records waiting to be processed (alignment across inputs).
  const buffers = new Map<string, Buffered>(
    topology.inputs.map((input) => [input.topic, { input: undefined, records: [], caughtUp: false }])
  )
  const inputOf = new Map(topology.inputs.map((input) => [input.topic, input]))
  // Input records offered and not yet processed (mailbox and buffers): what `isFull` bounds.
  let held = 0
  const drained = () =>
    held <= options.maxHeldRecords / 2 && Queue.sizeUnsafe(mailbox) <= options.capacity / 2
      ? options.onDrained
      : Effect.void
  // The offset after the last record processed, per input partition: the task's position.
  const position = new Map<string, number>()
  let waitingSince: number | undefined

  const context = (input: string): TaskContext => ({
    application: topology.name,
    task,
    input,
    streamTime,
    store: (spec) => {
      const store = spec.instance(token)
      if (store === undefined) {
        throw new Error(`store ${spec.name} is not declared in topology ${topology.name}: add it to \`stores\``)
      }
      return store
    },
    schedule: (name, at) => {
      const timer = topology.timers.find((t) => t.name === name)
      if (timer === undefined) throw new Error(`timer ${name} is not declared in topology ${topology.name}`)
      if ("streamTime" in at) streamPoints.set(name, at.streamTime)
      else wallPoints.set(name, at.wallClock)
    }
  })

  // Stream-time timers: the next point at which each fires (periodic ones from their interval, one-shot ones from
  // `ctx.schedule`); wall-clock one-shot points are checked on every step and by the wall-clock ticker.
  const streamPoints = new Map<string, number>()
  const lastStreamFire = new Map<string, number>()
  const wallPoints = new Map<string, number>()

  // Topic limits, asked of the Kafka service once per topic (it caches too); cleared when the broker disagrees.
  const limits = new Map<string, number>()
  const knowLimits = (records: ReadonlyArray<ProducerRecord>): Effect.Effect<void, KafkaError> => {
    const missing = new Set<string>()
    // Records of a step mostly share their topic: each run of one topic is looked at once.
    let last: string | undefined
    for (const r of records) {
      if (r.topic === last) continue
      last = r.topic
      if (!limits.has(last)) missing.add(last)
    }
    return missing.size === 0
      ? Effect.void
      : Effect.forEach(
          missing,
          (topic) =>
            Effect.retry(options.maxRecordBytes(topic), retryable).pipe(
              Effect.tap((limit) => Effect.sync(() => limits.set(topic, limit))),
              // A topic that does not exist yet is created with the broker's defaults by the send (where the broker
              // allows it; otherwise the send fails and says so): check against the default, and read it again later.
              Effect.catchIf(
                (e) => e.reason._tag === "UnknownTopic",
                () => Effect.void
              )
            ),
          { discard: true }
        )
  }
  /** The first output over its topic's limit, as the reason its input is dead-lettered. */
  const tooLarge = Effect.fnUntraced(function* (outputs: ReadonlyArray<ProducerRecord>) {
    yield* knowLimits(outputs)
    for (const output of outputs) {
      const limit = limits.get(output.topic) ?? defaultMaxMessageBytes
      const size = sizeOf(output)
      if (size > limit) {
        return new MessageTooLarge({
          message: `an output for ${output.topic} is ${size} bytes, over the topic's limit of ${limit} bytes (max.message.bytes)`,
          topic: output.topic,
          size,
          limit
        })
      }
    }
    return undefined
  })

  const savepoint = () => stores.map((s) => s.savepoint())
  const discardWrites = () =>
    Effect.sync(() => {
      for (const s of stores) s.discardWrites()
    })
  const rollback = (points: ReadonlyArray<Store.Savepoint>) => {
    for (let i = 0; i < stores.length; i++) stores[i]!.rollback(points[i]!)
  }
  /**
   * `run` retried on retryable failures, each retry from `point`: an attempt that failed after some writes (a
   * lookup that timed out halfway through a batch) must not leave them for the next attempt to add to.
   */
  const retrying = <A, E1, R1>(point: ReadonlyArray<Store.Savepoint>, run: () => Effect.Effect<A, E1, R1>) => {
    let attempts = 0
    return Effect.suspend(() => {
      if (attempts++ > 0) rollback(point)
      return run()
    }).pipe(Effect.retry(retryable))
  }

  /**
   * Record by record, each from a savepoint: a record that fails for good, or one of whose outputs is over its
   * topic's limit, is rejected with its writes rolled back.
   */
  const processIsolated = Effect.fnUntraced(function* (prepared: Prepared<E, R>, ctx: TaskContext) {
    const parts: Array<Batch.BatchResult> = []
    for (let i = 0; i < prepared.records.length; i++) {
      const record = prepared.records[i]!
      const point = savepoint()
      const exit = yield* retrying(point, () => prepared.processOne(i, ctx)).pipe(
        Effect.map((result) => Batch.from(record, result)),
        Effect.result
      )
      if (Result.isFailure(exit)) {
        if (isRetryable(exit.failure)) return yield* Effect.fail(exit.failure)
        rollback(point)
        parts.push({ outputs: [], rejected: [{ record, error: exit.failure }] })
        continue
      }
      const large = yield* tooLarge(exit.success.outputs)
      if (large !== undefined) {
        rollback(point)
        parts.push({ outputs: [], rejected: [...exit.success.rejected, { record, error: large }] })
      } else parts.push(exit.success)
    }
    return Batch.concat(parts)
  })

  /** The whole batch in one run; narrowed to record by record on a failure for good or an output too large. */
  const processBatch = Effect.fnUntraced(function* (prepared: Prepared<E, R>, ctx: TaskContext) {
    if (prepared.records.length === 0) return Batch.empty
    const point = savepoint()
    // Suspended, so that a retry calls the processor again rather than re-running the Effect it returned once.
    const exit = yield* retrying(point, () => prepared.process(ctx)).pipe(Effect.result)
    if (Result.isFailure(exit)) {
      if (isRetryable(exit.failure)) return yield* Effect.fail(exit.failure)
      rollback(point)
      return yield* processIsolated(prepared, ctx)
    }
    if ((yield* tooLarge(exit.success.outputs)) === undefined) return exit.success
    rollback(point)
    return yield* processIsolated(prepared, ctx)
  })

  const deadLettersOf = Effect.fnUntraced(function* (
    input: Input<E, R>,
    rejected: ReadonlyArray<DeadLetter.Rejection>
  ) {
    if (rejected.length === 0) return []
    const now = yield* Clock.currentTimeMillis
    yield* knowLimits([{ topic: input.deadLetterTopic, key: null, value: null }])
    const limit = limits.get(input.deadLetterTopic) ?? defaultMaxMessageBytes
    yield* Effect.logWarning(
      `dead-lettered ${rejected.length} record(s) of ${input.topic}[${task}] to ${input.deadLetterTopic}`,
      rejected.slice(0, 3).map((r) => `@${r.record.offset}: ${messageOf(r.error)}`)
    )
    return rejected.map((r) => DeadLetter.toRecord(input.deadLetterTopic, topology.name, r, now, limit))
  })

  /** The stores' writes since the last step, as changelog records for this task's changelog partitions. */
  const changelog = (): {
    readonly records: Array<ProducerRecord>
    readonly writes: Array<ReadonlyArray<Store.Change>>
  } => {
    const records: Array<ProducerRecord> = []
    const writes: Array<ReadonlyArray<Store.Change>> = []
    for (const store of stores) {
      const w = store.takeWrites()
      writes.push(w)
      for (const [key, value] of w) records.push({ topic: store.changelogTopic, partition: task, key, value })
    }
    return { records, writes }
  }

  /**
   * The position whose state is durable or on its way: what a step hands on as committable while its stores' writes
   * are held (an offset is committed only once the state it led to is in the changelog).
   */
  let statePositions: ReadonlyArray<TopicPartitionOffset> = []
  /** Since when the stores hold writes not handed to the delivery path (epoch ms, the Effect clock). */
  let heldSince: number | undefined

  /**
   * Hands a step's records to the delivery path; once they are durable, so are the stores' writes. The writes are
   * held in the stores, and go with a later step, unless `state` says now (or they are due: held for `holdStateMs`,
   * or `maxHeldWrites` keys). A step whose rows no input record stands behind (a window's final in a table) sends
   * them now: its rows are written before its changelog, and that must hold for the rows of held steps too.
   */
  const deliver = Effect.fnUntraced(function* (
    outgoing: Omit<Outgoing, "changelog">,
    positions: ReadonlyArray<TopicPartitionOffset>,
    count: number,
    state: "now" | "when-due" = "when-due"
  ) {
    const now = yield* Clock.currentTimeMillis
    let writes = 0
    for (const store of stores) writes += store.held()
    if (writes > 0) heldSince ??= now
    const hold =
      state === "when-due" &&
      writes > 0 &&
      writes < options.maxHeldWrites &&
      now - heldSince! < options.holdStateMs &&
      !delivery.commitsWith(count, now) &&
      !(outgoing.rows?.some((r) => !r.sourced) ?? false)
    if (hold) {
      yield* delivery.complete({
        outgoing: { ...outgoing, changelog: [] },
        positions: statePositions,
        records: count,
        onDurable: () => {},
        stateHeld: true
      })
      return
    }
    const changes = changelog()
    heldSince = undefined
    statePositions = positions
    yield* delivery
      .complete({
        outgoing: { ...outgoing, changelog: changes.records },
        positions,
        records: count,
        onDurable: (acked) => {
          let at = 0
          for (let i = 0; i < stores.length; i++) {
            const w = changes.writes[i]!
            if (w.length === 0) continue
            at += w.length
            stores[i]!.durable(w, acked[at - 1]!.offset + 1)
          }
        }
      })
      .pipe(Effect.onError(discardWrites))
  })

  /** When the held writes must go at the latest. */
  const stateDue = () => (heldSince === undefined ? undefined : heldSince + options.holdStateMs)

  /** The held writes, with the task's position, now. */
  const sendState = Effect.suspend(() =>
    heldSince === undefined ? Effect.void : deliver({ outputs: [], deadLetters: [] }, positions(), 0, "now")
  )

  /**
   * Makes every step handed over durable (exactly-once: commits the open transaction), the held writes first. A
   * failure leaves the stores as they were at the last commit.
   */
  const flush = sendState.pipe(Effect.andThen(delivery.flush), Effect.onError(discardWrites))

  const positions = (): Array<TopicPartitionOffset> =>
    partitions.flatMap((tp) => {
      const offset = position.get(tp.topic)
      return offset === undefined ? [] : [{ ...tp, offset }]
    })

  /** One step over records of one input. */
  const handle = Effect.fnUntraced(function* (input: Input<E, R>, records: ReadonlyArray<ConsumerRecord>) {
    const started = Date.now()
    const last = records[records.length - 1]!
    for (const r of records) if (r.timestamp > streamTime) streamTime = r.timestamp
    const ctx = context(input.topic)
    position.set(input.topic, last.offset + 1)
    const step = Effect.gen(function* () {
      const prepared = input.prepare(records)
      const processed = yield* processBatch(prepared, ctx)
      const rejected =
        prepared.rejected.length === 0 ? processed.rejected : prepared.rejected.concat(processed.rejected)
      const deadLetters = yield* deadLettersOf(input, rejected)
      yield* deliver({ outputs: processed.outputs, deadLetters, rows: processed.rows }, positions(), records.length)
    })
    yield* step.pipe(
      // The broker refused a record within the limits read (a topic's limit lowered since): the step's writes were
      // discarded; read the limits again and run the step once more. A second refusal stops the task with the cause.
      Effect.catchIf(isTooLarge, () =>
        Effect.suspend(() => {
          limits.clear()
          return step
        })
      )
    )
    held -= records.length
    yield* drained()
    const metrics = metricsOf.get(input.topic)!
    yield* Metric.update(metrics.in, records.length)
    const buffered = buffers.get(input.topic)!
    yield* Metric.update(metrics.lag, buffered.caughtUp ? 0 : Math.max(0, lagOf.get(input.topic)! - last.offset - 1))
    yield* Metric.update(Metrics.batchLatency, Date.now() - started)
    yield* fireStreamTimers
  })

  const lagOf = new Map<string, number>()

  const fire = Effect.fnUntraced(function* (name: string) {
    const timer = topology.timers.find((t) => t.name === name)
    if (timer === undefined) return
    const point = savepoint()
    const result = yield* retrying(point, () => timer.fire(context(name))).pipe(
      Effect.onError(() => Effect.sync(() => rollback(point)))
    )
    // A tick's outputs are committed with the task's current position.
    yield* deliver({ outputs: result.outputs, deadLetters: [], rows: result.rows }, positions(), 0)
  })

  const fireStreamTimers = Effect.gen(function* () {
    if (streamTime < 0) return
    for (const timer of topology.timers) {
      if (timer.kind !== "stream-time") continue
      const oneShot = streamPoints.get(timer.name)
      if (oneShot !== undefined && streamTime >= oneShot) {
        streamPoints.delete(timer.name)
        yield* fire(timer.name)
        continue
      }
      if (timer.everyMs === undefined) continue
      const lastFired = lastStreamFire.get(timer.name)
      if (lastFired === undefined || streamTime - lastFired >= timer.everyMs) {
        lastStreamFire.set(timer.name, streamTime)
        yield* fire(timer.name)
      }
    }
  })

  const fireWallPoints = Effect.gen(function* () {
    if (wallPoints.size === 0) return
    const now = yield* Clock.currentTimeMillis
    for (const [name, at] of [...wallPoints]) {
      if (now < at) continue
      wallPoints.delete(name)
      yield* fire(name)
    }
  })

  /**
   * The next records to process: the input whose head has the lowest timestamp, up to the head timestamp of the
   * next input. Nothing while an input that has not caught up has nothing buffered, for up to `idleMs` (unless
   * `force`).
   */
  // A task's first steps are small and double up to maxStepRecords: after a start or a rebalance, with a backlog
  // waiting, the first outputs go out after a few hundred records, while the code is not yet compiled, instead of
  // after thousands (the backlog's first 5,000-record step took ~130 ms, the whole time to first output ~4x less).
  let stepLimit = Math.min(options.maxStepRecords, firstStepRecords)
  const next = (now: number, force: boolean): { input: Input<E, R>; records: Array<ConsumerRecord> } | undefined => {
    let best: Buffered | undefined
    let bestTopic = ""
    let second = Number.POSITIVE_INFINITY
    let waiting = false
    for (const [topic, b] of buffers) {
      if (b.records.length === 0) {
        if (!b.caughtUp) waiting = true
        continue
      }
      const head = b.records[0]!.timestamp
      if (best === undefined || head < best.records[0]!.timestamp) {
        if (best !== undefined) second = Math.min(second, best.records[0]!.timestamp)
        best = b
        bestTopic = topic
      } else second = Math.min(second, head)
    }
    if (best === undefined) {
      waitingSince = undefined
      return undefined
    }
    if (waiting && !force && buffers.size > 1) {
      waitingSince ??= now
      if (now - waitingSince < options.idleMs) return undefined
    }
    waitingSince = undefined
    let n = 1
    const most = Math.min(best.records.length, stepLimit)
    while (n < most && best.records[n]!.timestamp <= second) n++
    const records = n === best.records.length ? best.records : best.records.slice(0, n)
    best.records = n === best.records.length ? [] : best.records.slice(n)
    return { input: inputOf.get(bestTopic)!, records }
  }

  const drainBuffers = (force: boolean) =>
    Effect.gen(function* () {
      while (true) {
        const chunk = next(yield* Clock.currentTimeMillis, force)
        if (chunk === undefined) return
        yield* handle(chunk.input, chunk.records)
        stepLimit = Math.min(options.maxStepRecords, stepLimit * 2)
      }
    })

  const take = (b: RecordBatch) => {
    const buffered = buffers.get(b.topic)
    if (buffered === undefined) {
      held -= b.records.length
      return
    }
    for (const r of b.records) buffered.records.push(r)
    const last = b.lastOffset ?? b.records[b.records.length - 1]?.offset ?? -1
    buffered.caughtUp = last + 1 >= b.highWatermark
    lagOf.set(b.topic, b.highWatermark)
  }

  let busySince: number | undefined = yield* Clock.currentTimeMillis
  const loop = Effect.gen(function* () {
    stores = yield* options.openStores(task, token)
    // In the task's fiber, so a defect in a hook fails the task (and the worker), never stalls it.
    if (topology.lifecycle.onAssigned) for (const tp of partitions) yield* topology.lifecycle.onAssigned(tp)
    yield* startWallClockTimers
    while (true) {
      busySince = undefined
      const now = yield* Clock.currentTimeMillis
      const state = stateDue()
      const committing = delivery.due()
      if (committing !== undefined && now >= committing) {
        busySince = now
        yield* flush
        continue
      }
      if (state !== undefined && now >= state) {
        busySince = now
        yield* sendState
        continue
      }
      const due = committing === undefined ? state : Math.min(committing, state ?? Number.POSITIVE_INFINITY)
      // Wake for the idle wait of an input, or for the delivery's next commit, whichever comes first.
      const idle = waitingSince === undefined ? undefined : options.idleMs - (now - waitingSince)
      const remaining = due === undefined ? idle : Math.min(idle ?? Number.POSITIVE_INFINITY, due - now)
      const taken =
        remaining === undefined
          ? Option.some(yield* Effect.result(Queue.takeAll(mailbox)))
          : yield* Effect.result(Queue.takeAll(mailbox)).pipe(Effect.timeoutOption(Math.max(0, remaining)))
      busySince = yield* Clock.currentTimeMillis
      if (Option.isNone(taken)) {
        yield* drainBuffers(false)
        continue
      }
      if (Result.isFailure(taken.value)) {
        yield* drainBuffers(true)
        yield* flush
        return
      }
      yield* drained()
      for (const item of taken.value.success) {
        switch (item._tag) {
          case "Batch":
            take(item.batch)
            break
          case "Tick":
            yield* drainBuffers(false)
            pendingTicks.delete(item.timer)
            yield* fire(item.timer)
            break
          case "Suspend":
            yield* drainBuffers(true)
            yield* flush
            yield* Deferred.succeed(item.done, undefined)
            break
        }
      }
      yield* drainBuffers(false)
      yield* fireWallPoints
    }
  })

  // Wall-clock timers tick into the mailbox, so they never run concurrently with a step; a tick still waiting is
  // not doubled.
  const pendingTicks = new Set<string>()
  const startWallClockTimers = Effect.forEach(
    topology.timers,
    (timer) =>
      timer.kind !== "wall-clock" || timer.schedule === undefined
        ? Effect.void
        : Effect.suspend(() => {
            if (pendingTicks.has(timer.name)) return Effect.void
            pendingTicks.add(timer.name)
            return Queue.offer(mailbox, { _tag: "Tick", timer: timer.name })
          }).pipe(
            // The schedule is stepped before the first tick: a timer every 10 s first fires 10 s after the start.
            (tick) => Effect.schedule(tick, timer.schedule!),
            Effect.ignore,
            Effect.forkScoped
          ),
    { discard: true }
  )

  const fiber = yield* Effect.forkScoped(
    loop.pipe(
      // A failed task must not leave the fetcher suspended in `offer`: shutting the mailbox down releases it.
      Effect.ensuring(Queue.shutdown(mailbox)),
      Effect.ensuring(
        topology.lifecycle.onRevoked
          ? Effect.forEach(partitions, (tp) => topology.lifecycle.onRevoked!(tp), { discard: true })
          : Effect.void
      ),
      Effect.ensuring(discardWrites()),
      // A revoked task's lag is no longer this member's to report.
      Effect.ensuring(Effect.forEach(metricsOf.values(), (m) => Metric.remove(m.lag), { discard: true }))
    )
  )

  const actor: TaskActor<E> = {
    task,
    partitions,
    offer: (batch) =>
      Effect.suspend(() => {
        held += batch.records.length
        return Queue.offer(mailbox, { _tag: "Batch", batch })
      }).pipe(Effect.asVoid),
    isFull: () => Queue.sizeUnsafe(mailbox) >= options.capacity || held >= options.maxHeldRecords,
    suspend: Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      const offered = yield* Queue.offer(mailbox, { _tag: "Suspend", done })
      // A mailbox already ended or shut down: the task is stopping or stopped, nothing more to wait for.
      if (!offered) return
      yield* Effect.raceFirst(Deferred.await(done), Fiber.await(fiber))
    }),
    end: Queue.end(mailbox).pipe(Effect.asVoid),
    await: Fiber.join(fiber),
    busySince: () => busySince
  }
  return actor
})
