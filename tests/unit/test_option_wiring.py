"""Every option does something (issue 11 item 8).

The example configuration and the Kubernetes manifest's ConfigMap use only registered options; and
for every option, the service built with another value of it (``build_service``: sources, sink,
spool, Kubernetes parts, pipeline, metrics server, plus the log handler) differs from the one
built with the default. What is compared is everything those objects hold, read recursively,
except the configuration objects themselves: an option that only sits in its options class and
reaches no component fails here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import io
import json
import logging
import subprocess
import tempfile
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml

from streamer import config as cfg
from streamer.commands.run import build_service
from streamer.config import Config, load_config, option_specs, with_overrides
from streamer.kafka import KafkaOptions
from streamer.logging_setup import setup_logging
from streamer.sinks.kafka import KafkaSink

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "oomstream.example.toml"
MANIFEST = REPO / "deploy" / "kubernetes" / "oomstream.yaml"


def _keys(table: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted option keys of a TOML document (component tables nest: sources.kmsg.path)."""
    specs = {spec.key for spec in option_specs()}
    out: set[str] = set()
    for name, value in table.items():
        key = prefix + name
        if key in specs or not isinstance(value, dict):
            out.add(key)
        else:
            out |= _keys(value, key + ".")
    return out


def _configmap_toml() -> str:
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if doc and doc.get("kind") == "ConfigMap":
            return str(doc["data"]["oomstream.toml"])
    raise AssertionError("no ConfigMap in the manifest")


@pytest.mark.parametrize("name", ["example", "configmap"])
def test_config_files_use_only_registered_options(name: str, tmp_path: Path) -> None:
    text = EXAMPLE.read_text() if name == "example" else _configmap_toml()
    keys = _keys(tomllib.loads(text))
    registered = {spec.key for spec in option_specs()}
    assert keys and keys <= registered, keys - registered
    path = tmp_path / "oomstream.toml"
    path.write_text(text)
    loaded = load_config(str(path), {}, {})  # loads: every key known, every value valid
    assert set(loaded.origins) == keys


# -- every option reaches a component ---------------------------------------------------------------

_SKIPPED_TYPES: tuple[type, ...] = (
    Config,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.ModuleType,
    logging.Logger,
    io.IOBase,
)
_LEAVES = (str, int, float, bool, bytes, type(None), enum.Enum)


def _fingerprint(root: object) -> dict[str, object]:
    """Every plain value reachable from ``root`` (attributes, slots, mappings, sequences), by path."""
    option_classes = tuple(cfg.sections().values())
    out: dict[str, object] = {}
    seen: set[int] = set()

    def walk(obj: object, path: str, depth: int) -> None:
        if isinstance(obj, _LEAVES):
            out[path] = obj
            return
        if isinstance(obj, _SKIPPED_TYPES):
            return
        # An options object is evidence only as a component's own configuration, its ``options``
        # attribute (Vector's rule: the config struct is the component; the Kafka sink's is the
        # one class of every Kafka client), not as another component's options read in passing
        # (``auto`` reads those of kmsg, journald and files). Kafka's security options are also
        # checked against a real broker in tests/integration/test_kafka_security.py.
        if isinstance(obj, option_classes) and not (
            path.endswith(".options") or (isinstance(obj, KafkaOptions) and ".sink" in path)
        ):
            return
        if type(obj).__module__.split(".")[0] in (
            "asyncio",
            "prometheus_client",
            "kubernetes_asyncio",
            "aiohttp",
        ):
            return
        out[path + "<type>"] = type(obj).__qualname__  # which formatter, which handler, present or not
        if depth > 7 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Mapping):
            for key, value in list(obj.items())[:50]:
                walk(value, f"{path}[{key!r}]", depth + 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
            for index, value in enumerate(list(items)[:50]):
                walk(value, f"{path}[{index}]", depth + 1)
        else:
            names = list(getattr(obj, "__dict__", {}))
            for klass in type(obj).__mro__:
                names += [n for n in getattr(klass, "__slots__", ()) if isinstance(n, str)]
            for name in names:
                with contextlib.suppress(AttributeError):
                    walk(getattr(obj, name), f"{path}.{name}", depth + 1)

    walk(root, "", 0)
    return out


def _kubeconfig(path: Path) -> str:
    contexts = [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in ("fake", "other")]
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://192.0.2.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": contexts,
                "current-context": "fake",
            }
        )
    )
    return str(path)


