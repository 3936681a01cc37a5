"""The Faust peer of Sluice's click-enrichment (issue #13): a dict join in a faust-streaming agent.

At worker start a task reads every partition of the compacted profiles topic up to the high-water marks it has then
(an aiokafka consumer with manual assignment, no group) into a plain dict, then sets an event; the clicks agent waits
for that event before it takes its first click, as Sluice's table strategy is loaded before the topology starts.
Each click is enriched from the dict and sent with ``topic.send`` (Faust's producer batches them, acks=-1); Faust
commits a source offset only after the producer has flushed (its at-least-once commit), every
``broker_commit_interval`` (1 s here, as Sluice's default; Faust's own default is 2.8 s).

Output: what Sluice writes (key = user id as text, value = {timestamp, user_id, url, user_name, user_city} as compact
JSON, headers sluice.click.source = "partition:offset" and sluice.click.produced-at = the click's timestamp).

Configuration from the environment (benchmarks/peers/run.ts sets it): BROKERS, PROFILES, CLICKS, OUTPUT, APP_ID
(the consumer group), DATA_DIR. Run: ``.venv/bin/python app.py worker -l warn``.
"""

import asyncio
import json
import os
import sys

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        print(f"faust-join: {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


BROKERS = env("BROKERS", "127.0.0.1:9092")
PROFILES = env("PROFILES")
CLICKS = env("CLICKS")
OUTPUT = env("OUTPUT")

app = faust.App(
    env("APP_ID"),
    broker=",".join(f"kafka://{b}" for b in BROKERS.split(",")),
    datadir=env("DATA_DIR"),
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=3,
    topic_allow_declare=False,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=1.0,
    web_enabled=False,
)

clicks = app.topic(CLICKS, key_type=bytes, value_type=bytes)
output = app.topic(OUTPUT, key_type=bytes, value_type=bytes)

profiles: dict[int, tuple[str, str]] = {}
loaded = asyncio.Event()


@app.task
async def load_profiles() -> None:
    """Every profile up to the high-water marks the topic has now; a null value (tombstone) deletes."""
    # auto_offset_reset="earliest" as well as seek_to_beginning: with aiokafka's default ("latest") the position
    # reset that assign() starts can win the race with the seek, and the loader would read nothing.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BROKERS.split(","), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # Right after the topic's creation a metadata answer can lack it: ask again for up to 10 s, then fail
        # (never start the join on an empty dict).
        parts: set[int] = set()
        for _ in range(50):
            metadata = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - aiokafka has no public call
            parts = metadata.partitions_for_topic(PROFILES) or set()
            if parts:
                break
            await asyncio.sleep(0.2)
        if not parts:
            raise RuntimeError(f"faust-join: topic {PROFILES} not found")
        tps = [TopicPartition(PROFILES, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        ends_seen = {tp.partition: end for tp, end in ends.items()}
        await consumer.seek_to_beginning(*tps)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining.keys(), timeout_ms=100)
            for msgs in batches.values():
                for m in msgs:
                    key = int(m.key.decode())
                    if m.value is None:
                        profiles.pop(key, None)
                    else:
                        p = json.loads(m.value)
                        profiles[key] = (p["name"], p["city"])
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        await consumer.stop()
    print(f"faust-join: {len(profiles)} profiles loaded from {PROFILES} (end offsets {ends_seen})", file=sys.stderr)
    loaded.set()


@app.agent(clicks)
async def enrich(stream):
    await loaded.wait()
    async for event in stream.events():
        message = event.message
        click = json.loads(event.value)
        profile = profiles.get(click["user_id"])
        value = json.dumps(
            {
                "timestamp": click["timestamp"],
                "user_id": click["user_id"],
                "url": click["url"],
                "user_name": profile[0] if profile else None,
                "user_city": profile[1] if profile else None,
            },
            separators=(",", ":"),
        ).encode()
        await output.send(
            key=str(click["user_id"]).encode(),
            value=value,
            headers={
                "sluice.click.source": f"{message.partition}:{message.offset}".encode(),
                "sluice.click.produced-at": str(round(message.timestamp * 1000)).encode(),
            },
        )


if __name__ == "__main__":
    app.main()
