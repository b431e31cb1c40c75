"""oomstream timeline: ordering, joining, duplicates, filters, grouping and the terminal/JSON views.

The fixture set (tests/timeline_fixtures.py) has known answers; events arrive shuffled and half of
them twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest
from timeline_fixtures import (
    FIXTURE_INCIDENTS,
    FIXTURE_KILLS,
    FIXTURE_ORDER,
    T0,
    fixture_set,
    shuffled_with_duplicates,
)

from streamer.cli import main
from streamer.errors import CliError
from streamer.timeline.model import Filters, Timeline, group_incidents, summarize
from streamer.timeline.terminal import Style, render

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _timeline(seed: int = 7) -> Timeline:
    timeline = Timeline()
    timeline.add_all(shuffled_with_duplicates(fixture_set(), seed=seed))
    return timeline


@pytest.mark.parametrize("seed", [1, 7, 42, 1234])
def test_order_is_kill_time_whatever_the_arrival_order(seed: int) -> None:
    incidents = _timeline(seed).incidents()
    assert [i.key for i in incidents] == FIXTURE_ORDER
    for incident in incidents:
        times = [e.time for e in incident.events]
        assert times == sorted(times)


def test_duplicates_by_event_id_are_shown_once_and_counted() -> None:
    events = fixture_set()
    timeline = Timeline()
    timeline.add_all(shuffled_with_duplicates(events))
    assert timeline.stats.duplicates == len(events) // 2
    incidents = timeline.incidents()
    ids = [e.event_id for i in incidents for e in i.events]
    assert len(ids) == len(set(ids))
    summary = summarize(incidents)
    assert (summary.kills, summary.incidents) == (FIXTURE_KILLS, FIXTURE_INCIDENTS)


def test_incident_joins_kernel_kill_and_kubernetes_signals() -> None:
    by_key = {i.key: i for i in _timeline().incidents()}
    a = by_key["inc-a"]
    assert [e.type for e in a.events] == ["oom_kill", "k8s_oom_killed"]
    assert a.visible_in_kubernetes is True
    assert a.limit_fired == "container_limit"
    assert a.rss_fraction == pytest.approx(511 / 512, abs=1e-4)
    d = by_key["inc-d"]
    assert [e.type for e in d.events] == ["oom_kill", "k8s_oom_killing"]


def test_signal_published_under_a_merged_incident_id_joins_the_incident() -> None:
    # The OOMKilled signal arrived under inc-c-early before the kernel report linked it.
    for seed in (1, 2, 3):
        by_key = {i.key: i for i in _timeline(seed).incidents()}
        assert "inc-c-early" not in by_key
        c = by_key["inc-c"]
        assert [e.type for e in c.events] == ["k8s_oom_killed", "oom_kill", "oom_kill"]
        assert len(c.kills) == 2
        assert c.time == T0 + 600  # the kernel kill time, not the earlier signal


def test_marks_unseen_repeated_and_kubernetes_only() -> None:
    by_key = {i.key: i for i in _timeline().incidents()}
    assert by_key["inc-b"].visible_in_kubernetes is False
    assert [by_key[k].workload_kill_number for k in ("inc-a", "inc-b", "inc-c")] == [1, 2, 3]
    assert by_key["inc-a"].workload_kills == 3
    assert by_key["inc-d"].workload_kills == 1
    assert by_key["inc-f"].kills == [] and by_key["inc-f"].limit_fired == "evicted"
    assert by_key["inc-e"].limit_fired == "node"
    summary = summarize(list(by_key.values()))
    assert summary.not_seen_by_kubernetes == 1
    assert summary.repeated_workloads == 1
    assert summary.kubernetes_only == 1
    assert dict(summary.by_limit) == {"container_limit": 2, "pod_limit": 3, "node": 1}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(namespaces=frozenset({"payments"})), ["inc-a", "inc-b", "inc-c"]),
        (Filters(workloads=frozenset({"api"})), ["inc-d"]),
        (Filters(workloads=frozenset({"payments/Deployment/web"})), ["inc-a", "inc-b", "inc-c"]),
        (Filters(pods=frozenset({"web-7d9f-bbbbb"})), ["inc-b"]),
        (Filters(nodes=frozenset({"node-b"})), ["inc-d", "inc-e"]),
        (Filters(containers=frozenset({"api"})), ["inc-d"]),
        (Filters(incidents=frozenset({"inc-c"})), ["inc-c"]),
        (Filters(types=frozenset({"k8s_evicted"})), ["inc-f"]),
        (Filters(since=T0 + 120, until=T0 + 600), ["inc-d", "inc-b", "inc-f"]),
        (Filters(namespaces=frozenset({"payments"}), since=T0 + 200), ["inc-b", "inc-c"]),
        (Filters(namespaces=frozenset({"nowhere"})), []),
    ],
)
def test_filters(filters: Filters, expected: list[str]) -> None:
    assert [i.key for i in _timeline().incidents(filters)] == expected


def test_repeat_numbers_count_only_the_filtered_range() -> None:
    incidents = _timeline().incidents(Filters(since=T0 + 200))
    by_key = {i.key: i for i in incidents}
    assert (by_key["inc-b"].workload_kill_number, by_key["inc-b"].workload_kills) == (1, 2)


def test_group_by_workload_and_node() -> None:
    incidents = _timeline().incidents()
    by_workload = group_incidents(incidents, "workload")
    assert by_workload[0].key == "payments/Deployment/web"
    assert [i.key for i in by_workload[0].incidents] == ["inc-a", "inc-b", "inc-c"]
    by_node = {g.key: [i.key for i in g.incidents] for g in group_incidents(incidents, "node")}
    assert by_node == {
        "node-a": ["inc-a", "inc-b", "inc-c"],
        "node-b": ["inc-d", "inc-e"],
        "node-c": ["inc-f"],
    }


def test_bad_input_is_counted_not_raised() -> None:
    timeline = Timeline()
    timeline.add_all([[1, 2], {"no": "type"}, {"type": "dead_letter", "event_id": "x"}, *fixture_set()])
    assert sum(timeline.stats.skip_reasons.values()) == 3
    assert len(timeline.incidents()) == FIXTURE_INCIDENTS


@pytest.mark.parametrize("width", [80, 100, 160])
def test_terminal_lines_fit_the_width(width: int) -> None:
    incidents = _timeline().incidents()
    lines = list(
        render(
            group_incidents(incidents, "incident"),
            summarize(incidents),
            Style(False, width),
            source="x",
            group_by="incident",
        )
    )
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "NOT SEEN BY K8S" in text and "repeat 2/3" in text
    # Each incident's line appears in kill-time order.
    pods = [
        p
        for p in ("web-7d9f-aaaaa", "api-5c6d-xxxxx", "web-7d9f-bbbbb", "report-29xkq", "web-7d9f-ccccc")
        if p in text
    ]
    assert sorted(pods, key=text.index) == [
        "web-7d9f-aaaaa",
        "api-5c6d-xxxxx",
        "web-7d9f-bbbbb",
        "report-29xkq",
        "web-7d9f-ccccc",
    ]


def test_colour_only_when_asked_and_the_text_is_the_same() -> None:
    incidents = _timeline().incidents()
    groups, summary = group_incidents(incidents, "incident"), summarize(incidents)
    plain = list(render(groups, summary, Style(False, 100), source="x", group_by="incident"))
    coloured = list(render(groups, summary, Style(True, 100), source="x", group_by="incident"))
    assert not any("\x1b[" in line for line in plain)
    assert any("\x1b[" in line for line in coloured)
    assert [ANSI.sub("", line) for line in coloured] == plain


def _write_fixture(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in shuffled_with_duplicates(fixture_set())]
    path.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    return path


def test_cli_json_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_fixture(tmp_path)
    assert main(["timeline", str(path), "--json", "-n", "payments", "--group-by", "workload"]) == 0
    out, err = capsys.readouterr()
    document = orjson.loads(out)
    assert document["summary"]["kills"] == 4 and document["summary"]["incidents"] == 3
    [group] = document["groups"]
    assert [i["key"] for i in group["incidents"]] == ["inc-a", "inc-b", "inc-c"]
    b = group["incidents"][1]
    assert b["visible_in_kubernetes"] is False and b["limit_fired"] == "container_limit"
    assert b["kernel"]["victim"]["comm"] == "java" and b["kernel"]["memcg"]["limit_kb"] > 0
    assert "skipped" in err and "not JSON" in err


def test_cli_terminal_piped_is_plain_and_has_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_fixture(tmp_path)
    assert (
        main(
            [
                "timeline",
                str(path),
                "--width",
                "80",
                "--from",
                "2026-12-04T14:00:00Z",
                "--to",
                "2026-12-04T14:09:00Z",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert out.startswith("OOM timeline  3 kill(s) in 4 incident(s)\n  first kill 2026-12-04T14:01:00.000Z")
    assert "not seen by Kubernetes" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_cli_rejects_a_bad_range(tmp_path: Path) -> None:
    path = _write_fixture(tmp_path)
    assert main(["timeline", str(path), "--from", "yesterday-ish"]) == 2
    assert main(["timeline", str(path), "--from", "1h", "--to", "2h"]) == 2


def _broker(argv: list[str]) -> tuple[str, str]:
    """(servers, where they came from) as `oomstream timeline ARGV` finds them."""
    from streamer.cli import build_parser
    from streamer.commands.publish import kafka_options_and_broker

    options, broker = kafka_options_and_broker(build_parser().parse_args(["timeline", *argv]), "timeline")
    return options.servers, broker


def test_bootstrap_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OOMSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OOMSTREAM_KAFKA_BOOTSTRAP", "e:2")
    assert _broker(["--bootstrap", "h:1"]) == ("h:1", "--bootstrap")
    assert _broker([]) == ("e:2", "$OOMSTREAM_KAFKA_BOOTSTRAP")
    monkeypatch.delenv("OOMSTREAM_KAFKA_BOOTSTRAP")
    config = tmp_path / "c.toml"
    config.write_text('[sinks.kafka]\nbootstrap_servers = ["c:3"]\n')
    assert _broker(["--config", str(config)]) == ("c:3", f"sinks.kafka.bootstrap_servers in {config}")
    monkeypatch.setenv("OOMSTREAM_CONFIG", str(config))
    assert _broker([]) == ("c:3", f"sinks.kafka.bootstrap_servers in {config}")
    assert _broker(["--sinks-kafka-bootstrap-servers", "f:4"]) == ("f:4", "--sinks-kafka-bootstrap-servers")
    monkeypatch.delenv("OOMSTREAM_CONFIG")
    # The old [kafka] table is named, not silently ignored in favour of the local broker.
    config.write_text('[kafka]\nbootstrap_servers = ["c:3"]\n')
    with pytest.raises(CliError, match=r"kafka.bootstrap_servers is now sinks\.kafka\.bootstrap_servers"):
        _broker(["--config", str(config)])
    marker = tmp_path / ".state" / "kafka-bootstrap"
    marker.parent.mkdir()
    marker.write_text("127.0.0.1:1\n")  # nothing listens on port 1
    with pytest.raises(CliError, match="does not answer"):
        _broker([])


def test_bootstrap_finds_the_local_broker_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    for name in [n for n in os.environ if n.startswith("OOMSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        marker = tmp_path / ".state" / "kafka-bootstrap"
        marker.parent.mkdir()
        marker.write_text(f"127.0.0.1:{port}\n")
        servers, broker = _broker(["--topic", "t"])
    assert servers == f"127.0.0.1:{port}"
    assert "make run" in broker and str(marker) in broker


def test_no_broker_anywhere_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OOMSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(
        "streamer.commands.bootstrap.local_broker_files", lambda cwd=None: [tmp_path / "none"]
    )
    with pytest.raises(CliError, match=r"no Kafka bootstrap servers.*--bootstrap.*make run"):
        _broker([])


def test_live_window_is_bounded_and_pages_are_told() -> None:
    import asyncio

    from timeline_fixtures import synthetic_events

    from streamer.timeline.serve import LiveState

    async def scenario() -> tuple[LiveState, list[bytes]]:
        state = LiveState(Timeline(), window_events=100, source="test")
        page: asyncio.Queue[bytes | None] = asyncio.Queue(10_000)
        state.clients.add(page)
        for event in synthetic_events(400):
            state.add(event)
        messages = []
        while not page.empty():
            item = page.get_nowait()
            assert item is not None
            messages.append(item)
        return state, messages

    state, messages = asyncio.run(scenario())
    assert state.timeline.events <= 100
    held = state.timeline.incidents()
    assert held and all(i.key.startswith("bench-") for i in held)
    # The newest incidents are the ones kept; the pages were told which ones were dropped.
    assert max(int(i.key.split("-")[1]) for i in held) == 299
    evicted = [m for m in messages if m.startswith(b"event: evict\n")]
    assert evicted
    dropped = {key for m in evicted for key in orjson.loads(m.split(b"data: ", 1)[1])}
    assert dropped.isdisjoint({i.key for i in held})
    assert len(dropped) + len(held) == 300  # every incident is either held or announced as dropped


def test_malformed_fields_are_skipped_and_counted_never_raised() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    base = fixture_set()[0]
    junk = st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    keys = st.sampled_from(sorted(base))

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(keys, junk, min_size=1, max_size=6))
    def check(changes: dict[str, object]) -> None:
        timeline = Timeline()
        timeline.add({**base, **changes})
        incidents = timeline.incidents()
        assert timeline.stats.read == 1
        assert len(incidents) + sum(timeline.stats.skip_reasons.values()) == 1
        for incident in incidents:
            incident.to_dict()
            list(
                render(
                    group_incidents(incidents, "incident"),
                    summarize(incidents),
                    Style(False, 80),
                    source="x",
                    group_by="incident",
                )
            )

    check()
