"""Kafka errors, classified once for every client (sink, inputs, ``publish``, ``tail``).

``classify_kafka_error`` says whether resending can help (retriable) or not (fatal), with a short
reason used as a metric label and in delivery results; ``describe_error`` renders any error as one
line. Classification goes by class name along the MRO, so it works without importing aiokafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorClass:
    retriable: bool
    reason: str  # metric label and DeliveryResult.reason
    reset_producer: bool = False  # the idempotent producer's sequence state is broken


_FATAL_REASONS = {
    "MessageSizeTooLargeError": "message_too_large",
    "RecordTooLargeError": "message_too_large",
    "RecordListTooLargeError": "message_too_large",
    "TopicAuthorizationFailedError": "authorization_failed",
    "ClusterAuthorizationFailedError": "authorization_failed",
    "GroupAuthorizationFailedError": "authorization_failed",
    "TransactionalIdAuthorizationFailed": "authorization_failed",
    "SaslAuthenticationFailed": "authentication_failed",
    "AuthenticationFailedError": "authentication_failed",
    "AuthenticationMethodNotSupported": "authentication_failed",
    "UnsupportedSaslMechanismError": "authentication_failed",
    "IllegalSaslStateError": "authentication_failed",
    "InvalidTopicError": "invalid_topic",
    "CorruptRecordException": "rejected_by_broker",
    "InvalidRequestError": "rejected_by_broker",
    "InvalidTimestampError": "rejected_by_broker",
    "PolicyViolationError": "rejected_by_broker",
    "UnsupportedVersionError": "rejected_by_broker",
    "UnsupportedForMessageFormatError": "rejected_by_broker",
    "UnsupportedCodecError": "rejected_by_broker",
}
_RETRIABLE_REASONS = {
    "KafkaConnectionError": "connection_error",
    "NodeNotReadyError": "connection_error",
    "NoBrokersAvailable": "connection_error",
    "RequestTimedOutError": "request_timed_out",
    "KafkaTimeoutError": "timeout",
    "TimeoutError": "timeout",
    "NotLeaderForPartitionError": "not_leader_for_partition",
    "LeaderNotAvailableError": "leader_not_available",
    "NotEnoughReplicasError": "not_enough_replicas",
    "NotEnoughReplicasAfterAppendError": "not_enough_replicas",
    "KafkaStorageError": "broker_storage_error",
    "ProducerClosed": "producer_closed",
}
_RESET_REASONS = {
    "OutOfOrderSequenceNumber": "producer_state",
    "UnknownProducerId": "producer_state",
    "InvalidProducerEpoch": "producer_state",
    "ProducerFenced": "producer_state",
}


class BatchTooLarge(Exception):
    """A batch of several records was refused as too large: resend each record in a batch of its own."""


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def classify_kafka_error(error: BaseException, *, topic_creation: bool = True) -> ErrorClass:
    """Retriable (resend with backoff) or fatal (dead-letter, or stop), with a short reason."""
    if isinstance(error, BatchTooLarge):
        return ErrorClass(True, "batch_too_large")
    names = [klass.__name__ for klass in type(error).__mro__]
    for name in names:
        if name == "UnknownTopicOrPartitionError":
            # With topic creation on, the topic may be (re)created; with it off, resending cannot help.
            return ErrorClass(topic_creation, "unknown_topic")
        if name in _RESET_REASONS:
            return ErrorClass(True, _RESET_REASONS[name], reset_producer=True)
        if name in _FATAL_REASONS:
            return ErrorClass(False, _FATAL_REASONS[name])
        if name in _RETRIABLE_REASONS:
            return ErrorClass(True, _RETRIABLE_REASONS[name])
    if "KafkaError" in names:
        return ErrorClass(bool(getattr(error, "retriable", False)), _snake(type(error).__name__))
    if isinstance(error, OSError):
        return ErrorClass(True, "connection_error")
    return ErrorClass(False, "internal_error")


def is_too_large(error: BaseException) -> bool:
    return classify_kafka_error(error).reason == "message_too_large"


def describe_error(error: BaseException) -> str:
    """An error as one line: its text, prefixed by its class name unless the text has it."""
    text = str(error).strip()
    name = type(error).__name__
    if not text or text == name:
        return name
    # aiokafka's errors already start with "[Error N] Name" or "Name:"; do not repeat the name.
    return text if name in text else f"{name}: {text}"


def failure_kind(error: BaseException) -> str:
    """What a failed direct connection says about the configuration: tls, authentication, network."""
    names = {klass.__name__ for klass in type(error).__mro__}
    if "SSLError" in names:  # ssl.SSLError and its subclasses, without importing ssl here
        return "tls"
    if classify_kafka_error(error).reason == "authentication_failed":
        return "authentication"
    text = str(error).lower()
    if "sasl" in text or "authentication" in text:
        return "authentication"
    if "ssl" in text or "tls" in text or "certificate" in text:
        return "tls"
    return "network"
