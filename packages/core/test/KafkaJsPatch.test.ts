/**
 * The linear `groupMessagesPerPartition` (internal/kafkajsPatch.ts): kafkajs' producer uses it once Sluice's kafkajs
 * layer is loaded, and it groups exactly as kafkajs' own quadratic version does.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as KafkaJS from "kafkajs"
import "../src/KafkaJs.ts"
import { active, groupMessagesPerPartition, installed } from "../src/internal/kafkajsPatch.ts"

/** kafkajs 2.2.4's src/producer/groupMessagesPerPartition.js, as the reference. */
const reference = ({
  topic,
  partitionMetadata,
  messages,
  partitioner
}: Parameters<typeof groupMessagesPerPartition>[0]): Record<number, Array<KafkaJS.Message>> => {
  if (partitionMetadata.length === 0) return {}
  return messages.reduce<Record<number, Array<KafkaJS.Message>>>((result, message) => {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition] || []
    return Object.assign(result, { [partition]: [...current, message] })
  }, {})
}

const metadata = (n: number): Array<KafkaJS.PartitionMetadata> =>
  Array.from({ length: n }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 1,
    replicas: [1],
    isr: [1]
  }))

describe("kafkajs patch", () => {
  it("is what kafkajs' producer uses once the kafkajs layer is loaded", () => {
    assert.isTrue(installed)
    assert.strictEqual(active(), groupMessagesPerPartition)
  })

  it("groups like kafkajs: same partitions, same order, the partitioner called once per message in order", () => {
    let seed = 7
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed / 2 ** 31
    }
    for (const [count, partitions] of [
      [0, 3],
      [1, 1],
      [50, 3],
      [1_000, 7],
      [20, 0]
    ] as const) {
      const messages: Array<KafkaJS.Message> = Array.from({ length: count }, (_, i) => ({
        key: `k${i}`,
        value: `v${i}`,
        ...(random() < 0.3 ? { partition: Math.floor(random() * Math.max(1, partitions)) } : {})
      }))
      const choices = messages.map((m) => m.partition ?? Math.floor(random() * Math.max(1, partitions)))
      const calls = (seen: Array<KafkaJS.Message>) => (args: { readonly message: KafkaJS.Message }) => {
        seen.push(args.message)
        return choices[messages.indexOf(args.message)]!
      }
      const seenLinear: Array<KafkaJS.Message> = []
      const seenReference: Array<KafkaJS.Message> = []
      const input = { topic: "t", partitionMetadata: metadata(partitions), messages }
      const linear = groupMessagesPerPartition({ ...input, partitioner: calls(seenLinear) })
      const expected = reference({ ...input, partitioner: calls(seenReference) })
      assert.deepStrictEqual(linear, expected, `${count} messages, ${partitions} partitions`)
      assert.deepStrictEqual(Object.keys(linear), Object.keys(expected))
      assert.deepStrictEqual(seenLinear, seenReference)
    }
  })
})
