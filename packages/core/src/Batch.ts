/**
 * What a topology makes of a batch: the records to produce and the records it rejects. Builders run user code in a
 * plain loop over the batch (no Effect per record) and catch what a record's handler throws, so one bad record
 * becomes a dead letter instead of stopping the partition.
 */
import { Result } from "effect"
import type { Rejection } from "./DeadLetter.ts"
import { RecordRejected } from "./Errors.ts"
import type { ConsumerRecord, Headers, ProducerRecord } from "./Record.ts"
import type { Sink, StagedRow } from "./Sink.ts"
import * as Topic from "./Topic.ts"

export interface BatchResult {
  readonly outputs: ReadonlyArray<ProducerRecord>
  readonly rejected: ReadonlyArray<Rejection>
  /**
   * The input record each output came from (`sources[i]` caused `outputs[i]`), when the builder knows it. The
   * runtime uses it to dead-letter the input of an output the broker cannot take (too large); without it, the
   * runtime finds the input by processing the batch's records one by one.
   */
  readonly sources?: ReadonlyArray<ConsumerRecord> | undefined
  /** Rows for sinks (`out.write`), each with the input record it came from. */
  readonly rows?: ReadonlyArray<StagedRow> | undefined
}

export const empty: BatchResult = { outputs: [], rejected: [] }

/** Thrown by a record handler: not a typed error, so it is reported as a defect of that record. */
export class HandlerDefect extends RecordRejected {}

/** The output side offered to a record handler. */
export interface Emitter {
  readonly emit: <K, V>(
    topic: Topic.Topic<K, V>,
    key: K,
    value: V,
    options?: { readonly headers?: Headers; readonly partition?: number; readonly timestamp?: number }
  ) => void
  /** Writes a row to a sink (Sink.ts), as part of the commit path: kept with the current record. */
  readonly write: <Row, R>(sink: Sink<Row, R>, row: Row) => void
  /** Rejects the current record: it goes to the dead-letter topic with this error. */
  readonly reject: (error: { readonly _tag: string; readonly message: string }) => void
}

/**
 * Runs `handle` for every record of a batch. Outputs of a record that is rejected (or whose handler throws, or one
 * of whose outputs does not encode) are dropped, so a record is either fully emitted or dead-lettered.
 */
export const forEach = <A extends { readonly record: Rejection["record"] }>(
  items: ReadonlyArray<A>,
  handle: (item: A, out: Emitter, index: number) => void
): BatchResult => {
  const outputs: Array<ProducerRecord> = []
  const sources: Array<ConsumerRecord> = []
  const rejected: Array<Rejection> = []
  let rows: Array<StagedRow> | undefined
  let current: Array<ProducerRecord> = []
  // Rows of the current record; a record that writes none shares this empty array.
  const noRows: Array<StagedRow> = []
  let currentRows: Array<StagedRow> = noRows
  let failure: unknown
  let item: A | undefined
  const out: Emitter = {
    emit: (topic, key, value, options) => {
      const encoded = Topic.encode(topic, key, value, options)
      if (Result.isSuccess(encoded)) current.push(encoded.success)
      else failure ??= encoded.failure
    },
    write: (sink, row) => {
      if (currentRows === noRows) currentRows = []
      currentRows.push(sink.row(row, item?.record))
    },
    reject: (error) => {
      failure ??= error
    }
  }
  for (let i = 0; i < items.length; i++) {
    item = items[i]!
    current = []
    currentRows = noRows
    failure = undefined
    try {
      handle(item, out, i)
    } catch (thrown) {
      failure = new HandlerDefect({
        tag: "HandlerDefect",
        reason: thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)
      })
    }
    if (failure === undefined) {
      for (const r of current) {
        outputs.push(r)
        sources.push(item.record)
      }
      if (currentRows.length > 0) {
        rows ??= []
        for (const r of currentRows) rows.push(r)
      }
    } else {
      rejected.push({ record: item.record, error: failure })
    }
  }
  return rows === undefined ? { outputs, rejected, sources } : { outputs, rejected, sources, rows }
}

/** Concatenates results (for example of records retried one by one); sources are kept when every part has them. */
export const concat = (results: ReadonlyArray<BatchResult>): BatchResult => {
  const combined: BatchResult = {
    outputs: results.flatMap((r) => r.outputs),
    rejected: results.flatMap((r) => r.rejected),
    sources: results.every((r) => r.sources !== undefined || r.outputs.length === 0)
      ? results.flatMap((r) => r.sources ?? [])
      : undefined
  }
  return results.some((r) => r.rows !== undefined && r.rows.length > 0)
    ? { ...combined, rows: results.flatMap((r) => r.rows ?? []) }
    : combined
}

/** `result` with every output attributed to `source` (the result of processing that one record). */
export const from = (source: ConsumerRecord, result: BatchResult): BatchResult => ({
  ...result,
  sources: result.outputs.map(() => source)
})

/**
 * The outputs `handle` emits when no input record is behind them (a timer tick, a window closing). An output that
 * does not encode is a bug in the topology: it throws the `EncodeError`, which fails the step.
 */
export const emitting = (handle: (out: Omit<Emitter, "reject">) => void): BatchResult => {
  const outputs: Array<ProducerRecord> = []
  let rows: Array<StagedRow> | undefined
  handle({
    emit: (topic, key, value, options) => {
      const encoded = Topic.encode(topic, key, value, options)
      if (Result.isFailure(encoded)) throw encoded.failure
      outputs.push(encoded.success)
    },
    write: (sink, row) => {
      rows ??= []
      rows.push(sink.row(row, undefined))
    }
  })
  return rows === undefined ? { outputs, rejected: [] } : { outputs, rejected: [], rows }
}
