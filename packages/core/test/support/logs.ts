/** Captures log lines for assertions: `captureLogs()` gives a logger layer and the lines it has seen. */
import { Logger } from "effect"

export interface LogLine {
  readonly level: string
  readonly message: string
}

const render = (message: unknown): string =>
  Array.isArray(message) ? message.map(render).join(" ") : typeof message === "string" ? message : String(message)

export const captureLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel, message: render(message) })
  })
  return { layer: Logger.layer([logger]), lines }
}
