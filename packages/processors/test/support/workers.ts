/**
 * Worker processes for integration tests: `sluice run <topology>` spawned with the repository's Node 24, exactly as
 * an operator starts it, so signals, exit codes and shutdown timing are the real ones.
 *
 * A worker lives in the test's scope: closing the scope SIGKILLs it if it is still running, and `killAll` (for an
 * `afterEach`) does the same for every worker this process started, so a failed test never leaves a member in a
 * consumer group that the next test's group could see. Output (stdout and stderr, interleaved) is kept for
 * assertions and is appended to every failure, since a worker's log is what explains a failed integration test.
 *
 * `kafkaProxy` puts a TCP proxy between a worker and the broker, so a test can slow the worker's network down or
 * take the broker away from it while it runs.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { Data, Deferred, Duration, Effect, type Scope } from "effect"
import * as Counting from "../../src/Counting.ts"
import { connectUpstream } from "./tcpProxy.ts"

export const repoRoot = fileURLToPath(new URL("../../../..", import.meta.url))
const nodeBin = `${repoRoot}node_modules/.bin/node`
const sluiceBin = `${repoRoot}packages/cli/src/bin.ts`

export class WorkerError extends Data.TaggedError("WorkerError")<{
  readonly worker: string
  readonly reason: string
  readonly output: string
}> {
  override get message(): string {
    return `worker ${this.worker}: ${this.reason}\n--- output of ${this.worker} (last 4000 chars) ---\n${this.output.slice(-4000)}`
  }
}

export interface WorkerExit {
  /** Exit code, or null when a signal ended the process. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** From the last `signal` call to the process's exit; undefined if it was never signalled. */
  readonly msSinceSignal: number | undefined
}

export interface Worker {
  readonly name: string
  readonly pid: number
  /** Everything the worker wrote so far, stdout and stderr interleaved, colours stripped. */
  readonly output: () => string
  readonly isRunning: () => boolean
  /** Waits until a line of output matches, failing with the output after `timeout` or when the worker exits. */
  readonly waitForLog: (pattern: RegExp, timeout: Duration.Input) => Effect.Effect<RegExpExecArray, WorkerError>
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Waits for the process to exit (and its output to be complete). */
  readonly exit: (timeout: Duration.Input) => Effect.Effect<WorkerExit, WorkerError>
  /** The partitions of every "assigned N partition(s): ..." line, in order; the last one is the current assignment. */
  readonly assignments: () => ReadonlyArray<ReadonlyArray<number>>
  /** Every store restore the worker logged ("restored <store> of task <n>: <k> changelog record(s) from ..."). */
  readonly restores: () => ReadonlyArray<Counting.Restore>
  readonly fail: (reason: string) => WorkerError
}

const running = new Set<ChildProcess>()

/** SIGKILLs every worker still running; for `afterEach`, in case a test's scope did not get to it. */
export const killAll = (): void => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
}

/** This process's environment with `changes` (a variable set to `undefined` is removed), colours off. */
const environment = (changes: Readonly<Record<string, string | undefined>> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" }
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  return env
}

