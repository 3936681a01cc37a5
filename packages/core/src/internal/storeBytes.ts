/**
 * Store keys as Map keys. A Map cannot key by bytes, so stores key their maps by the bytes as a latin1 string:
 * one UTF-16 code unit per byte (0..255), so JavaScript's string order (code units) is the bytes' unsigned
 * lexicographic order, the order RocksDB and SQLite's BLOB comparison give. Ranges over such strings compare with
 * `<` and sort with the default `sort()`.
 */

// `String.fromCharCode.apply` takes its codes as arguments: past a few thousand of them it may overflow the stack,
// so long keys go through Buffer (slower on short keys, which are the common case).
const applyLimit = 1024

/** The bytes as a latin1 string (code unit i = byte i). */
export const toBinary = (bytes: Uint8Array): string => {
  const n = bytes.length
  if (n > applyLimit) return Buffer.from(bytes.buffer, bytes.byteOffset, n).toString("latin1")
  // Copied into a plain array because `apply` takes an array of numbers; this is still the fastest way measured
  // (~70 ns for a 10-byte key, against ~110 ns for Buffer#toString and ~290 ns for a spread).
  const codes = new Array<number>(n)
  for (let i = 0; i < n; i++) codes[i] = bytes[i]!
  return String.fromCharCode.apply(null, codes)
}

/** The bytes of a string made by `toBinary`. */
export const fromBinary = (s: string): Uint8Array => {
  const n = s.length
  const bytes = new Uint8Array(n)
  if (n > applyLimit) Buffer.from(bytes.buffer).write(s, "latin1")
  else for (let i = 0; i < n; i++) bytes[i] = s.charCodeAt(i)
  return bytes
}

/** Unsigned lexicographic order of bytes (a shorter prefix first), as `memcmp` and SQLite compare BLOBs. */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}
