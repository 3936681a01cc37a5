/**
 * How the data generators mark the malformed records they mix in, so that a test, a benchmark or `sluice produce`
 * can count them and check each one's dead letter: the header `sluice.test.bad`, whose value is the record's kind.
 */

/** The header a generator puts on each malformed record it makes; its value is the kind of malformation. */
export const header = "sluice.test.bad"

/**
 * Which records are malformed when a share `ratio` of them is (every round(1 / ratio)th, spread evenly), and of which
 * kind, cycling through `kinds`: the `i`th record's kind and its number among the malformed ones of that kind, or
 * `undefined` for a good record.
 */
export const schedule = <K extends string>(
  ratio: number | undefined,
  kinds: ReadonlyArray<K>
): ((i: number) => { readonly kind: K; readonly round: number } | undefined) => {
  const every = ratio !== undefined && ratio > 0 ? Math.round(1 / ratio) : 0
  return (i) => {
    if (every === 0 || i % every !== every - 1) return undefined
    const bad = Math.floor(i / every)
    return { kind: kinds[bad % kinds.length]!, round: Math.floor(bad / kinds.length) }
  }
}
