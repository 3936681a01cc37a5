/**
 * How a group's members share a topology's tasks: balanced, co-partitioned and sticky, like Kafka Streams'
 * assignor. A task is one partition number across all of a topology's inputs, so a member given task i reads
 * partition i of every input. Sticky: a member keeps the tasks it owned where the balance allows, so its local
 * state stays warm and as few tasks as possible move in a rebalance.
 *
 * A pure function, so the in-memory broker and the kafkajs layer assign with the very same code.
 */
import type { TopicPartition } from "./Record.ts"

/** What a member says it owned: its tasks in the latest generation it took part in. */
export interface Claim {
  readonly memberId: string
  readonly owned: ReadonlyArray<number>
  /** The generation of that ownership; -1 for a member that owned nothing yet. */
  readonly generation: number
}

const byId = (a: Claim, b: Claim) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0)

/**
 * Tasks `0 .. taskCount-1` shared among the claimants: every member gets ⌊T/n⌋ or ⌈T/n⌉ tasks; a task stays
 * with the member that owned it (the latest generation wins a task claimed twice) unless that member is over its
 * share; the rest go to the members with the most room. Each member's tasks are in ascending order.
 */
export const assignTasks = (taskCount: number, claims: ReadonlyArray<Claim>): Map<string, Array<number>> => {
  const members = [...claims].sort(byId)
  const plan = new Map<string, Array<number>>(members.map((m) => [m.memberId, []]))
  if (members.length === 0 || taskCount <= 0) return plan

  // The valid claim on each task: in range, and from the latest generation (ties: the first member by id).
  const claimant = new Array<Claim | undefined>(taskCount)
  for (const m of members) {
    for (const t of m.owned) {
      if (!Number.isInteger(t) || t < 0 || t >= taskCount) continue
      const current = claimant[t]
      if (current === undefined || m.generation > current.generation) claimant[t] = m
    }
  }
  const kept = new Map<string, Array<number>>(members.map((m) => [m.memberId, []]))
  for (let t = 0; t < taskCount; t++) {
    const c = claimant[t]
    if (c !== undefined) kept.get(c.memberId)!.push(t)
  }

  // Shares: ⌊T/n⌋ each, and one more for `extra` members, given first to those that keep the most tasks.
  const base = Math.floor(taskCount / members.length)
  let extra = taskCount % members.length
  const quota = new Map<string, number>()
  const byKept = [...members].sort((a, b) => kept.get(b.memberId)!.length - kept.get(a.memberId)!.length || byId(a, b))
  for (const m of byKept) {
    const more = extra > 0 && kept.get(m.memberId)!.length > base
    quota.set(m.memberId, base + (more ? 1 : 0))
    if (more) extra--
  }
  // Members that keep no more than their base share take the remaining extra slots, in id order.
  for (const m of members) {
    if (extra === 0) break
    if (quota.get(m.memberId) === base) {
      quota.set(m.memberId, base + 1)
      extra--
    }
  }

  const owner = new Array<string | undefined>(taskCount)
  for (const m of members) {
    const mine = plan.get(m.memberId)!
    for (const t of kept.get(m.memberId)!.slice(0, quota.get(m.memberId)!)) {
      mine.push(t)
      owner[t] = m.memberId
    }
  }
  for (let t = 0; t < taskCount; t++) {
    if (owner[t] !== undefined) continue
    let target: Claim | undefined
    let room = 0
    for (const m of members) {
      const free = quota.get(m.memberId)! - plan.get(m.memberId)!.length
      if (free > room) {
        room = free
        target = m
      }
    }
    // Quotas add up to taskCount, so some member always has room here.
    plan.get(target!.memberId)!.push(t)
    owner[t] = target!.memberId
  }
  for (const tasks of plan.values()) tasks.sort((a, b) => a - b)
  return plan
}

/** Checks that every input has the same partition count; the message names the topics and counts. */
export const taskCount = (
  partitions: ReadonlyArray<{ readonly topic: string; readonly partitions: number }>
): { readonly count: number } | { readonly mismatch: string } => {
  const counts = new Set(partitions.map((p) => p.partitions))
  if (counts.size <= 1) return { count: partitions[0]?.partitions ?? 0 }
  return {
    mismatch: `inputs are not co-partitioned: ${partitions.map((p) => `${p.topic} has ${p.partitions}`).join(", ")} partitions; every input of a topology needs the same count`
  }
}

/**
 * A group's assignment from its members' subscriptions and what they owned, the same on both layers (the memory
 * broker's groups and the kafkajs assigner): members with the
 * same subscription share tasks, a task being partition i of every topic they read, and keep the tasks they owned
 * where the balance allows. Members whose subscriptions differ (a misconfigured group) are assigned topic by topic.
 * Topics that do not exist yet assign nothing.
 */
export const taskAssign = (
  members: ReadonlyArray<{
    readonly id: string
    readonly topics: ReadonlyArray<string>
    readonly owned: ReadonlyArray<TopicPartition>
    readonly generation: number
  }>,
  topics: ReadonlyMap<string, { readonly partitions: ReadonlyArray<unknown> }>
): Map<string, Array<TopicPartition>> => {
  const plan = new Map<string, Array<TopicPartition>>(members.map((m) => [m.id, []]))
  const subscription = (m: { readonly topics: ReadonlyArray<string> }) => [...new Set(m.topics)].sort().join("\u0000")
  const same = members.every((m) => subscription(m) === subscription(members[0]!))
  const countOf = (topic: string) => topics.get(topic)?.partitions.length ?? 0
  const share = (names: ReadonlyArray<string>, sharing: typeof members) => {
    const taskCount = Math.max(0, ...names.map(countOf))
    const claims = sharing.map((m) => ({
      memberId: m.id,
      owned: [...new Set(m.owned.filter((tp) => names.includes(tp.topic)).map((tp) => tp.partition))],
      generation: m.generation
    }))
    for (const [id, tasks] of assignTasks(taskCount, claims)) {
      const target = plan.get(id)!
      for (const t of tasks) for (const topic of names) if (t < countOf(topic)) target.push({ topic, partition: t })
    }
  }
  if (members.length === 0) return plan
  if (same) share([...new Set(members[0]!.topics)].sort(), members)
  else {
    const names = [...new Set(members.flatMap((m) => m.topics))].sort()
    for (const topic of names)
      share(
        [topic],
        members.filter((m) => m.topics.includes(topic))
      )
  }
  return plan
}
