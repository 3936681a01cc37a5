/**
 * A logger for tests that keeps every entry, at every level, with its annotations.
 */
import { Layer, Logger, References } from "effect"

export interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

export const captureLogs = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ logLevel, message, fiber }) => {
    lines.push({
      level: logLevel,
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      annotations: { ...fiber.getRef(References.CurrentLogAnnotations) }
    })
  })
  return {
    lines,
    /** `level message` of each entry. */
    text: () => lines.map((l) => `${l.level} ${l.message}`),
    layer: Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "All"))
  }
}
