/**
 * The exactly-once audit of the counting topology (Counting.ts): its committed outputs against the input records
 * that were written, record by record. Shared by the exactly-once acceptance tests and `sluice bench eos`.
 *
 * Every output names the input record it counts (`task` is the input partition, `offset` its offset) and the count
 * its store held, and task i writes output partition i. So, read with isolation read_committed, exactly-once means:
 * each input record has exactly one output (no duplicate, none missing, none from nowhere); each count is the number
 * of records of its key in its partition up to and including that one; and each output partition lists its input
 * offsets in ascending order. The last rule is what catches a zombie: a fenced owner's transaction, had it become
 * visible, would repeat input offsets its successor also processed. At-least-once passes every rule but the first
 * three after a clean run, and breaks them after a crash (re-delivered records).
 */
import type { Written } from "./Counting.ts"

/** An input record as it was written: where it went, and its key. */
export interface Input {
  readonly partition: number
  readonly offset: number
  readonly key: string
}

export interface Audit {
  readonly inputs: number
  readonly outputs: number
  /** Input records with more than one output. */
  readonly duplicated: number
  /** Outputs beyond the first of each input record: what a reader would count twice. */
  readonly duplicates: number
  /** Input records without an output. */
  readonly missing: number
  /** Outputs naming no input record that was written. */
  readonly unknown: number
  /** Outputs whose count is not the number of its key's records (in its partition) up to its input record. */
  readonly wrongCounts: number
  /** Per key, in output order: counts that are not the key's previous count plus one (the first must be 1). */
  readonly gaps: number
  /** Outputs whose input offset is not above the one of the output before them in their partition. */
  readonly outOfOrder: number
  /** The first few problems of each kind, for a failure message. */
  readonly examples: ReadonlyArray<string>
}

const idOf = (partition: number, offset: number) => `${partition}@${offset}`

/** Audits `outputs` (read with isolation read_committed, any order) against every input record written. */
export const audit = (inputs: Iterable<Input>, outputs: ReadonlyArray<Written>): Audit => {
  const examples: Array<string> = []
  const perKind = new Map<string, number>()
  const note = (kind: string, text: string) => {
    const n = perKind.get(kind) ?? 0
    perKind.set(kind, n + 1)
    if (n < 3) examples.push(`${kind}: ${text}`)
  }
  // The truth for each input record: its key's records in its partition, up to and including it.
  const expected = new Map<string, number>()
  const sorted = [...inputs].sort((a, b) => a.partition - b.partition || a.offset - b.offset)
  const running = new Map<string, number>()
  for (const r of sorted) {
    const key = `${r.partition}/${r.key}`
    const n = (running.get(key) ?? 0) + 1
    running.set(key, n)
    expected.set(idOf(r.partition, r.offset), n)
  }

  const seen = new Map<string, number>()
  const lastInput = new Map<number, number>()
  const lastCount = new Map<string, number>()
  let unknown = 0
  let wrongCounts = 0
  let gaps = 0
  let outOfOrder = 0
  const inOrder = [...outputs].sort((a, b) => a.partition - b.partition || a.at - b.at)
  for (const o of inOrder) {
    const id = idOf(o.task, o.offset)
    seen.set(id, (seen.get(id) ?? 0) + 1)
    const want = expected.get(id)
    if (want === undefined) {
      unknown++
      note("unknown", `output ${o.partition}@${o.at} names input ${id}`)
    } else if (o.count !== want) {
      wrongCounts++
      note("wrong count", `input ${id} (${o.key}) counted ${o.count}, should be ${want}`)
    }
    const previous = lastInput.get(o.partition)
    if (previous !== undefined && o.offset <= previous) {
      outOfOrder++
      note(
        "out of order",
        `output ${o.partition}@${o.at} (by ${o.worker}) is input offset ${o.offset} after ${previous}`
      )
    }
    lastInput.set(o.partition, o.offset)
    const key = `${o.task}/${o.key}`
    const before = lastCount.get(key) ?? 0
    if (o.count !== before + 1) {
      gaps++
      note("gap", `${o.key} went from ${before} to ${o.count} at output ${o.partition}@${o.at}`)
    }
    lastCount.set(key, o.count)
  }

  let duplicated = 0
  let duplicates = 0
  for (const [id, n] of seen) {
    if (n < 2 || !expected.has(id)) continue
    duplicated++
    duplicates += n - 1
    note("duplicate", `input ${id} has ${n} outputs`)
  }
  let missing = 0
  for (const id of expected.keys()) {
    if (seen.has(id)) continue
    missing++
    note("missing", `input ${id} has no output`)
  }
  return {
    inputs: expected.size,
    outputs: outputs.length,
    duplicated,
    duplicates,
    missing,
    unknown,
    wrongCounts,
    gaps,
    outOfOrder,
    examples
  }
}

/** Every input exactly once, every count right, every partition in order. */
export const isExactlyOnce = (a: Audit): boolean =>
  a.duplicates === 0 && a.missing === 0 && a.unknown === 0 && a.wrongCounts === 0 && a.gaps === 0 && a.outOfOrder === 0

export const describe = (a: Audit): string =>
  `${a.outputs} outputs for ${a.inputs} inputs: ${a.duplicates} duplicate(s) of ${a.duplicated} input(s), ` +
  `${a.missing} missing, ${a.unknown} unknown, ${a.wrongCounts} wrong count(s), ${a.gaps} gap(s), ` +
  `${a.outOfOrder} out of order${a.examples.length > 0 ? ` (${a.examples.join("; ")})` : ""}`

/** The inputs as `audit` takes them: the records produced, and where each was written (in the same order). */
export const inputsOf = (
  records: ReadonlyArray<{ readonly key: Uint8Array | null }>,
  written: ReadonlyArray<{ readonly partition: number; readonly offset: number }>
): Array<Input> => {
  const decoder = new TextDecoder()
  return written.map((m, i) => ({
    partition: m.partition,
    offset: m.offset,
    key: decoder.decode(records[i]!.key ?? new Uint8Array())
  }))
}
