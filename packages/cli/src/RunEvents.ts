/**
 * `sluice run events-to-postgres`: the events-to-Postgres lab (processors' EventsToPostgres.ts) as a worker, with
 * Postgres from DATABASE_URL (the password stays Redacted) and the tables created at startup when missing.
 *
 * `--guarantee` means something else here than for the Kafka-to-Kafka topologies: there are no Kafka outputs but
 * dead letters, so exactly_once is Postgres's transaction (rows and consumed offsets together, tasks starting from
 * the offsets table), and Kafka delivery stays at-least-once.
 *
 * Built by a function, called by Run.ts where it registers the subcommand: this module uses Run.ts's flags and
 * helpers and Run.ts imports it, so nothing here may run before Run.ts has finished loading.
 */
import { Effect } from "effect"
import { type Command, Flag } from "effect/cli"
import * as Flags from "./Flags.ts"
import * as Run from "./Run.ts"

/** The flags of `sluice run events-to-postgres`. */
const config = () => {
  const guarantee = Flag.Literals("guarantee", ["at_least_once", "exactly_once"]).pipe(
    Flag.withDescription(
      "at_least_once (default): rows are written before their input offsets are committed to the group, a re-delivered record inserts no second row (unique source topic, partition, offset); exactly_once: each write also stores the consumed offsets in sluice_offsets in the same Postgres transaction, and tasks start from there, not from the group's commits. Kafka delivery (dead letters) is at-least-once either way"
    ),
    Flag.withDefault("at_least_once")
  )
  const schema = Flag.String("schema").pipe(
    Flag.withDescription("Postgres schema of events_raw, hourly_aggregate and sluice_offsets (created if missing)"),
    Flag.withDefault("public")
  )
  const batchSize = Flags.int("batch-size", {
    description: "rows per INSERT: a task's rows are written once it holds this many",
    min: 1,
    max: 100_000,
    default: 1_000
  })
  const flushInterval = Flags.int("flush-interval-ms", {
    description: "rows are written at least this often, and before every commit",
    min: 1,
    max: 3_600_000,
    default: 1_000
  })
  // The group's commits follow the at-least-once schedule under either guarantee (Kafka delivery is at-least-once).
  const commitInterval = Flags.int("commit-interval-ms", {
    description: "commit the group's offsets at least this often while records flow (the rows are written first)",
    min: 1,
    max: 3_600_000,
    whenAbsent: "1000"
  })
  return {
    ...Run.common,
    guarantee,
    commitIntervalMs: commitInterval,
    schema,
    batchSize,
    flushIntervalMs: flushInterval
  }
}

export type Options = Command.Command.Config.Infer<ReturnType<typeof config>>

/** The worker (RunEventsWorker.ts, with Postgres and the topology) is imported when the command runs. */
export function command() {
  return Flags.command("events-to-postgres", config(), (o) =>
    Effect.flatMap(
      Effect.promise(() => import("./RunEventsWorker.ts")),
      (worker) => worker.run(o)
    )
  ).pipe(
    Run.describedWithExitCodes(
      "Write raw JSON events (events.raw) to the Postgres table events_raw, with the view hourly_aggregate",
      "Postgres is DATABASE_URL (default postgres://sluice:sluice@127.0.0.1:5432/sluice). A record that is not a JSON",
      "object goes to events.raw.dlq with the reason, and so does one Postgres refuses (its message in the headers).",
      "Retryable Postgres errors (an outage, a restart) are retried for up to 2 minutes, nothing committed meanwhile;",
      "past that the worker stops. With --guarantee exactly_once the rows and the consumed offsets are written in one",
      "Postgres transaction (sluice_offsets) and tasks start from there; Kafka delivery stays at-least-once."
    )
  )
}
