"""What the browser tests share: Debian's Chromium, and the checks an operator's eye makes
(units on loads, a 24-hour UTC time axis, a failed link drawn apart)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: Far from UTC, so an axis in the browser's local time would show.
TIMEZONE = "America/Los_Angeles"
SCREENSHOTS = ROOT / "test-output" / "ui"
CHART = '[data-testid="stVegaLiteChart"] svg.marks'
#: A load with its unit, as axis titles and column labels name it: ``load (Gbit/s)``.
UNIT = re.compile(r"\((k|M|G|T)?bit/s\)")
#: A 24-hour axis label: ``14:05`` or ``14:05:30``, with the date where it changes.
CLOCK = re.compile(r"(\d\d [A-Z][a-z]{2} )?\d\d:\d\d(:\d\d)?")


def assert_utc_time_axis(page: Any) -> None:
    """The chart's time axis reads 24-hour UTC (the page runs in :data:`TIMEZONE`)."""
    labels = page.locator(f"{CHART} .role-axis-label text").all_text_contents()
    times = [t for t in labels if ":" in t]
    assert times and all(CLOCK.fullmatch(t) for t in times), labels
    assert not any("AM" in t or "PM" in t for t in labels), labels
    titles = page.locator(f"{CHART} .role-axis-title text").all_text_contents()
    assert "time (UTC)" in titles and any(UNIT.search(t) for t in titles), titles
    now = datetime.now(UTC)
    hours = {t.split(" ")[-1][:2] for t in times}
    near = {f"{(now + timedelta(hours=h)).hour:02d}" for h in (-2, -1, 0, 1)}
    assert hours & near, (hours, near)  # UTC hours, not the browser's


def assert_drawn_down(page: Any, names: list[str] | tuple[str, ...]) -> None:
    """Each of ``names`` is drawn on both maps as down: black and dashed, never in a
    utilisation colour."""
    from playwright.sync_api import expect

    for name in names:
        half = page.locator(f'{CHART} [aria-label*="link: {name}; status: down"]')
        expect(half).to_have_count(2, timeout=30_000)  # one on each map
        for i in range(2):
            assert half.nth(i).get_attribute("stroke") == "#111111", name
            assert half.nth(i).get_attribute("stroke-dasharray"), name
