/**
 * Transactional producers of the in-memory broker: transactional ids with epochs and fencing, and transactions that
 * write their records as open entries of the logs, then commit (offsets, commit markers) or abort (abort markers).
 *
 * A transaction's records are appended when it begins, so while it is held (`MemoryBroker.holdSends`) they sit in
 * the logs as an open transaction, holding every partition's last stable offset before them. Whatever ends the call
 * other than a commit (an injected failure, fencing, closing, interruption) aborts it: `acquireUseRelease` makes
 * sure no path leaves it open. Calls of one producer run one at a time, as a producer has at most one open
 * transaction.
 *
 * Committed offsets are written without an ownership check: Kafka's TxnOffsetCommit (without KIP-447's group
 * metadata) checks only the producer epoch, which fencing models here.
 */
import { Clock, Effect, type Scope, Semaphore } from "effect"
import { Closed, Fenced, KafkaError, Rejected } from "../Errors.ts"
import { oversized, type TransactionalProducer, type TransactionOffsets, unknownTopic } from "../Kafka.ts"
import type { ProducerRecord, RecordMetadata, TopicPartitionOffset } from "../Record.ts"
import * as Log from "./memoryLog.ts"

/** What transactions need from the broker; the same rules as its `send`. */
export interface Env {
  readonly topics: ReadonlyMap<string, Log.TopicLog>
  readonly limitOf: (topic: string) => number
  /**
   * Every record's partition (topics auto-created on the way), or the error that fails the whole call; `changed`
   * tells the groups about created topics either way.
   */
  readonly resolve: (
    operation: string,
    records: ReadonlyArray<ProducerRecord>
  ) => { readonly targets: ReadonlyArray<Log.PartitionLog> | KafkaError; readonly changed: Effect.Effect<void> }
  /** The injected failure (`failSends`) this call gets, if any. */
  readonly fault: (operation: string) => KafkaError | undefined
  /** Holds the effect while sends are held (`holdSends`), in call order. */
  readonly throughGate: <A, E>(
    records: ReadonlyArray<ProducerRecord>,
    effect: Effect.Effect<A, E>
  ) => Effect.Effect<A, E>
  readonly commitOffsets: (groupId: string, offsets: ReadonlyArray<TopicPartitionOffset>) => void
}

interface Producer {
  readonly transactionalId: string
  readonly epoch: number
  status: "active" | "fenced" | "closed"
  current: Transaction | undefined
  readonly lock: Semaphore.Semaphore
}

interface Transaction {
  readonly txn: Log.Txn
  readonly metadata: ReadonlyArray<RecordMetadata>
  readonly logs: ReadonlySet<Log.PartitionLog>
}

const operation = "transaction"

const failure = (reason: KafkaError["reason"]) => new KafkaError({ operation, reason })

