import { assert, describe, it } from "@effect/vitest"
import { assignTasks, type Claim, taskCount } from "../src/Assignor.ts"

const claim = (memberId: string, owned: ReadonlyArray<number> = [], generation = 1): Claim => ({
  memberId,
  owned,
  generation
})
const asObject = (plan: Map<string, Array<number>>) => Object.fromEntries(plan)
const moved = (before: Record<string, ReadonlyArray<number>>, after: Map<string, Array<number>>) => {
  let n = 0
  for (const [member, tasks] of after) for (const t of tasks) if (!(before[member] ?? []).includes(t)) n++
  return n
}

describe("Assignor", () => {
  it("shares 6 tasks over 1, 2 and 3 new members evenly", () => {
    assert.deepStrictEqual(asObject(assignTasks(6, [claim("a")])), { a: [0, 1, 2, 3, 4, 5] })
    const two = assignTasks(6, [claim("a"), claim("b")])
    assert.deepStrictEqual(two.get("a")?.length, 3)
    assert.deepStrictEqual(two.get("b")?.length, 3)
    const three = assignTasks(6, [claim("a"), claim("b"), claim("c")])
    assert.deepStrictEqual(
      [...three.values()].map((t) => t.length),
      [2, 2, 2]
    )
    assert.deepStrictEqual([...three.values()].flat().sort(), [0, 1, 2, 3, 4, 5])
  })

  it("is sticky: a joining member takes only what balance needs, and a leaving member's tasks are spread", () => {
    const before = { a: [0, 1, 2], b: [3, 4, 5] }
    const grown = assignTasks(6, [claim("a", before.a), claim("b", before.b), claim("c")])
    assert.strictEqual(moved(before, grown), 2, JSON.stringify(asObject(grown)))
    for (const t of grown.get("a")!) assert.include(before.a, t)
    for (const t of grown.get("b")!) assert.include(before.b, t)
    const now = asObject(grown)
    const shrunk = assignTasks(6, [claim("a", now.a, 2), claim("b", now.b, 2)])
    assert.strictEqual(moved(now, shrunk), 2, "only c's two tasks move")
    assert.deepStrictEqual(
      [...shrunk.values()].map((t) => t.length),
      [3, 3]
    )
  })

  it("gives a task claimed twice to the latest generation, and ignores claims out of range", () => {
    const plan = assignTasks(4, [claim("a", [0, 1, 9], 3), claim("b", [1, 2, 3], 5)])
    // b wins task 1 (generation 5) and keeps two of its three; a keeps 0 and takes the task b had to give up.
    assert.deepStrictEqual(asObject(plan), { a: [0, 3], b: [1, 2] })
  })

  it("leaves members beyond the task count idle, and never assigns a task twice or not at all", () => {
    for (let tasks = 0; tasks <= 7; tasks++) {
      for (let members = 1; members <= 5; members++) {
        const claims = Array.from({ length: members }, (_, i) =>
          claim(
            `m${i}`,
            [i, (i * 3) % 7, i + 4].filter((t) => t < tasks),
            i % 2
          )
        )
        const plan = assignTasks(tasks, claims)
        const all = [...plan.values()].flat().sort((x, y) => x - y)
        assert.deepStrictEqual(
          all,
          Array.from({ length: tasks }, (_, t) => t),
          `${tasks} tasks, ${members} members`
        )
        const sizes = [...plan.values()].map((t) => t.length)
        assert.isAtMost(Math.max(...sizes) - Math.min(...sizes), 1)
      }
    }
  })

  it("names the topics and counts of inputs that are not co-partitioned", () => {
    assert.deepStrictEqual(
      taskCount([
        { topic: "a", partitions: 6 },
        { topic: "b", partitions: 6 }
      ]),
      { count: 6 }
    )
    const bad = taskCount([
      { topic: "clicks", partitions: 6 },
      { topic: "views", partitions: 4 }
    ])
    assert.deepStrictEqual(bad, {
      mismatch:
        "inputs are not co-partitioned: clicks has 6, views has 4 partitions; every input of a topology needs the same count"
    })
  })
})
