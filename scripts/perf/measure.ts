/**
 * What every contender of `scripts/perf/compare.ts` reports, measured the same way in each child process: from the
 * first click batch received to the moment the last enriched record was acknowledged, the events per second, the
 * CPU the process spent in that window (user + system, all threads), and the peak RSS of the whole process (load
 * included), sampled every 20 ms.
 */
import { Schema } from "effect"

export const ContenderResult = Schema.Struct({
  contender: Schema.String,
  events: Schema.Finite,
  loadMs: Schema.Finite,
  elapsedMs: Schema.Finite,
  eventsPerSec: Schema.Finite,
  /** CPU time of the process between the first batch and the last ack. */
  cpuMs: Schema.Finite,
  cpuMsPer1k: Schema.Finite,
  /** CPU time of the whole process (start, load, run). */
  totalCpuMs: Schema.Finite,
  peakRssMb: Schema.Finite,
  rssAfterLoadMb: Schema.Finite,
  /** Peaks of the V8 heap in use, of its size, and of the memory outside it held by ArrayBuffers (Buffers). */
  peakHeapUsedMb: Schema.Finite,
  peakHeapTotalMb: Schema.Finite,
  peakArrayBuffersMb: Schema.Finite
})
export type ContenderResult = typeof ContenderResult.Type

/** A contender's JSON line. */
export const parseResult = Schema.decodeUnknownSync(Schema.fromJsonString(ContenderResult))

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024)
const cpuNow = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

export const makeMeter = (contender: string, events: number) => {
  let peakRss = process.memoryUsage.rss()
  const peaks = { heapUsed: 0, heapTotal: 0, arrayBuffers: 0 }
  const sample = () => {
    const m = process.memoryUsage()
    peakRss = Math.max(peakRss, m.rss)
    peaks.heapUsed = Math.max(peaks.heapUsed, m.heapUsed)
    peaks.heapTotal = Math.max(peaks.heapTotal, m.heapTotal)
    peaks.arrayBuffers = Math.max(peaks.arrayBuffers, m.arrayBuffers)
  }
  const sampler = setInterval(sample, 20)
  sampler.unref()
  const started = Date.now()
  let loadedAt = 0
  let rssAfterLoad = 0
  let firstAt = 0
  let firstCpu = 0
  // The window on the monotonic clock a CPU profile's timestamps use (microseconds), for scripts/perf/profile.ts.
  let firstMark = 0n
  return {
    loaded: () => {
      loadedAt = Date.now()
      rssAfterLoad = process.memoryUsage.rss()
    },
    /** The first batch of clicks arrived. */
    first: () => {
      if (firstAt !== 0) return
      firstAt = Date.now()
      firstMark = process.hrtime.bigint() / 1000n
      firstCpu = cpuNow()
    },
    done: (): ContenderResult => {
      const doneAt = Date.now()
      if (process.env.PERF_MARKS !== undefined) {
        process.stderr.write(`window ${firstMark} ${process.hrtime.bigint() / 1000n}\n`)
      }
      const cpu = cpuNow()
      clearInterval(sampler)
      sample()
      const elapsedMs = Math.max(1, doneAt - firstAt)
      return {
        contender,
        events,
        loadMs: loadedAt - started,
        elapsedMs,
        eventsPerSec: Math.round((events / elapsedMs) * 1000),
        cpuMs: Math.round(cpu - firstCpu),
        cpuMsPer1k: Math.round(((cpu - firstCpu) / events) * 1000 * 10) / 10,
        totalCpuMs: Math.round(cpu),
        peakRssMb: mb(peakRss),
        rssAfterLoadMb: mb(rssAfterLoad),
        peakHeapUsedMb: mb(peaks.heapUsed),
        peakHeapTotalMb: mb(peaks.heapTotal),
        peakArrayBuffersMb: mb(peaks.arrayBuffers)
      }
    }
  }
}

/** `--name value` pairs of argv. */
export const args = (argv: ReadonlyArray<string>): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a.startsWith("--")) out.set(a.slice(2), argv[i + 1] ?? "")
  }
  return out
}

export const required = (options: ReadonlyMap<string, string>, name: string): string => {
  const v = options.get(name)
  if (v === undefined || v === "") throw new Error(`missing --${name}`)
  return v
}
