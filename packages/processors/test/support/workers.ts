/**
 * Worker processes for integration tests: `sluice run <topology>` spawned with the repository's Node 24, exactly as
 * an operator starts it, so signals, exit codes and shutdown timing are the real ones.
 *
 * A worker lives in the test's scope: closing the scope SIGKILLs it if it is still running, and `killAll` (for an
 * `afterEach`) does the same for every worker this process started, so a failed test never leaves a member in a
 * consumer group that the next test's group could see. Output (stdout and stderr, interleaved) is kept for
 * assertions and is appended to every failure, since a worker's log is what explains a failed integration test.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Data, Deferred, Duration, Effect, type Scope } from "effect"

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
  readonly fail: (reason: string) => WorkerError
}

const running = new Set<ChildProcess>()

/** SIGKILLs every worker still running; for `afterEach`, in case a test's scope did not get to it. */
export const killAll = (): void => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences are control characters
const ansi = /\u001b\[[0-9;]*m/g
const assignedLine = /assigned (\d+) partition\(s\): ([\d,]*)/g

/**
 * Starts `sluice run <args>`. The worker is SIGKILLed when the scope closes if it is still running; output lines
 * are echoed to this process's stderr prefixed with the name when `SLUICE_TEST_ECHO` is set.
 */
export const start = (name: string, args: ReadonlyArray<string>): Effect.Effect<Worker, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const exited = yield* Deferred.make<WorkerExit>()
      const child = spawn(nodeBin, [sluiceBin, "run", ...args], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1" }
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
          Array.from(output.matchAll(assignedLine), (m) => (m[2] === "" ? [] : m[2]!.split(",").map(Number)))
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

/**
 * `run user-events` on the given topics against `brokers`, in `group` or, without one, in the CLI's default group
 * (the prefix followed by the topology's name).
 */
export const userEvents = (
  name: string,
  options: {
    readonly brokers: ReadonlyArray<string>
    readonly prefix: string
    readonly group?: string
    readonly shutdownTimeoutMs?: number
  }
): Effect.Effect<Worker, never, Scope.Scope> =>
  start(name, [
    "user-events",
    // For debugging a failure: SLUICE_TEST_LOG_LEVEL=debug shows the runner's commit and rebalance details.
    ...(process.env.SLUICE_TEST_LOG_LEVEL === undefined ? [] : ["--log-level", process.env.SLUICE_TEST_LOG_LEVEL]),
    "--brokers",
    options.brokers.join(","),
    "--topic-prefix",
    options.prefix,
    ...(options.group === undefined ? [] : ["--group", options.group]),
    ...(options.shutdownTimeoutMs === undefined ? [] : ["--shutdown-timeout-ms", String(options.shutdownTimeoutMs)])
  ])