async def _built(config: Config) -> dict[str, object]:
    root = logging.getLogger()
    level = root.level
    async with contextlib.AsyncExitStack() as stack:
        service = await build_service(config, stack, io.StringIO())
        handler = setup_logging(
            config.log.level,
            config.log.format,
            stream=io.StringIO(),
            rate_limit_seconds=config.log.rate_limit_seconds,
        )
        try:
            producer: object = None
            if isinstance(service.sink, KafkaSink):
                service.sink._producer_factory = lambda kwargs: kwargs  # the arguments, no client
                producer = service.sink._make_producer()
            return _fingerprint(
                {"service": service, "log": handler, "level": root.level, "producer": producer}
            )
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


SASL = {"sinks.kafka.security_protocol": "SASL_PLAINTEXT", "sinks.kafka.sasl_username": "u"}
SSL = {"sinks.kafka.security_protocol": "SSL"}


@functools.cache
def _certificate() -> tuple[str, str]:
    """A self-signed certificate and its key (PEM), made once by openssl."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "c.pem"), Path(directory, "k.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=oomstream-test", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert.read_text(), key.read_text()


def _self_signed(tmp: Path) -> None:
    """ca.pem (a certificate), k.pem (its key) and c.pem (both)."""
    cert, key = _certificate()
    (tmp / "ca.pem").write_text(cert)
    (tmp / "k.pem").write_text(key)
    (tmp / "c.pem").write_text(cert + key)


def _cases(tmp: Path) -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """Options whose other value needs other options set too: (both, changed only)."""
    (tmp / "a.log").write_text("")
    (tmp / "b.log").write_text("")
    (tmp / "objects.jsonl").write_text("")
    pw = {"sinks.kafka.sasl_password_env": "PW"}
    # The sink reads secrets and TLS files when it is built (a bad one fails the start, naming it).
    for name in ("pw1", "pw2", "kp"):
        (tmp / name).write_text("secret\n")
    _self_signed(tmp)
    return {
        "sinks.kafka.sasl_username": ({**SASL, **pw}, {"sinks.kafka.sasl_username": "v"}),
        "sinks.kafka.sasl_mechanism": ({**SASL, **pw}, {"sinks.kafka.sasl_mechanism": "SCRAM-SHA-256"}),
        # a literal password must reach the client (it was once dropped on the way)
        "sinks.kafka.sasl_password": ({**SASL, "sinks.kafka.sasl_password": "a"}, {"sinks.kafka.sasl_password": "b"}),
        "sinks.kafka.sasl_password_file": (
            {**SASL, "sinks.kafka.sasl_password_file": str(tmp / "pw1")},
            {"sinks.kafka.sasl_password_file": str(tmp / "pw2")},
        ),
        "sinks.kafka.sasl_password_env": ({**SASL, **pw}, {"sinks.kafka.sasl_password_env": "KP"}),
        "kubernetes.mode": ({}, {"kubernetes.mode": "off", "kubernetes.kubeconfig_path": None}),
        "sinks.kafka.ssl_cafile": (SSL, {"sinks.kafka.ssl_cafile": str(tmp / "ca.pem")}),
        "sinks.kafka.ssl_certfile": (SSL, {"sinks.kafka.ssl_certfile": str(tmp / "c.pem")}),
        "sinks.kafka.ssl_keyfile": (
            {**SSL, "sinks.kafka.ssl_certfile": str(tmp / "c.pem")},
            {"sinks.kafka.ssl_keyfile": str(tmp / "k.pem")},
        ),
        "sinks.kafka.ssl_key_password_file": (SSL, {"sinks.kafka.ssl_key_password_file": str(tmp / "kp")}),
        "sinks.kafka.ssl_key_password_env": (SSL, {"sinks.kafka.ssl_key_password_env": "KP"}),
        "sinks.kafka.ssl_check_hostname": (SSL, {"sinks.kafka.ssl_check_hostname": False}),
        # the close waits at most a share of the shutdown budget: a budget above the default lets it show
        "sinks.kafka.close_timeout_seconds": (
            {"pipeline.shutdown_timeout_seconds": 600.0},
            {"sinks.kafka.close_timeout_seconds": 61.0},
        ),
        "sinks.kafka.dead_letter_topic": ({}, {"sinks.kafka.dead_letter_topic": "other.dlq"}),
        "sinks.kafka.partial_events": ({}, {"sinks.kafka.partial_events": "dead_letter_only"}),
        "sinks.file.path": ({"sinks.enabled": "file", "sinks.file.path": str(tmp / "e1")}, {"sinks.file.path": str(tmp / "e2")}),
        "sources.files.paths": ({"sources.enabled": "files", "sources.files.paths": str(tmp / "a.log")}, {"sources.files.paths": str(tmp / "b.log")}),
        "kubernetes.kubeconfig_path": ({}, {"kubernetes.kubeconfig_path": _kubeconfig(tmp / "kubeconfig2")}),
        "kubernetes.context": ({}, {"kubernetes.context": "other"}),
        "kubernetes.objects_files": ({}, {"kubernetes.objects_files": str(tmp / "objects.jsonl")}),
        "kubernetes.objects_kafka_topic": ({}, {"kubernetes.objects_kafka_topic": "k8s-events"}),
        "kubernetes.objects_kafka_group": ({"kubernetes.objects_kafka_topic": "t"}, {"kubernetes.objects_kafka_group": "g2"}),
        "kubernetes.objects_kafka_offset_reset": ({"kubernetes.objects_kafka_topic": "t"}, {"kubernetes.objects_kafka_offset_reset": "latest"}),
        "kubernetes.objects_follow": ({"kubernetes.objects_files": str(tmp / "objects.jsonl")}, {"kubernetes.objects_follow": False}),
        "kubernetes.max_object_line_bytes": ({"kubernetes.objects_files": str(tmp / "objects.jsonl")}, {"kubernetes.max_object_line_bytes": 4096}),
        "metrics.listen_address": ({}, {"metrics.listen_address": "127.0.0.1:9465"}),
        "state.directory": ({}, {"state.directory": str(tmp / "state2")}),
        "spool.directory": ({}, {"spool.directory": str(tmp / "spool2")}),
        "sources.journald.directory": ({}, {"sources.journald.directory": str(tmp)}),
        "sources.journald.since": ({}, {"sources.journald.since": "-1h"}),
        "node_name": ({}, {"node_name": "other-node"}),
        "sources.enabled": ({}, {"sources.enabled": "journald"}),
        # with no checkpoint saved, "checkpoint" starts at the oldest record: "end" is the other start
        "sources.kmsg.start": ({}, {"sources.kmsg.start": "end"}),
        "sinks.enabled": ({}, {"sinks.enabled": "stdout"}),
        **_listener_cases(tmp),
    }  # fmt: skip


def _listener_cases(tmp: Path) -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """The syslog and HTTP listeners' addresses and TLS files (the files are read when they start)."""
    cases: dict[str, tuple[dict[str, object], dict[str, object]]] = {
        "sources.syslog.tcp_listen_address": ({}, {"sources.syslog.tcp_listen_address": "127.0.0.1:5141"}),
        "sources.syslog.udp_listen_address": ({}, {"sources.syslog.udp_listen_address": "127.0.0.1:5141"}),
        "sources.http.listen_address": ({}, {"sources.http.listen_address": "127.0.0.1:9882"}),
    }
    for table in ("sources.syslog", "sources.http"):
        tls = {f"{table}.tls_cert_path": str(tmp / "ca.pem"), f"{table}.tls_key_path": str(tmp / "k.pem")}
        cases[f"{table}.tls_cert_path"] = (tls, {f"{table}.tls_cert_path": str(tmp / "c.pem")})
        cases[f"{table}.tls_key_path"] = (tls, {f"{table}.tls_key_path": str(tmp / "c.pem")})
        cases[f"{table}.tls_client_ca_path"] = (tls, {f"{table}.tls_client_ca_path": str(tmp / "ca.pem")})
    return cases