/** What a one-shot `sluice <args>` printed, and how it exited. */
export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `sluice <args>` (a one-shot command: produce, validate, ...) to its end, as a user types it. */
export const once = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Readonly<Record<string, string | undefined>> } = {}
): Effect.Effect<Ran> =>
  Effect.callback<Ran>((resume) => {
    const child = spawn(nodeBin, ["--conditions=@sluice/source", sluiceBin, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: environment(options.env)
    })
    let stdout = ""
    let stderr = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
    })
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr: stderr.replace(ansi, "") })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences are control characters
const ansi = /\u001b\[[0-9;]*m/g
const assignedLine = /assigned (\d+) partition\(s\): ([\d,]*)/g

/**
 * Starts `sluice run <args>`. The worker is SIGKILLed when the scope closes if it is still running; output lines
 * are echoed to this process's stderr prefixed with the name when `SLUICE_TEST_ECHO` is set.
 */
export const start = (
  name: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: Readonly<Record<string, string | undefined>> } = {}
): Effect.Effect<Worker, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const exited = yield* Deferred.make<WorkerExit>()
      const child = spawn(nodeBin, ["--conditions=@sluice/source", sluiceBin, "run", ...args], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"],
        env: environment(options.env)
      })
      running.add(child)
      let output = ""
      let signalledAt: number | undefined
      let exitedAt = 0
      let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined
      const waiters = new Set<() => void>()
      const wakeAll = () => {
        for (const wake of waiters) wake()
      }
      const echo = process.env.SLUICE_TEST_ECHO !== undefined
      const onData = (chunk: Buffer) => {
        const s = chunk.toString("utf8").replace(ansi, "")
        output += s
        if (echo) process.stderr.write(s.replace(/^(?=.)/gm, `[${name}] `))
        wakeAll()
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", onData)
      child.on("error", (error) => {
        output += `\n[spawn error] ${error.message}\n`
        wakeAll()
      })
      child.on("exit", (code, signal) => {
        exitedAt = Date.now()
        exitInfo = { code, signal }
      })
      // "close" comes after "exit" once stdout and stderr are drained, so the output is complete.
      child.on("close", (code, signal) => {
        running.delete(child)
        const info = exitInfo ?? { code, signal }
        Deferred.doneUnsafe(
          exited,
          Effect.succeed({
            code: info.code,
            signal: info.signal,
            msSinceSignal: signalledAt === undefined ? undefined : (exitedAt || Date.now()) - signalledAt
          })
        )
        wakeAll()
      })

      const fail = (reason: string) => new WorkerError({ worker: name, reason, output })
      const isRunning = () => child.exitCode === null && child.signalCode === null

      const worker: Worker = {
        name,
        pid: child.pid ?? -1,
        output: () => output,
        isRunning,
        fail: (reason) => fail(reason),
        waitForLog: (pattern, timeout) =>
          Effect.callback<RegExpExecArray, WorkerError>((resume) => {
            const check = () => {
              const match = new RegExp(pattern.source, pattern.flags.replace("g", "")).exec(output)
              if (match !== null) resume(Effect.succeed(match))
              else if (!isRunning() || exitInfo !== undefined)
                resume(Effect.fail(fail(`exited before logging ${pattern}`)))
              else return false
              return true
            }
            if (check()) return
            const wake = () => {
              if (check()) waiters.delete(wake)
            }
            waiters.add(wake)
            return Effect.sync(() => {
              waiters.delete(wake)
            })
          }).pipe(
            Effect.timeoutOrElse({
              duration: timeout,
              orElse: () =>
                Effect.fail(
                  fail(`no output matching ${pattern} within ${Duration.format(Duration.fromInputUnsafe(timeout))}`)
                )
            })
          ),
        signal: (signal) =>
          Effect.sync(() => {
            signalledAt = Date.now()
            child.kill(signal)
          }),
        exit: (timeout) =>
          Deferred.await(exited).pipe(
            Effect.timeoutOrElse({
              duration: timeout,
              orElse: () =>
                Effect.fail(fail(`did not exit within ${Duration.format(Duration.fromInputUnsafe(timeout))}`))
            })
          ),
        assignments: () =>
          Array.from(output.matchAll(assignedLine), (m) => (m[2] === "" ? [] : m[2]!.split(",").map(Number))),
        restores: () =>
          output.split("\n").flatMap((line) => {
            const restore = Counting.restoreOf(line)
            return restore === undefined ? [] : [restore]
          })
      }
      return { worker, child, exited }
    }),
    ({ child, exited }) =>
      Effect.gen(function* () {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill("SIGKILL")
        yield* Deferred.await(exited).pipe(Effect.timeoutOption("10 seconds"))
      })
  ).pipe(Effect.map(({ worker }) => worker))

/** What every `sluice run <topology>` worker of a test is given. */
export interface RunArgs {
  readonly brokers: ReadonlyArray<string>
  readonly prefix: string
  readonly group?: string
  readonly shutdownTimeoutMs?: number
  /** `--guarantee`; the CLI's default (at-least-once) without one. */
  readonly guarantee?: "at_least_once" | "exactly_once"
  /** `--commit-interval-ms`; the CLI's default for the guarantee without one. */
  readonly commitIntervalMs?: number
}

/** The flags of `run <topology>` that every topology has, from `options`. */
const runFlags = (options: RunArgs): ReadonlyArray<string> => [
  // For debugging a failure: SLUICE_TEST_LOG_LEVEL=debug shows the runner's commit and rebalance details.
  ...(process.env.SLUICE_TEST_LOG_LEVEL === undefined ? [] : ["--log-level", process.env.SLUICE_TEST_LOG_LEVEL]),
  "--brokers",
  options.brokers.join(","),
  "--topic-prefix",
  options.prefix,
  ...(options.group === undefined ? [] : ["--group", options.group]),
  ...(options.shutdownTimeoutMs === undefined ? [] : ["--shutdown-timeout-ms", String(options.shutdownTimeoutMs)]),
  ...(options.guarantee === undefined ? [] : ["--guarantee", options.guarantee]),
  ...(options.commitIntervalMs === undefined ? [] : ["--commit-interval-ms", String(options.commitIntervalMs)])
]

/**
 * `run user-events` on the given topics against `brokers`, in `group` or, without one, in the CLI's default group
 * (the prefix followed by the topology's name).
 */
