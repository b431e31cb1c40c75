"""README's oomstream configuration snippets for shippers load as they are (the layout of the
component registry: [sources.syslog], [sources.http], [sources.kafka_lines]) and enable what they
say; the old [syslog]/[http]/[kafka_input] tables are errors naming the new key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.config import ConfigError, load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def snippets() -> dict[str, str]:
    found = dict(re.findall(r"<!-- tested: (config-[\w-]+) -->\n```toml\n(.*?)```", README.read_text(), re.S))
    assert set(found) == {"config-syslog", "config-http", "config-central"}
    return found


@pytest.mark.parametrize(
    ("name", "source", "option", "value"),
    [
        ("config-syslog", "syslog", "tcp_listen_address", "0.0.0.0:5140"),
        ("config-http", "http", "listen_address", "0.0.0.0:9881"),
        ("config-central", "kafka_lines", "transactional_id", "oomstream-central-0"),
    ],
)
def test_readme_snippet_loads_and_enables_its_source(
    tmp_path: Path, name: str, source: str, option: str, value: str
) -> None:
    path = tmp_path / "oomstream.toml"
    path.write_text(snippets()[name])
    config = load_config(str(path), {}, {})
    assert config.sources.enabled == (source,)
    assert getattr(config.components[f"sources.{source}"], option) == value


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[syslog]\nenabled = true\n", 'sources.enabled (add "syslog")'),
        ('[http]\nlisten_address = "0.0.0.0:1"\n', "sources.http.listen_address"),
        ('[kafka_input]\ntopics = ["t"]\n', "sources.kafka_lines.topics"),
    ],
)
def test_old_listener_tables_name_their_new_key(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "old.toml"
    path.write_text(old)
    with pytest.raises(ConfigError, match=re.escape(new)):
        load_config(str(path), {}, {})


def test_old_listener_variables_name_their_new_variable() -> None:
    with pytest.raises(ConfigError, match="OOMSTREAM_SOURCES_KAFKA_LINES_TOPICS"):
        load_config(None, {"OOMSTREAM_KAFKA_INPUT_TOPICS": "t"}, {})
    with pytest.raises(ConfigError, match="OOMSTREAM_SOURCES_SYSLOG_MAX_FRAME_BYTES"):
        load_config(None, {"OOMSTREAM_SYSLOG_MAX_FRAME_BYTES": "10"}, {})
