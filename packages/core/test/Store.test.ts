/** State stores on both backends: typed access, the write buffer, changelog hand-off, restore, persistence. */
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema, type Scope } from "effect"
import * as Codec from "../src/Codec.ts"
import * as Errors from "../src/Errors.ts"
import { bytes, type ConsumerRecord, text } from "../src/Record.ts"
import * as Store from "../src/Store.ts"
import { tempDir } from "./support/tempDir.ts"

const counts = Store.make("counts", { key: Codec.string, value: Codec.json(Schema.Finite) })
const location = { application: "app", task: 3, store: counts.name }

interface Kind {
  readonly name: string
  /** A factory for the test's scope (SQLite: in a temporary directory). */
  readonly factory: Effect.Effect<Store.BackendFactory, never, Scope.Scope>
}

const kinds: ReadonlyArray<Kind> = [
  { name: "memory", factory: Effect.succeed(Store.memory) },
  { name: "sqlite", factory: Effect.map(tempDir("sluice-store-"), (dir) => Store.sqlite({ dir })) }
]

/** Opens a backend that is closed when the scope ends. */
const openBackend = (factory: Store.BackendFactory, at: Store.Location = location) =>
  Effect.acquireRelease(factory.open(at), (backend) => Effect.sync(() => backend.close()))

const openStore = <K, V>(factory: Store.BackendFactory, spec: Store.StoreSpec<K, V>, at?: Store.Location) =>
  Effect.map(openBackend(factory, { ...location, store: spec.name, ...at }), (backend) => Store.open(spec, backend))

/** A changelog record as the runtime reads it back: key and value as text (`null` value: a tombstone). */
const changelog = (offset: number, key: string, value: string | null): ConsumerRecord => ({
  topic: Store.changelogTopic("app", counts),
  partition: location.task,
  offset,
  timestamp: 0,
  key: bytes(key),
  value: value === null ? null : bytes(value),
  headers: {}
})

/** Takes the batch's writes and makes them durable at `nextOffset`, as the runtime does once they are acked. */
const commit = <K, V>(store: Store.TaskStore<K, V>, nextOffset: number) => {
  const writes = store.takeWrites()
  store.durable(writes, nextOffset)
  return writes
}

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (error) {
    return error
  }
  return assert.fail("expected a throw")
}

const entries = <K, V>(iterable: Iterable<readonly [K, V]>) => Array.from(iterable, ([k, v]) => [k, v] as const)

const changes = (writes: ReadonlyArray<Store.Change>) =>
  writes.map(([k, v]) => [text(k), v === null ? null : text(v)] as const)

