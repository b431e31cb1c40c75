"""deploy/helm/oomstream/files/create-topics.sh (the chart's topic Job runs it) against the real
broker: both topics created with the partitions, retention and min.insync.replicas asked for; a
second run leaves them as they are; bad arguments are refused before Kafka is called."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.kafka_broker import unique_topic

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "helm" / "oomstream" / "files" / "create-topics.sh"
TOPICS_TOOL = f"{ROOT / 'deploy' / 'local-kafka' / 'kafka.sh'} tool topics"


def create(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KAFKA_TOPICS=TOPICS_TOOL)
    return subprocess.run(
        [str(SCRIPT), "--bootstrap", bootstrap, *args], env=env, capture_output=True, text=True, timeout=180
    )


async def describe(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        metadata = await admin.describe_topics(topics)
        partitions = {t["topic"]: len(t["partitions"]) for t in metadata}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    finally:
        await admin.close()
    return {t: (partitions[t], configs[t]) for t in topics}


def test_creates_both_topics_with_the_recommended_settings(kafka_bootstrap: str) -> None:
    events, dead = unique_topic("topics-ev"), unique_topic("topics-dl")
    args = ("--events-topic", events, "--dead-letter-topic", dead, "--replication", "1", "--min-insync", "1",
            "--events-partitions", "4", "--dead-letter-partitions", "2", "--events-retention", "7d", "--dead-letter-retention", "30d")  # fmt: skip
    done = create(kafka_bootstrap, *args)
    assert done.returncode == 0, done.stderr
    got = asyncio.run(describe(kafka_bootstrap, [events, dead]))
    assert got[events][0] == 4 and got[dead][0] == 2
    assert got[events][1]["retention.ms"] == str(7 * 86400_000)
    assert got[dead][1]["retention.ms"] == str(30 * 86400_000)
    for _, config in got.values():
        assert config["cleanup.policy"] == "delete" and config["min.insync.replicas"] == "1"
    again = create(
        kafka_bootstrap, *args[:4], "--replication", "1", "--min-insync", "1", "--events-partitions", "9"
    )
    assert again.returncode == 0, again.stderr
    assert asyncio.run(describe(kafka_bootstrap, [events]))[events][0] == 4  # left as it was


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--events-retention", "7 days"), "bad duration"),
        (("--replication", "0"), "not a positive integer"),
        (("--replication", "1", "--min-insync", "2"), "exceeds --replication"),
        (("--partitions", "3"), "unknown option --partitions"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[str, ...], message: str) -> None:
    done = create("127.0.0.1:1", *args)
    assert done.returncode == 2 and message in done.stderr
