/**
 * The admin side of the kafkajs layer on one kafkajs admin client: topics (create, delete, list, describe, offsets,
 * record limits) and a group's committed offsets.
 *
 * Three kafkajs behaviours shape it:
 * - Its admin shares one metadata cache, and a metadata call for some topics replaces it: a concurrent
 *   `fetchTopicOffsets` for another topic then finds no partitions (kafkajs#461). Calls go one at a time.
 * - It keeps refreshing the metadata of every topic it fetched offsets for, and once one of them is deleted (by
 *   anyone) every refresh fails with UNKNOWN_TOPIC_OR_PARTITION, for calls about any topic. Such an admin is replaced
 *   by a fresh one, which forgets those topics, before the next call that would refresh.
 * - It retries a missing topic for seconds and then fails without naming it. Calls about a topic therefore check the
 *   topic list first (one metadata request) and fail at once with `Kafka.unknownTopic`.
 */
// First, before kafkajs loads (kafkajsPatch.ts).
import "./kafkajsPatch.ts"
import { Effect, Schedule, type Scope, Semaphore } from "effect"
import * as KafkaJS from "kafkajs"
import { KafkaError, Rejected, Transient } from "../Errors.ts"
import { type KafkaShape, type PartitionOffsets, type TopicSpec, unknownTopic } from "../Kafka.ts"
import { makeClient } from "./kafkajsClient.ts"
import { attempt, backoff } from "./kafkajsErrors.ts"

