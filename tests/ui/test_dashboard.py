"""The dashboard against a live API: each page with AppTest, the whole app in Chromium.

The API is seeded once for the module (``conftest.seeded_api``); the empty-database and
unreachable-API cases come last, after the seeded ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, LiveServer, free_port
from tests.ui.browser import (
    CHART,
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    TIMEZONE,
    UNIT,
    assert_drawn_down,
    assert_utc_time_axis,
)
from tests.ui.conftest import SeededApi
from tests.ui.seed import HORIZON, STEP_SECONDS

MODELS = {"liquid", "incremental", "persistence", "seasonal", "hybrid"}


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


def datasets(chart: object) -> dict[str, pd.DataFrame]:
    """A drawn chart's data, as the browser receives it."""
    return {
        d.name: pa.ipc.open_stream(d.data.data).read_pandas()
        for d in chart.proto.datasets  # type: ignore[attr-defined]
    }


def column_labels(table: object) -> dict[str, str]:
    config = json.loads(table.proto.columns)  # type: ignore[attr-defined]
    return {k: v.get("label", k) for k, v in config.items()}


def test_overview(api_env: SeededApi) -> None:
    data = api_env.data
    at = page("overview").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: overview"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["links"] == str(len(data.links) + 1)  # the stray link counts
    assert metrics["down"] == str(len(data.failed))
    assert metrics["reporting"] == str(len(data.links) - len(data.failed))
    assert metrics["stale or no data"] == "1"
    drawn = charts(at)
    assert len(drawn) == 2  # utilisation now, forecast peak
    assert "utilisation_now" in spec(drawn[0]) and "utilisation_peak" in spec(drawn[1])
    for chart in drawn:
        rows = pd.concat([d for d in datasets(chart).values() if "link" in d.columns])
        status = rows.drop_duplicates("link").set_index("link")["status"]
        assert set(status[list(data.failed)]) == {"down"}  # not green at 0 %
        assert status[data.stray] == "no data"
        down = rows[rows["status"] == "down"]
        assert down[["utilisation_now", "utilisation_peak"]].isna().all().all()
        assert set(down["utilisation"]) == {"–"}
        assert "strokeDash" in chart.proto.spec and "#111111" in chart.proto.spec
        util = [
            layer["encoding"]["color"]["scale"]
            for layer in json.loads(chart.proto.spec)["layer"]
            if "utilisation" in str(layer.get("encoding", {}).get("color", {}).get("field"))
        ]
        assert util and max(util[0]["domain"]) > 1 and util[0]["clamp"]  # past 100 %
    silent = at.dataframe[0].value.set_index("link")["status"].to_dict()
    assert silent == {**dict.fromkeys(data.failed, "down"), data.stray: "no data"}
    board = at.dataframe[-1]
    assert set(board.value["model"]) == MODELS and board.value["scored"].gt(0).all()
    labels = column_labels(board)
    assert UNIT.search(labels["mae_bps"]) and UNIT.search(labels["rmse_bps"]), labels


def test_stray_node_keeps_the_map() -> None:
    """A node without coordinates lands beside the geographic map, not on another scale."""
    from ui import transforms

    geo = [
        {"src": "A", "dst": "B", "labels": {"src_pos": [-120.0, 35.0], "dst_pos": [-75.0, 40.0]}}
    ]
    pos = transforms.node_positions([*geo, {"src": "X", "dst": "Y", "labels": {}}])
    assert pos["A"] == (-120.0, 35.0) and pos["B"] == (-75.0, 40.0)
    for node in ("X", "Y"):
        x, y = pos[node]
        assert -125 <= x <= -70 and 25 <= y <= 45, (node, x, y)


def test_link_opens_on_a_link_with_data(api_env: SeededApi) -> None:
    at = page("link").run()
    no_problem(at)
    opened = at.selectbox(key="link").value
    assert opened != api_env.data.stray and opened not in api_env.data.failed
    firing = httpx.get(
        f"{api_env.url}/api/v1/alerts",
        params={"state": "firing"},
        headers={"Authorization": f"Bearer {api_env.tokens['read']}"},
    ).json()["data"]
    assert opened in {n for a in firing for n in a["links"]}  # reporting, with firing alerts
    assert at.query_params["link"] == opened


