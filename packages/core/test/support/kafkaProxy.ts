/**
 * A TCP proxy in front of a Kafka broker for tests that make the broker appear, vanish or stall.
 *
 * Clients connect to the address a broker advertises in its Metadata responses, not to the one they were given, so a
 * plain proxy would only carry the first connection. This one rewrites the broker's port in Metadata responses
 * (the API versions kafkajs speaks, v0 to v8) to its own, so every connection of the client goes through it.
 */
import * as net from "node:net"

export interface KafkaProxy {
  readonly port: number
  /** The broker goes away: every connection is cut and new ones are refused. */
  readonly stop: () => Promise<void>
  /** The broker stops answering: connections stay open, nothing goes through any more. */
  readonly stall: () => void
}

const metadataApiKey = 3

/** Splits a byte stream into size-prefixed Kafka frames, keeping what is incomplete. */
const framer = (onFrame: (frame: Buffer) => void) => {
  let pending: Buffer = Buffer.alloc(0)
  return (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    while (pending.length >= 4) {
      const size = pending.readInt32BE(0)
      if (pending.length < 4 + size) break
      onFrame(pending.subarray(0, 4 + size))
      pending = pending.subarray(4 + size)
    }
  }
}

/** Rewrites, in place, every broker port equal to `from` in a Metadata response of `version` to `to`. */
const rewriteMetadata = (frame: Buffer, version: number, from: number, to: number) => {
  if (version > 8) throw new Error(`kafkaProxy: Metadata v${version} is not supported`)
  let at = 8 + (version >= 3 ? 4 : 0)
  const brokers = frame.readInt32BE(at)
  at += 4
  for (let i = 0; i < brokers; i++) {
    at += 4 // node_id
    at += 2 + frame.readInt16BE(at) // host
    if (frame.readInt32BE(at) === from) frame.writeInt32BE(to, at)
    at += 4
    if (version >= 1) {
      const rack = frame.readInt16BE(at)
      at += 2 + Math.max(0, rack)
    }
  }
}

/** Listens on `port` (0 picks a free one) and forwards to the broker at `upstream`. */
export const startProxy = (upstream: { readonly host: string; readonly port: number }, port = 0) =>
  new Promise<KafkaProxy>((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    let stalled = false
    let listening = 0
    const server = net.createServer((client) => {
      const broker = net.connect(upstream.port, upstream.host)
      sockets.add(client)
      sockets.add(broker)
      const requests = new Map<number, number>()
      client.on(
        "data",
        framer((frame) => {
          if (stalled) return
          if (frame.readInt16BE(4) === metadataApiKey) requests.set(frame.readInt32BE(8), frame.readInt16BE(6))
          broker.write(frame)
        })
      )
      broker.on(
        "data",
        framer((frame) => {
          if (stalled) return
          const correlationId = frame.readInt32BE(4)
          const version = requests.get(correlationId)
          if (version !== undefined) {
            requests.delete(correlationId)
            rewriteMetadata(frame, version, upstream.port, listening)
          }
          client.write(frame)
        })
      )
      const close = () => {
        client.destroy()
        broker.destroy()
        sockets.delete(client)
        sockets.delete(broker)
      }
      client.on("error", close).on("close", close)
      broker.on("error", close).on("close", close)
    })
    server.on("error", reject)
    server.listen(port, "127.0.0.1", () => {
      const address = server.address()
      listening = typeof address === "object" && address !== null ? address.port : port
      resolve({
        port: listening,
        stop: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          }),
        stall: () => {
          stalled = true
        }
      })
    })
  })

/** A port nothing listens on (it was free a moment ago). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
