/**
 * Transactional producers on kafkajs (`Kafka.transactional`): one kafkajs producer per transactional id, open for the
 * scope of the task it serves.
 *
 * Opening initialises the producer id with the transactional id (InitProducerId), which bumps its epoch: every
 * earlier producer with the id is fenced, and the coordinator first aborts the transaction it left open (kafkajs
 * retries CONCURRENT_TRANSACTIONS meanwhile). kafkajs' `connect()` does not do this: it initialises only the
 * non-transactional id of an idempotent producer, and the transactional one would wait for the first `transaction()`,
 * so that a zombie could still commit until then. Opening therefore begins and aborts an empty transaction, which
 * sends InitProducerId and nothing else.
 *
 * kafkajs' transaction state machine breaks when calls overlap, and it cannot cancel a request. The transactions of a
 * producer are serialised (a semaphore), and an interrupted transaction is aborted only once its kafkajs call in
 * flight has settled: a produce that reached the broker after the abort's marker would open a new transaction on its
 * partition that no marker ever ends, holding back every read_committed reader.
 *
 * A failed transaction is aborted and the producer goes on; after a failed produce, with a new kafkajs producer
 * (see `stale` below). Once fenced (or its id expired), or once an EndTxn failed (kafkajs then stays in COMMITTING or
 * ABORTING for good), the producer is dead: every later call fails at once, with reason Fenced, or Closed where no
 * fencing was seen (a new producer with the id must be opened: opening aborts the transaction, unless it was
 * committed).
 */

import { Cause, Effect, Exit, Option, type Scope, Semaphore } from "effect"
import type * as KafkaJS from "kafkajs"
import { Closed, KafkaError } from "../Errors.ts"
import type { TransactionalProducer, TransactionOffsets } from "../Kafka.ts"
import { defaultMaxMessageBytes, type ProducerRecord, type RecordMetadata } from "../Record.ts"
import { disconnectWithin } from "./kafkajsClient.ts"
import { attempt } from "./kafkajsErrors.ts"
import * as Produce from "./kafkajsProduce.ts"

/** What a transaction needs of a kafkajs transaction (narrow, so tests can stand in for kafkajs). */
export type TransactionClient = Pick<KafkaJS.Transaction, "sendBatch" | "sendOffsets" | "commit" | "abort">

/** What a transactional producer needs of a kafkajs producer. */
export interface TransactionalClient {
  readonly connect: () => Promise<void>
  readonly disconnect: () => Promise<void>
  readonly transaction: () => Promise<TransactionClient>
}

export interface TransactionalOptions extends Produce.Limits {
  /** Upper bound for the payload of one `sendBatch` (a single larger record still goes alone). */
  readonly maxBatchBytes: number
  /** How long closing waits for the kafkajs producer to disconnect. */
  readonly closeTimeoutMs: number
  /** How long the coordinator lets a transaction stay open before it aborts it (`transaction.timeout.ms`). */
  readonly transactionTimeoutMs: number
}

const operation = "transaction"