def test_link_named_in_the_url_that_does_not_exist_is_said_not_swapped_silently(
    api_env: SeededApi,
) -> None:
    at = page("link")
    at.query_params["link"] = "Nowhere>Else"
    at.run()
    no_problem(at)
    opened = at.selectbox(key="link").value
    assert opened in api_env.data.links
    (warning,) = [w.value for w in at.warning if "No link named" in w.value]
    assert "`Nowhere>Else`" in warning  # as typed, in a code span
    assert f"showing {opened}" in warning
    assert not [w for w in page("link").run().warning if "No link named" in w.value]
    # a shared URL's text is shown as text, in a code span: never Markdown of its own
    # (the browser test checks that no link is drawn)
    at = page("link")
    at.query_params["link"] = "[docs](http://evil.example) `x`"
    at.run()
    (warning,) = [w.value for w in at.warning if "No link named" in w.value]
    assert "No link named `` [docs](http://evil.example) `x` `` is registered" in warning


def test_link_shows_forecasts_events_and_capacity(api_env: SeededApi) -> None:
    failed = api_env.data.failed[0]
    at = page("link").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: link"
    assert set(at.selectbox(key="link").options) == {*api_env.data.links, api_env.data.stray}
    at.selectbox(key="link").set_value(failed)
    at.multiselect(key="models").set_value(["liquid", "incremental", "hybrid"])
    at.selectbox(key="lead").set_value(3)
    at.run()
    no_problem(at)
    (chart,) = charts(at)
    drawn = json.loads(chart.proto.spec)
    text = chart.proto.spec
    for field in ("value_bps", "lower", "upper", "capacity", "start"):
        assert field in text, field
    assert UNIT.search(text)  # the load axis names its unit
    assert "~s" not in text  # no bare SI suffixes ("180M") on the axis
    assert "utcFormat" in text and "%H:%M" in text  # 24-hour UTC time
    # the default window: 60 grid steps back, the horizon ahead
    domain = next(
        layer["encoding"]["x"]["scale"]["domain"]
        for layer in drawn["layer"]
        if "scale" in layer.get("encoding", {}).get("x", {})
    )
    span = pd.Timestamp(domain[1]) - pd.Timestamp(domain[0])
    assert span == pd.Timedelta(seconds=(60 + HORIZON) * STEP_SECONDS)
    bands = pd.concat([d for d in datasets(chart).values() if "kind" in d.columns and "end" in d])
    assert {"failure", "reroute"} <= set(bands["kind"])
    assert (pd.to_datetime(bands["end"]) > pd.to_datetime(bands["start"])).all()  # no zero width
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["status"] == "down" and metrics["capacity"].endswith("bit/s")
    assert metrics["utilisation"] == "–"  # a failed link is not 0 % utilised
    assert any("is down" in w.value for w in at.warning)


def test_link_lists_open_alerts_of_every_kind(api_env: SeededApi) -> None:
    """A capacity alert still firing is listed on its link's page, whatever its onset
    and the window (the default 60 steps here)."""
    read = {"Authorization": f"Bearer {api_env.tokens['read']}"}
    alerts = httpx.get(
        f"{api_env.url}/api/v1/alerts", params={"kind": "capacity", "state": "firing"}, headers=read
    ).json()["data"]
    name = alerts[0]["link"]
    at = page("link")
    at.query_params["link"] = name
    at.run()
    no_problem(at)
    listed = at.dataframe[0].value
    firing = listed[(listed["kind"] == "capacity") & (listed["state"] == "firing")]
    assert len(firing) == 1
    assert firing["magnitude"].str.endswith("% of capacity").all()


