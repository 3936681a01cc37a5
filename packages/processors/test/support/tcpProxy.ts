/**
 * A plain TCP proxy on 127.0.0.1 in front of a server (ClickHouse's HTTP port), which a test takes away and brings
 * back while a worker uses it: `stop` refuses new connections and resets the open ones, `start` listens again on the
 * same port. Closed with the scope.
 */
import * as Net from "node:net"
import { Effect, type Scope } from "effect"

export interface TcpProxy {
  readonly port: number
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

/**
 * Connects a proxy's `client` to `upstream`, both kept in `sockets` while open; either one's error or close ends
 * the other. Returns the upstream socket, for the proxy to write to.
 */
export const connectUpstream = (
  client: Net.Socket,
  upstream: { readonly host: string; readonly port: number },
  sockets: Set<Net.Socket>
): Net.Socket => {
  const server = Net.connect(upstream.port, upstream.host)
  for (const socket of [client, server]) {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    socket.on("error", () => {
      client.destroy()
      server.destroy()
    })
  }
  client.on("close", () => server.destroy())
  server.on("close", () => client.destroy())
  return server
}

export const tcpProxy = (upstream: {
  readonly host: string
  readonly port: number
}): Effect.Effect<TcpProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<TcpProxy>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((client) => {
        const to = connectUpstream(client, upstream, sockets)
        client.pipe(to)
        to.pipe(client)
      })
      const listen = (port: number, then: () => void) => server.listen(port, "127.0.0.1", then)
      listen(0, () => {
        const bound = server.address()
        const port = typeof bound === "object" && bound !== null ? bound.port : 0
        resume(
          Effect.succeed({
            port,
            stop: Effect.callback<void>((done) => {
              for (const socket of sockets) socket.resetAndDestroy()
              if (!server.listening) return done(Effect.void)
              server.close(() => done(Effect.void))
            }),
            start: Effect.callback<void>((done) => {
              if (server.listening) return done(Effect.void)
              listen(port, () => done(Effect.void))
            })
          })
        )
      })
    }),
    (proxy) => proxy.stop
  )
