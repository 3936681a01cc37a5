/**
 * Runs a worker as the process's main program with graceful shutdown: the first SIGINT or SIGTERM interrupts the
 * program, whose finalizers stop fetching, drain, flush, commit and disconnect; a second signal exits at once; and
 * if the graceful path outlives its bound plus a margin, the process exits anyway (offsets left uncommitted are
 * re-delivered, nothing is lost).
 */
import { Runtime } from "effect"

export interface MainOptions {
  /** Exit hard if the graceful shutdown has not finished after this many milliseconds. Default 8000. */
  readonly hardExitAfterMs?: number
}

let gracePeriodMs: number | undefined

/**
 * Raises the hard-exit deadline for this process, for workers configured with a longer graceful shutdown than the
 * default allows (`sluice run --shutdown-timeout-ms`).
 */
export const setGracePeriod = (ms: number): void => {
  gracePeriodMs = ms
}

export const runMain = (options: MainOptions = {}) =>
  Runtime.makeRunMain(({ fiber, teardown }) => {
    let signalled = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        process.stderr.write(`\nsecond ${signal}: exiting now without waiting for the graceful shutdown\n`)
        process.exit(130)
      }
      signalled = true
      process.stderr.write(`\n${signal}: stopping gracefully (send it again to exit at once)\n`)
      setTimeout(
        () => {
          process.stderr.write("graceful shutdown took too long: exiting\n")
          process.exit(1)
        },
        gracePeriodMs ?? options.hardExitAfterMs ?? 8_000
      ).unref()
      fiber.interruptUnsafe(fiber.id)
    }
    fiber.addObserver((exit) => {
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
      // Exit only once what was written to stdout and stderr has been flushed: a pipe (`sluice inspect --json | jq`)
      // would otherwise lose the tail of the output.
      teardown(exit, (code) => {
        const exitCode = signalled && code !== 0 ? 130 : code
        process.stdout.write("", () => process.stderr.write("", () => process.exit(exitCode)))
      })
    })
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
  })
