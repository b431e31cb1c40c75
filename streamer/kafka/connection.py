"""Building aiokafka clients from ``KafkaOptions``: connection arguments, TLS, SASL, secrets.

``connection_kwargs`` gives the arguments every aiokafka client takes (producer, consumer, admin).
``Credentials`` reads the secrets; ``read_credentials_at_connect`` makes a client read them again
at every new connection (aiokafka keeps the password and TLS context it was built with and passes
them to each connection it opens), so a rotated password file or certificate takes effect at the
next reconnection, without a restart, as the options promise.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any

from streamer.errors import SinkConfigError
from streamer.kafka.errors import describe_error
from streamer.kafka.options import COMPRESSION_PACKAGES, KafkaOptions, Secret

log = logging.getLogger("oomstream.kafka")


def read_secret(
    options: KafkaOptions, file_key: str, env_key: str, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """The secret from the file named by option ``file_key`` or the variable named by ``env_key``."""
    path: str | None = getattr(options, file_key)
    env_name: str | None = getattr(options, env_key)
    environ = os.environ if environ is None else environ
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().rstrip("\r\n")
        except OSError as error:
            raise options.value_error(file_key, path, f"cannot read ({error.strerror or error})") from None
        if not value:
            raise options.value_error(file_key, path, "file is empty")
        return Secret(value)
    if env_name:
        value = environ.get(env_name, "")
        if not value:
            raise options.value_error(env_key, env_name, "environment variable is unset or empty")
        return Secret(value)
    return None


class Credentials:
    """The SASL password and the TLS context of one set of options, read when asked."""

    def __init__(self, options: KafkaOptions, environ: Mapping[str, str] | None = None) -> None:
        self.options = options
        self._environ = environ
        self._tls_files: tuple[tuple[str, float], ...] | None = None
        self._context: ssl.SSLContext | None = None
        self._last_password: str | None = None

    def sasl_password(self) -> str | None:
        """Read now (a literal, the file, the variable); None without SASL."""
        options = self.options
        if not options.security_protocol.startswith("SASL_"):
            return None
        secret = options.sasl_password or read_secret(
            options, "sasl_password_file", "sasl_password_env", self._environ
        )
        assert secret is not None  # KafkaOptions requires a password source with SASL
        self._last_password = secret.reveal()
        return self._last_password

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context, built again when a certificate, key or CA file changed; None without TLS."""
        options = self.options
        if not options.security_protocol.endswith("SSL"):
            return None
        files = tuple(
            (path, _mtime(path))
            for path in (options.ssl_cafile, options.ssl_certfile, options.ssl_keyfile)
            if path
        )
        if self._context is None or files != self._tls_files:
            self._context = self._build_context()
            self._tls_files = files
        return self._context

    def _build_context(self) -> ssl.SSLContext:
        options = self.options
        key_password = read_secret(options, "ssl_key_password_file", "ssl_key_password_env", self._environ)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ssl_cafile)
            if options.ssl_certfile:
                context.load_cert_chain(
                    options.ssl_certfile,
                    options.ssl_keyfile,
                    password=key_password.reveal() if key_password else None,
                )
        except (OSError, ssl.SSLError) as error:
            setting = "ssl_certfile" if options.ssl_certfile else "ssl_cafile"
            raise options.error(
                setting, f"TLS setup failed (ssl_certfile, ssl_keyfile, ssl_cafile): {error}"
            ) from None
        context.check_hostname = options.ssl_check_hostname
        if not options.ssl_check_hostname:
            context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain, only not the name
        return context

    # At a reconnection a failed read keeps the last good value: a secret file being replaced
    # must not take the connection down; the error is logged.
    def password_at_connect(self) -> str | None:
        try:
            return self.sasl_password()
        except SinkConfigError as error:
            log.warning("Kafka SASL password not re-read, using the previous one: %s", error)
            return self._last_password

    def context_at_connect(self) -> ssl.SSLContext | None:
        try:
            return self.ssl_context()
        except SinkConfigError as error:
            log.warning("Kafka TLS files not re-read, using the previous context: %s", describe_error(error))
            return self._context


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


def connection_kwargs(
    options: KafkaOptions, environ: Mapping[str, str] | None = None, credentials: Credentials | None = None
) -> dict[str, Any]:
    """aiokafka client arguments for bootstrap, client id, timeouts and security.

    The result holds the plain password: pass it to aiokafka, never log it.
    """
    options.require_brokers()
    credentials = credentials or Credentials(options, environ)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in options.bootstrap_servers],
        "client_id": options.client_id,
        "security_protocol": options.security_protocol,
        "request_timeout_ms": int(options.request_timeout_seconds * 1000),
        "retry_backoff_ms": options.retry_backoff_ms,
    }
    if options.security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = options.sasl_mechanism
        kwargs["sasl_plain_username"] = options.sasl_username
        kwargs["sasl_plain_password"] = credentials.sasl_password()
    context = credentials.ssl_context()
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def security_kwargs(options: KafkaOptions, credentials: Credentials | None = None) -> dict[str, Any]:
    """Only the security arguments (for a client whose other settings are its own)."""
    kwargs = connection_kwargs(options, credentials=credentials)
    for key in ("bootstrap_servers", "client_id", "request_timeout_ms", "retry_backoff_ms"):
        kwargs.pop(key, None)
    return kwargs


_REFRESHING: dict[type, type] = {}


def read_credentials_at_connect(client_owner: Any, credentials: Credentials) -> None:
    """Make an aiokafka producer's, consumer's or admin client's connections read the secrets anew.

    aiokafka's ``AIOKafkaClient`` passes its ``_sasl_plain_password`` and ``_ssl_context``
    attributes to every connection it opens (aiokafka/client.py, ``_get_conn`` and bootstrap). The
    client is given a subclass where those two are properties asking ``credentials``.
    """
    client = getattr(client_owner, "client", None) or getattr(client_owner, "_client", None)
    if client is None or credentials.options.security_protocol == "PLAINTEXT":
        return
    base = type(client)
    refreshing = _REFRESHING.get(base)
    if refreshing is None:
        refreshing = _REFRESHING[base] = type(f"CredentialReading{base.__name__}", (base,), _PROPERTIES)
    client.__dict__["_oomstream_credentials"] = credentials
    client.__class__ = refreshing


def _get_password(client: Any) -> str | None:
    credentials: Credentials = client.__dict__["_oomstream_credentials"]
    return credentials.password_at_connect()


def _get_context(client: Any) -> ssl.SSLContext | None:
    credentials: Credentials = client.__dict__["_oomstream_credentials"]
    return credentials.context_at_connect()


def _ignore(client: Any, value: Any) -> None:
    """The base class's __init__ assigns them; the credentials are the source of truth."""


_PROPERTIES: dict[str, Any] = {
    "_sasl_plain_password": property(_get_password, _ignore),
    "_ssl_context": property(_get_context, _ignore),
}


def codec_available(compression: str) -> bool:
    from aiokafka import codec

    checks = {
        "zstd": codec.has_zstd,
        "lz4": codec.has_lz4,
        "snappy": codec.has_snappy,
        "gzip": codec.has_gzip,
    }
    check = checks.get(compression)
    return True if check is None else bool(check())


def check_compression(options: KafkaOptions) -> None:
    package = COMPRESSION_PACKAGES[options.compression]
    if package is not None and not codec_available(options.compression):
        raise options.error(
            "compression",
            f"{options.compression!r} needs the Python package {package!r} (pip install {package})",
        )
