#!/usr/bin/env node
/**
 * The `sluice` binary, plain JavaScript so that any Node >= 18 can start it.
 *
 * Under Node >= 24 it runs the TypeScript entry (`../src/bin.ts`) directly. Under an older Node (a supervisor or a
 * shell whose `node` is the system one) it re-executes itself with the project's Node 24, the one the `node`
 * devDependency installs in node_modules/node/bin, and stays in front of it: SIGINT, SIGTERM and SIGHUP sent to this
 * process reach the worker, and this process exits with the worker's exit code (or dies of the worker's signal).
 *
 * A signal sent to the whole process group (Ctrl-C in a terminal, systemd's default KillMode, `timeout`) reaches both
 * processes. The worker treats a second SIGINT or SIGTERM as "exit now", so the copy this process passes on must not
 * count twice: SIGINT and SIGTERM go over an IPC channel, and the worker raises them on itself only when the same
 * signal has not reached it directly (checked within a short window). SIGHUP, which the worker does not handle, is
 * passed on with a plain kill. If this process disappears (SIGKILL), the worker shuts down as on SIGTERM.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as nodeModule from "node:module"
import { constants } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const REQUIRED_MAJOR = 24
/** Set in the re-executed worker's environment: it is then under this wrapper, and must not re-execute again. */
const WRAPPED = "SLUICE_WRAPPED_BY"
/** How long the worker waits for a forwarded signal to show up directly too before raising it itself. */
const DEDUPE_WINDOW_MS = 100
/** @type {ReadonlyArray<NodeJS.Signals>} */
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP"]
/** @type {ReadonlyArray<NodeJS.Signals>} */
const DEDUPED = ["SIGINT", "SIGTERM"]

/** @param {unknown} value @returns {value is NodeJS.Signals} */
const isDeduped = (value) => typeof value === "string" && DEDUPED.some((signal) => signal === value)

/** Dies of `signal`, as a process without a handler for it would. */
const dieOf = (/** @type {NodeJS.Signals} */ signal) => {
  process.removeAllListeners(signal)
  process.kill(process.pid, signal)
  // Where the default action does not end the process (Windows), the shell's convention.
  setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 200).unref()
}

/** The project's Node 24: node_modules/node/bin/node, as installed by the `node` devDependency. */
const projectNode = () => {
  try {
    const nodePackage = nodeModule.createRequire(import.meta.url).resolve("node/package.json")
    const binary = join(dirname(nodePackage), "bin", process.platform === "win32" ? "node.exe" : "node")
    return existsSync(binary) ? binary : undefined
  } catch {
    return undefined
  }
}

/** Under Node < 24: run this file again with the project's Node 24, forwarding signals and the exit status. */
const reexec = () => {
  const fail = (/** @type {string} */ message) => {
    process.stderr.write(
      `sluice: ${message}\nsluice needs Node >= ${REQUIRED_MAJOR}; this is Node ${process.versions.node}. ` +
        "The project brings its own Node 24 (the `node` devDependency): run `npm ci` in the repository.\n"
    )
    process.exit(1)
  }
  if (process.env[WRAPPED] !== undefined) fail(`the project's Node (${process.execPath}) is not Node ${REQUIRED_MAJOR}`)
  const node = projectNode()
  if (node === undefined) return fail("the project's Node 24 (node_modules/node/bin/node) is not installed")

  // import.meta.url is this file's real path: Node resolves the node_modules/.bin/sluice symlink for the main module.
  const self = fileURLToPath(import.meta.url)
  const child = spawn(node, [...process.execArgv, self, ...process.argv.slice(2)], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, [WRAPPED]: String(process.pid) }
  })

  // The worker says when it listens for forwarded signals; until then (while it starts) a plain kill does.
  let listening = false
  child.on("message", (/** @type {unknown} */ message) => {
    if (typeof message === "object" && message !== null && "sluiceListening" in message) listening = true
  })
  const forward = (/** @type {NodeJS.Signals} */ signal) => {
    if (isDeduped(signal) && listening && child.connected) {
      child.send({ sluiceSignal: signal }, (error) => {
        if (error) child.kill(signal)
      })
    } else {
      child.kill(signal)
    }
  }
  for (const signal of FORWARDED) process.on(signal, forward)

  child.on("error", (error) => fail(`could not start ${node}: ${error.message}`))
  child.on("exit", (code, signal) => {
    for (const each of FORWARDED) process.removeListener(each, forward)
    if (signal !== null) dieOf(signal)
    else process.exit(code ?? 1)
  })
}

