"""README's shipper snippets are accepted by the real rsyslog and syslog-ng (config checks); the
same directives deliver kills end to end in test_shippers_real.py."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from shippers.real import SYSLOG_NG_ROOT, omkafka_missing, rsyslog_missing, syslog_ng_missing

README = Path(__file__).resolve().parents[2] / "README.md"


def snippets() -> dict[str, str]:
    found = dict(re.findall(r"<!-- tested: ([\w-]+) -->\n```\n(.*?)```", README.read_text(), re.S))
    assert set(found) == {"rsyslog-tcp", "syslog-ng-tcp", "rsyslog-omkafka", "syslog-ng-kafka"}
    return found


@pytest.mark.parametrize("name", ["rsyslog-tcp", "rsyslog-omkafka"])
def test_rsyslog_accepts_the_readme_snippet(tmp_path: Path, name: str) -> None:
    if (reason := rsyslog_missing() or (omkafka_missing() if "kafka" in name else None)) is not None:
        pytest.skip(reason)
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\n' + snippets()[name])
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("name", ["syslog-ng-tcp", "syslog-ng-kafka"])
def test_syslog_ng_accepts_the_readme_snippet(tmp_path: Path, name: str) -> None:
    if (reason := syslog_ng_missing()) is not None:
        pytest.skip(reason)
    conf = tmp_path / "syslog-ng.conf"
    conf.write_text(snippets()[name])
    root = SYSLOG_NG_ROOT
    check = subprocess.run(
        [str(root / "usr/sbin/syslog-ng"), f"--module-path={root}/usr/lib/syslog-ng/3.38", "--syntax-only",
         "-f", str(conf)],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/syslog-ng")),
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