/** The admin calls of `Kafka`, and what the producer and the consumers need from the admin. */
export interface Admin
  extends Pick<
    KafkaShape,
    | "listTopics"
    | "createTopics"
    | "deleteTopics"
    | "describeTopic"
    | "offsets"
    | "committedOffsets"
    | "groupOffsets"
    | "maxRecordBytes"
    | "describeGroup"
  > {
  /** Connects the admin client; a no-op once connected. */
  readonly connect: Effect.Effect<void, KafkaError>
  /** Which of `names` do not exist. */
  readonly missingTopics: (names: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, KafkaError>
  /** Drops the cached limit of a topic, e.g. after the broker refused a batch the cached limit let through. */
  readonly forgetLimit: (topic: string) => void
}

export interface AdminSettings {
  /** How long closing waits for the admin to disconnect. */
  readonly closeTimeoutMs: number
}

// kafkajs' ConfigResourceTypes.TOPIC: Node's ESM loader does not see that enum among kafkajs' named exports.
const topicResource: KafkaJS.ConfigResourceTypes = 2

const isUnknownTopic = (error: KafkaError) => error.reason._tag === "UnknownTopic"

/** Stale metadata right after a topic is created or a leader moves: a few quick tries, for about 3 s in all. */
const metadataRetry = Schedule.exponential("50 millis").pipe(Schedule.upTo({ duration: "3 seconds" }))

/** Waits until the broker's metadata lists every partition of the topics with a leader (kafkajs#770). */
const awaitLeaders = (admin: KafkaJS.Admin, names: ReadonlyArray<string>) =>
  attempt("createTopics", () => admin.fetchTopicMetadata({ topics: [...names] })).pipe(
    // Just created: a broker whose metadata is behind still says the topic does not exist.
    Effect.mapError((error) =>
      isUnknownTopic(error)
        ? new KafkaError({
            operation: "createTopics",
            reason: new Transient({ message: `not in the metadata yet: ${names.join(", ")}`, cause: error })
          })
        : error
    ),
    Effect.flatMap(({ topics }) => {
      const missing = names.filter((name) => {
        const topic = topics.find((t) => t.name === name)
        return topic === undefined || topic.partitions.length === 0 || topic.partitions.some((p) => p.leader < 0)
      })
      return missing.length === 0
        ? Effect.void
        : Effect.fail(
            new KafkaError({
              operation: "createTopics",
              reason: new Transient({ message: `no leader yet for every partition of ${missing.join(", ")}` })
            })
          )
    }),
    // A topic just created can be unknown to the broker's metadata for a moment (a busy broker): wait for it too.
    Effect.retry({ schedule: backoff(30_000), while: (e) => e.isRetryable || isUnknownTopic(e) })
  )

const toConfigEntries = (spec: TopicSpec): KafkaJS.ITopicConfig => {
  const config: KafkaJS.ITopicConfig = { topic: spec.name, numPartitions: spec.partitions }
  if (spec.replicationFactor !== undefined) config.replicationFactor = spec.replicationFactor
  if (spec.config !== undefined) {
    config.configEntries = Object.entries(spec.config).map(([name, value]) => ({ name, value }))
  }
  return config
}

export const make = Effect.fnUntraced(function* (
  kafka: KafkaJS.Kafka,
  settings: AdminSettings
): Effect.fn.Return<Admin, never, Scope.Scope> {
  const client = yield* makeClient("admin", () => kafka.admin(), settings.closeTimeoutMs)
  // The topics the current admin refreshes metadata for on its own (see the module comment).
  const targeted = new Set<string>()
  const limits = new Map<string, number>()
  const lock = yield* Semaphore.make(1)
  const serially = <A, E>(effect: Effect.Effect<A, E>) => lock.withPermits(1)(effect)

  const call = <A>(operation: string, f: (admin: KafkaJS.Admin) => Promise<A>) =>
    Effect.andThen(
      client.connect,
      attempt(operation, () => f(client.current()))
    )

  /** The topics that exist, after replacing an admin that still refreshes metadata for a deleted topic. */
  const existingTopics = (operation: string) =>
    Effect.gen(function* () {
      const existing = new Set(yield* call(operation, (admin) => admin.listTopics()))
      const gone = [...targeted].filter((topic) => !existing.has(topic))
      if (gone.length > 0) {
        yield* Effect.logDebug(
          `replacing the kafkajs admin: topics it fetched offsets for were deleted (${gone.join(", ")})`
        )
        targeted.clear()
        for (const topic of gone) limits.delete(topic)
        yield* client.replace
      }
      return existing
    })

  /** Runs `f` on a topic that exists, else fails at once with `unknownTopic`. */
  const onTopic = <A>(operation: string, topic: string, f: (admin: KafkaJS.Admin) => Promise<A>) =>
    serially(
      Effect.gen(function* () {
        const existing = yield* existingTopics(operation)
        if (!existing.has(topic)) return yield* unknownTopic(operation, topic)
        return yield* call(operation, f).pipe(
          // A topic just created, or a leader that just moved (NOT_LEADER_FOR_PARTITION): kafkajs refreshes its
          // metadata, and a second try a moment later gets through.
          Effect.retry({ schedule: metadataRetry, while: (error) => error.reason._tag === "Transient" }),
          // Deleted in between: still name the topic.
          Effect.mapError((error) => (isUnknownTopic(error) ? unknownTopic(operation, topic) : error))
        )
      })
    )

  const readLimit = (topic: string) =>
    onTopic("maxRecordBytes", topic, (admin) =>
      admin.describeConfigs({
        resources: [{ type: topicResource, name: topic, configNames: ["max.message.bytes"] }],
        includeSynonyms: false
      })
    ).pipe(
      Effect.flatMap(({ resources }) => {
        const value = resources[0]?.configEntries.find((e) => e.configName === "max.message.bytes")?.configValue
        const limit = value === undefined ? Number.NaN : Number(value)
        if (!Number.isInteger(limit) || limit <= 0) {
          return Effect.fail(
            new KafkaError({
              operation: "maxRecordBytes",
              reason: new Rejected({ message: `the broker reported no valid max.message.bytes for topic ${topic}` })
            })
          )
        }
        limits.set(topic, limit)
        return Effect.succeed(limit)
      })
    )

  return {
    connect: serially(client.connect),
    describeGroup: (groupId) =>
      serially(call("describeGroup", (admin) => admin.describeGroups([groupId]))).pipe(
        Effect.map(({ groups }) =>
          (groups[0]?.members ?? []).map((m) => {
            // An empty assignment (a member still joining) decodes to null.
            const decoded =
              m.memberAssignment.length === 0
                ? null
                : KafkaJS.AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
            const assignment = Object.entries(decoded?.assignment ?? {}).flatMap(([topic, partitions]) =>
              partitions.map((partition) => ({ topic, partition }))
            )
            return { memberId: m.memberId, clientId: m.clientId, host: m.clientHost, assignment }
          })
        )
      ),
    listTopics: serially(call("listTopics", (admin) => admin.listTopics())),
    missingTopics: (names) =>
      serially(existingTopics("listTopics")).pipe(Effect.map((existing) => names.filter((n) => !existing.has(n)))),
    createTopics: (specs) =>
      specs.length === 0
        ? Effect.void
        : serially(
            existingTopics("createTopics").pipe(
              // Topics that exist are left as they are, without a request: a worker's restart creates nothing.
              Effect.map((existing) => specs.filter((spec) => !existing.has(spec.name))),
              Effect.flatMap((missing) =>
                missing.length === 0
                  ? Effect.void
                  : call("createTopics", (admin) =>
                      admin.createTopics({ waitForLeaders: true, topics: missing.map(toConfigEntries) })
                    ).pipe(
                      // kafkajs' own wait for the leaders gives up with UNKNOWN_TOPIC_OR_PARTITION while the metadata
                      // has not caught up with the new topics; awaitLeaders waits for them itself.
                      Effect.catchIf(isUnknownTopic, () => Effect.void),
                      Effect.andThen(
                        Effect.suspend(() =>
                          awaitLeaders(
                            client.current(),
                            missing.map((s) => s.name)
                          )
                        )
                      )
                    )
              ),
              Effect.ensuring(
                Effect.sync(() => {
                  for (const spec of specs) limits.delete(spec.name)
                })
              )
            )
          ),
    deleteTopics: (names) =>
      // Deleting a topic that is already gone succeeds: the caller wanted it gone.
      serially(
        Effect.flatMap(existingTopics("deleteTopics"), (existing) => {
          const present = names.filter((name) => existing.has(name))
          if (present.length === 0) return Effect.void
          return call("deleteTopics", (admin) => admin.deleteTopics({ topics: present })).pipe(
            Effect.ensuring(
              Effect.sync(() => {
                for (const name of present) {
                  limits.delete(name)
                  targeted.delete(name)
                }
              })
            )
          )
        })
      ),
    describeTopic: (name) =>
      serially(call("describeTopic", (admin) => admin.fetchTopicMetadata({ topics: [name] }))).pipe(
        Effect.mapError((error) => (isUnknownTopic(error) ? unknownTopic("describeTopic", name) : error)),
        Effect.flatMap(({ topics }) => {
          const topic = topics.find((t) => t.name === name)
          return topic === undefined
            ? Effect.fail(unknownTopic("describeTopic", name))
            : Effect.succeed({ name, partitions: topic.partitions.length })
        })
      ),
    offsets: (topic) =>
      onTopic("offsets", topic, (admin) => {
        targeted.add(topic)
        return admin.fetchTopicOffsets(topic)
      }).pipe(
        Effect.map((partitions) =>
          partitions
            .map((p): PartitionOffsets => ({ partition: p.partition, low: Number(p.low), high: Number(p.high) }))
            .sort((a, b) => a.partition - b.partition)
        )
      ),
    committedOffsets: (groupId, topic) =>
      onTopic("committedOffsets", topic, (admin) => {
        targeted.add(topic)
        return admin.fetchOffsets({ groupId, topics: [topic] })
      }).pipe(
        Effect.map((topics) =>
          topics.flatMap((t) =>
            t.partitions
              // -1: the group has no commit for this partition.
              .filter((p) => Number(p.offset) >= 0)
              .map((p) => ({ topic: t.topic, partition: p.partition, offset: Number(p.offset) }))
              .sort((a, b) => a.partition - b.partition)
          )
        )
      ),
    groupOffsets: (groupId) =>
      serially(call("groupOffsets", (admin) => admin.fetchOffsets({ groupId }))).pipe(
        Effect.map((topics) =>
          topics
            .flatMap((t) =>
              t.partitions
                .filter((p) => Number(p.offset) >= 0)
                .map((p) => ({ topic: t.topic, partition: p.partition, offset: Number(p.offset) }))
            )
            .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition))
        )
      ),
    maxRecordBytes: (topic) =>
      Effect.suspend(() => {
        const cached = limits.get(topic)
        return cached === undefined ? readLimit(topic) : Effect.succeed(cached)
      }),
    forgetLimit: (topic) => {
      limits.delete(topic)
    }
  }
})
