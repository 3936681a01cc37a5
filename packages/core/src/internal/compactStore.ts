/**
 * The global table's storage (Table.ts): keys and values as bytes in one arena of large buffers, indexed by an
 * open-addressing hash table of typed arrays. A million profiles take their bytes plus about 20 bytes each (entry lengths, index slots), none of
 * it objects on the V8 heap: the garbage collector has nothing to trace, and the process does not grow the heap a
 * `Map` of decoded objects needs (145 MB live for 1M profiles, 700+ MB RSS while loading).
 *
 * The arena is a list of 4 MiB chunks, appended to. An entry is `varint keyLength, key, varint valueLength, value`;
 * its position (chunk × 2^22 + offset in the chunk) is what the index holds. Replacing a value appends a new entry
 * and leaves the old one as garbage; once the garbage outweighs the live entries the arena is compacted (copied,
 * live entries only). The index is linear probing over a power-of-two table kept under 5/8 full, with each slot's
 * hash beside its position, and backward-shift deletion (no tombstones).
 */

const chunkBits = 22
const chunkSize = 2 ** chunkBits
/** Positions (chunk × 2^22 + offset) + 1 fit the index's 32-bit slots. */
const maxChunks = 2 ** (32 - chunkBits) - 1
/** Compacting needs at least this much garbage (and more garbage than live bytes). */
const compactAfter = 8 * 1024 * 1024

const varintSize = (n: number): number => {
  let size = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    size++
  }
  return size
}

/** FNV-1a over the key's bytes. */
const hashOf = (key: Uint8Array): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193)
  return h >>> 0
}

export interface CompactStore {
  readonly size: () => number
  /** Stores a copy of `value` under a copy of `key`. */
  readonly set: (key: Uint8Array, value: Uint8Array) => void
  readonly delete: (key: Uint8Array) => void
  /**
   * Where `key`'s entry is (`-1` if absent). Stable until the next `set` or `delete` of any key, which may compact
   * the arena; `generation` changes when that happens.
   */
  readonly find: (key: Uint8Array) => number
  /** The value of the entry at `position` (from `find`): a view into the arena, valid until the next write. */
  readonly valueAt: (position: number) => Uint8Array
  /** Changes whenever positions move (a compaction). */
  readonly generation: () => number
  /** Bytes held: arena chunks and index. */
  readonly bytes: () => number
}