# Options with one possible value: nothing to change.
FIXED = {"sinks.kafka.acks": "one value only (all): there is nothing else to set"}


def _other_value(spec: cfg.OptionSpec) -> object:
    base = cfg._inner_types(spec.type)[0]
    default = spec.default
    if get_origin(base) is Literal:
        return next(choice for choice in get_args(base) if choice != default)
    if base is bool:
        return not default
    if base is int:
        return int(default) * 2 + 1
    if base is float:
        return float(default) * 2 + 1
    if get_origin(base) is tuple:
        return {"sinks.kafka.bootstrap_servers": ("127.0.0.1:10",), "sinks.kafka.key_fields": ("host",)}.get(
            spec.key, ("other",)
        )
    if base is str:
        return str(default) + "-other" if default else "other"
    raise AssertionError(f"{spec.key}: no other value for {spec.type!r}")


def _table_of(key: str) -> str:
    return key.rsplit(".", 1)[0]


def _enable(key: str, tmp: Path) -> dict[str, object]:
    """Settings that make the component of ``key`` run."""
    table = _table_of(key)
    if table.startswith("sources."):
        name = table.split(".")[1]
        extra: dict[str, object] = {"sources.enabled": name}
        if name == "files":
            extra["sources.files.paths"] = str(tmp / "a.log")
        return extra
    if table == "sinks.k8s_events":  # a side sink only: it follows the first
        return {"sinks.enabled": "kafka,k8s_events"}
    if table.startswith("sinks.") and table != "sinks.kafka":
        return {"sinks.enabled": table.split(".")[1]}
    return {}


