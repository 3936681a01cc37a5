/**
 * kafkajs' log, routed to Effect's logger and summarised.
 *
 * kafkajs logs at error level what Sluice handles itself: every failed connection attempt, every error response it
 * retries (a coordinator that moved or is loading, a rebalance), every consumer crash it restarts from. Sluice
 * reports those in its own words (a `KafkaError`, the "cannot reach Kafka" line, the consumer's crash line), so they
 * go to Debug here; what is left keeps its level but loses its stack trace, so a real problem stays one line. An
 * entry repeated within `windowMs` is logged once, and its next appearance after the window says how often it came.
 */
// First, before kafkajs loads (kafkajsPatch.ts).
import "./kafkajsPatch.ts"
import { type Context, Effect, type LogLevel } from "effect"
import * as KafkaJS from "kafkajs"

/**
 * kafkajs' namespaces whose entries are about connections and requests, which Sluice retries or reports: a failed
 * produce reaches the caller of `send` as a KafkaError.
 */
const handledNamespaces = new Set(["Connection", "ConnectionPool", "BrokerPool", "RequestQueue", "Producer"])

/** Entries that are real problems wherever they come from: Sluice's own code threw inside kafkajs. */
const realProblems = [/^Failed to execute listener/, /^Error when calling each(Batch|Message)/]

/** Entries about retries, rejoins and restarts kafkajs does by itself, from whichever namespace. */
const handledMessages = [
  /^Crash: /,
  /^Restarting the consumer/,
  /re-?join/i,
  /resync group/,
  /rebalanc/i,
  /coordinator/i,
  /refreshing metadata/,
  /^Failed to (send messages|connect)/,
  /^Could not (create|delete|describe|alter) /,
  /^Connection (error|timeout)/,
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN/
]

/** The severity a kafkajs entry is logged at. */
export const severityOf = (namespace: string, level: KafkaJS.logLevel, message: string): LogLevel.Severity => {
  if (level >= KafkaJS.logLevel.DEBUG) return "Debug"
  if (realProblems.some((pattern) => pattern.test(message))) return level <= KafkaJS.logLevel.ERROR ? "Error" : "Warn"
  if (handledNamespaces.has(namespace) || handledMessages.some((pattern) => pattern.test(message))) return "Debug"
  return level <= KafkaJS.logLevel.ERROR ? "Error" : level === KafkaJS.logLevel.WARN ? "Warn" : "Info"
}

/**
 * The fields of an entry as log annotations. Above Debug a stack trace never goes along and an error becomes its
 * message, so the entry prints as one line.
 */
export const annotationsOf = (
  severity: LogLevel.Severity,
  extra: Readonly<Record<string, unknown>>
): Record<string, unknown> => {
  if (severity === "Debug" || severity === "Trace") return { ...extra }
  const out: Record<string, unknown> = {}
  for (const key in extra) {
    if (key === "stack") continue
    const value = extra[key]
    out[key] = value instanceof Error ? value.message : value
  }
  return out
}

interface Seen {
  since: number
  suppressed: number
}

/**
 * Decides per entry whether it is logged: the first of a kind, then the next one after `windowMs`, which carries how
 * many were left out in between. `now` is injectable for tests.
 */
export const makeSummary = (windowMs: number, now: () => number = Date.now) => {
  const seen = new Map<string, Seen>()
  return (key: string): { readonly log: boolean; readonly suppressed: number } => {
    const t = now()
    const entry = seen.get(key)
    if (entry !== undefined && t - entry.since < windowMs) {
      entry.suppressed++
      return { log: false, suppressed: 0 }
    }
    const suppressed = entry?.suppressed ?? 0
    // Bounded memory: forget kinds whose window has passed once there are many of them.
    if (entry === undefined && seen.size >= 1000) {
      for (const [k, e] of seen) if (t - e.since >= windowMs) seen.delete(k)
    }
    seen.set(key, { since: t, suppressed: 0 })
    return { log: true, suppressed }
  }
}

/** The kafkajs level that lets entries of `level` and more severe ones through. */
export const toKafkaJsLevel = (level: "None" | "Error" | "Warn" | "Info" | "Debug"): KafkaJS.logLevel => {
  switch (level) {
    case "None":
      return KafkaJS.logLevel.NOTHING
    case "Error":
      return KafkaJS.logLevel.ERROR
    case "Warn":
      return KafkaJS.logLevel.WARN
    case "Info":
      return KafkaJS.logLevel.INFO
    case "Debug":
      return KafkaJS.logLevel.DEBUG
  }
}

/**
 * Routes kafkajs' log entries to the Effect logger of `context`, summarised over `windowMs`; kafkajs' own debug
 * entries (one per request and response, asked for with `logLevel: "Debug"` to see what the client does and when)
 * pass whole, each one.
 */
export const logCreator = (context: Context.Context<never>, windowMs = 10_000): KafkaJS.logCreator => {
  const summary = makeSummary(windowMs)
  return () =>
    ({ namespace, level, log }) => {
      const { message, timestamp: _, ...extra } = log
      const severity = severityOf(namespace, level, message)
      const { log: emit, suppressed } =
        level >= KafkaJS.logLevel.DEBUG ? { log: true, suppressed: 0 } : summary(`${severity} ${namespace} ${message}`)
      if (!emit) return
      const repeated = suppressed === 0 ? "" : ` (${suppressed} more like it in the last ${windowMs / 1000} s)`
      // A log line is synchronous: it reaches the loggers before kafkajs' call returns, in kafkajs' order.
      Effect.runSyncWith(context)(
        Effect.logWithLevel(severity)(`kafkajs ${namespace}: ${message}${repeated}`).pipe(
          Effect.annotateLogs(annotationsOf(severity, extra))
        )
      )
    }
}
