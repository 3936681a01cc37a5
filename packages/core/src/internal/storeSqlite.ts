/**
 * The SQLite store backend (`node:sqlite`, synchronous, built into Node): one database file per task and store.
 *
 * - `kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID`: a B-tree on the key, whose BLOB comparison
 *   (memcmp, then length) is the byte order stores promise.
 * - `meta (name, value)`: `checkpoint`, written in the same transaction as the changes it covers, and `open`, set
 *   while a process has the file open, so the next one can tell that the last one crashed.
 * - WAL with `synchronous = NORMAL`: a commit survives a crash of the process (kill -9), not necessarily of the
 *   machine. That is enough because the changelog is the truth: a power loss may cost the last transactions, and
 *   the checkpoint is lost with them, so the restore reads those records again.
 */
import { mkdirSync, rmSync } from "node:fs"
import * as path from "node:path"
import { DatabaseSync, type StatementSync } from "node:sqlite"
import { Effect, Predicate } from "effect"
import * as Errors from "../Errors.ts"
import type { Backend, Change, Location } from "../Store.ts"
import { StoreError } from "./storeErrors.ts"

/** `<dir>/<application>/<task>/<store>.sqlite` */
export const fileOf = (dir: string, location: Location): string =>
  path.join(dir, location.application, String(location.task), `${location.store}.sqlite`)

const segment = /^[A-Za-z0-9._-]+$/

/** Why `location` cannot name files (a name that is not a plain path segment), or `undefined`. */
const invalid = (location: Location): string | undefined => {
  for (const [what, name] of [
    ["application", location.application],
    ["store", location.store]
  ] as const) {
    if (!segment.test(name) || name === "." || name === "..") {
      return `the ${what} name ${JSON.stringify(name)} is not a plain file name ([A-Za-z0-9._-]+)`
    }
  }
  if (!Number.isSafeInteger(location.task) || location.task < 0) return `the task ${location.task} is not a number >= 0`
  return undefined
}

// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_BUSY = 5
const SQLITE_LOCKED = 6
const SQLITE_IOERR = 10
const SQLITE_CORRUPT = 11
const SQLITE_FULL = 13
const SQLITE_NOTADB = 26

const reasonOf = (cause: unknown): Errors.Reason => {
  const message = Errors.messageOf(cause)
  if (Predicate.hasProperty(cause, "code") && cause.code === "ERR_INVALID_STATE") {
    return new Errors.Closed({ message, cause })
  }
  const code = Predicate.hasProperty(cause, "errcode") && typeof cause.errcode === "number" ? cause.errcode & 0xff : 0
  switch (code) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return new Errors.Transient({ message: `${message} (another connection holds the database)`, cause })
    case SQLITE_IOERR:
    case SQLITE_FULL:
      return new Errors.Unavailable({ message, cause })
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return new Errors.Rejected({ message: `${message}: the file is corrupt; remove it and restore`, cause })
    default:
      return new Errors.Rejected({ message, cause })
  }
}

const storeError = (store: string, operation: string, file: string, cause: unknown): StoreError =>
  cause instanceof StoreError ? cause : new StoreError({ store, operation, path: file, reason: reasonOf(cause) })

const blob = (value: unknown): Uint8Array | undefined => (value instanceof Uint8Array ? value : undefined)

const rangeSql = {
  all: "SELECT key, value FROM kv ORDER BY key",
  from: "SELECT key, value FROM kv WHERE key >= ? ORDER BY key",
  to: "SELECT key, value FROM kv WHERE key < ? ORDER BY key",
  both: "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key"
} as const

const openSync = (file: string, store: string): Backend => {
  mkdirSync(path.dirname(file), { recursive: true })
  const db = new DatabaseSync(file)
  try {
    return backendOf(db, file, store)
  } catch (cause) {
    db.close()
    throw cause
  }
}