SPECS = [spec for spec in option_specs() if spec.key not in FIXED]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.key)
async def test_every_option_reaches_a_component(
    spec: cfg.OptionSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", "secret")
    monkeypatch.setenv("KP", "secret")
    (tmp_path / "a.log").write_text("")
    base: dict[str, object] = {
        "state.directory": str(tmp_path / "state"),
        "spool.directory": str(tmp_path / "spool"),
        "sinks.kafka.bootstrap_servers": "127.0.0.1:9",  # never contacted: nothing is started
        "kubernetes.mode": "kubeconfig",
        "kubernetes.kubeconfig_path": _kubeconfig(tmp_path / "kubeconfig"),
        "node_name": "node-a",
        "sources.enabled": "kmsg",  # built, never opened (auto would probe this machine)
    }
    base.update(_enable(spec.key, tmp_path))
    cases = _cases(tmp_path)
    both, changed = cases[spec.key] if spec.key in cases else ({}, {spec.key: _other_value(spec)})
    base.update(both)
    before = await _built(with_overrides(Config(), base))
    # What differs between two builds of the same configuration (clock readings) is not evidence.
    again = await _built(with_overrides(Config(), base))
    noise = {k for k in before.keys() | again.keys() if before.get(k) != again.get(k)}
    after = await _built(with_overrides(Config(), {**base, **changed}))
    differences = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} - noise
    assert differences, f"{spec.key} = {changed[spec.key]!r} changed nothing the service built"


def test_every_option_is_checked() -> None:
    assert {spec.key for spec in option_specs()} == {spec.key for spec in SPECS} | set(FIXED)
    assert dataclasses.is_dataclass(Config)
