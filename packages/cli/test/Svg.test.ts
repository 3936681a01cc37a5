/** The SVG line chart: one path per series, only finite coordinates, log axes, escaping, degenerate inputs. */
import { describe, expect, it } from "vitest"
import * as Svg from "../src/Svg.ts"

const options = { title: "elapsed vs events", xLabel: "events", yLabel: "elapsed ms" }

const series: ReadonlyArray<Svg.Series> = [
  {
    name: "table",
    points: [
      { x: 100, y: 3 },
      { x: 1000, y: 12 },
      { x: 500, y: 7 }
    ]
  },
  {
    name: "rescan",
    points: [
      { x: 20, y: 80 },
      { x: 200, y: 800 }
    ]
  },
  {
    name: "redis",
    points: [
      { x: 100, y: 5 },
      { x: 1000, y: 20 }
    ]
  }
]

const paths = (svg: string) => [...svg.matchAll(/<path class="series" d="([^"]*)"/g)].map((m) => m[1]!)

/** Every number in a coordinate-like attribute and in path data. */
const coordinates = (svg: string): Array<string> => [
  ...[...svg.matchAll(/\s(?:x|y|x1|y1|x2|y2|cx|cy|r|width|height)="([^"]*)"/g)].map((m) => m[1]!),
  ...paths(svg).flatMap((d) => d.split(/[ML ]+/).filter((s) => s.length > 0))
]

const pointsOf = (d: string) =>
  [...d.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map((m) => ({ x: Number(m[1]), y: Number(m[2]) }))

describe("Svg.lineChart", () => {
  it("draws exactly one path per series, with one point per data point", () => {
    const svg = Svg.lineChart(series, options)
    const ds = paths(svg)
    expect(ds).toHaveLength(series.length)
    expect(ds.map((d) => pointsOf(d).length)).toEqual([3, 2, 2])
    expect(svg.match(/<circle /g)).toHaveLength(7)
    expect(svg.startsWith("<svg ")).toBe(true)
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true)
  })

  it("writes only finite numbers", () => {
    for (const logY of [false, true]) {
      for (const logX of [false, true]) {
        const values = coordinates(Svg.lineChart(series, { ...options, logX, logY }))
        expect(values.length).toBeGreaterThan(20)
        for (const v of values) expect(Number.isFinite(Number(v)), `${v} (logX ${logX}, logY ${logY})`).toBe(true)
      }
    }
  })

  it("sorts points by x and maps larger y higher up (smaller pixel y)", () => {
    const [table] = paths(Svg.lineChart(series, { ...options, logY: true }))
    const pts = pointsOf(table!)
    expect(pts.map((p) => p.x)).toEqual(pts.map((p) => p.x).toSorted((a, b) => a - b))
    // y values 3, 7, 12 in x order: pixel y must decrease.
    expect(pts[0]!.y).toBeGreaterThan(pts[1]!.y)
    expect(pts[1]!.y).toBeGreaterThan(pts[2]!.y)
  })

  it("puts log-scale ticks on powers of ten and labels the axis", () => {
    const svg = Svg.lineChart(series, { ...options, logY: true })
    const labels = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]*)</g)].map((m) => m[1])
    expect(labels).toEqual(["1", "10", "100", "1k"])
    expect(svg).toContain("elapsed ms (log scale)")
  })

  it("uses 1-2-5 ticks when the log range is short", () => {
    const svg = Svg.lineChart(
      [
        {
          name: "a",
          points: [
            { x: 1, y: 12 },
            { x: 2, y: 40 }
          ]
        }
      ],
      { ...options, logY: true }
    )
    const labels = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]*)</g)].map((m) => m[1])
    expect(labels).toEqual(["10", "20", "50", "100"])
  })

  it("leaves out points a log axis cannot show, and non-finite points", () => {
    const svg = Svg.lineChart(
      [
        {
          name: "a",
          points: [
            { x: 1, y: 0 },
            { x: 2, y: -5 },
            { x: 3, y: 10 },
            { x: 4, y: Number.NaN },
            { x: 5, y: 100 }
          ]
        }
      ],
      { ...options, logY: true }
    )
    expect(pointsOf(paths(svg)[0]!)).toHaveLength(2)
    for (const v of coordinates(svg)) expect(Number.isFinite(Number(v))).toBe(true)
  })

  it("handles no series, an empty series and a single point", () => {
    const empty = Svg.lineChart([], options)
    expect(paths(empty)).toHaveLength(0)
    const odd = Svg.lineChart(
      [
        { name: "none", points: [] },
        { name: "one", points: [{ x: 5, y: 5 }] }
      ],
      {
        ...options,
        logY: true
      }
    )
    expect(paths(odd)).toHaveLength(1)
    expect(odd).toContain(">none</text>")
    for (const v of [...coordinates(empty), ...coordinates(odd)]) expect(Number.isFinite(Number(v))).toBe(true)
  })

  it("escapes text", () => {
    const svg = Svg.lineChart([{ name: 'a<b & "c"', points: [{ x: 1, y: 1 }] }], { ...options, title: "x > y" })
    expect(svg).toContain("a&lt;b &amp; &quot;c&quot;")
    expect(svg).toContain("x &gt; y")
    expect(svg).not.toContain("a<b")
  })

  it("formats tick labels compactly", () => {
    expect([0, 0.05, 7, 250, 1000, 2500, 1e6, 3e9].map(Svg.formatTick)).toEqual([
      "0",
      "0.05",
      "7",
      "250",
      "1k",
      "2.5k",
      "1M",
      "3G"
    ])
  })
})
