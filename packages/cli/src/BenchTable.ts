/**
 * `sluice bench table`: how long the profile table takes to load from the compacted topic, and the memory it holds.
 * Reads an existing profiles topic (fill it with `sluice produce profiles --users 1000000`), so the measuring
 * process holds only the table, not the generator's records.
 */
import { ConfigInvalid } from "@sluice/core/Errors"
import * as Table from "@sluice/core/Table"
import * as ClickData from "@sluice/processors/ClickData"
import * as ClickEnrichment from "@sluice/processors/ClickEnrichment"
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024)

export const command = Flags.command(
  "table",
  {
    brokers: Flags.brokers,
    prefix: Flags.prefix,
    json: Flag.Boolean("json").pipe(Flag.withDescription("one JSON object on stdout"), Flag.withDefault(false))
  },
  (o) =>
    Effect.gen(function* () {
      const topics = ClickEnrichment.named(o.prefix)
      const rssBefore = process.memoryUsage().rss
      let peakRss = rssBefore
      const peaks = { heapTotal: 0, arrayBuffers: 0 }
      const sampler = setInterval(() => {
        const m = process.memoryUsage()
        peakRss = Math.max(peakRss, m.rss)
        peaks.heapTotal = Math.max(peaks.heapTotal, m.heapTotal)
        peaks.arrayBuffers = Math.max(peaks.arrayBuffers, m.arrayBuffers)
      }, 50)
      const started = Date.now()
      const table = yield* Table.makeReady(topics.profiles).pipe(
        Effect.ensuring(Effect.sync(() => clearInterval(sampler)))
      )
      const loadMs = Date.now() - started
      const size = yield* table.size
      if (size === 0) {
        return yield* new ConfigInvalid({
          reason: `${topics.profiles.name} is empty: fill it first with \`sluice produce profiles --users N\``
        })
      }
      // Spot-check the loaded values against the generator's truth.
      const sample = [
        ClickData.firstUserId,
        ClickData.firstUserId + Math.floor(size / 2),
        ClickData.firstUserId + size - 1
      ]
      const found = yield* table.getMany(sample)
      const correct = found.every((p, i) => p?.name === ClickData.profileFor(sample[i]!).name)
      const heapMb = mb(process.memoryUsage().heapUsed)
      const result = {
        topic: topics.profiles.name,
        profiles: size,
        loadMs,
        rssBeforeMb: mb(rssBefore),
        peakRssMb: mb(peakRss),
        peakHeapTotalMb: mb(peaks.heapTotal),
        peakArrayBuffersMb: mb(peaks.arrayBuffers),
        heapUsedMb: heapMb,
        correct
      }
      yield* Console.log(
        o.json
          ? JSON.stringify(result)
          : `loaded ${size} profiles from ${topics.profiles.name} in ${loadMs} ms; peak RSS ${result.peakRssMb} MB, heap ${heapMb} MB; spot check ${correct ? "ok" : "FAILED"}`
      )
      if (!correct)
        return yield* new ConfigInvalid({ reason: "the loaded table does not match the generated profiles" })
    }).pipe(Effect.scoped, Effect.provide(Flags.kafkaLayer(o.brokers)))
).pipe(
  Command.withDescription("Measure loading the profile table (time, RSS) from an existing compacted profiles topic")
)
