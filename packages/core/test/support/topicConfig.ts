/**
 * Changing a topic's config behind the layer's back, with a plain kafkajs admin: tests of what Sluice does when a
 * limit it cached is no longer the broker's.
 */
import { Effect } from "effect"
import { ConfigResourceTypes, Kafka as KafkaJsClient, logLevel } from "kafkajs"
import { brokers } from "./brokers.ts"

/** Sets the topic's `max.message.bytes` and returns once the broker applies it. */
export const alterMaxMessageBytes = (topic: string, value: number) =>
  Effect.promise(async () => {
    const admin = new KafkaJsClient({ brokers: [...brokers], logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: [{ name: "max.message.bytes", value: String(value) }]
        }
      ]
    })
    // The broker applies a topic's new config asynchronously: wait until it reports it, then a little more for the
    // partition's log to take it (a record sent at once can still be measured against the old limit).
    for (let i = 0; i < 50; i++) {
      const described = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ["max.message.bytes"] }]
      })
      if (described.resources[0]?.configEntries[0]?.configValue === String(value)) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await admin.disconnect()
  })
