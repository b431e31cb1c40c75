"""SASL and authorization against a REAL broker with a SASL_PLAINTEXT listener and ACLs.

A dedicated single node gets a second listener (SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
and the StandardAuthorizer; the PLAINTEXT listener's ANONYMOUS principal is the super user that
sets things up and reads back. User ``svc`` may use topics ``it.sasl.*`` and only Describe
``it.saslro.*``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamer.kafka import KafkaOptions
from streamer.sinks import DeliveryStatus, DeliveryTally, FatalSinkError
from streamer.sinks.kafka import KafkaSink
from tests.integration.kafka_broker import (
    LocalCluster,
    consume_all,
    make_events,
    run_tools,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PORT = 29692  # PLAINTEXT; SASL_PLAINTEXT on PORT + 1, controller on PORT + 100
PLAIN_PASSWORD = "plain-pw-7f3a"
SCRAM_PASSWORD = "scram-pw-91c2"
EXTRA = f"""listeners=PLAINTEXT://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{PORT + 100},SASL_PLAINTEXT://127.0.0.1:{PORT + 1}
advertised.listeners=PLAINTEXT://127.0.0.1:{PORT},SASL_PLAINTEXT://127.0.0.1:{PORT + 1}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_svc="{PLAIN_PASSWORD}";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false"""


@pytest.fixture(scope="module")
def secured(local_cluster_prerequisites: None) -> Iterator[LocalCluster]:
    cluster = LocalCluster("oomstream-it-sasl", port=PORT, extra_properties=EXTRA)
    try:
        cluster.start()
        admin = ["--bootstrap-server", cluster.bootstrap]
        scram = [
            "kafka.admin.ConfigCommand",
            *admin,
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            "svc",
        ]
        acl = ["org.apache.kafka.tools.AclCommand", *admin, "--add", "--allow-principal", "User:svc"]
        run_tools(
            [*scram, "--add-config", f"SCRAM-SHA-256=[password={SCRAM_PASSWORD}]"],
            [*scram, "--add-config", f"SCRAM-SHA-512=[password={SCRAM_PASSWORD}]"],
            [*acl, *("--operation", "All"), "--resource-pattern-type", "prefixed", "--topic", "it.sasl."],
            [
                *acl,
                *("--operation", "Describe"),
                "--resource-pattern-type",
                "prefixed",
                "--topic",
                "it.saslro.",
            ],
        )
        yield cluster
    finally:
        cluster.clean()


