import { assert, describe, it } from "@effect/vitest"
import * as Partitioner from "../src/Partitioner.ts"
import { bytes } from "../src/Record.ts"

describe("Partitioner", () => {
  it("murmur2 matches the Java client's Utils.murmur2 test vectors", () => {
    // From Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2).
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107]
    ]
    for (const [input, expected] of cases) assert.strictEqual(Partitioner.murmur2(bytes(input)), expected, input)
  })

  it("toPositive clears the sign bit rather than taking the absolute value", () => {
    assert.strictEqual(Partitioner.toPositive(-1), 0x7fffffff)
    assert.strictEqual(Partitioner.toPositive(-973932308), -973932308 & 0x7fffffff)
  })

  it("the same key always gets the same partition; keyless records are spread", () => {
    const partition = Partitioner.make()
    const key = bytes("user-42")
    const first = partition(key, 6)
    for (let i = 0; i < 10; i++) assert.strictEqual(partition(key, 6), first)
    const spread = new Set(Array.from({ length: 6 }, () => partition(null, 3)))
    assert.strictEqual(spread.size, 3)
  })
})