const backendOf = (db: DatabaseSync, file: string, store: string): Backend => {
  db.exec("PRAGMA journal_mode = WAL")
  db.exec("PRAGMA synchronous = NORMAL")
  db.exec("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
  db.exec("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")

  const begin = db.prepare("BEGIN")
  const commit = db.prepare("COMMIT")
  const getValue = db.prepare("SELECT value FROM kv WHERE key = ?")
  // UPDATE first and INSERT on a miss (not an upsert), because the number of changed rows tells an update from
  // an insert, which keeps `size` exact without a count(*) over the table.
  const update = db.prepare("UPDATE kv SET value = ? WHERE key = ?")
  const insert = db.prepare("INSERT INTO kv (key, value) VALUES (?, ?)")
  const remove = db.prepare("DELETE FROM kv WHERE key = ?")
  const getMeta = db.prepare("SELECT value FROM meta WHERE name = ?")
  const setMeta = db.prepare(
    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
  )
  // A prepared statement can run one query at a time: a range opened while another is being consumed gets a
  // statement of its own.
  const ranges = {
    all: { statement: db.prepare(rangeSql.all), busy: false },
    from: { statement: db.prepare(rangeSql.from), busy: false },
    to: { statement: db.prepare(rangeSql.to), busy: false },
    both: { statement: db.prepare(rangeSql.both), busy: false }
  }

  const meta = (name: string): number | undefined => {
    const value = getMeta.get(name)?.value
    return typeof value === "number" ? value : undefined
  }
  const closedCleanly = meta("open") !== 1
  setMeta.run("open", 1)
  let checkpoint = meta("checkpoint")
  const counted = db.prepare("SELECT count(*) AS n FROM kv").get()?.n
  let size = typeof counted === "number" ? counted : 0

  const fail = (operation: string, cause: unknown): never => {
    throw storeError(store, operation, file, cause)
  }

  const transaction = (operation: string, body: () => void): void => {
    try {
      begin.run()
      body()
      commit.run()
    } catch (cause) {
      if (db.isOpen && db.isTransaction) db.exec("ROLLBACK")
      fail(operation, cause)
    }
  }

  function* range(from?: Uint8Array, to?: Uint8Array): Generator<readonly [Uint8Array, Uint8Array]> {
    const kind = from === undefined ? (to === undefined ? "all" : "to") : to === undefined ? "from" : "both"
    const slot = ranges[kind]
    const shared = !slot.busy
    let statement: StatementSync | undefined
    try {
      statement = shared ? slot.statement : db.prepare(rangeSql[kind])
      if (shared) slot.busy = true
      const params = [from, to].filter((b): b is Uint8Array => b !== undefined)
      for (const row of statement.iterate(...params)) {
        const key = blob(row.key)
        const value = blob(row.value)
        if (key !== undefined && value !== undefined) yield [key, value]
      }
    } catch (cause) {
      fail("range", cause)
    } finally {
      if (shared && statement !== undefined) slot.busy = false
    }
  }

  return {
    get: (key) => {
      try {
        return blob(getValue.get(key)?.value)
      } catch (cause) {
        return fail("get", cause)
      }
    },
    range,
    size: () => size,
    apply: (changes: ReadonlyArray<Change>, next: number) => {
      let delta = 0
      transaction("apply", () => {
        for (const [key, value] of changes) {
          if (value === null) delta -= Number(remove.run(key).changes)
          else if (Number(update.run(value, key).changes) === 0) {
            insert.run(key, value)
            delta++
          }
        }
        setMeta.run("checkpoint", next)
      })
      size += delta
      checkpoint = next
    },
    checkpoint: () => checkpoint,
    closedCleanly,
    wipe: () => {
      transaction("wipe", () => {
        db.exec("DELETE FROM kv")
        db.exec("DELETE FROM meta WHERE name = 'checkpoint'")
      })
      size = 0
      checkpoint = undefined
    },
    close: () => {
      if (!db.isOpen) return
      try {
        setMeta.run("open", 0)
        db.close()
      } catch (cause) {
        fail("close", cause)
      }
    }
  }
}

/** The file of `location` under `dir`, or a StoreError when its names cannot be path segments. */
const located = (dir: string, location: Location, operation: string): Effect.Effect<string, StoreError> => {
  const file = fileOf(dir, location)
  const problem = invalid(location)
  return problem === undefined
    ? Effect.succeed(file)
    : Effect.fail(
        new StoreError({
          store: location.store,
          operation,
          path: file,
          reason: new Errors.Rejected({ message: problem })
        })
      )
}

export const open = (dir: string, location: Location): Effect.Effect<Backend, StoreError> =>
  Effect.flatMap(located(dir, location, "open"), (file) =>
    Effect.try({
      try: () => openSync(file, location.store),
      catch: (cause) => storeError(location.store, "open", file, cause)
    })
  )

/** Deletes a store's database file and its WAL and shared-memory files. The store must not be open. */
export const remove = (dir: string, location: Location): Effect.Effect<void, StoreError> =>
  Effect.flatMap(located(dir, location, "remove"), (file) =>
    Effect.try({
      try: () => {
        for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(`${file}${suffix}`, { force: true })
      },
      catch: (cause) => storeError(location.store, "remove", file, cause)
    })
  )
