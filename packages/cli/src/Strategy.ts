/** The `--strategy` flag and the ProfileLookup layer each strategy stands for. */

import * as Redis from "@sluice/core/Redis"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Layer } from "effect"
import { Flag } from "effect/cli"

export const strategies = ["table", "rescan", "redis"] as const
export type Strategy = (typeof strategies)[number]

export const flag = Flag.Literals("strategy", strategies).pipe(
  Flag.withDescription(
    "join strategy: table (in-memory, loaded once), rescan (the lab's N+1), redis (MGET per batch) (default table)"
  ),
  Flag.withDefault("table")
)

export const layer = (strategy: Strategy, topics: ClickEnrichment.Topics = ClickEnrichment.defaultTopics) => {
  switch (strategy) {
    case "table":
      return ClickEnrichment.ProfileLookup.table(topics)
    case "rescan":
      return ClickEnrichment.ProfileLookup.rescan(topics)
    case "redis":
      return ClickEnrichment.ProfileLookup.redis(topics).pipe(Layer.provide(Redis.layerConfig))
  }
}
