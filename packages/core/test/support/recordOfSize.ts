/**
 * Test records of an exact `Record.sizeOf`, for the tests of `max.message.bytes` on both layers.
 */
import { type ProducerRecord, sizeOf } from "../../src/Record.ts"

/**
 * `base` with a value that makes `sizeOf` exactly `size`. The length varints grow with the value, so some sizes
 * cannot be reached by the value alone; then the value is one byte shorter and the key one byte longer.
 */
export const recordOfSize = (base: Omit<ProducerRecord, "value">, size: number): ProducerRecord => {
  for (const extraKey of [0, 1, 2]) {
    const key = base.key === null ? null : new Uint8Array([...base.key, ...new Uint8Array(extraKey)])
    const empty = sizeOf({ ...base, key, value: new Uint8Array(0) })
    for (let n = Math.max(0, size - empty); n >= 0 && n >= size - empty - 8; n--) {
      const record = { ...base, key, value: new Uint8Array(n).fill(0x61) }
      if (sizeOf(record) === size) return record
    }
  }
  throw new Error(`no record of exactly ${size} bytes from this base`)
}
