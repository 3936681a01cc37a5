/**
 * The JoinGroup barrier of the kafkajs layer: the member's JoinGroup waits until Sluice has revoked its work.
 *
 * In the classic group protocol no member gets an assignment of the next generation until every member of the
 * current one has sent its JoinGroup (or was dropped at the rebalance timeout). So a member that finishes its
 * in-flight work, makes it durable and commits *before* its JoinGroup hands its partitions over with nobody
 * working on them twice. kafkajs has no revoke callback, and it rejoins on several paths (after a heartbeat saw the
 * rebalance, from inside a fetch on stale metadata, after UNKNOWN_MEMBER_ID, after a crash), some of them while
 * batches are still in flight. Every path sends the request through the coordinator's `joinGroup`, so that is
 * where the barrier sits: the consumer's `cluster.findGroupCoordinator` is wrapped (the Cluster reaches Sluice
 * through the assigner factory, the only place kafkajs hands it out), and the coordinator it returns gets a
 * `joinGroup` that first awaits `beforeJoin`.
 *
 * While the barrier holds, the member is in no JoinGroup yet: the coordinator expires it unless it heartbeats.
 * `keepAlive` heartbeats with the member's last generation; during a rebalance the broker answers
 * REBALANCE_IN_PROGRESS and still refreshes the session. Commits with that generation are accepted too.
 */
import { Predicate } from "effect"
import type * as KafkaJS from "kafkajs"
import { errorType } from "./kafkajsErrors.ts"

/**
 * The two coordinator calls the barrier uses. kafkajs' Broker has both (src/broker/index.js) but its .d.ts
 * declares neither; the request is passed through untouched, and of the response only these fields are read.
 */
interface GroupCoordinator {
  joinGroup(request: object): Promise<{ readonly generationId: number; readonly memberId: string }>
  heartbeat(request: { groupId: string; groupGenerationId: number; memberId: string }): Promise<unknown>
}

const isGroupCoordinator = <B extends object>(broker: B): broker is B & GroupCoordinator =>
  Predicate.hasProperty(broker, "joinGroup") &&
  Predicate.isFunction(broker.joinGroup) &&
  Predicate.hasProperty(broker, "heartbeat") &&
  Predicate.isFunction(broker.heartbeat)

/** What a heartbeat during the barrier said: still a member, no longer one, or no answer (try again). */
export type KeepAlive = "alive" | "evicted" | "unknown"

export interface JoinBarrier {
  /** Runs before every JoinGroup of the member; the JoinGroup is sent once it settles. Must not reject. */
  readonly beforeJoin: (keepAlive: () => Promise<KeepAlive>) => Promise<void>
  /** The generation and member id of every successful JoinGroup. */
  readonly joined: (generationId: number, memberId: string) => void
}

const evictedTypes = new Set(["ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"])

/** Installs the barrier on a consumer's Cluster (once per consumer: the factory runs once). */
export const installJoinBarrier = (cluster: KafkaJS.Cluster, groupId: string, barrier: JoinBarrier): void => {
  let generationId = -1
  let memberId = ""
  // Coordinators are kafkajs' pooled Broker objects: the same one comes back until the coordinator moves.
  const patched = new WeakSet<object>()
  const find = cluster.findGroupCoordinator.bind(cluster)
  cluster.findGroupCoordinator = async (group) => {
    const broker = await find(group)
    if (patched.has(broker) || !isGroupCoordinator(broker)) return broker
    patched.add(broker)
    const join = broker.joinGroup.bind(broker)
    const heartbeat = broker.heartbeat.bind(broker)
    const keepAlive = async (): Promise<KeepAlive> => {
      if (memberId === "") return "alive"
      try {
        await heartbeat({ groupId, groupGenerationId: generationId, memberId })
        return "alive"
      } catch (error) {
        const type = errorType(error)
        if (type === "REBALANCE_IN_PROGRESS") return "alive"
        return type !== undefined && evictedTypes.has(type) ? "evicted" : "unknown"
      }
    }
    broker.joinGroup = async (request) => {
      await barrier.beforeJoin(keepAlive)
      const response = await join(request)
      generationId = response.generationId
      memberId = response.memberId
      barrier.joined(generationId, memberId)
      return response
    }
    return broker
  }
}
