"""Start-up of a Kafka client: bounded connection with a diagnosis, and topic administration.

aiokafka reports every bootstrap failure as "Unable to bootstrap"; the real cause (TLS or SASL
mismatch, refused, reset) is only logged. ``Startup.connect`` therefore opens a direct connection
to each bootstrap server when a start fails, so the error names the setting at fault
(``security_protocol``, ``sasl_mechanism``, ``bootstrap_servers``...); authentication and TLS
failures are not retried, refused connections are (Kafka may be starting) until
``connect_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streamer.errors import FatalSinkError, SinkConfigError
from streamer.kafka.errors import classify_kafka_error, describe_error, failure_kind
from streamer.kafka.options import KafkaOptions

log = logging.getLogger("oomstream.kafka")
T = TypeVar("T")
Cause = tuple[str, str, str]  # server, what happened, kind (authentication, tls, network, ok)

_DIRECT_CONNECTION_KEYS = (
    "client_id",
    "ssl_context",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


class Startup:
    """Bounded start-up steps of one client (``name`` prefixes log lines) with clear errors."""

    def __init__(self, options: KafkaOptions, conn: dict[str, Any], name: str) -> None:
        self.options = options
        self.conn = conn
        self.name = name

    async def connect(self, client: Any) -> None:
        """Start ``client`` within connect_timeout_seconds, retrying refused connections."""
        options = self.options
        deadline = time.monotonic() + options.connect_timeout_seconds
        backoff = 0.25
        while True:
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(client.start(), max(0.1, remaining))
                return
            except Exception as error:
                remaining = deadline - time.monotonic()
                causes = await self.diagnose(max(0.5, min(5.0, remaining)))
                fatal = [c for c in causes if c[2] in ("authentication", "tls")]
                if fatal or remaining <= 0.05:
                    raise self.error("connect", error, causes) from None
                log.info("%s: Kafka not reachable yet (%s); retrying", self.name, describe_error(error))
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(2.0, backoff * 2)

    async def diagnose(self, timeout: float) -> list[Cause]:
        """(server, error, kind) for each bootstrap server, from a direct connection to it."""
        from aiokafka.conn import create_conn

        kwargs = {key: value for key, value in self.conn.items() if key in _DIRECT_CONNECTION_KEYS}
        causes: list[Cause] = []
        for server in self.options.bootstrap_servers:
            host, _, port = server.strip().rpartition(":")
            try:
                conn = await asyncio.wait_for(
                    create_conn(
                        host.strip("[]"), int(port), request_timeout_ms=int(timeout * 1000), **kwargs
                    ),
                    timeout,
                )
            except Exception as error:
                causes.append((server, describe_error(error), failure_kind(error)))
            else:
                conn.close()
                causes.append((server, "connected", "ok"))
        return causes

    async def bounded(
        self, awaitable: Awaitable[T], what: str, stop: Callable[[], Awaitable[Any]] | None = None
    ) -> T:
        """Run a start-up step within connect_timeout_seconds; turn failures into clear errors."""
        try:
            return await asyncio.wait_for(awaitable, self.options.connect_timeout_seconds)
        except SinkConfigError:
            raise
        except Exception as error:
            if stop is not None:
                try:
                    await asyncio.wait_for(stop(), 5)
                except Exception as stop_error:
                    log.debug("cleanup after failed %s: %s", what, describe_error(stop_error))
            raise self.error(what, error, []) from None

    def error(self, what: str, error: BaseException, causes: list[Cause]) -> FatalSinkError:
        """The start-up failure as one message naming the setting most likely at fault."""
        options = self.options
        servers = options.servers
        where = f"in {options.origin}" if options.origin else "in the kafka options"
        klass = classify_kafka_error(error, topic_creation=options.topic_creation)
        kinds = {kind for _, _, kind in causes}
        detail = "; ".join(f"{server}: {text}" for server, text, kind in causes if kind != "ok")
        detail = detail or describe_error(error)
        protocol = options.security_protocol
        if "authentication" in kinds or klass.reason == "authentication_failed":
            if protocol.startswith("SASL_"):
                return FatalSinkError(
                    f"{what}: SASL authentication with {servers} failed (security_protocol="
                    f"{protocol!r}, sasl_mechanism={options.sasl_mechanism!r}, "
                    f"sasl_username={options.sasl_username!r} {where}): {detail}; check the credentials, "
                    "the mechanism, and that the listener speaks SASL",
                    setting="sasl_mechanism",
                )
            return FatalSinkError(
                f"{what}: the broker at {servers} requires authentication, but security_protocol="
                f"{protocol!r} ({where}): {detail}",
                setting="security_protocol",
            )
        if "tls" in kinds:
            return FatalSinkError(
                f"{what}: TLS handshake with {servers} failed (security_protocol="
                f"{protocol!r}, ssl_cafile={options.ssl_cafile!r}, ssl_check_hostname="
                f"{options.ssl_check_hostname} {where}): {detail}; does the listener speak TLS?",
                setting="security_protocol",
            )
        if klass.reason == "authorization_failed":
            return FatalSinkError(
                f"{what}: not authorized on {servers} (sasl_username={options.sasl_username!r} {where}): "
                f"{detail}",
                setting="sasl_username",
            )
        if isinstance(error, TimeoutError) and "ok" in kinds:
            return FatalSinkError(
                f"{what}: Kafka at {servers} accepted the connection but did not answer within "
                f"connect_timeout_seconds={options.connect_timeout_seconds:g} ({where}); "
                f"is security_protocol={protocol!r} what the listener speaks?",
                setting="security_protocol",
            )
        hint = ""
        if protocol != "PLAINTEXT" and "ok" not in kinds:
            # A plaintext listener resets a TLS handshake: the likeliest cause when TLS is on.
            hint = f"; is security_protocol={protocol!r} what the listener speaks?"
        return FatalSinkError(
            f"{what}: cannot reach Kafka at bootstrap_servers={servers} within connect_timeout_seconds="
            f"{options.connect_timeout_seconds:g} ({where}): {detail}{hint}",
            setting="bootstrap_servers",
        )

    async def prepare_topics(self, topics: list[str]) -> None:
        """Check or create ``topics`` (topic_policy), with errors that name the setting."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        options = self.options
        wanted = [t for t in topics if t]
        admin = AIOKafkaAdminClient(**self.conn)
        try:
            await self.connect(admin)
            existing = set(await self.bounded(admin.list_topics(), "list topics"))
            missing = [topic for topic in wanted if topic not in existing]
            if not missing:
                return
            if options.topic_policy == "check":
                setting = "events_topic" if options.events_topic in missing else "dead_letter_topic"
                where = options.origin or "the kafka options"
                raise SinkConfigError(
                    f"topic {missing[0]!r} ({setting}) does not exist on {options.servers} and "
                    f"topic_policy='check' (in {where}); create it, or set topic_policy='create'"
                    + (
                        f" (or sasl_username={options.sasl_username!r} lacks Describe permission on it)"
                        if options.sasl_username
                        else ""
                    ),
                    setting="topic_policy",
                )
            replication = options.topic_replication_factor
            if replication == 0:
                cluster = await self.bounded(admin.describe_cluster(), "describe cluster")
                replication = max(1, min(3, len(cluster.get("brokers", []))))
            response = await self.bounded(
                admin.create_topics([NewTopic(t, options.topic_partitions, replication) for t in missing]),
                "create topics",
            )
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                detail = topic_error[2] if len(topic_error) > 2 else None
                if code in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (created concurrently)
                    continue
                from aiokafka.errors import for_code

                raise FatalSinkError(
                    f"cannot create topic {topic!r} with {options.topic_partitions} partition(s), "
                    f"replication {replication} (topic_policy='create', topic_partitions, "
                    f"topic_replication_factor in {options.origin or 'the kafka options'}): "
                    f"{for_code(code).__name__}"
                    + (f": {detail}" if detail else "")
                    + "; create it beforehand and set topic_policy='check'",
                    setting="topic_policy",
                )
            log.info("%s: created topic(s) %s (replication %d)", self.name, ", ".join(missing), replication)
        finally:
            try:
                await asyncio.wait_for(admin.close(), timeout=5)
            except Exception as error:
                log.debug("admin client close: %s", describe_error(error))