describe("Store", () => {
  it("changelogTopic is <application>-<store>-changelog", () => {
    assert.strictEqual(Store.changelogTopic("billing", counts), "billing-counts-changelog")
  })

  for (const kind of kinds) {
    describe(kind.name, () => {
      it.effect("get, put, delete and size, typed", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          assert.strictEqual(store.get("a"), undefined)
          assert.strictEqual(store.size(), 0)
          store.put("a", 1)
          store.put("b", 2.5)
          store.put("a", 3)
          assert.strictEqual(store.get("a"), 3)
          assert.strictEqual(store.size(), 2)
          commit(store, 1)
          assert.strictEqual(store.get("a"), 3)
          assert.strictEqual(store.get("b"), 2.5)
          assert.strictEqual(store.size(), 2)
          store.delete("a")
          store.delete("nope")
          assert.strictEqual(store.get("a"), undefined)
          assert.strictEqual(store.size(), 1)
          commit(store, 2)
          assert.strictEqual(store.get("a"), undefined)
          assert.strictEqual(store.size(), 1)
          assert.strictEqual(store.backend.size(), 1)
        })
      )

      it.effect("range: from inclusive, to exclusive, over durable and buffered writes", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          for (const [k, v] of [
            ["b", 2],
            ["d", 4],
            ["f", 6],
            ["h", 8]
          ] as const)
            store.put(k, v)
          commit(store, 1)
          // Buffered: a new key between durable ones, one past the end, an update, and a delete.
          store.put("c", 3)
          store.put("i", 9)
          store.put("d", 40)
          store.delete("f")
          assert.deepStrictEqual(entries(store.all()), [
            ["b", 2],
            ["c", 3],
            ["d", 40],
            ["h", 8],
            ["i", 9]
          ])
          assert.deepStrictEqual(entries(store.range("c", "h")), [
            ["c", 3],
            ["d", 40]
          ])
          assert.deepStrictEqual(entries(store.range("d")), [
            ["d", 40],
            ["h", 8],
            ["i", 9]
          ])
          assert.deepStrictEqual(entries(store.range(undefined, "c")), [["b", 2]])
          assert.deepStrictEqual(entries(store.range("e", "e")), [])
          commit(store, 2)
          assert.deepStrictEqual(entries(store.range("c", "i")), [
            ["c", 3],
            ["d", 40],
            ["h", 8]
          ])
          // A key deleted and written again, in one batch and across two, is one entry.
          store.delete("c")
          store.put("h", 80)
          commit(store, 3)
          store.put("c", 30)
          store.delete("h")
          store.put("h", 81)
          commit(store, 4)
          store.delete("b")
          store.put("b", 20)
          commit(store, 5)
          assert.deepStrictEqual(entries(store.all()), [
            ["b", 20],
            ["c", 30],
            ["d", 40],
            ["h", 81],
            ["i", 9]
          ])
        })
      )

      it.effect("range order is the byte order of the encoded key, not the order of K", () =>
        Effect.gen(function* () {
          const factory = yield* kind.factory
          // UTF-8 bytes: a 61, z 7a, é c3a9, ÿ c3bf, 中 e4b8ad, ！ efbc81, 😀 f09f9880. JavaScript's own string order
          // (UTF-16) puts 😀 (d83d de00) before ！ (ff01).
          const inOrder = ["a", "z", "é", "ÿ", "中", "！", "😀"]
          const names = Store.make("names", { key: Codec.string, value: Codec.json(Schema.Finite) })
          const store = yield* openStore(factory, names)
          const shuffled = ["中", "😀", "a", "ÿ", "！", "z", "é"]
          for (const k of shuffled.slice(0, 4)) store.put(k, 0)
          commit(store, 1)
          for (const k of shuffled.slice(4)) store.put(k, 0)
          assert.deepStrictEqual(
            entries(store.all()).map(([k]) => k),
            inOrder
          )
          assert.notDeepEqual([...inOrder].sort(), inOrder)
          commit(store, 2)
          assert.deepStrictEqual(
            entries(store.all()).map(([k]) => k),
            inOrder
          )
          assert.deepStrictEqual(
            entries(store.range("é", "！")).map(([k]) => k),
            ["é", "ÿ", "中"]
          )

          // Decimal text keys sort as text: "10" < "100" < "2" < "9".
          const ids = Store.make("ids", { key: Codec.intString, value: Codec.json(Schema.Finite) })
          const byId = yield* openStore(factory, ids)
          for (const id of [9, 100, 2, 10, 1]) byId.put(id, id)
          commit(byId, 1)
          assert.deepStrictEqual(
            entries(byId.all()).map(([k]) => k),
            [1, 10, 100, 2, 9]
          )
          assert.deepStrictEqual(
            entries(byId.range(10, 9)).map(([k]) => k),
            [10, 100, 2]
          )
        })
      )

      it.effect("any bytes round-trip, short or long, and order as unsigned bytes with a prefix first", () =>
        Effect.gen(function* () {
          const blobs = Store.make("blobs", { key: Codec.raw, value: Codec.raw })
          const store = yield* openStore(yield* kind.factory, blobs)
          const every = Uint8Array.from({ length: 256 }, (_, i) => 255 - i)
          const long = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255)
          const keys = [
            Uint8Array.of(0x80),
            Uint8Array.of(0x00),
            Uint8Array.of(0x7f, 0xff),
            Uint8Array.of(0x7f),
            Uint8Array.of(0x7f, 0x00),
            Uint8Array.of(0xff, 0xff),
            new Uint8Array(0),
            long(5000, 1)
          ]
          const blobOf = (i: number) => (i === 0 ? every : long(1000 + i * 700, i))
          keys.forEach((key, i) => {
            store.put(key, blobOf(i))
          })
          // The long key starts with 0x01.
          const expected = [[], [0x00], Array.from(keys[7]!), [0x7f], [0x7f, 0x00], [0x7f, 0xff], [0x80], [0xff, 0xff]]
          const check = () => {
            assert.deepStrictEqual(
              entries(store.all()).map(([k]) => (k === null ? null : Array.from(k))),
              expected
            )
            keys.forEach((key, i) => {
              assert.deepStrictEqual(store.get(key), blobOf(i))
            })
          }
          check()
          commit(store, 1)
          check()
        })
      )

      it.effect("reads see the batch's own writes before they are durable, and until they are", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.put("kept", 1)
          store.put("gone", 1)
          commit(store, 1)
          store.put("new", 5)
          store.put("kept", (store.get("kept") ?? 0) + 1)
          store.delete("gone")
          const check = (size: number) => {
            assert.strictEqual(store.get("new"), 5)
            assert.strictEqual(store.get("kept"), 2)
            assert.strictEqual(store.get("gone"), undefined)
            assert.strictEqual(store.size(), size)
          }
          check(2)
          // Taken (the changelog records are in flight) but not durable: the backend is as before...
          const writes = store.takeWrites()
          assert.strictEqual(store.backend.get(bytes("new")), undefined)
          assert.strictEqual(text(store.backend.get(bytes("kept"))!), "1")
          // ...and the store still reads the writes, also under a newer batch's writes.
          check(2)
          store.put("newer", 7)
          store.put("new", 6)
          assert.strictEqual(store.get("new"), 6)
          store.put("new", 5)
          check(3)
          store.durable(writes, 4)
          check(3)
          assert.strictEqual(store.get("newer"), 7)
          assert.strictEqual(text(store.backend.get(bytes("new"))!), "5")
        })
      )

      it.effect("takeWrites: the last write of each key, in the order keys were first written", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.put("a", 1)
          store.put("b", 1)
          store.put("a", 2)
          store.put("c", 1)
          store.delete("b")
          store.put("d", 1)
          store.delete("d")
          store.put("d", 4)
          // "b" was written in this step only: its deletion leaves nothing for the changelog.
          const first = store.takeWrites()
          assert.deepStrictEqual(changes(first), [
            ["a", "2"],
            ["c", "1"],
            ["d", "4"]
          ])
          assert.deepStrictEqual(store.takeWrites(), [])
          store.put("c", 3)
          // "a" is in flight: its deletion is kept. Once the first batch is durable, so is that of "d", kept too.
          store.delete("a")
          assert.deepStrictEqual(changes(store.takeWrites()), [
            ["c", "3"],
            ["a", null]
          ])
          store.durable(first, 1)
          store.put("d", 5)
          store.delete("d")
          store.put("e", 1)
          store.delete("e")
          assert.deepStrictEqual(changes(store.takeWrites()), [["d", null]])
        })
      )

      it.effect(
        "savepoints: the steps' writes are held together until taken; a rollback drops only the last step's",
        () =>
          Effect.gen(function* () {
            const store = yield* openStore(yield* kind.factory, counts)
            const first = store.savepoint()
            store.put("a", 1)
            store.put("b", 1)
            // The next step: the first one's writes are held, and read.
            const second = store.savepoint()
            store.put("a", 2)
            store.put("c", 1)
            assert.strictEqual(store.get("a"), 2)
            assert.strictEqual(store.held(), 4)
            store.rollback(second)
            assert.strictEqual(store.get("a"), 1)
            assert.isUndefined(store.get("c"))
            // Only the last savepoint can be rolled back to: the writes before it have joined the held ones.
            assert.match(String(thrown(() => store.rollback(first))), /not this store's last one/)
            store.savepoint()
            store.put("a", 3)
            store.delete("b")
            // One write per key for all the steps: "b" was put and deleted since the last take, so it is not there.
            assert.deepStrictEqual(changes(store.takeWrites()), [["a", "3"]])
            assert.strictEqual(store.held(), 0)
          })
      )

      it.effect("durable applies the writes to the backend with the checkpoint", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          assert.strictEqual(store.checkpoint(), undefined)
          store.put("a", 1)
          store.put("b", 2)
          commit(store, 17)
          assert.strictEqual(store.checkpoint(), 17)
          assert.strictEqual(store.backend.checkpoint(), 17)
          assert.strictEqual(text(store.backend.get(bytes("a"))!), "1")
          store.delete("a")
          commit(store, 18)
          assert.strictEqual(store.backend.get(bytes("a")), undefined)
          assert.strictEqual(store.checkpoint(), 18)
          // Durable writes are the backend's: discarding a later batch does not take them away.
          store.discardWrites()
          assert.strictEqual(store.get("b"), 2)
          // Batches taken one after the other are made durable in that order; the other order is refused.
          store.put("c", 1)
          const first = store.takeWrites()
          store.put("c", 2)
          const second = store.takeWrites()
          assert.throws(() => store.durable(second, 20), /out of order/)
          store.durable(first, 19)
          store.durable(second, 20)
          assert.strictEqual(store.get("c"), 2)
          assert.strictEqual(text(store.backend.get(bytes("c"))!), "2")
          assert.strictEqual(store.checkpoint(), 20)
        })
      )

      it.effect("discardWrites drops every write that is not durable", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.put("a", 1)
          commit(store, 1)
          store.put("a", 2)
          store.put("b", 2)
          store.takeWrites()
          store.put("c", 3)
          store.delete("a")
          store.discardWrites()
          assert.strictEqual(store.get("a"), 1)
          assert.strictEqual(store.get("b"), undefined)
          assert.strictEqual(store.get("c"), undefined)
          assert.strictEqual(store.size(), 1)
          assert.deepStrictEqual(entries(store.all()), [["a", 1]])
          assert.deepStrictEqual(store.takeWrites(), [])
          assert.strictEqual(store.checkpoint(), 1)
        })
      )

      it.effect("restore applies changelog puts and tombstones and sets the checkpoint", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.restore([changelog(0, "a", "1"), changelog(1, "b", "2"), changelog(2, "a", "3")])
          assert.strictEqual(store.checkpoint(), 3)
          // The fetch buffer the records' bytes are views of is reused: the store must not see that.
          const fetched = bytes("xx7yy")
          store.restore([changelog(5, "b", null), { ...changelog(6, "c", null), value: fetched.subarray(2, 3) }])
          fetched[2] = 0x38
          assert.strictEqual(store.checkpoint(), 7)
          assert.deepStrictEqual(entries(store.all()), [
            ["a", 3],
            ["c", 7]
          ])
          assert.strictEqual(store.size(), 2)
          store.restore([])
          assert.strictEqual(store.checkpoint(), 7)
          // A batch that ends on a transaction marker: the checkpoint is past the marker.
          const batch = { topic: "t", partition: 3, highWatermark: 12, lastOffset: 10 }
          store.restoreBatch({ ...batch, records: [changelog(8, "d", "4")] })
          assert.strictEqual(store.checkpoint(), 11)
          store.restoreBatch({ ...batch, records: [], lastOffset: 11 })
          assert.strictEqual(store.checkpoint(), 12)
          store.restoreBatch({ ...batch, records: [changelog(12, "a", null)], lastOffset: undefined })
          assert.strictEqual(store.checkpoint(), 13)
          assert.deepStrictEqual(entries(store.all()), [
            ["c", 7],
            ["d", 4]
          ])
        })
      )

      it.effect("wipe drops the data and the checkpoint", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.put("a", 1)
          store.put("b", 2)
          commit(store, 9)
          assert.deepStrictEqual(entries(store.range("a")), [
            ["a", 1],
            ["b", 2]
          ])
          store.backend.wipe()
          assert.strictEqual(store.get("a"), undefined)
          assert.strictEqual(store.size(), 0)
          assert.strictEqual(store.checkpoint(), undefined)
          assert.deepStrictEqual(entries(store.all()), [])
          store.restore([changelog(0, "c", "1")])
          assert.deepStrictEqual(entries(store.all()), [["c", 1]])
          assert.strictEqual(store.size(), 1)
        })
      )

      it.effect("a value or key that does not encode throws StoreEncodeError, and nothing is written", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.put("a", 1)
          const error = thrown(() => store.put("a", Number.NaN))
          assert.instanceOf(error, Store.StoreEncodeError)
          if (error instanceof Store.StoreEncodeError) {
            assert.strictEqual(error.store, "counts")
            assert.strictEqual(error.part, "value")
            assert.strictEqual(error.message, "cannot encode a value for store counts: Expected a finite number")
          }
          assert.strictEqual(store.get("a"), 1)
          assert.deepStrictEqual(changes(store.takeWrites()), [["a", "1"]])

          const ids = Store.make("ids", { key: Codec.intString, value: Codec.json(Schema.Finite) })
          const byId = yield* openStore(yield* kind.factory, ids)
          assert.throws(() => byId.put(1.5, 1), /cannot encode a key for store ids: not an integer/)
          assert.throws(() => byId.get(1.5), Store.StoreEncodeError)
          assert.throws(() => byId.range(0, 0.5), Store.StoreEncodeError)
          assert.deepStrictEqual(byId.takeWrites(), [])
        })
      )

      it.effect("bytes that no longer decode throw StoreDecodeError; a value encoded as null is a delete", () =>
        Effect.gen(function* () {
          const store = yield* openStore(yield* kind.factory, counts)
          store.restore([changelog(0, "a", "not json"), changelog(1, "b", "2")])
          assert.throws(() => store.get("a"), Store.StoreDecodeError)
          assert.strictEqual(store.get("b"), 2)

          const optional = Store.make("optional", { key: Codec.string, value: Codec.nullable(Codec.string) })
          const maybe = yield* openStore(yield* kind.factory, optional)
          maybe.put("x", "1")
          maybe.put("", "")
          commit(maybe, 1)
          assert.strictEqual(maybe.get(""), "")
          maybe.put("x", null)
          assert.strictEqual(maybe.get("x"), undefined)
          assert.deepStrictEqual(changes(maybe.takeWrites()), [["x", null]])
        })
      )
    })
  }

  it.effect("a memory backend opens empty every time, so the store is restored in full", () =>
    Effect.gen(function* () {
      const first = yield* openStore(Store.memory, counts)
      first.put("a", 1)
      commit(first, 5)
      const second = yield* openStore(Store.memory, counts)
      assert.strictEqual(second.size(), 0)
      assert.strictEqual(second.checkpoint(), undefined)
      assert.isTrue(second.backend.closedCleanly)
      first.backend.close()
      assert.strictEqual(first.backend.size(), 0)
    })
  )

  describe("sqlite", () => {
    it.effect("a store opened again from the same dir has its data and checkpoint", () =>
      Effect.gen(function* () {
        const dir = yield* tempDir("sluice-store-")
        const factory = Store.sqlite({ dir })
        const first = Store.open(counts, yield* factory.open(location))
        assert.isTrue(first.backend.closedCleanly)
        first.put("a", 1)
        first.put("b", 2)
        commit(first, 41)
        first.put("b", 3)
        first.delete("a")
        commit(first, 42)
        first.put("c", 4) // never durable
        first.backend.close()
        assert.isTrue(existsSync(join(dir, "app", "3", "counts.sqlite")))

        const second = Store.open(counts, yield* factory.open(location))
        assert.isTrue(second.backend.closedCleanly)
        assert.strictEqual(second.checkpoint(), 42)
        assert.deepStrictEqual(entries(second.all()), [["b", 3]])
        assert.strictEqual(second.size(), 1)
        // The tail read from the checkpoint on.
        second.restore([changelog(42, "c", "5")])
        assert.strictEqual(second.size(), 2)
        // Not closed (a crash): the next open can tell, and the runtime wipes it under exactly-once.
        const third = yield* openBackend(factory)
        assert.isFalse(third.closedCleanly)
        assert.strictEqual(third.checkpoint(), 43)
        assert.strictEqual(third.size(), 2)
        third.wipe()
        second.backend.close()
        third.close()
        const fourth = yield* openBackend(factory)
        assert.isTrue(fourth.closedCleanly)
        assert.strictEqual(fourth.checkpoint(), undefined)
        assert.strictEqual(fourth.size(), 0)
        // Another task's store is another file.
        const other = yield* openBackend(factory, { ...location, task: 4 })
        assert.strictEqual(other.size(), 0)
      })
    )

    it.effect("a file that is not a database fails to open with a StoreError naming it; remove clears it", () =>
      Effect.gen(function* () {
        const dir = yield* tempDir("sluice-store-")
        const factory = Store.sqlite({ dir })
        yield* Effect.sync(() => Store.open(counts, Effect.runSync(factory.open(location))).backend.close())
        const file = join(dir, "app", "3", "counts.sqlite")
        writeFileSync(file, "not a database ".repeat(512))
        const error = yield* Effect.flip(factory.open(location))
        assert.strictEqual(error._tag, "StoreError")
        assert.strictEqual(error.store, "counts")
        assert.strictEqual(error.path, file)
        assert.instanceOf(error.reason, Errors.Rejected)
        assert.isFalse(error.isRetryable)
        assert.include(error.message, file)
        assert.include(error.message, "store counts")
        yield* factory.remove(location)
        const fresh = yield* openBackend(factory)
        assert.strictEqual(fresh.size(), 0)

        const outside = yield* Effect.flip(factory.open({ ...location, store: "../../etc" }))
        assert.include(outside.message, "not a plain file name")
        assert.isFalse(existsSync(join(dir, "etc.sqlite")))
      })
    )

    it.effect("a failed apply changes nothing, data or checkpoint, and is retryable when the file is locked", () =>
      Effect.gen(function* () {
        const dir = yield* tempDir("sluice-store-")
        const store = yield* openStore(Store.sqlite({ dir }), counts)
        store.put("a", 1)
        commit(store, 1)
        // Another connection holds the write lock.
        const other = new DatabaseSync(join(dir, "app", "3", "counts.sqlite"))
        other.exec("BEGIN IMMEDIATE")
        store.put("a", 2)
        store.put("b", 2)
        const writes = store.takeWrites()
        const error = thrown(() => store.durable(writes, 2))
        assert.instanceOf(error, Store.StoreError)
        if (error instanceof Store.StoreError) {
          assert.strictEqual(error.operation, "apply")
          assert.instanceOf(error.reason, Errors.Transient)
          assert.isTrue(error.isRetryable)
        }
        assert.strictEqual(store.checkpoint(), 1)
        assert.strictEqual(text(store.backend.get(bytes("a"))!), "1")
        assert.strictEqual(store.backend.size(), 1)
        // Still buffered: the retry succeeds once the lock is gone.
        assert.strictEqual(store.get("b"), 2)
        other.exec("ROLLBACK")
        other.close()
        store.durable(writes, 2)
        assert.strictEqual(store.checkpoint(), 2)
        assert.strictEqual(store.backend.size(), 2)
        assert.strictEqual(text(store.backend.get(bytes("a"))!), "2")
      })
    )

    it.effect("ranges can be nested and abandoned", () =>
      Effect.gen(function* () {
        const store = yield* openStore(Store.sqlite({ dir: yield* tempDir("sluice-store-") }), counts)
        for (const k of ["a", "b", "c"]) store.put(k, 1)
        commit(store, 1)
        const pairs: Array<string> = []
        for (const [x] of store.all()) for (const [y] of store.all()) pairs.push(x + y)
        assert.strictEqual(pairs.join(" "), "aa ab ac ba bb bc ca cb cc")
        for (const _ of store.range("a")) break
        assert.deepStrictEqual(
          entries(store.range("a")).map(([k]) => k),
          ["a", "b", "c"]
        )
      })
    )
  })

  it.effect("attempt: a StoreError fails the Effect, anything else is a defect", () =>
    Effect.gen(function* () {
      const backend = yield* openBackend(Store.sqlite({ dir: yield* tempDir("sluice-store-") }))
      backend.close()
      const failed = yield* Effect.exit(Store.attempt(() => backend.get(bytes("a"))))
      assert.isTrue(Exit.isFailure(failed))
      const error = yield* Effect.flip(Store.attempt(() => backend.get(bytes("a"))))
      assert.instanceOf(error.reason, Errors.Closed)
      const defect = yield* Effect.exit(
        Store.attempt(() => {
          throw new Error("bug")
        })
      )
      assert.isTrue(Exit.hasDies(defect))
    })
  )
})
