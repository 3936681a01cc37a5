/**
 * Sluice's task assignment as a kafkajs `PartitionAssigner` (protocol `SluiceTasks`): the plan of the in-memory
 * broker (`memoryGroup.taskAssign`, on `Assignor.assignTasks`), so both layers assign alike. A member gets
 * partition i of every topic it subscribes to together, and keeps what it owned where the balance allows.
 *
 * Stickiness needs to know who owned what. Each member says so in its subscription's userData: the partitions of
 * its last assignment and the generation it got them in (JSON, versioned). kafkajs calls `protocol()` right before
 * every JoinGroup, so the claim is always the latest. The leader reads every member's claim in `assign`.
 *
 * Every member must use this assigner: a group mixing it with kafkajs' RoundRobin finds no common protocol and
 * refuses the member (INCONSISTENT_GROUP_PROTOCOL), which is better than an assignment that is not co-partitioned.
 */
// First, before kafkajs loads (kafkajsPatch.ts).
import "./kafkajsPatch.ts"
import { Option, Result, Schema } from "effect"
import * as KafkaJS from "kafkajs"
import { taskAssign, taskCount } from "../Assignor.ts"
import { KafkaError, Rejected } from "../Errors.ts"
import type { TopicPartition } from "../Record.ts"

export const protocolName = "SluiceTasks"

/** What a member claims when it joins: the partitions it owned, and the generation it owned them in. */
export interface Ownership {
  /** -1 for a member that owned nothing yet. */
  readonly generation: number
  readonly owned: ReadonlyArray<TopicPartition>
}

export const noOwnership: Ownership = { generation: -1, owned: [] }

const OwnershipJson = Schema.fromJsonString(
  Schema.Struct({
    v: Schema.Literal(1),
    generation: Schema.Number,
    /** topic → partitions */
    owned: Schema.Record(Schema.String, Schema.Array(Schema.Number))
  })
)
const decodeJson = Schema.decodeUnknownOption(OwnershipJson)

/** topic → partitions, the shape of kafkajs' assignments (and of the claim's JSON). */
const byTopic = (partitions: ReadonlyArray<TopicPartition>): Record<string, Array<number>> => {
  const out: Record<string, Array<number>> = {}
  for (const { topic, partition } of partitions) {
    const list = out[topic]
    if (list === undefined) out[topic] = [partition]
    else list.push(partition)
  }
  return out
}

export const encodeOwnership = (ownership: Ownership): Buffer =>
  Buffer.from(JSON.stringify({ v: 1, generation: ownership.generation, owned: byTopic(ownership.owned) }), "utf8")

/** A claim from another member; anything unreadable (an older or newer format, garbage) claims nothing. */
export const decodeOwnership = (userData: Buffer | null | undefined): Ownership => {
  if (userData === null || userData === undefined || userData.length === 0) return noOwnership
  return Option.match(decodeJson(userData.toString("utf8")), {
    onNone: () => noOwnership,
    onSome: (data) => ({
      generation: data.generation,
      owned: Object.entries(data.owned).flatMap(([topic, partitions]) =>
        partitions.map((partition) => ({ topic, partition }))
      )
    })
  })
}

export interface Subscriber {
  readonly memberId: string
  readonly topics: ReadonlyArray<string>
  readonly ownership: Ownership
}

/**
 * The leader's plan. Members that share a subscription share tasks, so its topics must have the same partition
 * count: otherwise the plan fails with a message naming the topics and their counts. Topics that do not exist
 * (no partitions) assign nothing, as on the in-memory broker.
 */
export const plan = (
  members: ReadonlyArray<Subscriber>,
  partitionsOf: (topic: string) => number
): Result.Result<Map<string, Array<TopicPartition>>, string> => {
  const names = [...new Set(members.flatMap((m) => m.topics))].sort()
  const counts = new Map(names.map((topic) => [topic, partitionsOf(topic)]))
  // Members with differing subscriptions (a misconfigured group) are assigned topic by topic, which needs no common
  // partition count; members that share one share its tasks, which does.
  const subscriptions = new Set(members.map((m) => [...new Set(m.topics)].sort().join("\u0000")))
  if (subscriptions.size === 1) {
    const checked = taskCount(
      names.filter((topic) => counts.get(topic)! > 0).map((topic) => ({ topic, partitions: counts.get(topic)! }))
    )
    if ("mismatch" in checked) return Result.fail(checked.mismatch)
  }
  const topics = new Map(names.map((topic) => [topic, { partitions: new Array<never>(counts.get(topic) ?? 0) }]))
  return Result.succeed(
    taskAssign(
      members.map((m) => ({
        id: m.memberId,
        topics: m.topics,
        owned: m.ownership.owned,
        generation: m.ownership.generation
      })),
      topics
    )
  )
}

/**
 * The kafkajs assigner for one consumer: `ownership` is asked right before every JoinGroup; `partitionsOf` reads
 * the leader's metadata, which kafkajs refreshes right before calling `assign`.
 */
export const makeAssigner = (
  groupId: string,
  ownership: () => Ownership,
  partitionsOf: (topic: string) => number
): KafkaJS.Assigner => ({
  name: protocolName,
  version: 1,
  protocol: ({ topics }) => ({
    name: protocolName,
    metadata: KafkaJS.AssignerProtocol.MemberMetadata.encode({
      version: 1,
      topics,
      userData: encodeOwnership(ownership())
    })
  }),
  assign: async ({ members }) => {
    const subscribers = members.map(({ memberId, memberMetadata }): Subscriber => {
      const metadata = KafkaJS.AssignerProtocol.MemberMetadata.decode(memberMetadata)
      return { memberId, topics: metadata?.topics ?? [], ownership: decodeOwnership(metadata?.userData) }
    })
    const planned = plan(subscribers, partitionsOf)
    if (Result.isFailure(planned)) {
      // Thrown by the leader, it fails the join: the consumer crashes for good (not retryable) with this
      // KafkaError, which `GroupConsumer.failed` reports.
      throw new KafkaError({
        operation: "consume",
        reason: new Rejected({ message: `group ${groupId}: ${planned.failure}` })
      })
    }
    return members.map(({ memberId }) => ({
      memberId,
      memberAssignment: KafkaJS.AssignerProtocol.MemberAssignment.encode({
        version: 1,
        assignment: byTopic(planned.success.get(memberId) ?? []),
        // kafkajs drops the assignment's userData on the receiving side.
        userData: Buffer.alloc(0)
      })
    }))
  }
})

/**
 * The assigner factory for `partitionAssigners`. Besides the assigner, it hands `onCluster` the consumer's own
 * kafkajs Cluster, which kafkajs gives only to assigner factories (the JoinGroup barrier is installed through it).
 */
export const sluiceTaskAssigner =
  (
    ownership: () => Ownership,
    onCluster: (cluster: KafkaJS.Cluster, groupId: string) => void
  ): KafkaJS.PartitionAssigner =>
  ({ cluster, groupId }) => {
    onCluster(cluster, groupId)
    return makeAssigner(groupId, ownership, (topic) => cluster.findTopicPartitionMetadata(topic).length)
  }
