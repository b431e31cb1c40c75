"""The HTML report in a real headless Chromium: offline, counts, filters, expanded rows, charts.

Screenshots go to tests/artifacts/ (README shows one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from browser import browser, console_errors, requested_urls, screenshot
from timeline_fixtures import FIXTURE_INCIDENTS, FIXTURE_KILLS, fixture_set, shuffled_with_duplicates

from streamer.cli import main


def _wait(driver: Any, condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _text(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in shuffled_with_duplicates(fixture_set())))
    html = tmp_path / "report.html"
    assert main(["timeline", str(events), "--html", str(html)]) == 0
    return html


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    # No reference to anything outside the file: no src/href to a URL, no CDN.
    for needle in ('src="http', "src='http", 'href="http', "//cdn", "@import"):
        assert needle not in text
    assert "connect-src 'none'" in text


def test_report_in_chromium(report: Path) -> None:
    with browser(1400, 1450) as driver:  # tall enough for the screenshot to show an expanded row
        driver.get(report.as_uri())
        assert _wait(driver, lambda: _text(driver, "count-kills") == str(FIXTURE_KILLS))
        assert _text(driver, "count-incidents") == str(FIXTURE_INCIDENTS)
        assert _text(driver, "count-unseen") == "1"
        assert _text(driver, "count-repeated") == "1"
        rows = driver.find_elements("css selector", "#incidents tr.row")
        assert len(rows) == FIXTURE_INCIDENTS
        # The timeline lanes and both charts were drawn by the charting library.
        assert len(driver.find_elements("css selector", "#lanes canvas")) == 1
        assert len(driver.find_elements("css selector", "#chart-kills canvas")) == 1
        assert len(driver.find_elements("css selector", "#chart-rss canvas")) == 1

        # An expanded row shows the kernel report's victim, trigger and memcg figures.
        first = driver.find_element("css selector", '#incidents tr.row[data-key="inc-a"]')
        first.click()
        details = _wait(driver, lambda: driver.find_elements("css selector", 'tr.details[data-key="inc-a"]'))
        assert details
        detail_text = details[0].text
        assert "java (pid 4242)" in detail_text  # victim
        assert "TRIGGER" in detail_text.upper() and "GFP_KERNEL" in detail_text
        assert "failcnt" in detail_text and "118" in detail_text  # memcg failcnt from the real report
        assert "k8s_oom_killed" in detail_text  # the Kubernetes signal of the incident
        screenshot(driver, "timeline-report.png")

        # Filters: namespace, then the search box; the URL carries them.
        driver.find_element("css selector", '#f-namespace option[value="payments"]').click()
        assert _wait(driver, lambda: _text(driver, "shown-incidents") == "3")
        assert _text(driver, "shown-kills") == "4"
        assert "namespace=payments" in driver.current_url
        search = driver.find_element("id", "f-q")
        search.send_keys("bbbbb")
        assert _wait(driver, lambda: _text(driver, "shown-incidents") == "1")
        assert [
            r.get_attribute("data-key") for r in driver.find_elements("css selector", "#incidents tr.row")
        ] == ["inc-b"]
        assert "NOT SEEN" in driver.find_element("css selector", "#incidents tr.row").text

        # Sorting by RSS fraction, descending, after clearing the search.
        search.clear()
        driver.execute_script("document.getElementById('f-q').dispatchEvent(new Event('input'))")
        assert _wait(driver, lambda: _text(driver, "shown-incidents") == "3")
        header = driver.find_element("css selector", '#incidents th[data-key="rss_fraction"]')
        header.click()
        header = driver.find_element("css selector", '#incidents th[data-key="rss_fraction"]')
        header.click()
        keys = [
            r.get_attribute("data-key") for r in driver.find_elements("css selector", "#incidents tr.row")
        ]
        assert keys == ["inc-a", "inc-b", "inc-c"]  # 99.8%, 97.7%, 87.9%

        errors = console_errors(driver)
        assert errors == []
        outside = [u for u in requested_urls(driver) if not u.startswith(("file:", "data:"))]
        assert outside == []


def test_report_reads_filters_and_range_from_the_url(report: Path) -> None:
    with browser() as driver:
        driver.get(report.as_uri() + "?node=node-b&from=2026-12-04T14:00:00Z&to=2026-12-04T14:10:00Z")
        assert _wait(driver, lambda: _text(driver, "shown-incidents") == "1")  # inc-d (inc-e is at 14:15)
        assert [
            r.get_attribute("data-key") for r in driver.find_elements("css selector", "#incidents tr.row")
        ] == ["inc-d"]
        assert console_errors(driver) == []


def test_a_10000_event_report_stays_small_and_renders(tmp_path: Path) -> None:
    from timeline_fixtures import synthetic_events

    events = synthetic_events(10_000)
    kills = sum(1 for e in events if e["type"] == "oom_kill")
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    html = tmp_path / "report.html"
    assert main(["timeline", str(source), "--html", str(html)]) == 0
    assert html.stat().st_size < 2_000_000  # README states the size; compressed data keeps it small
    with browser() as driver:
        driver.get(html.as_uri())
        assert _wait(driver, lambda: _text(driver, "count-kills") == str(kills), timeout=30)
        assert _text(driver, "count-incidents") == str(kills)  # one incident per kill in this set
        assert len(driver.find_elements("css selector", "#incidents tr.row")) == 300  # one page of rows
        driver.find_element("id", "more").click()
        assert _wait(driver, lambda: len(driver.find_elements("css selector", "#incidents tr.row")) == 600)
        screenshot(driver, "timeline-report-10k.png")
        assert console_errors(driver) == []
