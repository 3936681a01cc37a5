/**
 * The kafkajs task assigner's pure parts: the ownership claim in the subscription's userData, and the leader's
 * plan (co-partitioned, sticky, the in-memory broker's), without a broker.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as KafkaJS from "kafkajs"
import {
  decodeOwnership,
  encodeOwnership,
  makeAssigner,
  noOwnership,
  type Ownership,
  plan,
  type Subscriber
} from "../src/internal/kafkajsAssigner.ts"
import type { TopicPartition } from "../src/Record.ts"

const tasks = (topics: ReadonlyArray<string>, partitions: ReadonlyArray<number>): Array<TopicPartition> =>
  partitions.flatMap((partition) => topics.map((topic) => ({ topic, partition })))

const subscriber = (
  memberId: string,
  topics: ReadonlyArray<string>,
  owned: ReadonlyArray<number> = [],
  generation = 1
) => ({ memberId, topics, ownership: { generation, owned: tasks(topics, owned) } }) satisfies Subscriber

const taskNumbers = (planned: Map<string, Array<TopicPartition>>) =>
  Object.fromEntries(
    [...planned].map(([m, tps]) => [m, [...new Set(tps.map((tp) => tp.partition))].sort((a, b) => a - b)])
  )

describe("kafkajs task assigner", () => {
  it("a claim round-trips through userData; anything unreadable claims nothing", () => {
    const claim = { generation: 7, owned: tasks(["in-a", "in-b"], [0, 4]) }
    const decoded = decodeOwnership(encodeOwnership(claim))
    assert.strictEqual(decoded.generation, 7)
    assert.sameDeepMembers([...decoded.owned], [...claim.owned])
    assert.include(encodeOwnership(claim).toString("utf8"), `"v":1`)
    for (const junk of [
      undefined,
      null,
      Buffer.alloc(0),
      Buffer.from("not json"),
      Buffer.from(`{"v":2,"generation":1,"owned":{}}`),
      Buffer.from(`{"v":1,"generation":"x","owned":{}}`)
    ]) {
      assert.deepStrictEqual(decodeOwnership(junk), noOwnership)
    }
  })

  it("plans co-partitioned, balanced, sticky tasks", () => {
    const topics = ["a", "b", "c"]
    const six = () => 6
    const one = Result.getOrThrow(plan([subscriber("m1", topics)], six))
    assert.deepStrictEqual(taskNumbers(one), { m1: [0, 1, 2, 3, 4, 5] })
    assert.strictEqual(one.get("m1")!.length, 18)
    const three = Result.getOrThrow(
      plan([subscriber("m1", topics, [0, 1, 2]), subscriber("m2", topics, [3, 4, 5]), subscriber("m3", topics)], six)
    )
    assert.deepStrictEqual(taskNumbers(three), { m1: [0, 1], m2: [3, 4], m3: [2, 5] })
    for (const tps of three.values()) {
      for (const p of new Set(tps.map((tp) => tp.partition))) {
        assert.sameMembers(
          tps.filter((tp) => tp.partition === p).map((tp) => tp.topic),
          topics
        )
      }
    }
    // A task claimed twice (a member that was dropped and came back): the newer generation wins.
    const stale = Result.getOrThrow(
      plan([subscriber("m1", topics, [0, 1, 2], 3), subscriber("m2", topics, [2, 3, 4, 5], 4)], six)
    )
    assert.deepStrictEqual(taskNumbers(stale), { m1: [0, 1, 5], m2: [2, 3, 4] })
  })

  it("fails the plan when the shared inputs differ in partition count, naming topics and counts", () => {
    const counts = new Map([
      ["clicks", 6],
      ["users", 3]
    ])
    const failed = plan([subscriber("m1", ["clicks", "users"])], (t) => counts.get(t) ?? 0)
    assert.isTrue(Result.isFailure(failed))
    if (Result.isFailure(failed)) {
      assert.include(failed.failure, "not co-partitioned")
      assert.include(failed.failure, "clicks has 6")
      assert.include(failed.failure, "users has 3")
    }
    // Members that subscribe differently are assigned topic by topic: no common count needed.
    const split = Result.getOrThrow(
      plan([subscriber("m1", ["clicks"]), subscriber("m2", ["users"])], (t) => counts.get(t) ?? 0)
    )
    assert.strictEqual(split.get("m1")!.length, 6)
    assert.strictEqual(split.get("m2")!.length, 3)
  })

  it("the kafkajs assigner encodes the claim and the plan in kafkajs' formats", async () => {
    let claimed: Ownership = { generation: 2, owned: tasks(["x", "y"], [1]) }
    const assigner = makeAssigner(
      "g",
      () => claimed,
      () => 2
    )
    const m1 = assigner.protocol({ topics: ["x", "y"] }).metadata
    claimed = noOwnership
    const m2 = assigner.protocol({ topics: ["x", "y"] }).metadata
    const decoded = KafkaJS.AssignerProtocol.MemberMetadata.decode(m1)
    assert.deepStrictEqual(decoded?.topics, ["x", "y"])
    assert.strictEqual(decodeOwnership(decoded?.userData).generation, 2)
    const out = await assigner.assign({
      members: [
        { memberId: "m1", memberMetadata: m1 },
        { memberId: "m2", memberMetadata: m2 }
      ],
      topics: ["x", "y"]
    })
    const assignments = Object.fromEntries(
      out.map((o) => [o.memberId, KafkaJS.AssignerProtocol.MemberAssignment.decode(o.memberAssignment)?.assignment])
    )
    assert.deepStrictEqual(assignments, { m1: { x: [1], y: [1] }, m2: { x: [0], y: [0] } })
  })
})
