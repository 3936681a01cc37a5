/** sluice.ts with the click-enrichment topology's provenance headers on (two headers per enriched record). */
process.argv.push("--provenance")
await import("./sluice.ts")