def test_link_marks_quarantined_samples(api_env: SeededApi) -> None:
    """A sample above the line rate is drawn as a grey x, not on the actual line, and
    does not stretch the load axis (1e14 bit/s would flatten the real load)."""
    name, ts = api_env.data.quarantined
    at = page("link")
    at.query_params["link"] = name
    at.run()
    no_problem(at)
    (chart,) = charts(at)
    frames = datasets(chart).values()
    (marked,) = [d for d in frames if "drawn_at" in d.columns]
    assert list(marked["quality"]) == ["over_line_rate"]
    assert pd.Timestamp(marked["ts"].iloc[0]) == pd.Timestamp(ts)
    (actual,) = [d for d in frames if "series" in d.columns]
    assert (actual["quality"] == "ok").all()
    top = actual["value_bps"].max()
    assert marked["drawn_at"].iloc[0] <= 2 * top < marked["value_bps"].iloc[0]  # at the top
    assert any("Grey x: quarantined samples" in c.value for c in at.caption)


def test_link_view_is_in_the_url(api_env: SeededApi) -> None:
    """A URL pasted into a ticket opens the same view, and the view writes its URL."""
    name = api_env.data.links[3]
    at = page("link")
    for key, value in {
        "link": name,
        "models": "liquid,persistence",
        "back": "240",
        "ahead": "0",
        "step": "3",
    }.items():
        at.query_params[key] = value
    at.run()
    no_problem(at)
    assert at.selectbox(key="link").value == name
    assert at.multiselect(key="models").value == ["liquid", "persistence"]
    assert at.selectbox(key="back").value == 240 and at.selectbox(key="ahead").value == 0
    assert at.selectbox(key="lead").value == 3
    other = api_env.data.links[4]
    at.selectbox(key="link").set_value(other).run()
    at.selectbox(key="back").set_value(1440).run()
    assert at.query_params["link"] == other and at.query_params["back"] == "1440"
    assert at.query_params["models"] == "liquid,persistence"
    at = page("link")
    at.query_params["link"] = "no-such-link"
    at.query_params["back"] = "banana"
    at.run()
    no_problem(at)  # a stale or mangled URL falls back to defaults, never an error
    assert at.selectbox(key="back").value == 60


def test_failures_align_errors_at_the_failure(api_env: SeededApi) -> None:
    at = page("failures").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: failures"
    drawn = charts(at)
    assert len(drawn) == 1  # one failure: drawn once, not once more as "all together"
    assert all("ape_percent" in spec(c) for c in drawn)  # error in % of the current load
    ttc = at.dataframe[-1].value
    assert set(ttc["model"]) == MODELS
    assert ttc["ttc_steps"].ne("–").any()
    assert ttc[["ttc_steps", "ttc_minutes"]].notna().all().all()  # "–", never "None"
    assert {"ttc_minutes", "converged", "not_converged", "pending"} <= set(ttc.columns)
    assert (
        (ttc["converged"] + ttc["not_converged"] + ttc["pending"] + ttc["no_baseline"])
        .eq(ttc["events"])
        .all()
    )
    assert any(api_env.data.failed[0] in opt for opt in at.selectbox(key="event").options)
    at.multiselect(key="kinds").set_value(["failure", "reroute", "maintenance"]).run()
    no_problem(at)
    assert len(at.selectbox(key="event").options) == 3
    assert "All 3 events together" in [h.value for h in at.subheader]
    assert len(charts(at)) == 2
    chosen = at.selectbox(key="event").options[2]
    at.selectbox(key="event").set_value(chosen).run()
    shared = dict(at.query_params)
    assert shared["kinds"] == "failure,reroute,maintenance" and shared["before"] == "30"
    again = page("failures")
    for key, value in shared.items():
        again.query_params[key] = value
    again.run()
    no_problem(again)  # the shared URL opens the same event
    assert again.selectbox(key="event").value == chosen
    assert again.multiselect(key="kinds").value == ["failure", "reroute", "maintenance"]


def test_link_without_data(api_env: SeededApi) -> None:
    at = page("link")
    at.query_params["link"] = api_env.data.stray
    at.run()
    no_problem(at)
    assert {m.label: m.value for m in at.metric}["status"] == "no data"
    assert any("never reported" in w.value for w in at.warning)
    assert not charts(at)  # no grey block of forecasts for a link that never reported


