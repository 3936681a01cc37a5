/**
 * A user's topology, written as a user of the published packages writes it: public imports only. Each order line
 * of `<prefix>orders` (`{ "sku": ..., "qty": ... }`, keyed by SKU so that one SKU's orders meet in one task) adds
 * to its SKU's total in a store, and the running total goes to `<prefix>totals`; a line that is not an order is
 * dead-lettered.
 */
import { Batch, Codec, Store, Topic, Topology } from "@sluice/core"
import { Effect, Schema } from "effect"

export const Order = Schema.Struct({ sku: Schema.String, qty: Schema.Int })

export const totals = Store.make("totals", { key: Codec.string, value: Codec.intString })

export const topics = (prefix: string) => ({
  orders: Topic.make(`${prefix}orders`, { key: Codec.string, value: Codec.json(Order) }),
  totals: Topic.make(`${prefix}totals`, { key: Codec.string, value: Codec.string })
})

export const make = (prefix: string) => {
  const t = topics(prefix)
  return Topology.make({
    name: "order-totals",
    input: t.orders,
    stores: [totals],
    outputs: [{ name: t.totals.name, partitions: 3 }],
    process: (records, ctx) =>
      Effect.sync(() => {
        const store = ctx.store(totals)
        return Batch.forEach(records, (r, out) => {
          const total = (store.get(r.value.sku) ?? 0) + r.value.qty
          store.put(r.value.sku, total)
          out.emit(t.totals, r.value.sku, `${r.value.sku}=${total}`)
        })
      })
  })
}

/** What `sluice run ./topology.ts` runs: the topology for the `--topic-prefix`. */
export default ({ prefix }: { readonly prefix: string }) => make(prefix)
