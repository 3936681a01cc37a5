/**
 * Where the integration tests find Kafka: `SLUICE_BROKERS` (default `127.0.0.1:9092`), parsed as the code parses it.
 */
import { Result } from "effect"
import { parseBrokers } from "../../src/Kafka.ts"

export const brokers: ReadonlyArray<string> = Result.getOrThrow(
  parseBrokers(process.env.SLUICE_BROKERS ?? "127.0.0.1:9092")
)

/** Tests fail after 10 s without a broker, rather than wait for one as a worker would. */
export const connectRetry = { maxDurationMs: 10_000 }

/** The first broker's host and port, for tests that put a proxy in front of it. */
export const firstBroker = (() => {
  const first = brokers[0]!
  const colon = first.lastIndexOf(":")
  return { host: first.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(first.slice(colon + 1)) }
})()

/** A fresh name per run, so reruns never see each other's topics and groups. */
export const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`