/** The records as `sendBatch` chunks, in order, each under `maxBatchBytes` and its topics' limits. */
const chunksOf = (
  records: ReadonlyArray<ProducerRecord>,
  limits: ReadonlyMap<string, number>,
  maxBatchBytes: number
): Array<Array<Produce.Outgoing>> => {
  const chunks: Array<Array<Produce.Outgoing>> = []
  let current: Array<Produce.Outgoing> = []
  let chunk = Produce.makeChunk(maxBatchBytes)
  for (const record of records) {
    const limit = limits.get(record.topic) ?? defaultMaxMessageBytes
    if (!chunk.tryAdd(record, limit)) {
      chunks.push(current)
      current = []
      chunk = Produce.makeChunk(maxBatchBytes)
      chunk.tryAdd(record, limit)
    }
    current.push({ topic: record.topic, message: Produce.toMessage(record) })
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

const offsetTopics = (offsets: TransactionOffsets): Array<KafkaJS.TopicOffsets> => {
  const byTopic = new Map<string, Array<KafkaJS.PartitionOffset>>()
  for (const { topic, partition, offset } of offsets.offsets) {
    const partitions = byTopic.get(topic)
    const entry = { partition, offset: String(offset) }
    if (partitions === undefined) byTopic.set(topic, [entry])
    else partitions.push(entry)
  }
  return Array.from(byTopic, ([topic, partitions]) => ({ topic, partitions }))
}

const fenced = (...errors: ReadonlyArray<KafkaError | undefined>): KafkaError | undefined =>
  errors.find((error) => error?.reason._tag === "Fenced")

export const make =
  (createProducer: (config: KafkaJS.ProducerConfig) => TransactionalClient, options: TransactionalOptions) =>
  (transactionalId: string): Effect.Effect<TransactionalProducer, KafkaError, Scope.Scope> =>
    Effect.gen(function* () {
      const partitioning = Produce.makePartitioning()
      const config: KafkaJS.ProducerConfig = {
        transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: options.transactionTimeoutMs,
        createPartitioner: partitioning.createPartitioner,
        allowAutoTopicCreation: options.allowAutoTopicCreation,
        // Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the coordinator still writes the last one's
        // markers (tulios/kafkajs#1315), for a few milliseconds: retried from 20 ms, as the Java client does.
        retry: { retries: 8, initialRetryTime: 20, maxRetryTime: 1000 }
      }
      const disconnect = (client: TransactionalClient) =>
        disconnectWithin(
          client,
          options.closeTimeoutMs,
          Effect.logDebug(
            `the kafkajs transactional producer ${transactionalId} did not disconnect within ${options.closeTimeoutMs} ms; leaving it`
          )
        )
      // Connects and initialises the producer id: an empty transaction sends InitProducerId and nothing else.
      const open = (client: TransactionalClient, failingAs: string) =>
        attempt(failingAs, () => client.connect()).pipe(
          Effect.andThen(
            attempt(failingAs, async () => {
              const empty = await client.transaction()
              await empty.abort()
            })
          ),
          Effect.onError(() => disconnect(client))
        )

      let producer = createProducer(config)
      // A transaction left open at close (the scope closed under it) is aborted by the next producer with the id, or
      // by the coordinator after the transaction timeout.
      yield* Effect.acquireRelease(open(producer, "transactional"), () => Effect.suspend(() => disconnect(producer)))

      /**
       * A failed `sendBatch` leaves kafkajs' sequence numbers wrong: it rolls back those of every partition of the
       * request, also of those the broker appended to (kafkajs/src/producer/sendMessages.js). The broker would take the
       * next batch of such a partition for a duplicate and drop it while acknowledging it, or refuse it as out of
       * order. Only a new producer epoch resets the sequences, and kafkajs initialises its producer id once, so the
       * kafkajs producer is replaced by one that initialises it again. That fences nobody but this producer: it does
       * so right after its abort succeeded, which proves its epoch was the current one (kafkajs has no KIP-360
       * InitProducerId that would check this itself; a producer opened with the id within that round trip would be
       * fenced). When the replacement fails (the broker is away), the next transaction tries it again first, later
       * than that proof: under Sluice's groups a task's next owner opens its producer only after the old owner has
       * rejoined, so only a member dropped from its group could fence the new owner this way.
       */
      let stale = false
      const replace = Effect.suspend(() => {
        const old = producer
        producer = createProducer(config)
        return disconnect(old).pipe(
          Effect.andThen(open(producer, operation)),
          Effect.tap(() =>
            Effect.sync(() => {
              stale = false
            })
          )
        )
      })

      const lock = yield* Semaphore.make(1)
      // Set once the kafkajs producer is dead; every later call fails with it.
      let dead: KafkaError | undefined
      // kafkajs cannot cancel a request: a call in flight is always awaited, so an abort never overlaps it.
      const call = <A>(f: () => Promise<A>) => Effect.uninterruptible(attempt(operation, f))
      // Marked stale inside the uninterruptible call, so that an interruption cannot skip it.
      const send = (txn: TransactionClient, topicMessages: Array<KafkaJS.TopicMessages>) =>
        Effect.uninterruptible(
          attempt(operation, () => txn.sendBatch({ topicMessages, acks: -1 })).pipe(
            Effect.tapError(() =>
              Effect.sync(() => {
                stale = true
              })
            )
          )
        )

      const commitOrAbort = (
        records: ReadonlyArray<ProducerRecord>,
        limits: ReadonlyMap<string, number>,
        offsets: TransactionOffsets | undefined
      ) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            if (dead !== undefined) return yield* dead
            // The last replacement failed (the broker was away): it is tried again first.
            if (stale) yield* restore(replace)
            const client = producer
            const begun = yield* Effect.exit(call(() => client.transaction()))
            if (Exit.isFailure(begun)) {
              dead = fenced(Option.getOrUndefined(Cause.findErrorOption(begun.cause)))
              return yield* Effect.failCause(begun.cause)
            }
            const txn = begun.value
            // Once commit is called, kafkajs refuses to abort, whatever the commit's outcome.
            let committing = false
            const run = Effect.gen(function* () {
              const metadata: Array<RecordMetadata> = []
              for (const chunk of chunksOf(records, limits, options.maxBatchBytes)) {
                const topicMessages = Produce.topicMessagesOf(chunk)
                const response = yield* send(txn, topicMessages).pipe(
                  Effect.mapError((error) =>
                    error.reason._tag === "MessageTooLarge"
                      ? Produce.refusedAsTooLarge(
                          operation,
                          error,
                          topicMessages.map((t) => t.topic),
                          options
                        )
                      : error
                  )
                )
                for (const m of yield* Produce.metadataOf(operation, chunk, response, partitioning)) metadata.push(m)
              }
              // The offsets go in after the records: a failure before this point commits nothing of either.
              if (offsets !== undefined && offsets.offsets.length > 0) {
                const topics = offsetTopics(offsets)
                yield* call(() => txn.sendOffsets({ consumerGroupId: offsets.groupId, topics }))
              }
              committing = true
              yield* call(() => txn.commit())
              return metadata
            })
            const exit = yield* Effect.exit(restore(run))
            if (Exit.isSuccess(exit)) return exit.value

            const failure = Option.getOrUndefined(Cause.findErrorOption(exit.cause))
            const aborted = committing ? undefined : yield* Effect.exit(call(() => txn.abort()))
            if (aborted !== undefined && Exit.isSuccess(aborted)) {
              dead = fenced(failure)
              if (dead === undefined && stale) {
                const replaced = yield* Effect.exit(replace)
                if (Exit.isFailure(replaced)) {
                  yield* Effect.logDebug(
                    `transactional producer ${transactionalId}: replacing the kafkajs producer failed; the next transaction tries again`,
                    replaced.cause
                  )
                }
              }
              return yield* Effect.failCause(exit.cause)
            }
            const abortError =
              aborted === undefined ? undefined : Option.getOrUndefined(Cause.findErrorOption(aborted.cause))
            const what = failure?.reason.message ?? (Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "a defect")
            yield* Effect.logDebug(
              committing
                ? `transactional producer ${transactionalId}: the commit failed (${what}); the producer cannot be used again`
                : `transactional producer ${transactionalId}: aborting after a failure (${what}) failed too`,
              ...(aborted === undefined ? [] : [aborted.cause])
            )
            dead =
              fenced(failure, abortError) ??
              new KafkaError({
                operation,
                reason: new Closed({
                  message:
                    `the transactional producer ${transactionalId} cannot be used again: ` +
                    (committing
                      ? `its commit failed (${what}), so the transaction's outcome is unknown`
                      : `its transaction failed (${what}) and so did the abort (${abortError?.reason.message ?? "a defect"})`) +
                    "; a new producer with this id aborts it unless it was committed",
                  ...(failure === undefined ? {} : { cause: failure })
                })
              })
            return yield* Cause.hasInterruptsOnly(exit.cause) ? Effect.failCause(exit.cause) : Effect.fail(dead)
          })
        )

      const transaction = (records: ReadonlyArray<ProducerRecord>, offsets?: TransactionOffsets) =>
        Effect.suspend(() => {
          if (dead !== undefined) return Effect.fail(dead)
          if (records.length === 0 && (offsets === undefined || offsets.offsets.length === 0)) {
            return Effect.succeed([])
          }
          return Effect.flatMap(Produce.checkedLimits(operation, records, options), (limits) =>
            lock.withPermits(1)(commitOrAbort(records, limits, offsets))
          )
        })

      return { transactionalId, transaction } satisfies TransactionalProducer
    })
