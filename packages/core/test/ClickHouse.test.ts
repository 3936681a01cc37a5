/** How ClickHouse failures are classified: what a retry can help with, and what is the data's fault. */
import { assert, describe, it } from "@effect/vitest"
import { serverCode, toReason } from "../src/ClickHouse.ts"

const server = (code: number, text: string) =>
  new Error(`Code: ${code}, e.displayText() = DB::Exception: ${text}, e.what() = DB::Exception`)

const errno = (code: string, message: string) => Object.assign(new Error(message), { code })

describe("ClickHouse.toReason", () => {
  it("reads the server's code in 18.16's format and in the newer one", () => {
    assert.strictEqual(serverCode("Code: 27, e.displayText() = DB::Exception: Cannot parse input"), 27)
    assert.strictEqual(serverCode("Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE)"), 60)
    assert.isUndefined(serverCode("connect ECONNREFUSED 127.0.0.1:8123"))
  })

  it("bad data is Rejected: not retryable, so its row is dead-lettered", () => {
    for (const [code, text] of [
      [27, 'Cannot parse input: expected " before: notnum'],
      [72, "Unsigned type must not contain '-' symbol"],
      [117, "Unknown field found while parsing JSONEachRow format: zz"]
    ] as const) {
      const reason = toReason(server(code, text))
      assert.strictEqual(reason._tag, "Rejected", text)
      assert.isFalse(reason.isRetryable)
      assert.include(reason.message, text)
      assert.notInclude(reason.message, "e.what()")
    }
  })

  it("a server that is busy, and a missing table or bad credentials, are retried rather than dead-lettered", () => {
    assert.strictEqual(toReason(server(252, "Too many parts (300)")).isRetryable, true)
    assert.strictEqual(toReason(server(241, "Memory limit (for query) exceeded")).isRetryable, true)
    assert.strictEqual(toReason(server(60, "Table default.nope doesn't exist.")).isRetryable, true)
    assert.strictEqual(toReason(server(516, "default: Authentication failed")).isRetryable, true)
  })

  it("connection trouble is Unavailable, a timeout Timeout; other client errors are not retried", () => {
    assert.strictEqual(toReason(errno("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:8123"))._tag, "Unavailable")
    assert.strictEqual(toReason(errno("ECONNRESET", "socket hang up"))._tag, "Unavailable")
    assert.strictEqual(toReason(new Error("Timeout error."))._tag, "Timeout")
    assert.strictEqual(toReason(new TypeError("Invalid URL"))._tag, "Rejected")
    assert.strictEqual(toReason("not an error")._tag, "Rejected")
  })
})
