/**
 * Flags shared by several commands, and the Kafka layer they select: `--brokers memory` runs on the in-memory
 * broker (demo, tests), anything else is a comma-separated list of `host:port` for the kafkajs layer.
 */

import type { KafkaError } from "@sluice/core/Errors"
import type { Kafka } from "@sluice/core/Kafka"
import * as KafkaJs from "@sluice/core/KafkaJs"
import * as MemoryBroker from "@sluice/core/MemoryBroker"
import { Config, type Layer } from "effect"
import { Flag } from "effect/cli"

export const brokers = Flag.String("brokers").pipe(
  Flag.withDescription(
    "Kafka bootstrap servers (host:port,...), or 'memory' for the in-memory broker (default: SLUICE_BROKERS, else 127.0.0.1:9092)"
  ),
  Flag.withFallbackConfig(Config.String("SLUICE_BROKERS")),
  Flag.withDefault("127.0.0.1:9092")
)

export const seed = Flag.Int("seed").pipe(
  Flag.withDescription("seed of the deterministic generator (default 42)"),
  Flag.withDefault(42)
)

export const kafkaLayer = (brokers: string): Layer.Layer<Kafka, KafkaError> =>
  brokers === "memory"
    ? MemoryBroker.layer
    : KafkaJs.layer({
        brokers: brokers
          .split(",")
          .map((b) => b.trim())
          .filter((b) => b.length > 0),
        clientId: "sluice-cli"
      })

export const prefix = Flag.String("topic-prefix").pipe(
  Flag.withDescription("prefix for every topic name, to isolate environments and tests (default: none)"),
  Flag.withDefault("")
)
