/**
 * A linear `groupMessagesPerPartition` for kafkajs 2.2.4, installed before kafkajs loads.
 *
 * kafkajs groups the messages of each topic of a `sendBatch` by partition with a `reduce` that copies the
 * partition's array for every message it adds (`src/producer/groupMessagesPerPartition.js`): quadratic in the
 * messages one send has for one partition. A send of a few thousand records to one partition, which is what a task
 * writes when its outputs are keyed like its input, spent more time and garbage there (16–20% of the main thread in
 * the issue #13 profile) than in encoding the records. The version here gives the same result (the partitioner
 * is called once per message, in order; each partition's messages keep their order) in one pass.
 *
 * kafkajs' `sendMessages.js` takes the function with `require` when it loads, so this module seeds Node's require
 * cache with it and must be evaluated before kafkajs is: every Sluice module that imports kafkajs as a value
 * imports this one first. `installed` says whether that worked (false if something loaded kafkajs' producer
 * earlier; sends are then correct, only slower).
 */
import { createRequire, Module } from "node:module"
import type * as KafkaJS from "kafkajs"

interface GroupArguments {
  readonly topic: string
  readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
  readonly messages: ReadonlyArray<KafkaJS.Message>
  readonly partitioner: (args: {
    readonly topic: string
    readonly partitionMetadata: ReadonlyArray<KafkaJS.PartitionMetadata>
    readonly message: KafkaJS.Message
  }) => number
}

/** The messages of one topic per partition, as kafkajs' `sendMessages` expects them. */
export const groupMessagesPerPartition = ({
  topic,
  partitionMetadata,
  messages,
  partitioner
}: GroupArguments): Record<number, Array<KafkaJS.Message>> => {
  const result: Record<number, Array<KafkaJS.Message>> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition]
    if (current === undefined) result[partition] = [message]
    else current.push(message)
  }
  return result
}

const requireCjs = createRequire(import.meta.url)
const groupPath = requireCjs.resolve("kafkajs/src/producer/groupMessagesPerPartition.js")
const sendMessagesPath = requireCjs.resolve("kafkajs/src/producer/sendMessages.js")

const install = (): boolean => {
  if (requireCjs.cache[sendMessagesPath] !== undefined) {
    // kafkajs' producer is loaded already, with its own function: nothing to replace any more.
    return requireCjs.cache[groupPath]?.exports === groupMessagesPerPartition
  }
  const module = new Module(groupPath)
  module.filename = groupPath
  module.loaded = true
  module.exports = groupMessagesPerPartition
  requireCjs.cache[groupPath] = module
  return true
}

export const installed = install()

/** What kafkajs' `sendMessages` uses now (for tests). */
export const active = (): unknown => requireCjs(groupPath)