/**
 * In the worker started by `reexec`: raise a signal forwarded over IPC unless the same signal also reached this
 * process directly (a process-group signal), so that one signal counts once.
 */
const acceptForwardedSignals = () => {
  /** @typedef {{ direct: number | undefined, pending: Array<NodeJS.Timeout>, raised: number }} SignalState */
  /** @type {Map<NodeJS.Signals, SignalState>} */
  const states = new Map(DEDUPED.map((signal) => [signal, { direct: undefined, pending: [], raised: 0 }]))
  const stateOf = (/** @type {NodeJS.Signals} */ signal) => {
    const state = states.get(signal)
    if (state === undefined) throw new Error(`no state for ${signal}`)
    return state
  }

  const received = (/** @type {NodeJS.Signals} */ signal) => {
    const state = stateOf(signal)
    if (state.raised > 0) {
      state.raised -= 1
    } else {
      const pending = state.pending.shift()
      // A forwarded copy of this signal is waiting: this is the same signal, reaching us directly too.
      if (pending !== undefined) clearTimeout(pending)
      else state.direct = Date.now()
    }
    // Only this listener: nothing in the program handles the signal (yet, or any more). Behave as Node would.
    if (process.listenerCount(signal) === 1) dieOf(signal)
  }

  const forwarded = (/** @type {NodeJS.Signals} */ signal) => {
    const state = stateOf(signal)
    if (state.direct !== undefined && Date.now() - state.direct < DEDUPE_WINDOW_MS) {
      state.direct = undefined
      return
    }
    const timer = setTimeout(() => {
      state.pending = state.pending.filter((each) => each !== timer)
      state.raised += 1
      process.kill(process.pid, signal)
    }, DEDUPE_WINDOW_MS)
    state.pending.push(timer)
  }

  for (const signal of DEDUPED) process.on(signal, received)
  process.on("message", (/** @type {unknown} */ message) => {
    if (typeof message === "object" && message !== null && "sluiceSignal" in message) {
      const signal = message.sluiceSignal
      if (isDeduped(signal)) forwarded(signal)
    }
  })
  // The wrapper is gone (killed with SIGKILL): shut down gracefully rather than run on unsupervised.
  process.on("disconnect", () => forwarded("SIGTERM"))
  process.send?.({ sluiceListening: true })
  // The channel must not keep the worker alive: it ends when its program does.
  process.channel?.unref()
}

const major = Number(process.versions.node.split(".")[0])
if (major < REQUIRED_MAJOR) {
  reexec()
} else {
  if (process.env[WRAPPED] !== undefined) {
    delete process.env[WRAPPED]
    if (process.send !== undefined) acceptForwardedSignals()
  }
  // The published package (which has no src/) runs its built JavaScript. Inside the repository the TypeScript
  // sources run, even where a build left a dist/ behind (it would be stale as soon as a source changes), and the
  // workspace packages resolve to their sources too: the `@sluice/source` export condition, added
  // to every resolution by a hook (as `node --conditions=@sluice/source` would). Variable specifiers: an older Node
  // must not try to resolve (or parse) TypeScript before the version check.
  // Node's on-disk compile cache (NODE_COMPILE_CACHE's directory, else one under the OS's temp directory): from the
  // second start on, the ~550 modules a worker loads are not compiled again (about a quarter of the start-up).
  // NODE_DISABLE_COMPILE_CACHE=1 turns it off.
  nodeModule.enableCompileCache?.()
  const source = new URL("../src/bin.ts", import.meta.url)
  if (existsSync(fileURLToPath(source))) {
    nodeModule.registerHooks({
      resolve: (specifier, context, nextResolve) =>
        nextResolve(specifier, { ...context, conditions: [...context.conditions, "@sluice/source"] })
    })
    await import(source.href)
  } else {
    await import(new URL("../dist/bin.js", import.meta.url).href)
  }
}
