/**
 * The `sluice run events-to-postgres` worker (RunEvents.ts declares the command and its flags): Postgres, the
 * tables, the topology. Imported when the command runs, so that other commands do not load Postgres' modules.
 */
import * as Metrics from "@sluice/core/Metrics"
import * as Postgres from "@sluice/core/Postgres"
import * as Runner from "@sluice/core/Runner"
import * as EventsToPostgres from "@sluice/processors/EventsToPostgres"
import { Effect, Layer, Metric } from "effect"
import * as Flags from "./Flags.ts"
import * as Run from "./Run.ts"
import type { Options } from "./RunEvents.ts"

/** Rows the sink has written, for the progress line. */
const rowsWritten = (sink: string) =>
  Effect.map(Metric.value(Metric.withAttributes(Metrics.sinkRows, { sink })), (s) => `rows=${s.count}`)

export const run = (o: Options) =>
  Effect.gen(function* () {
    const topics = EventsToPostgres.named(o.prefix)
    const exactlyOnce = o.guarantee === "exactly_once"
    const group = Run.groupId(o, "events-to-postgres")
    const options = Run.runOptions({ ...o, guarantee: "at_least_once" }, "events-to-postgres")
    const relations = EventsToPostgres.relations(o.schema)
    yield* EventsToPostgres.setup(relations)
    const sink = EventsToPostgres.sink(relations, {
      ...(exactlyOnce ? { offsetsGroup: group } : {}),
      batchSize: o.batchSize,
      flushInterval: `${o.flushIntervalMs} millis`
    })
    const topology = EventsToPostgres.topology({ sink, topics, exactlyOnce })
    yield* Effect.logInfo(
      `running events-to-postgres on ${o.brokers} in group ${group} (${
        exactlyOnce
          ? `exactly_once into Postgres: rows and offsets in one transaction, offsets in ${relations.offsets}`
          : "at_least_once"
      }): ${topics.raw.name} -> ${relations.events} (view ${relations.view}; dead letters: ${topology.deadLetterTopic})`
    )
    return yield* Runner.run(topology, options).pipe(Run.withProgress(rowsWritten(sink.name)))
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        Flags.kafkaLayer(o.brokers, { waitForBroker: "forever" }),
        Postgres.layerConfig,
        Run.metricsLayer(o.metricsPort)
      )
    )
  )
