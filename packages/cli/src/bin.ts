#!/usr/bin/env node
/** The `sluice` binary. Node >= 24 runs this TypeScript file directly. */
import { run } from "./main.ts"

// kafkajs 2.2.4's request queue arms a timer with a negative delay, which Node 24 reports as a
// TimeoutNegativeWarning on every run (harmless: the timer fires at once, as kafkajs intends). Other warnings
// are still printed.
process.removeAllListeners("warning")
process.on("warning", (warning) => {
  if (warning.name !== "TimeoutNegativeWarning") process.stderr.write(`${warning.name}: ${warning.message}\n`)
})

run()
