/**
 * Deterministic profiles and clicks for the click-enrichment topology: the same seed gives the same data, and the
 * profile of a user is a pure function of its id, so every enriched click can be checked against the truth.
 */

import type { ProducerRecord } from "@sluice/core/Record"
import * as Topic from "@sluice/core/Topic"
import { Result } from "effect"
import { type Click, defaultTopics, type Profile, type Topics } from "./ClickEnrichment.ts"
import * as Random from "./Random.ts"

const names = ["Alice", "Bob", "Charlie", "Dana", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj"]
const cities = ["Lisbon", "Oslo", "Kyoto", "Lagos", "Lima", "Perth", "Quito", "Riga", "Seoul", "Turin", "Tunis"]
const urls = ["/", "/products/widget-a", "/products/widget-b", "/cart", "/checkout", "/search?q=kafka", "/about"]

/** User ids run from `firstUserId`, so the lab's ids (101, 102, 103 ...) look familiar. */
export const firstUserId = 101

/** The truth: the profile every generated user has. */
export const profileFor = (id: number): Profile => {
  const i = id - firstUserId
  return { id, name: `${names[i % names.length]}-${i}`, city: cities[(i * 7) % cities.length]! }
}

const encodeOrThrow = <K, V>(topic: Topic.Topic<K, V>, key: K, value: V): ProducerRecord =>
  // Generated values are valid by construction; a failure here is a bug in this module.
  Result.getOrThrow(Topic.encode(topic, key, value))

export const generateProfiles = (users: number, topics: Topics = defaultTopics): ReadonlyArray<ProducerRecord> => {
  const out = new Array<ProducerRecord>(users)
  for (let i = 0; i < users; i++) {
    const id = firstUserId + i
    out[i] = encodeOrThrow(topics.profiles, id, profileFor(id))
  }
  return out
}

export interface ClickOptions {
  readonly count: number
  readonly users: number
  readonly seed?: number
  readonly startTime?: number
  readonly topics?: Topics
}

const clickInterval = 10

/**
 * The clicks `generateClicks` gives, made as they are asked for (`take`), so that a benchmark producing millions
 * does not hold them all. Click i has timestamp `startTime + 10 i`: `indexOf` maps a timestamp back to i.
 */
export const clickSource = (options: ClickOptions) => {
  const topics = options.topics ?? defaultTopics
  const rng = Random.make(options.seed ?? 7)
  const start = options.startTime ?? 1_700_000_000_000
  let next = 0
  return {
    /** The next `n` clicks (fewer at the end). */
    take: (n: number): ReadonlyArray<ProducerRecord> => {
      const out: Array<ProducerRecord> = []
      for (; next < options.count && out.length < n; next++) {
        const click: Click = {
          timestamp: start + next * clickInterval,
          user_id: firstUserId + rng.int(0, options.users - 1),
          url: rng.pick(urls)
        }
        out.push(encodeOrThrow(topics.clicks, click.user_id, click))
      }
      return out
    },
    /** The index of the click with this timestamp, or -1 when no generated click has it. */
    indexOf: (timestamp: number): number => {
      const i = (timestamp - start) / clickInterval
      return Number.isInteger(i) && i >= 0 && i < options.count ? i : -1
    }
  }
}

export const generateClicks = (options: ClickOptions): ReadonlyArray<ProducerRecord> =>
  clickSource(options).take(options.count)

/** What a run of the join produced, checked against the clicks that went in and the profiles' truth. */
export interface Verification {
  readonly expected: number
  /** Clicks with at least one enriched record. */
  readonly present: number
  /** Clicks whose enriched record has the click's user and url and the right user name and city. */
  readonly correct: number
  /** Extra enriched records for a click already seen (allowed by at-least-once, reported). */
  readonly duplicates: number
  /** The first few problems, for the error message. */
  readonly problems: ReadonlyArray<string>
}

export const isCorrect = (v: Verification): boolean => v.present === v.expected && v.correct === v.expected

/**
 * Checks enriched records against the clicks, each identified by a string the caller chose (the click's own
 * timestamp, unique among generated clicks, or its `partition:offset` from the topology's provenance header). Users
 * missing from `knownUsers` must come out with null name and city.
 */
/**
 * The clicks `generateClicks(options)` gives, decoded and keyed by their timestamp (unique per click), as `verify`
 * takes them: the truth a run's outputs are checked against, made again from the seed once the measuring is over.
 */
export const sentByTimestamp = (options: ClickOptions): ReadonlyMap<string, Click> => {
  const codec = (options.topics ?? defaultTopics).clicks.value
  const sent = new Map<string, Click>()
  for (const record of generateClicks(options)) {
    const click = codec.decode(record.value)
    if (Result.isSuccess(click)) sent.set(String(click.success.timestamp), click.success)
  }
  return sent
}

export const verify = (
  sentClicks: ReadonlyMap<string, Click>,
  outputs: ReadonlyArray<{ readonly source: string | undefined; readonly value: EnrichedClickLike }>,
  knownUsers: (id: number) => boolean = () => true
): Verification => {
  const seen = new Set<string>()
  let correct = 0
  let duplicates = 0
  const problems: Array<string> = []
  for (const { source, value } of outputs) {
    const click = source === undefined ? undefined : sentClicks.get(source)
    if (source === undefined || click === undefined) {
      if (problems.length < 5)
        problems.push(`an enriched record without a known source click (${source ?? "no source"})`)
      continue
    }
    if (seen.has(source)) {
      duplicates++
      continue
    }
    seen.add(source)
    const truth = knownUsers(click.user_id) ? profileFor(click.user_id) : undefined
    const ok =
      value.user_id === click.user_id &&
      value.url === click.url &&
      value.user_name === (truth?.name ?? null) &&
      value.user_city === (truth?.city ?? null)
    if (ok) correct++
    else if (problems.length < 5)
      problems.push(
        `click ${source}: got ${JSON.stringify(value)}, expected user ${click.user_id} ${truth?.name ?? "null"}`
      )
  }
  if (seen.size < sentClicks.size && problems.length < 5)
    problems.push(`${sentClicks.size - seen.size} click(s) have no enriched record`)
  return { expected: sentClicks.size, present: seen.size, correct, duplicates, problems }
}

export interface EnrichedClickLike {
  readonly user_id: number
  readonly url: string
  readonly user_name: string | null
  readonly user_city: string | null
}
