/**
 * Runs a worker as the process's main program with graceful shutdown, and says how it ended in its exit code.
 *
 * The first SIGINT or SIGTERM interrupts the program, whose finalizers stop fetching, drain, flush, commit and
 * disconnect, each step bounded; a second signal exits at once; and if the graceful path outlives its bound plus a
 * margin, the process exits anyway. Offsets left uncommitted by an unclean stop are re-delivered: nothing is lost.
 *
 * Exit codes (`sluice run --help` and the README list them too):
 * - 0: the program finished, or a signal stopped it cleanly (drained, committed, left the group).
 * - 1: the program failed (the error is printed).
 * - 2: invalid arguments or configuration.
 * - 3: a signal stopped it, but the stop was not clean: work in flight was abandoned uncommitted at the bound, or
 *   the final commit failed; it is re-delivered to the next owner.
 * - 4: the graceful stop outlived its bound plus the margin and the process exited hard.
 * - 128 + n: a second signal n arrived during the stop (130 for SIGINT, 143 for SIGTERM) and the process exited at
 *   once.
 */

import { constants } from "node:os"
import { Cause, Exit, Runtime } from "effect"

export const exitCodes = {
  ok: 0,
  failed: 1,
  usage: 2,
  uncleanStop: 3,
  hardExit: 4
} as const

export interface MainOptions {
  /** Exit hard if the graceful shutdown has not finished this many milliseconds after the signal. Default 6000. */
  readonly hardExitAfterMs?: number
}

let gracePeriodMs: number | undefined
let unclean: string | undefined

/**
 * Sets the hard-exit deadline for this process: the graceful stop's own bound plus a margin for the client to
 * disconnect (`sluice run --shutdown-timeout-ms`).
 */
export const setGracePeriod = (ms: number): void => {
  gracePeriodMs = ms
}

/**
 * Records that the stop in progress is not clean (a drain abandoned at its bound, a final commit that failed): the
 * process then exits with `exitCodes.uncleanStop` rather than 0. The runner calls it; the first reason is kept.
 */
export const markUncleanStop = (reason: string): void => {
  unclean ??= reason
}

/** The code a run ends with; `signalled` says whether a first signal started the stop. */
export const exitCodeOf = (exit: Exit.Exit<unknown, unknown>, signalled: boolean): number => {
  if (Exit.isSuccess(exit)) return signalled && unclean !== undefined ? exitCodes.uncleanStop : exitCodes.ok
  if (Cause.hasInterruptsOnly(exit.cause)) {
    // Interrupted by our own signal handler: a stop, clean or not. Interrupted otherwise: a failure.
    if (!signalled) return exitCodes.failed
    return unclean === undefined ? exitCodes.ok : exitCodes.uncleanStop
  }
  let code: number = exitCodes.failed
  Runtime.defaultTeardown(exit, (c) => {
    code = c
  })
  return code
}

export const runMain = (options: MainOptions = {}) =>
  Runtime.makeRunMain(({ fiber, teardown }) => {
    let signalled = false
    const exitNow = (code: number) => {
      process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
    }
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        process.stderr.write(`\nsecond ${signal}: exiting now without waiting for the graceful shutdown\n`)
        process.exit(128 + constants.signals[signal])
      }
      signalled = true
      process.stderr.write(`\n${signal}: stopping gracefully (send it again to exit at once)\n`)
      setTimeout(
        () => {
          process.stderr.write("graceful shutdown took too long: exiting hard; uncommitted work is re-delivered\n")
          process.exit(exitCodes.hardExit)
        },
        gracePeriodMs ?? options.hardExitAfterMs ?? 6_000
      ).unref()
      fiber.interruptUnsafe(fiber.id)
    }
    fiber.addObserver((exit) => {
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
      // Exit only once what was written to stdout and stderr has been flushed: a pipe (`sluice inspect --json | jq`)
      // would otherwise lose the tail of the output. The teardown still reports failures; the code is ours.
      teardown(exit, () => {
        if (signalled && unclean !== undefined) process.stderr.write(`stopped, not cleanly: ${unclean}\n`)
        exitNow(exitCodeOf(exit, signalled))
      })
    })
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
  })
