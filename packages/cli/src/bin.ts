#!/usr/bin/env node
/** The `sluice` binary. Node >= 24 runs this TypeScript file directly. */
import { run } from "./main.ts"

run()
