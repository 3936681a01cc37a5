/**
 * Deterministic clickstream data for the clickstream-sessions topology: users `user_1 .. user_U`, sessions
 * `session_1 .. session_S` (session j belongs to user ((j - 1) mod U) + 1), and events spread over the sessions by a
 * seeded generator, each session's events moving forward in time. A profile is a pure function of its user id, so
 * every enriched row can be checked against the truth, and `recompute` gives every session's metrics from the events.
 */
import type { ProducerRecord } from "@sluice/core/Record"
import {
  type ClickEvent,
  named,
  recordOf,
  type SessionState,
  type Topics,
  type UserProfile
} from "./ClickstreamSessions.ts"
import * as Random from "./Random.ts"

const pages = [
  "/",
  "/products",
  "/products/widget-a",
  "/products/widget-b",
  "/products/gadget-c",
  "/cart",
  "/checkout",
  "/search",
  "/account",
  "/help"
]
const referrers = ["https://www.google.com/", "https://news.ycombinator.com/", "https://twitter.com/", null]
const agents = [
  "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148"
]
const places = [
  ["US", "New York"],
  ["US", "San Francisco"],
  ["GB", "London"],
  ["DE", "Berlin"],
  ["FR", "Paris"],
  ["JP", "Tokyo"],
  ["BR", "São Paulo"],
  ["IN", "Bengaluru"]
] as const
const segments = ["new", "returning", "loyal", "vip"]
const tiers = ["free", "basic", "premium"]
/** Event types and their weights (out of 100). */
const types = [
  ["page_view", 55],
  ["click", 20],
  ["search", 10],
  ["add_to_cart", 10],
  ["purchase", 5]
] as const

export const userId = (n: number): string => `user_${n}`
export const sessionId = (n: number): string => `session_${n}`

/** The truth: the profile user `user_<n>` has in Redis (`sluice produce user-profiles-redis`). */
export const profileFor = (n: number): UserProfile => ({
  user_id: userId(n),
  name: `User ${n}`,
  segment: segments[n % segments.length]!,
  tier: tiers[(n * 7) % tiers.length]!,
  lifetime_value: Math.round(((n * 7919) % 100_000) / 10) / 10
})

/** Profiles of users 1..users, as Redis entries `<keyPrefix><user_id>` → JSON. */
export const profileEntries = (
  users: number,
  keyPrefix = named().profileKeyPrefix
): Array<readonly [key: string, value: string]> =>
  Array.from({ length: users }, (_, i) => [keyPrefix + userId(i + 1), JSON.stringify(profileFor(i + 1))] as const)

/** The same profiles as Redis hashes: one field per profile field, its value as text. */
export const profileHashes = (
  users: number,
  keyPrefix = named().profileKeyPrefix
): Array<readonly [key: string, fields: { readonly [field: string]: string }]> =>
  Array.from(
    { length: users },
    (_, i) =>
      [
        keyPrefix + userId(i + 1),
        Object.fromEntries(Object.entries(profileFor(i + 1)).map(([k, v]) => [k, String(v)]))
      ] as const
  )

const pickType = (rng: Random.Random): string => {
  let roll = rng.int(0, 99)
  for (const [type, weight] of types) {
    if (roll < weight) return type
    roll -= weight
  }
  return "page_view"
}

export interface GenerateOptions {
  readonly count: number
  readonly users: number
  readonly sessions: number
  readonly seed?: number
  /** The first session's start, epoch ms. Default 2026-12-01T00:00:00Z. */
  readonly startTime?: number
  /** Numbering of sessions and events starts here (a second batch of events for new sessions). */
  readonly firstSession?: number
  /**
   * The events in event-time order, as a live clickstream arrives, rather than in the order they were drawn (each
   * session in order, but sessions' clocks minutes apart, which a windowed aggregation with a short grace reads as
   * late). The same events either way: only their order differs. Default false.
   */
  readonly inTimeOrder?: boolean
}

/** `count` events over `sessions` sessions of `users` users. */
export const generate = (options: GenerateOptions): Array<ClickEvent> => {
  const rng = Random.make(options.seed ?? 42)
  const start = options.startTime ?? Date.UTC(2026, 11, 1)
  const first = options.firstSession ?? 1
  // Each session's clock: it starts a second after the previous session, and moves 0.5-30 s per event.
  const clocks = Array.from({ length: options.sessions }, (_, j) => start + (first - 1 + j) * 1_000)
  const out = new Array<ClickEvent>(options.count)
  for (let i = 0; i < options.count; i++) {
    const j = rng.int(0, options.sessions - 1)
    const session = first + j
    const user = ((session - 1) % options.users) + 1
    clocks[j]! += rng.int(500, 30_000)
    const type = pickType(rng)
    const [country, city] = places[user % places.length]!
    const product = `sku-${rng.int(1, 50)}`
    out[i] = {
      event_id: `evt-${options.seed ?? 42}-${first}-${i}`,
      event_type: type,
      user_id: userId(user),
      session_id: sessionId(session),
      timestamp: new Date(clocks[j]!).toISOString(),
      page_url: type === "search" ? "/search" : rng.pick(pages),
      referrer: rng.pick(referrers),
      user_agent: agents[user % agents.length]!,
      ip_address: `10.${(user >> 8) & 255}.${user & 255}.${(session % 250) + 1}`,
      country,
      city,
      properties:
        type === "add_to_cart" || type === "purchase"
          ? { product_id: product, price: rng.int(100, 20_000) / 100, quantity: rng.int(1, 3) }
          : type === "search"
            ? { query: rng.pick(["widget", "gadget", "kafka", "gift"]) }
            : {}
    }
  }
  // Stable: a session's events keep their order (its clock only moves forward).
  return options.inTimeOrder === true ? out.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp)) : out
}

/** The events as records of the input topic, keyed by session. */
export const records = (events: ReadonlyArray<ClickEvent>, topics: Topics = named()): Array<ProducerRecord> =>
  events.map((e) => recordOf(topics, e))

/** A session's metrics recomputed from its events. */
export interface SessionTruth {
  readonly user_id: string
  readonly start: number
  readonly last: number
  readonly events: number
  readonly pages: number
}

/** Every session's metrics from the events (each counted once, whatever the order). */
export const recompute = (events: Iterable<ClickEvent>): Map<string, SessionTruth> => {
  const acc = new Map<string, { user_id: string; start: number; last: number; events: number; pages: Set<string> }>()
  for (const e of events) {
    const t = Date.parse(e.timestamp)
    const s = acc.get(e.session_id)
    if (s === undefined) {
      acc.set(e.session_id, {
        user_id: e.user_id,
        start: t,
        last: t,
        events: 1,
        pages: new Set(e.event_type === "page_view" ? [e.page_url] : [])
      })
      continue
    }
    s.start = Math.min(s.start, t)
    s.last = Math.max(s.last, t)
    s.events++
    if (e.event_type === "page_view") s.pages.add(e.page_url)
  }
  return new Map(
    Array.from(acc, ([id, s]) => [
      id,
      { user_id: s.user_id, start: s.start, last: s.last, events: s.events, pages: s.pages.size }
    ])
  )
}

/** A store's state as the truth's shape, to compare the two. */
export const truthOf = (state: SessionState): SessionTruth => ({
  user_id: state.user_id,
  start: state.start,
  last: state.last,
  events: state.events,
  pages: state.pages.length
})