/** `transactional(id)` of the broker: opens a producer for `id`, fencing the one before it. */
export const make = (env: Env) => {
  // Per transactional id, the last epoch given out and the producer holding it (until it closes).
  const ids = new Map<string, { epoch: number; producer: Producer | undefined }>()

  const abortOpen = (producer: Producer, now: number) => {
    const open = producer.current
    if (open !== undefined && open.txn.state === "open") Log.end(open.txn, open.logs, "aborted", now)
  }

  /** Why the producer can no longer run transactions, if it cannot. */
  const refusal = (producer: Producer): KafkaError | undefined => {
    if (producer.status === "fenced") {
      const newer = ids.get(producer.transactionalId)?.epoch
      return failure(
        new Fenced({
          message:
            `transactional id ${producer.transactionalId} was taken over by a newer producer (epoch ${newer}); ` +
            `this producer (epoch ${producer.epoch}) is fenced`
        })
      )
    }
    if (producer.status === "closed") {
      return failure(new Closed({ message: `transactional producer ${producer.transactionalId} is closed` }))
    }
    return undefined
  }

  // Checked before anything is appended, like a record's partition: committing a position that cannot exist.
  const badOffsets = (offsets: TransactionOffsets | undefined): KafkaError | undefined => {
    for (const o of offsets?.offsets ?? []) {
      const topic = env.topics.get(o.topic)
      if (topic === undefined) return unknownTopic(operation, o.topic)
      if (!Number.isInteger(o.partition) || o.partition < 0 || o.partition >= topic.partitions.length) {
        return failure(
          new Rejected({
            message: `partition ${o.partition} out of range for topic ${o.topic} (${topic.partitions.length} partitions)`
          })
        )
      }
    }
    return undefined
  }

  const begin = (producer: Producer, records: ReadonlyArray<ProducerRecord>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.suspend(() => {
        const { targets, changed } = env.resolve(operation, records)
        if (targets instanceof KafkaError) return Effect.andThen(changed, Effect.fail(targets))
        const txn: Log.Txn = { state: "open" }
        const { metadata, logs } = Log.append(records, targets, now, txn)
        const transaction: Transaction = { txn, metadata, logs }
        producer.current = transaction
        return Effect.as(changed, transaction)
      })
    )

  const finish = (producer: Producer, transaction: Transaction, offsets: TransactionOffsets | undefined) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.suspend(() => {
        // Fenced or closed while held: the fencing or the close already aborted it.
        const refused = refusal(producer)
        if (refused !== undefined) return Effect.fail(refused)
        const fault = env.fault(operation)
        if (fault !== undefined) {
          Log.end(transaction.txn, transaction.logs, "aborted", now)
          return Effect.fail(fault)
        }
        // Offsets and markers in one step: a reader sees the records and the group sees the offsets together.
        if (offsets !== undefined) env.commitOffsets(offsets.groupId, offsets.offsets)
        Log.end(transaction.txn, transaction.logs, "committed", now)
        return Effect.succeed(transaction.metadata)
      })
    )

  const release = (producer: Producer, transaction: Transaction) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        if (transaction.txn.state === "open") Log.end(transaction.txn, transaction.logs, "aborted", now)
        if (producer.current === transaction) producer.current = undefined
      })
    )

  const transaction =
    (producer: Producer) =>
    (
      records: ReadonlyArray<ProducerRecord>,
      offsets?: TransactionOffsets
    ): Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError> =>
      producer.lock.withPermits(1)(
        Effect.suspend(() => {
          const refused = refusal(producer)
          if (refused !== undefined) return Effect.fail(refused)
          // Before anything else, as `send`'s check is.
          const tooLarge = oversized(records, env.limitOf)
          if (tooLarge !== undefined) return Effect.fail(failure(tooLarge.reason))
          const bad = badOffsets(offsets)
          if (bad !== undefined) return Effect.fail(bad)
          return Effect.acquireUseRelease(
            begin(producer, records),
            (open) => env.throughGate(records, finish(producer, open, offsets)),
            (open) => release(producer, open)
          )
        })
      )

  return (transactionalId: string): Effect.Effect<TransactionalProducer, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync((): Producer => {
          const previous = ids.get(transactionalId)
          if (previous?.producer !== undefined) {
            previous.producer.status = "fenced"
            abortOpen(previous.producer, now)
          }
          const producer: Producer = {
            transactionalId,
            epoch: (previous?.epoch ?? -1) + 1,
            status: "active",
            current: undefined,
            lock: Semaphore.makeUnsafe(1)
          }
          ids.set(transactionalId, { epoch: producer.epoch, producer })
          return producer
        })
      ),
      (producer) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            if (producer.status === "active") producer.status = "closed"
            // A real broker would abort it at transaction.timeout.ms; without timeouts, closing does.
            abortOpen(producer, now)
            const entry = ids.get(transactionalId)
            if (entry?.producer === producer) entry.producer = undefined
          })
        )
    ).pipe(Effect.map((producer) => ({ transactionalId, transaction: transaction(producer) })))
}
