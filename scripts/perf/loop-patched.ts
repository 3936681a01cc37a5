/**
 * The hand-written loop of loop.ts on a kafkajs with Sluice's replacements of its producer internals
 * (packages/core/src/internal/kafkajsPatch.ts: linear grouping per partition, one-buffer record encoding, CRC-32C
 * 8 bytes a step), which must load before kafkajs does: the strongest kafkajs loop, to measure Sluice's own overhead
 * against.
 */
// A relative path: the package does not export its internals.
import "../../packages/core/src/internal/kafkajsPatch.ts"

await import("./loop.ts")