def test_alerts_filter(api_env: SeededApi) -> None:
    at = page("alerts").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: alerts"
    at.multiselect(key="states").set_value(["pending", "firing", "resolved"]).run()
    no_problem(at)
    table = at.dataframe[0]
    rows = table.value
    assert len(rows) > 0
    assert set(rows["link"]) & set(api_env.data.links)
    failure = rows[rows["kind"] == "failure"].iloc[0]
    assert failure["model"] == "–" and failure["magnitude"].endswith("%")
    assert (rows["part_of"] == f"#{failure['id']}").any()  # its drift alerts, grouped under it
    assert rows["magnitude"].str.contains("%").all()
    config = json.loads(table.proto.columns)
    assert config["message"].get("width") == "large"
    assert list(table.proto.column_order)[:3] == ["state", "kind", "message"]  # read first
    assert "UTC" in column_labels(table)["onset"]
    at.multiselect(key="kinds").set_value(["capacity"]).run()
    assert set(at.dataframe[0].value["kind"]) == {"capacity"}
    assert at.query_params["kinds"] == "capacity"
    assert at.dataframe[0].value["magnitude"].str.endswith("% of capacity").all()
    at.text_input(key="link").set_value("no-such-link").run()
    no_problem(at)
    assert "No alerts naming no-such-link." in [i.value for i in at.info]
    assert at.query_params["link"] == "no-such-link"


def test_models(api_env: SeededApi) -> None:
    at = page("models").run()
    no_problem(at)
    assert at.title[0].value == "linkcast: models"
    table = at.dataframe[0]
    rows = table.value.set_index("name")
    assert set(rows.index) == MODELS
    assert rows.loc["incremental", "retrains"] == 1  # the seed retrained it once
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows.loc["incremental", "last_retrain"])
    assert rows.loc["liquid", "last_retrain"] == "never (adapts online)"
    assert "None" not in set(rows["last_retrain"])
    assert rows["version"].notna().all()
    labels = column_labels(table)
    assert UNIT.search(labels["rmse_bps"]) and UNIT.search(labels["mae_bps"]), labels
    (chart,) = charts(at)
    assert UNIT.search(chart.proto.spec)


def test_router(api_env: SeededApi) -> None:
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=60).run()
    no_problem(at)
    assert at.title[0].value == "linkcast: overview"


# --- the whole app in a real headless Chromium ---------------------------------------------


