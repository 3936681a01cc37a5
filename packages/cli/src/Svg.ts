/**
 * A small, dependency-free SVG line chart for benchmark results: one line per series, axes with ticks, labels, a
 * legend and a title. Pure (data in, string out), so `bench` can write charts without a browser or a plotting
 * library, and the output is stable enough to test. The y axis can be logarithmic because the join strategies
 * differ by three orders of magnitude (rescan vs table): on a linear axis the fast ones would be a flat line at 0.
 */

export interface Point {
  readonly x: number
  readonly y: number
}

export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<Point>
}

export interface ChartOptions {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  /** Logarithmic y axis (base 10). Points with y <= 0 cannot be drawn on it and are left out. */
  readonly logY?: boolean
  /** Logarithmic x axis (base 10), for sizes that grow geometrically. Points with x <= 0 are left out. */
  readonly logX?: boolean
  readonly width?: number
  readonly height?: number
}

interface Scale {
  readonly toPixel: (value: number) => number
  readonly ticks: ReadonlyArray<number>
}

const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

const escapeXml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** Pixel coordinates with two decimals: enough for a screen, short in the file. */
const px = (n: number): string => String(Math.round(n * 100) / 100)

/** Tick labels: 2500 -> "2.5k", 0.05 -> "0.05"; long numbers would overlap on the axis. */
export const formatTick = (value: number): string => {
  const abs = Math.abs(value)
  const trim = (n: number) => String(Number(n.toPrecision(3)))
  if (abs >= 1e9) return `${trim(value / 1e9)}G`
  if (abs >= 1e6) return `${trim(value / 1e6)}M`
  if (abs >= 1e3) return `${trim(value / 1e3)}k`
  return trim(value)
}

/** A step of 1, 2 or 5 times a power of ten giving about `count` intervals, so tick labels are round. */
const niceStep = (span: number, count: number): number => {
  const raw = span / count
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const norm = raw / magnitude
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude
}

const linearScale = (values: ReadonlyArray<number>, range: readonly [number, number]): Scale => {
  // Start at 0 (or below, for negative data) so bar-free line charts don't exaggerate differences.
  const low = Math.min(0, ...values)
  let high = values.length === 0 ? 1 : Math.max(...values)
  if (high <= low) high = low + 1
  const step = niceStep(high - low, 5)
  const min = Math.floor(low / step) * step
  const max = Math.ceil(high / step) * step
  const ticks: Array<number> = []
  // Counting steps (not adding floats) keeps ticks like 0.3 from drifting to 0.30000000000000004.
  for (let i = 0; min + i * step <= max + step / 1e9; i++) ticks.push(Number((min + i * step).toPrecision(12)))
  return { toPixel: (v) => range[0] + ((v - min) / (max - min)) * (range[1] - range[0]), ticks }
}

const logScale = (values: ReadonlyArray<number>, range: readonly [number, number]): Scale => {
  const low = values.length === 0 ? 1 : Math.min(...values)
  const high = values.length === 0 ? 10 : Math.max(...values)
  const minExp = Math.floor(Math.log10(low))
  let maxExp = Math.ceil(Math.log10(high))
  if (maxExp <= minExp) maxExp = minExp + 1
  const ticks: Array<number> = []
  // Over a decade or two, powers of ten alone give too few labels; add the 2x and 5x marks.
  const multiples = maxExp - minExp <= 2 ? [1, 2, 5] : [1]
  for (let e = minExp; e <= maxExp; e++) {
    for (const m of multiples) {
      const v = Number((m * 10 ** e).toPrecision(12))
      if (e < maxExp || m === 1) ticks.push(v)
    }
  }
  return {
    toPixel: (v) => range[0] + ((Math.log10(v) - minExp) / (maxExp - minExp)) * (range[1] - range[0]),
    ticks
  }
}

/** Renders the series as an SVG document. Each drawable series becomes exactly one `<path class="series">`. */
export const lineChart = (series: ReadonlyArray<Series>, options: ChartOptions): string => {
  const width = options.width ?? 800
  const height = options.height ?? 480
  const logY = options.logY ?? false
  const logX = options.logX ?? false
  const margin = { top: 50, right: 170, bottom: 60, left: 80 }
  const plot = { left: margin.left, right: width - margin.right, top: margin.top, bottom: height - margin.bottom }

  const drawable = series.map((s) => ({
    name: s.name,
    points: s.points
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!logX || p.x > 0) && (!logY || p.y > 0))
      .toSorted((a, b) => a.x - b.x)
  }))
  const all = drawable.flatMap((s) => s.points)
  const xScale = (logX ? logScale : linearScale)(
    all.map((p) => p.x),
    [plot.left, plot.right]
  )
  // SVG's y grows downwards, so the range runs from the bottom edge to the top.
  const yScale = (logY ? logScale : linearScale)(
    all.map((p) => p.y),
    [plot.bottom, plot.top]
  )

  const out: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${px(width / 2)}" y="28" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>`
  ]
  for (const tick of yScale.ticks) {
    const y = px(yScale.toPixel(tick))
    out.push(
      `<line x1="${plot.left}" y1="${y}" x2="${plot.right}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${plot.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${formatTick(tick)}</text>`
    )
  }
  for (const tick of xScale.ticks) {
    const x = px(xScale.toPixel(tick))
    out.push(
      `<line x1="${x}" y1="${plot.bottom}" x2="${x}" y2="${plot.bottom + 5}" stroke="black"/>`,
      `<text x="${x}" y="${plot.bottom + 20}" text-anchor="middle">${formatTick(tick)}</text>`
    )
  }
  out.push(
    `<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="black"/>`,
    `<line x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.bottom}" stroke="black"/>`,
    `<text x="${px((plot.left + plot.right) / 2)}" y="${height - 15}" text-anchor="middle">${escapeXml(options.xLabel)}${logX ? " (log scale)" : ""}</text>`,
    `<text x="20" y="${px((plot.top + plot.bottom) / 2)}" text-anchor="middle" transform="rotate(-90 20 ${px((plot.top + plot.bottom) / 2)})">${escapeXml(options.yLabel)}${logY ? " (log scale)" : ""}</text>`
  )

  drawable.forEach((s, i) => {
    const color = palette[i % palette.length]!
    const legendY = plot.top + 10 + i * 22
    out.push(
      `<line x1="${plot.right + 20}" y1="${legendY}" x2="${plot.right + 45}" y2="${legendY}" stroke="${color}" stroke-width="2.5"/>`,
      `<text x="${plot.right + 52}" y="${legendY}" dominant-baseline="middle">${escapeXml(s.name)}</text>`
    )
    if (s.points.length === 0) return
    const coords = s.points.map((p) => [px(xScale.toPixel(p.x)), px(yScale.toPixel(p.y))] as const)
    const d = coords.map(([x, y], j) => `${j === 0 ? "M" : "L"}${x} ${y}`).join(" ")
    out.push(
      `<path class="series" d="${d}" fill="none" stroke="${color}" stroke-width="2.5"><title>${escapeXml(s.name)}</title></path>`
    )
    for (const [x, y] of coords) out.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${color}"/>`)
  })
  out.push("</svg>")
  return `${out.join("\n")}\n`
}
