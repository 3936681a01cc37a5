/**
 * The runtime's metrics, as Effect Metrics: records in, out and dead-lettered per topic, batch processing latency,
 * commit latency, and consumer lag per partition. `sluice run` logs a summary of them; any Effect metrics exporter
 * can publish them.
 */
import { Effect, Metric } from "effect"

const latencyBoundaries = Metric.exponentialBoundaries({ start: 0.25, factor: 2, count: 16 })

export const recordsIn = Metric.counter("sluice_records_in", {
  description: "records fetched and handed to a topology",
  incremental: true
})
export const recordsOut = Metric.counter("sluice_records_out", {
  description: "records produced by topologies and acknowledged",
  incremental: true
})
export const recordsDeadLettered = Metric.counter("sluice_records_dead_lettered", {
  description: "records sent to a dead-letter topic",
  incremental: true
})
export const sinkRows = Metric.counter("sluice_sink_rows_written", {
  description: "rows written by sinks (Postgres, ClickHouse, ...)",
  incremental: true
})
export const recordsLate = Metric.counter("sluice_records_late", {
  description: "records that came after the windows they belong to had closed (Windows.ts)",
  incremental: true
})
export const batchLatency = Metric.histogram("sluice_batch_latency_ms", {
  description: "time to decode, process and durably write one batch",
  boundaries: latencyBoundaries
})
export const commitLatency = Metric.histogram("sluice_commit_latency_ms", {
  description: "time to flush sinks and commit offsets",
  boundaries: latencyBoundaries
})
export const consumerLag = Metric.gauge("sluice_consumer_lag", {
  description: "records between the last processed offset and the high-water mark"
})

/** Per-topic and per-partition series, created once per partition actor rather than once per batch. */
export interface PartitionMetrics {
  readonly in: Metric.Metric<number, Metric.CounterState<number>>
  readonly deadLettered: Metric.Metric<number, Metric.CounterState<number>>
  readonly lag: Metric.Metric<number, Metric.GaugeState<number>>
}

export const forPartition = (topic: string, partition: number): PartitionMetrics => ({
  in: Metric.withAttributes(recordsIn, { topic }),
  deadLettered: Metric.withAttributes(recordsDeadLettered, { topic }),
  lag: Metric.withAttributes(consumerLag, { topic, partition: String(partition) })
})

type Counter = Metric.Metric<number, Metric.CounterState<number>>

/** A counter's series per topic, each made once. */
const byTopic = (counter: Counter): ((topic: string) => Counter) => {
  const series = new Map<string, Counter>()
  return (topic) => {
    let metric = series.get(topic)
    if (metric === undefined) {
      metric = Metric.withAttributes(counter, { topic })
      series.set(topic, metric)
    }
    return metric
  }
}

const outFor = byTopic(recordsOut)

/** `sluice_records_late` of one input topic. */
export const lateFor: (topic: string) => Counter = byTopic(recordsLate)

/** Counts produced records per output topic with one metric update per topic and batch. */
export const countOut = (records: ReadonlyArray<{ readonly topic: string }>): Effect.Effect<void> => {
  if (records.length === 0) return Effect.void
  const perTopic = new Map<string, number>()
  for (const r of records) perTopic.set(r.topic, (perTopic.get(r.topic) ?? 0) + 1)
  return Effect.forEach(perTopic, ([topic, n]) => Metric.update(outFor(topic), n), { discard: true })
}

export interface Totals {
  readonly in: number
  readonly out: number
  readonly deadLettered: number
}

/** The counters summed over all their topics: for progress lines and summaries. */
export const totals: Effect.Effect<Totals> = Effect.map(Metric.snapshot, (snapshots) => {
  const sum = { in: 0, out: 0, deadLettered: 0 }
  for (const s of snapshots) {
    if (s.type !== "Counter") continue
    const n = Number(s.state.count)
    if (s.id === recordsIn.id) sum.in += n
    else if (s.id === recordsOut.id) sum.out += n
    else if (s.id === recordsDeadLettered.id) sum.deadLettered += n
  }
  return sum
})