@pytest.fixture
def dashboard(seeded_api: SeededApi) -> Iterator[str]:
    """The dashboard as ``linkcast up`` and ``linkcast ui`` start it."""
    from linkcast.up import streamlit_command

    port = free_port()
    env = os.environ | {
        "LINKCAST_API_URL": seeded_api.url,
        "LINKCAST_TOKEN": seeded_api.tokens["read"],
    }
    cmd = [*streamlit_command("127.0.0.1", port), "--server.fileWatcherType=none"]
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
    """Every page of the seeded dashboard after its failure, in Chromium, in a time zone
    far from UTC (so a local-time axis would show): units, the 24-hour UTC axis, the down
    link's style, a re-route band with width, the URL round trip, one screenshot a page."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data = seeded_api.data
    chart = CHART

    def shoot(page, name: str) -> None:  # noqa: ANN001
        page.wait_for_timeout(500)  # let the charts finish drawing
        page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
        shutil.copy(tmp_path / f"{name}.png", SCREENSHOTS / f"seeded-{name}.png")

    def heading(page, title: str) -> None:  # noqa: ANN001
        expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=30_000)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, timezone_id=TIMEZONE
            )
            page = context.new_page()
            page.goto(dashboard, wait_until="domcontentloaded")
            heading(page, "linkcast: overview")
            expect(page.locator(chart)).to_have_count(2, timeout=30_000)
            expect(page.get_by_text("Models by recent error")).to_be_visible()
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert_drawn_down(page, data.failed)  # dashed and black, not green at 0 %
            shoot(page, "overview")

            page.get_by_role("link", name="Link", exact=True).click()
            heading(page, "linkcast: link")
            expect(page.locator(chart)).to_have_count(1, timeout=30_000)
            failed = data.failed[0]
            view = f"link={quote(failed, safe='')}&models=liquid%2Chybrid&back=60&ahead=12&step=1"
            page.goto(f"{dashboard}/link?{view}")
            heading(page, "linkcast: link")
            expect(page.locator(chart)).to_have_count(1, timeout=30_000)
            expect(page.get_by_role("combobox", name="Link")).to_have_value(failed)
            assert_utc_time_axis(page)
            band = page.locator(f'{chart} [aria-label*="kind: reroute"]').first
            box = band.bounding_box()
            assert box is not None and box["width"] > 2, box
            assert "status" in page.get_by_test_id("stMetric").first.inner_text()
            expect(page.get_by_text(f"{failed} is down")).to_be_visible()
            shoot(page, "link")
            # a link name from a shared URL is text: an address in it is drawn as no link
            page.goto(f"{dashboard}/link?link={quote('https://evil.example/x :fire:', safe='')}")
            heading(page, "linkcast: link")
            warning = page.get_by_test_id("stAlert").filter(has_text="No link named")
            expect(warning).to_contain_text("https://evil.example/x :fire:", timeout=30_000)
            assert warning.locator("a").count() == 0
            page.goto(f"{dashboard}/link?{view}")
            heading(page, "linkcast: link")
            # the view writes itself back into the URL
            page.get_by_role("combobox", name="Link").click()
            other = data.links[4]
            page.get_by_role("option", name=other, exact=True).click()
            page.wait_for_url(lambda u: f"link={quote(other, safe='')}" in u, timeout=30_000)
            assert "models=liquid%2Chybrid" in page.url or "models=liquid,hybrid" in page.url

            for title, name, charts_drawn in (
                ("Failures", "failures", 1),
                ("Alerts", "alerts", 0),
                ("Models", "models", 1),
            ):
                page.get_by_role("link", name=title, exact=True).click()
                heading(page, f"linkcast: {name}")
                expect(page.locator(chart)).to_have_count(charts_drawn, timeout=30_000)
                expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=30_000)
                assert not page.locator('[data-testid="stException"]').count(), name
                shoot(page, name)
            models_text = page.locator(f"{chart} .role-axis-title text").all_text_contents()
            assert any(UNIT.search(t) for t in models_text), models_text
        finally:
            browser.close()
    for name in ("overview", "link", "failures", "alerts", "models"):
        assert (SCREENSHOTS / f"seeded-{name}.png").stat().st_size > 10_000, name


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


def test_a_failure_of_one_direction_shows_the_link_back_down_too(
    live_api: LiveServer,
    tokens: dict[str, str],
    monkeypatch,  # noqa: ANN001
) -> None:
    """A failure posted on A>B holds B>A down with it (as the IGP, the engine and
    what-if take it): the overview says so, and B>C stays up."""
    monkeypatch.setenv("LINKCAST_API_URL", live_api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", tokens["read"])
    now = datetime.now(UTC).replace(microsecond=0)
    samples = [
        {"link": n, "ts": (now - timedelta(seconds=60 * k)).isoformat(), "value": 1e6}
        for n in ("A>B", "B>A", "B>C")
        for k in range(3)
    ]
    h = {"Authorization": f"Bearer {tokens['write']}"}
    r = httpx.post(f"{live_api.url}/api/v1/telemetry", json={"samples": samples}, headers=h)
    assert r.status_code == 200, r.text
    event = {"kind": "failure", "links": ["A>B"], "ts": now.isoformat()}
    r = httpx.post(f"{live_api.url}/api/v1/events", json=event, headers=h)
    assert r.status_code == 201, r.text
    at = page("overview").run()
    no_problem(at)
    assert {m.label: m.value for m in at.metric}["down"] == "2"
    status = at.dataframe[0].value.set_index("link")["status"].to_dict()
    assert status == {"A>B": "down", "B>A": "down"}  # the table of links not up


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