export const userEvents = (name: string, options: RunArgs): Effect.Effect<Worker, never, Scope.Scope> =>
  start(name, ["user-events", ...runFlags(options)])

/**
 * `run counts`, with `name` as its `--worker-id` (so every output it writes names it), its stores in memory or,
 * with `stateDir`, in SQLite files there.
 */
export const counts = (
  name: string,
  options: RunArgs & { readonly stateDir?: string }
): Effect.Effect<Worker, never, Scope.Scope> =>
  start(name, [
    "counts",
    ...runFlags(options),
    "--worker-id",
    name,
    ...(options.stateDir === undefined ? [] : ["--state-dir", options.stateDir])
  ])

/**
 * `run sensor-pipeline`, serving HTTP at `http` (HOST:PORT) when given; `extra` are more of its flags
 * (`--guarantee exactly_once`, `--grace-ms ...`).
 */
export const sensorPipeline = (
  name: string,
  options: RunArgs & { readonly http?: string; readonly extra?: ReadonlyArray<string> }
): Effect.Effect<Worker, never, Scope.Scope> =>
  start(name, [
    "sensor-pipeline",
    ...runFlags(options),
    ...(options.http === undefined ? [] : ["--http", options.http]),
    ...(options.extra ?? [])
  ])

export class Timeout extends Data.TaggedError("Timeout")<{ readonly what: string; readonly details: string }> {
  override get message(): string {
    return `timed out waiting until ${this.what}\n${this.details}`
  }
}

/**
 * Polls `check` every `every` (default 200 ms) until it holds. Fails after `timeout`, or at once when one of `alive`
 * exits, with the output of the workers and `status`: that is what explains a stuck integration test.
 */
