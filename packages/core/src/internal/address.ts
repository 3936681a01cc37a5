/**
 * `host:port` as operators write it, for the addresses Sluice connects to (brokers) and listens on (`--http`): one
 * rule for both, so what one accepts the other does too.
 */

const hostPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?)$/

/**
 * A host name, an IPv4 address or an IPv6 address in brackets, a colon and a port from 1 to 65535; `undefined` for
 * anything else. The host is returned as written (brackets kept).
 */
export const parseHostPort = (entry: string): { readonly host: string; readonly port: number } | undefined => {
  const colon = entry.lastIndexOf(":")
  const host = colon < 0 ? "" : entry.slice(0, colon)
  const port = colon < 0 ? "" : entry.slice(colon + 1)
  const portNumber = /^[0-9]{1,5}$/.test(port) ? Number(port) : Number.NaN
  return hostPattern.test(host) && portNumber >= 1 && portNumber <= 65535 ? { host, port: portNumber } : undefined
}
