/**
 * The errors of state stores, in their own module so that the backends and the task store can throw them without
 * importing `Store.ts` (which imports them). `Store.ts` re-exports them; nothing else should import this file.
 */
import { Schema } from "effect"
import * as Errors from "../Errors.ts"

/**
 * A store's backend failed: it could not be opened (a corrupt or unreadable file, a bad path) or a read or write
 * failed. The message names the store, the operation and the file. Retryable when its reason is (a database
 * locked by another connection); a corrupt file is not: remove it (`BackendFactory.remove`) and restore the store
 * from its changelog.
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  store: Schema.String,
  /** What failed: `open`, `get`, `range`, `apply`, `wipe`, `close`, `remove`. */
  operation: Schema.String,
  /** The database file, for a persistent store. */
  path: Schema.optional(Schema.String),
  reason: Errors.Reason
}) {
  override readonly cause = this.reason
  override get message(): string {
    const where = this.path === undefined ? "" : ` (${this.path})`
    return `store ${this.store}: ${this.operation} failed${where}: ${this.reason.message}`
  }
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/** What does not encode or decode: which store, the key or the value, and the codec's issue. */
const CodecFailure = {
  store: Schema.String,
  part: Schema.Literals(["key", "value"]),
  issue: Schema.String
}

/**
 * A key or value given to a store does not encode with the store's codec: a bug in the topology. Thrown, not
 * returned, because store calls run inside a batch handler's plain loop, where a throw dead-letters the record.
 */
export class StoreEncodeError extends Schema.TaggedError<StoreEncodeError>()("StoreEncodeError", CodecFailure) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `cannot encode a ${this.part} for store ${this.store}: ${this.issue}`
  }
}

/**
 * Bytes held by a store do not decode with its codec: the changelog was written by a topology with another codec
 * (a schema change without a migration). Thrown, like `StoreEncodeError`.
 */
export class StoreDecodeError extends Schema.TaggedError<StoreDecodeError>()("StoreDecodeError", CodecFailure) {
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `cannot decode a ${this.part} of store ${this.store}: ${this.issue}`
  }
}