export const make = (): CompactStore => {
  let chunks: Array<Buffer> = []
  let fill = chunkSize
  let liveBytes = 0
  let garbageBytes = 0
  let generation = 0
  let capacity = 1024
  // Position + 1 of each slot's entry (0: empty), and the entry's key hash.
  let slots = new Uint32Array(capacity)
  let hashes = new Uint32Array(capacity)
  let count = 0

  const chunkOf = (position: number) => chunks[Math.floor(position / chunkSize)]!
  // Where the last `readVarint` stopped: a variable rather than a returned pair, so that lookups allocate nothing.
  let next = 0
  const readVarint = (buf: Buffer, at: number): number => {
    let b = buf[at++]!
    if (b < 0x80) {
      next = at
      return b
    }
    let n = b & 0x7f
    let scale = 128
    while (true) {
      b = buf[at++]!
      n += (b & 0x7f) * scale
      if (b < 0x80) {
        next = at
        return n
      }
      scale *= 128
    }
  }
  const writeVarint = (buf: Buffer, at: number, n: number): number => {
    while (n >= 0x80) {
      buf[at++] = (n % 128) | 0x80
      n = Math.floor(n / 128)
    }
    buf[at++] = n
    return at
  }
  const entrySize = (keyLength: number, valueLength: number) =>
    varintSize(keyLength) + keyLength + varintSize(valueLength) + valueLength
  const sizeAt = (position: number): number => {
    const buf = chunkOf(position)
    const start = position % chunkSize
    const keyLength = readVarint(buf, start)
    const valueLength = readVarint(buf, next + keyLength)
    return next + valueLength - start
  }

  const append = (key: Uint8Array, value: Uint8Array): number => {
    const size = entrySize(key.length, value.length)
    let chunk = chunks[chunks.length - 1]
    if (chunk === undefined || fill + size > chunk.length) {
      if (chunks.length >= maxChunks) throw new RangeError("a global table's arena is limited to 4 GiB")
      // An entry larger than a chunk gets a chunk of its own; it still starts at offset 0, inside the 2^22 range.
      chunk = Buffer.allocUnsafeSlow(Math.max(chunkSize, size))
      chunks.push(chunk)
      fill = 0
    }
    const position = (chunks.length - 1) * chunkSize + fill
    let at = writeVarint(chunk, fill, key.length)
    chunk.set(key, at)
    at = writeVarint(chunk, at + key.length, value.length)
    chunk.set(value, at)
    fill = at + value.length
    liveBytes += size
    return position
  }

  const keyEquals = (position: number, key: Uint8Array): boolean => {
    const buf = chunkOf(position)
    const keyLength = readVarint(buf, position % chunkSize)
    const at = next
    if (keyLength !== key.length) return false
    for (let i = 0; i < keyLength; i++) if (buf[at + i] !== key[i]) return false
    return true
  }

  /** The slot holding `key`, or the empty slot where it would go, as `~slot`. */
  const probe = (key: Uint8Array, hash: number): number => {
    const mask = capacity - 1
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = slots[i]!
      if (entry === 0) return ~i
      if (hashes[i] === hash && keyEquals(entry - 1, key)) return i
    }
  }

  const place = (entry: number, hash: number) => {
    const mask = capacity - 1
    let i = hash & mask
    while (slots[i] !== 0) i = (i + 1) & mask
    slots[i] = entry
    hashes[i] = hash
  }

  const grow = () => {
    const oldSlots = slots
    const oldHashes = hashes
    capacity *= 2
    slots = new Uint32Array(capacity)
    hashes = new Uint32Array(capacity)
    for (let i = 0; i < oldSlots.length; i++) if (oldSlots[i] !== 0) place(oldSlots[i]!, oldHashes[i]!)
  }

  /** Copies the live entries into a fresh arena, in slot order. */
  const compact = () => {
    const old = chunks
    const oldChunkOf = (position: number) => old[Math.floor(position / chunkSize)]!
    chunks = []
    fill = chunkSize
    liveBytes = 0
    garbageBytes = 0
    for (let i = 0; i < capacity; i++) {
      const entry = slots[i]!
      if (entry === 0) continue
      const position = entry - 1
      const buf = oldChunkOf(position)
      const keyLength = readVarint(buf, position % chunkSize)
      const keyAt = next
      const valueLength = readVarint(buf, keyAt + keyLength)
      const valueAt = next
      slots[i] = append(buf.subarray(keyAt, keyAt + keyLength), buf.subarray(valueAt, valueAt + valueLength)) + 1
    }
    generation++
  }

  const retire = (position: number) => {
    const size = sizeAt(position)
    liveBytes -= size
    garbageBytes += size
    if (garbageBytes > compactAfter && garbageBytes > liveBytes) compact()
  }

  const removeSlot = (slot: number) => {
    // Backward-shift deletion: later entries of the probe run move up so that no lookup stops early.
    const mask = capacity - 1
    let hole = slot
    slots[hole] = 0
    for (let i = (hole + 1) & mask; slots[i] !== 0; i = (i + 1) & mask) {
      const home = hashes[i]! & mask
      const stays = hole < i ? home > hole && home <= i : home > hole || home <= i
      if (stays) continue
      slots[hole] = slots[i]!
      hashes[hole] = hashes[i]!
      slots[i] = 0
      hole = i
    }
  }

  return {
    size: () => count,
    set: (key, value) => {
      const hash = hashOf(key)
      const slot = probe(key, hash)
      if (slot >= 0) {
        const old = slots[slot]! - 1
        slots[slot] = append(key, value) + 1
        retire(old)
        return
      }
      slots[~slot] = append(key, value) + 1
      hashes[~slot] = hash
      count++
      if (count * 8 > capacity * 5) grow()
    },
    delete: (key) => {
      const slot = probe(key, hashOf(key))
      if (slot < 0) return
      const old = slots[slot]! - 1
      removeSlot(slot)
      count--
      retire(old)
    },
    find: (key) => {
      const slot = probe(key, hashOf(key))
      return slot < 0 ? -1 : slots[slot]! - 1
    },
    valueAt: (position) => {
      const buf = chunkOf(position)
      const keyLength = readVarint(buf, position % chunkSize)
      const valueLength = readVarint(buf, next + keyLength)
      return buf.subarray(next, next + valueLength)
    },
    generation: () => generation,
    bytes: () => chunks.reduce((n, c) => n + c.length, 0) + capacity * 8
  }
}
