/**
 * Pieces of stand-ins for kafkajs' producers, for tests of Sluice's producers without a broker: kafkajs' partitioning
 * of a `sendBatch` (through the partitioner Sluice configured) and its acknowledgement, and the errors kafkajs throws.
 */
import type * as KafkaJS from "kafkajs"

const partitionMetadata = (partitionId: number): KafkaJS.PartitionMetadata => ({
  partitionErrorCode: 0,
  partitionId,
  leader: 0,
  replicas: [0],
  isr: [0]
})

export interface PartitionBatch {
  readonly topic: string
  readonly partition: number
  readonly messages: Array<KafkaJS.Message>
}

/**
 * A broker of `partitions` partitions per topic as a producer made with `config` sees it: `partition` groups a
 * `sendBatch` by partition as kafkajs does, `acknowledge` answers it with consecutive offsets per partition.
 */
export const fakeBroker = (config: KafkaJS.ProducerConfig, partitions: number) => {
  const partitioner = config.createPartitioner?.()
  const next = new Map<string, number>()
  const metadata = Array.from({ length: partitions }, (_, p) => partitionMetadata(p))
  const partition = (batch: KafkaJS.ProducerBatch): Map<string, PartitionBatch> => {
    const byPartition = new Map<string, PartitionBatch>()
    for (const { topic, messages } of batch.topicMessages ?? []) {
      for (const message of messages) {
        const p = partitioner?.({ topic, partitionMetadata: metadata, message }) ?? 0
        const key = `${topic}:${p}`
        const entry = byPartition.get(key) ?? { topic, partition: p, messages: [] }
        entry.messages.push(message)
        byPartition.set(key, entry)
      }
    }
    return byPartition
  }
  const acknowledge = (byPartition: ReadonlyMap<string, PartitionBatch>): Array<KafkaJS.RecordMetadata> =>
    [...byPartition.values()].map(({ topic, partition, messages }) => {
      const key = `${topic}:${partition}`
      const base = next.get(key) ?? 0
      next.set(key, base + messages.length)
      return { topicName: topic, partition, errorCode: 0, baseOffset: String(base) }
    })
  return { partition, acknowledge }
}

/** A broker's error as kafkajs reports it. */
export const protocolError = (type: string, retriable: boolean) =>
  Object.assign(new Error(`broker says ${type}`), { name: "KafkaJSProtocolError", type, retriable })

/** One of kafkajs' own refusals (state errors, invalid arguments). */
export const nonRetriableError = (message: string) =>
  Object.assign(new Error(message), { name: "KafkaJSNonRetriableError", retriable: false })