def sasl_config(mechanism: str, password_source: dict[str, str], **overrides: object) -> KafkaOptions:
    settings: dict[str, object] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_username": "svc",
        "connect_timeout_seconds": 5,
        "dead_letter_topic": "it.sasl.deadletter",
        "origin": "sasl test config",
    }
    settings.update(password_source)
    settings.update(overrides)
    return KafkaOptions((f"127.0.0.1:{PORT + 1}",), **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_mechanisms_deliver(
    secured: LocalCluster, mechanism: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = PLAIN_PASSWORD if mechanism == "PLAIN" else SCRAM_PASSWORD
    if mechanism == "SCRAM-SHA-256":  # one from the environment, the others from a file
        monkeypatch.setenv("IT_SASL_PASSWORD", password)
        source = {"sasl_password_env": "IT_SASL_PASSWORD"}
    else:
        secret = tmp_path / "password"
        secret.write_text(password + "\n")
        source = {"sasl_password_file": str(secret)}
    topic = f"it.sasl.{mechanism.lower()}.{time.monotonic_ns()}"
    events = make_events(100)
    tally = DeliveryTally()
    config = sasl_config(mechanism, source, events_topic=topic)
    assert password not in repr(config)
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for event in events:
            await sink.submit(event)
    assert tally.sent == 100 and tally.failed == 0
    records = await consume_all(secured.bootstrap, topic)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(e.event_id for e in events)


async def test_wrong_password_fails_clearly_and_fast(
    secured: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_SASL_PASSWORD", "definitely-wrong-pw")
    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        began = time.monotonic()
        with pytest.raises(FatalSinkError) as info:
            async with KafkaSink(
                sasl_config(mechanism, {"sasl_password_env": "IT_SASL_PASSWORD"}, events_topic="it.sasl.x"),
                registry=CollectorRegistry(),
            ):
                pass
        assert time.monotonic() - began < 5
        message = str(info.value)
        assert info.value.setting == "sasl_mechanism" and "SaslAuthenticationFailed" in message
        assert f"sasl_mechanism={mechanism!r}" in message and "sasl_username='svc'" in message
        assert "sasl test config" in message and "definitely-wrong-pw" not in message


async def test_unauthorized_topic_creation_fails_clearly(secured: LocalCluster) -> None:
    config = sasl_config("PLAIN", {"sasl_password_env": "IT_PLAIN"}, events_topic="it.forbidden.events")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IT_PLAIN", PLAIN_PASSWORD)
        with pytest.raises(FatalSinkError) as info:
            async with KafkaSink(config, registry=CollectorRegistry()):
                pass
    message = str(info.value)
    assert "cannot create topic 'it.forbidden.events'" in message and "TopicAuthorizationFailed" in message
    assert info.value.setting == "topic_policy"


async def test_write_denied_goes_to_dead_letter_and_pipeline_continues(
    secured: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    readonly = f"it.saslro.events.{time.monotonic_ns()}"
    # The super user creates the topic; svc may only Describe it.
    async with KafkaSink(
        KafkaOptions((secured.bootstrap,), events_topic=readonly, dead_letter_topic=""),
        registry=CollectorRegistry(),
    ):
        pass
    monkeypatch.setenv("IT_PLAIN", PLAIN_PASSWORD)
    tally = DeliveryTally(keep_results=True)
    events = make_events(30)
    dead = f"it.sasl.deadletter.{time.monotonic_ns()}"
    config = sasl_config(
        "PLAIN",
        {"sasl_password_env": "IT_PLAIN"},
        events_topic=readonly,
        dead_letter_topic=dead,
        topic_policy="create",
    )
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for n, event in enumerate(events):
            await sink.submit(event, [n])
    assert (tally.sent, tally.dead_lettered, tally.failed) == (0, 30, 0)
    assert all(
        r.status is DeliveryStatus.DEAD_LETTERED and r.reason == "authorization_failed" for r in tally.results
    )
    letters = await consume_all(secured.bootstrap, dead)
    envelopes = [orjson.loads(r.value) for r in letters]
    assert sorted(e["event_id"] for e in envelopes) == sorted(e.event_id for e in events)
    assert {e["reason"] for e in envelopes} == {"authorization_failed"}
    assert all("TopicAuthorizationFailed" in e["error"] for e in envelopes)


async def test_rotated_password_file_is_read_again_at_reconnection(
    secured: LocalCluster, tmp_path: Path
) -> None:
    """The password file is read at every new connection: after the broker's password and the file
    change, a reconnection authenticates with the new one, without a restart. (aiokafka alone keeps
    the password it was built with, and the reconnection would fail authentication.)"""
    user, first, second = "rot", "rot-pw-first-5e1", "rot-pw-second-8c4"
    admin = ["--bootstrap-server", secured.bootstrap]
    scram = ["kafka.admin.ConfigCommand", *admin, "--alter", "--entity-type", "users", "--entity-name", user]
    acl = ["org.apache.kafka.tools.AclCommand", *admin, "--add", "--allow-principal", f"User:{user}"]
    run_tools(
        [*scram, "--add-config", f"SCRAM-SHA-512=[password={first}]"],
        [*acl, *("--operation", "All"), "--resource-pattern-type", "prefixed", "--topic", "it.sasl."],
    )
    secret = tmp_path / "password"
    secret.write_text(first + "\n")
    topic = f"it.sasl.rotate.{time.monotonic_ns()}"
    config = sasl_config(
        "SCRAM-SHA-512", {"sasl_password_file": str(secret)}, sasl_username=user, events_topic=topic
    )
    events = make_events(40)
    tally = DeliveryTally()
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for event in events[:20]:
            await sink.submit(event)
        await sink.flush(30)
        assert tally.sent == 20
        run_tools([*scram, "--add-config", f"SCRAM-SHA-512=[password={second}]"])
        secret.write_text(second + "\n")
        time.sleep(1.0)  # the new SCRAM credential reaches the broker's cache
        # What a broker restart or a network blip does: every connection of the producer drops.
        client = sink._producer.client
        for conn in list(client._conns.values()):
            conn.close()
        for event in events[20:]:
            await sink.submit(event)
        await sink.flush(60)
    assert tally.failed == 0 and tally.sent == 40, tally.failures[:2]
    records = await consume_all(secured.bootstrap, topic)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(e.event_id for e in events)


async def test_kafka_objects_input_shares_the_diagnosis_and_reads_the_password(
    secured: LocalCluster, tmp_path: Path
) -> None:
    """The Kafka objects input builds its consumer from the same options and client module: a wrong
    password is diagnosed at once (not retried until connect_timeout_seconds) and named."""
    from streamer.sources.kafka_objects import KafkaObjectsSource, KafkaSourceError

    secret = tmp_path / "password"
    secret.write_text("definitely-wrong-pw\n")
    options = sasl_config("SCRAM-SHA-512", {"sasl_password_file": str(secret)}, connect_timeout_seconds=20)
    source = KafkaObjectsSource(
        kafka=options,
        bootstrap_servers=options.bootstrap_servers,
        topic="it.sasl.objects",
        group_id="it-objects",
        connect_timeout_seconds=20,
    )
    began = time.monotonic()
    with pytest.raises(KafkaSourceError) as info:
        async with source:
            pass
    assert time.monotonic() - began < 10  # not retried for the whole 20 s
    message = str(info.value)
    assert not info.value.retriable and info.value.reason == "misconfigured"
    assert "SASL authentication" in message and "sasl_mechanism='SCRAM-SHA-512'" in message
    assert "definitely-wrong-pw" not in message
    admin = ["--bootstrap-server", secured.bootstrap]
    run_tools(
        ["org.apache.kafka.tools.AclCommand", *admin, "--add", "--allow-principal", "User:svc",
         "--operation", "All", "--group", "it-objects"],
    )  # fmt: skip
    secret.write_text(SCRAM_PASSWORD + "\n")  # the right one: read when the consumer is built
    source = KafkaObjectsSource(
        kafka=options,
        bootstrap_servers=options.bootstrap_servers,
        topic="it.sasl.objects",
        group_id="it-objects",
        connect_timeout_seconds=20,
    )
    async with source:
        await source.start()
