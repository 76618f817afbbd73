"""The dashboard against a live API: each page with AppTest, the whole app in Chromium.

The API is seeded once for the module (``conftest.seeded_api``); the empty-database and
unreachable-API cases come last, after the seeded ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, LiveServer, free_port
from tests.ui.conftest import SeededApi

MODELS = {"liquid", "incremental", "persistence", "seasonal", "hybrid"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "ui" / "pages" / f"{name}.py"), default_timeout=60)


@pytest.fixture
def api_env(seeded_api: SeededApi, monkeypatch: pytest.MonkeyPatch) -> SeededApi:
    monkeypatch.setenv("LINKCAST_API_URL", seeded_api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", seeded_api.tokens["read"])
    return seeded_api


def no_problem(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def spec(chart: object) -> str:
    return chart.proto.spec + json.dumps([d.name for d in chart.proto.datasets])  # type: ignore[attr-defined]


def test_overview(api_env: SeededApi) -> None:
    at = page("overview").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: overview"
    assert {m.label: m.value for m in at.metric}["links"] == str(len(api_env.data.links))
    drawn = charts(at)
    assert len(drawn) == 2  # utilisation now, forecast peak
    assert "utilisation_now" in spec(drawn[0]) and "utilisation_peak" in spec(drawn[1])
    board = at.dataframe[-1].value
    assert set(board["model"]) == MODELS and board["scored"].gt(0).all()


def test_link_shows_forecasts_events_and_capacity(api_env: SeededApi) -> None:
    failed = api_env.data.failed[0]
    at = page("link").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: link"
    assert set(at.selectbox(key="link").options) == set(api_env.data.links)
    at.selectbox(key="link").set_value(failed)
    at.multiselect(key="models").set_value(["liquid", "incremental", "hybrid"])
    at.number_input(key="horizon").set_value(3)
    at.run()
    no_problem(at)
    (chart,) = charts(at)
    drawn = chart.proto.spec
    for field in ("value_bps", "lower", "upper", "capacity_bps", "start"):
        assert field in drawn, field
    assert "failure" in drawn  # the failure as a shaded band
    assert at.metric[1].label == "capacity" and at.metric[1].value != "–"


def test_failures_align_errors_at_the_failure(api_env: SeededApi) -> None:
    at = page("failures").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: failures"
    drawn = charts(at)
    assert len(drawn) == 2  # all failures together, the chosen one
    assert all("ape_percent" in spec(c) for c in drawn)  # error in % of the current load
    ttc = at.dataframe[-1].value
    assert set(ttc["model"]) == MODELS
    assert ttc["ttc_steps"].notna().any()
    assert {"ttc_minutes", "converged", "not_converged", "pending"} <= set(ttc.columns)
    assert (
        (ttc["converged"] + ttc["not_converged"] + ttc["pending"] + ttc["no_baseline"])
        .eq(ttc["events"])
        .all()
    )
    assert any(api_env.data.failed[0] in opt for opt in at.selectbox(key="event").options)
    at.multiselect(key="kinds").set_value(["failure", "reroute", "maintenance"]).run()
    no_problem(at)
    assert len(at.selectbox(key="event").options) > 1


def test_alerts_filter(api_env: SeededApi) -> None:
    at = page("alerts").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: alerts"
    at.multiselect(key="states").set_value(["pending", "firing", "resolved"]).run()
    no_problem(at)
    table = at.dataframe[0].value
    assert len(table) > 0
    assert set(table["link"]) & set(api_env.data.links)
    at.multiselect(key="kinds").set_value(["capacity"]).run()
    assert set(at.dataframe[0].value["kind"]) == {"capacity"}
    at.text_input(key="link").set_value("no-such-link").run()
    no_problem(at)
    assert "No alerts naming no-such-link." in [i.value for i in at.info]


def test_models(api_env: SeededApi) -> None:
    at = page("models").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: models"
    table = at.dataframe[0].value.set_index("name")
    assert set(table.index) == MODELS
    assert table.loc["incremental", "retrains"] == 1  # the seed retrained it once
    assert table["version"].notna().all()
    assert len(charts(at)) == 1


def test_router(api_env: SeededApi) -> None:
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=60).run()
    no_problem(at)
    assert at.title[0].value == "linkcast: overview"


# --- the whole app in a real headless Chromium ---------------------------------------------


@pytest.fixture
def dashboard(seeded_api: SeededApi) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "LINKCAST_API_URL": seeded_api.url,
        "LINKCAST_TOKEN": seeded_api.tokens["read"],
    }
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "ui" / "app.py"),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"streamlit did not start:\n{out[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser(dashboard: str, seeded_api: SeededApi, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = ROOT / "test-output" / "ui"
    shots.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str) -> None:  # noqa: ANN001
        page.wait_for_timeout(500)  # let the charts finish drawing
        page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
        shutil.copy(tmp_path / f"{name}.png", shots / f"{name}.png")

    chart = '[data-testid="stVegaLiteChart"] svg.marks'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(dashboard, wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="linkcast: overview")).to_be_visible(
                timeout=30_000
            )
            expect(page.locator(chart)).to_have_count(2, timeout=30_000)
            expect(page.get_by_text("Models by recent error")).to_be_visible()
            shoot(page, "overview")

            page.get_by_role("link", name="Link", exact=True).click()
            expect(page.get_by_role("heading", name="linkcast: link")).to_be_visible(timeout=30_000)
            expect(page.locator(chart)).to_have_count(1, timeout=30_000)
            failed = seeded_api.data.failed[0]
            page.goto(f"{dashboard}/link?link={quote(failed, safe='')}")
            expect(page.get_by_role("heading", name="linkcast: link")).to_be_visible(timeout=30_000)
            expect(page.locator(chart)).to_have_count(1, timeout=30_000)
            expect(page.get_by_role("combobox", name="Link")).to_have_value(failed)
            shoot(page, "link")

            page.get_by_role("link", name="Failures", exact=True).click()
            expect(page.get_by_role("heading", name="linkcast: failures")).to_be_visible(
                timeout=30_000
            )
            expect(page.locator(chart)).to_have_count(2, timeout=30_000)
            expect(page.get_by_text("All 1 event(s) together")).to_be_visible()
            shoot(page, "failures")
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
    assert (tmp_path / "failures.png").stat().st_size > 10_000


# --- no data, no API, no token (after the seeded tests: these empty the database) ------------


def test_empty_database(live_api: LiveServer, tokens: dict[str, str], monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LINKCAST_API_URL", live_api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", tokens["read"])
    for name in ("overview", "link"):
        at = page(name).run()
        no_problem(at)
        assert any("database is empty" in i.value for i in at.info), name
    at = page("failures").run()
    no_problem(at)
    assert any("No failure recorded yet" in i.value for i in at.info)
    at = page("alerts").run()
    no_problem(at)
    assert "No alerts yet." in [i.value for i in at.info]
    at = page("models").run()
    no_problem(at)
    assert any("not started" in i.value for i in at.info)


@pytest.mark.parametrize("name", ["overview", "link", "failures", "alerts", "models"])
def test_unreachable_api(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKCAST_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LINKCAST_TOKEN", "lc_whatever")
    at = page(name).run()
    assert not at.exception
    assert "The linkcast API is unreachable" in at.error[0].value


def test_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKCAST_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("LINKCAST_TOKEN", raising=False)
    at = page("overview").run()
    assert not at.exception
    assert "LINKCAST_TOKEN" in at.warning[0].value
    assert any("linkcast token create --scope read" in m.value for m in at.markdown)


def test_refused_token(seeded_api: SeededApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKCAST_API_URL", seeded_api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", "lc_not_a_token")
    at = page("alerts").run()
    assert not at.exception
    assert "refused the token" in at.error[0].value