export const waitUntil = <E, R>(
  what: string,
  timeout: Duration.Input,
  check: Effect.Effect<boolean, E, R>,
  alive: ReadonlyArray<Worker> = [],
  status: Effect.Effect<string, E, R> = Effect.succeed(""),
  every: Duration.Input = "200 millis"
) =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.fromInputUnsafe(timeout))
    while (true) {
      if (yield* check) return
      const dead = alive.find((w) => !w.isRunning())
      if (dead !== undefined) return yield* dead.fail(`exited while waiting until ${what}`)
      if (Date.now() > deadline) {
        const outputs = alive.map((w) => `--- ${w.name} ---\n${w.output().slice(-3000)}`).join("\n")
        return yield* new Timeout({ what, details: `${yield* status}\n${outputs}` })
      }
      yield* Effect.sleep(every)
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// A Kafka proxy
// ---------------------------------------------------------------------------------------------------------------

export interface KafkaProxy {
  /** `127.0.0.1:<port>`: what to pass the worker as `--brokers`. */
  readonly address: string
  /** Connections accepted so far. */
  readonly connections: () => number
  /**
   * Makes the broker unreachable through the proxy: stops listening (new connections are refused) and resets
   * every open connection, in both directions.
   */
  readonly stop: Effect.Effect<void>
}

/** Splits a byte stream into Kafka frames (a 4-byte big-endian size, then that many bytes). */
const frames = () => {
  let chunks: Array<Buffer> = []
  let length = 0
  return (chunk: Buffer): ReadonlyArray<Buffer> => {
    chunks.push(chunk)
    length += chunk.length
    const out: Array<Buffer> = []
    while (length >= 4) {
      const head = chunks[0]!.length >= 4 ? chunks[0]! : Buffer.concat(chunks)
      const size = 4 + head.readInt32BE(0)
      if (length < size) break
      // One copy per frame once it is complete, however many chunks it arrived in.
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
      out.push(all.subarray(0, size))
      const rest = all.subarray(size)
      chunks = rest.length > 0 ? [rest] : []
      length = rest.length
    }
    return out
  }
}

/** A socket without an encoding emits Buffers; the type also allows strings. */
const bytesOf = (chunk: string | Buffer): Buffer => (typeof chunk === "string" ? Buffer.from(chunk) : chunk)

const apiKeys = { metadata: 3, findCoordinator: 10 } as const

/**
 * A response with every broker address in it replaced by the proxy's, so the client keeps talking through the
 * proxy after bootstrap: Metadata (v0-v8) and FindCoordinator (v0-v2), the versions kafkajs 2 uses, which are the
 * non-flexible encodings. Anything else passes unchanged.
 */
const rewriteAddresses = (frame: Buffer, api: { readonly key: number; readonly version: number }, port: number) => {
  const host = Buffer.from("127.0.0.1")
  const parts: Array<Buffer> = []
  let from = 0
  let at = 8 // size, correlation id
  const skipString = () => {
    const n = frame.readInt16BE(at)
    at += 2 + Math.max(0, n)
  }
  // Copies what lies before the broker's host, then writes the proxy's host and port in place of the broker's.
  const address = () => {
    parts.push(frame.subarray(from, at))
    skipString()
    at += 4
    const hostAndPort = Buffer.alloc(2 + host.length + 4)
    hostAndPort.writeInt16BE(host.length, 0)
    host.copy(hostAndPort, 2)
    hostAndPort.writeInt32BE(port, 2 + host.length)
    parts.push(hostAndPort)
    from = at
  }
  if (api.key === apiKeys.metadata && api.version <= 8) {
    if (api.version >= 3) at += 4 // throttle_time_ms
    const brokers = frame.readInt32BE(at)
    at += 4
    for (let i = 0; i < brokers; i++) {
      at += 4 // node_id
      address()
      if (api.version >= 1) skipString() // rack
    }
  } else if (api.key === apiKeys.findCoordinator && api.version <= 2) {
    if (api.version >= 1) at += 4 // throttle_time_ms
    at += 2 // error_code
    if (api.version >= 1) skipString() // error_message
    at += 4 // node_id
    address()
  } else {
    return frame
  }
  parts.push(frame.subarray(from))
  const out = Buffer.concat(parts)
  out.writeInt32BE(out.length - 4, 0)
  return out
}

/** Writes to `socket` at most `bytesPerSecond`, in slices every 20 ms; unlimited without a rate. */
const pacedWriter = (socket: Net.Socket, bytesPerSecond: number | undefined) => {
  if (bytesPerSecond === undefined) return (data: Buffer) => void socket.write(data)
  const tickMs = 20
  const perTick = Math.max(1, Math.floor((bytesPerSecond * tickMs) / 1000))
  const queue: Array<Buffer> = []
  let timer: ReturnType<typeof setInterval> | undefined
  const tick = () => {
    let budget = perTick
    while (budget > 0 && queue.length > 0 && !socket.destroyed) {
      const head = queue[0]!
      const part = head.subarray(0, budget)
      socket.write(part)
      budget -= part.length
      if (part.length === head.length) queue.shift()
      else queue[0] = head.subarray(part.length)
    }
    if (queue.length === 0 || socket.destroyed) {
      clearInterval(timer)
      timer = undefined
    }
  }
  socket.on("close", () => clearInterval(timer))
  return (data: Buffer) => {
    queue.push(data)
    timer ??= setInterval(tick, tickMs)
  }
}

/**
 * A proxy on 127.0.0.1 to the (single) broker `upstream`, with the broker addresses in Metadata and
 * FindCoordinator responses rewritten to its own, so a client bootstrapped through it never connects to the
 * broker directly. With `bytesPerSecond`, what the broker sends reaches each client connection at that rate at
 * most (a slow network: a consumer then waits for fetches rather than buffering them). Stopped when the scope
 * closes.
 */
export const kafkaProxy = (
  upstream: string,
  options: { readonly bytesPerSecond?: number } = {}
): Effect.Effect<KafkaProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly proxy: KafkaProxy }>((resume) => {
      const [upstreamHost, upstreamPort] = [
        upstream.slice(0, upstream.lastIndexOf(":")),
        upstream.slice(upstream.lastIndexOf(":") + 1)
      ]
      const sockets = new Set<Net.Socket>()
      let accepted = 0
      let port = 0
      const server = Net.createServer((client) => {
        accepted++
        const broker = connectUpstream(client, { host: upstreamHost, port: Number(upstreamPort) }, sockets)
        // What each request asked for, by correlation id: a response names only its correlation id.
        const asked = new Map<number, { readonly key: number; readonly version: number }>()
        const requests = frames()
        client.on("data", (chunk) => {
          for (const frame of requests(bytesOf(chunk))) {
            asked.set(frame.readInt32BE(8), { key: frame.readInt16BE(4), version: frame.readInt16BE(6) })
            broker.write(frame)
          }
        })
        const responses = frames()
        const toClient = pacedWriter(client, options.bytesPerSecond)
        broker.on("data", (chunk) => {
          for (const frame of responses(bytesOf(chunk))) {
            const correlationId = frame.readInt32BE(4)
            const api = asked.get(correlationId)
            asked.delete(correlationId)
            toClient(api === undefined ? frame : rewriteAddresses(frame, api, port))
          }
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const bound = server.address()
        port = typeof bound === "object" && bound !== null ? bound.port : 0
        const stop = Effect.sync(() => {
          server.close()
          for (const socket of sockets) socket.resetAndDestroy()
        })
        resume(Effect.succeed({ server, proxy: { address: `127.0.0.1:${port}`, connections: () => accepted, stop } }))
      })
    }),
    ({ proxy }) => proxy.stop
  ).pipe(Effect.map(({ proxy }) => proxy))
