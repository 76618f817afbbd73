"""The What if page against a live API: a triangle whose re-routes are known by hand.

Three nodes, six directed links, routing by hop count: every demand takes its direct
link, so the demands behind the forecasts are the forecast loads themselves and a
failure's effect is simple arithmetic. Cutting the A-B cable (A>B and B>A) moves A>B's
load (up to 900 Mbit/s) onto A>C (1 Gbit/s, 400 Mbit/s of its own) and C>B (350 Mbit/s):
A>C peaks at 130 % and C>B at 125 %, the worst cut by far (the other two reach 65 %).
Cutting both of A's cables leaves A's demands without a path: 900 + 400 Mbit/s out of A
and 300 + 200 Mbit/s into it, 1.80 Gbit/s at the horizon's last step.

Links are registered and samples pushed over REST; the forecasts the engine would store
are inserted as rows (the engine's output is not what is tested here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Engine, select, text
from streamlit.testing.v1 import AppTest

from db.models import Forecast, Link
from db.queries import create_token
from db.session import make_sessionmaker, session_scope
from linkcast.settings import Settings
from tests.conftest import ROOT, LiveServer, _tables, free_port
from tests.procs import http_ok, stop_process, wait_for
from tests.ui.browser import (
    CHART,
    CHROMIUM,
    CHROMIUM_ARGS,
    CLOCK,
    SCREENSHOTS,
    TIMEZONE,
    UNIT,
)

STEP_SECONDS = 60
HORIZON = 12
HISTORY = 30  # steps of samples before the forecasts' issue
G, M = 1e9, 1e6
#: name: (capacity in bit/s, forecast load at the first and the last horizon step)
TRIANGLE = {
    "A>B": (2 * G, 700 * M, 900 * M),
    "A>C": (1 * G, 400 * M, 400 * M),
    "B>A": (1 * G, 300 * M, 300 * M),
    "B>C": (1 * G, 250 * M, 250 * M),
    "C>A": (1 * G, 200 * M, 200 * M),
    "C>B": (1 * G, 350 * M, 350 * M),
}
POSITIONS = {"A": [-100.0, 40.0], "B": [-80.0, 40.0], "C": [-90.0, 30.0]}
UNKNOWN = "nowhere>never"


def ramp(first: float, last: float) -> list[float]:
    return [first + (last - first) * h / (HORIZON - 1) for h in range(HORIZON)]


@dataclass
class Api:
    url: str
    token: str
    issued_at: datetime

    def get(self, path: str, **params: str | float | list[str]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def api(
    database_url: str, db_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    with db_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_tables(db_engine))} RESTART IDENTITY CASCADE"))
    sessions = make_sessionmaker(db_engine)
    with session_scope(sessions) as session:
        tokens = {s: create_token(session=session, scope=s).token for s in ("read", "admin")}
    settings = Settings(
        database_url=database_url,
        data_dir=Path(tmp_path_factory.mktemp("whatif-data")),
        step_seconds=STEP_SECONDS,
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with LiveServer(settings) as server:
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        with httpx.Client(base_url=server.url, headers=admin, timeout=30) as http:
            for name, (capacity, _, _) in TRIANGLE.items():
                src, dst = name.split(">")
                (src_lon, src_lat), (dst_lon, dst_lat) = POSITIONS[src], POSITIONS[dst]
                labels = {"src_lon": src_lon, "src_lat": src_lat}
                labels |= {"dst_lon": dst_lon, "dst_lat": dst_lat}
                body = {"name": name, "capacity_bps": capacity, "labels": labels}
                http.post("/api/v1/links", json=body).raise_for_status()
            samples = [
                {
                    "link": name,
                    "ts": (now - timedelta(seconds=STEP_SECONDS * k)).isoformat(),
                    "value": first,
                }
                for k in range(1, HISTORY + 1)
                for name, (_, first, _) in TRIANGLE.items()
            ]
            http.post("/api/v1/telemetry", json={"samples": samples}).raise_for_status()
        with session_scope(sessions) as session:
            ids = {name: id_ for name, id_ in session.execute(select(Link.name, Link.id))}
            for name, (_, first, last) in TRIANGLE.items():
                values = ramp(first, last)
                session.add(
                    Forecast(
                        link_id=ids[name],
                        model="hybrid",
                        issued_at=now,
                        step_seconds=STEP_SECONDS,
                        value_bps=values,
                        lower_bps=[0.9 * v for v in values],
                        upper_bps=[1.1 * v for v in values],
                    )
                )
        yield Api(server.url, tokens["read"], now)


@pytest.fixture
def api_env(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("LINKCAST_API_URL", api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", api.token)
    return api


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def page(**query: str | list[str]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "whatif.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def no_problem(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def grid(at: AppTest, first_column: str):  # noqa: ANN201 (streamlit's Dataframe element)
    """The first table whose first column is ``first_column`` (the overloaded links come
    before the expander listing every link)."""
    return next(d for d in at.dataframe if list(d.value.columns)[:1] == [first_column])


def drawn_links(chart: object) -> pd.DataFrame:
    """A map's links as the browser receives them, by name."""
    frames = [
        pa.ipc.open_stream(d.data.data).read_pandas()
        for d in chart.proto.datasets  # type: ignore[attr-defined]
    ]
    rows = pd.concat([f for f in frames if "link" in f.columns])
    return rows.drop_duplicates("link").set_index("link").sort_index()


def table(at: AppTest, first_column: str) -> pd.DataFrame:
    return grid(at, first_column).value


def test_failure_overloads_the_links_the_api_names(api_env: Api) -> None:
    at = page(fail="A>B")
    no_problem(at)
    assert at.title[0].value == "linkcast: what if"
    assert at.multiselect(key="fail").value == ["A>B"]
    answer = api_env.get("/api/v1/whatif", fail="A>B").json()
    assert answer["overloaded"][:2] == ["A>C", "C>B"]  # the triangle's arithmetic
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["would overload"] == str(len(answer["overloaded"]))
    assert metrics["worst peak utilisation"] == "130 %"
    listed = table(at, "link")
    assert list(listed["link"]) == answer["overloaded"]  # worst first, as the API ranks
    peak = {r["link"]: r["peak_utilisation"] for r in answer["links"]}
    assert listed["peak_percent"].tolist() == pytest.approx([100 * peak[n] for n in listed["link"]])
    # loads in one unit named in the column label: 1.3 Gbit/s on A>C, with 400 Mbit/s without
    assert "peak load (Gbit/s)" in grid(at, "link").proto.columns
    row = listed.set_index("link").loc["A>C"]
    assert row["peak_bps"] == pytest.approx(1.3, rel=0.01)
    assert row["baseline_peak_bps"] == pytest.approx(0.4, rel=0.01)
    assert row["capacity_bps"] == pytest.approx(1.0)
    assert pd.Timestamp(row["at"]) == pd.Timestamp(answer["times"][-1])  # the ramp's top
    (base_map, whatif_map) = [
        c for c in at.get("vega_lite_chart") if "utilisation_" in c.proto.spec
    ]
    assert (
        "utilisation_base" in base_map.proto.spec and "utilisation_whatif" in whatif_map.proto.spec
    )
    assert not at.info  # no "no forecasts", no unroutable demand
    assert not any("Unroutable" in e.value for e in at.error)


def test_view_is_in_the_url(api_env: Api) -> None:
    """One direction only (cable=0) at 60 %: C>B's 350 Mbit/s go C>A>B, so A>B reaches
    1.25 of its 2 Gbit/s (62.5 %) and nothing else passes 60 %."""
    at = page(fail="C>B", cable="0", model="hybrid", threshold="60")
    no_problem(at)
    assert at.multiselect(key="fail").value == ["C>B"]
    assert at.toggle(key="cable").value is False
    assert at.number_input(key="threshold").value == 60
    answer = api_env.get("/api/v1/whatif", fail="C>B", cable="false", threshold=0.6).json()
    assert answer["overloaded"] == ["A>B"]
    assert list(table(at, "link")["link"]) == ["A>B"]
    at.multiselect(key="fail").set_value(["A>C"]).run()
    no_problem(at)
    assert at.query_params["fail"] in (["A>C"], "A>C")
    assert at.query_params["threshold"] == "60" and at.query_params["model"] == "hybrid"
    assert at.query_params["cable"] == "0"
    at.multiselect(key="fail").set_value([]).run()
    no_problem(at)
    assert "fail" not in at.query_params
    assert any("Choose links to fail" in i.value for i in at.info)


def test_n1_table_lists_the_worst_cut_first(api_env: Api) -> None:
    at = page()
    no_problem(at)
    risk = api_env.get("/api/v1/risk").json()
    n1 = table(at, "cut")
    assert list(n1["cut"]) == [", ".join(s["failed"]) for s in risk["scenarios"]]
    assert set(n1["cut"].iloc[0].split(", ")) == {"A>B", "B>A"}  # one cable, both ways
    assert n1["worst_link"].iloc[0] == "A>C"
    assert n1["worst_utilisation"].iloc[0] == "130 %"
    percents = [float(v.removesuffix(" %")) for v in n1["worst_utilisation"] if v != "–"]
    assert percents == sorted(percents, reverse=True) and percents[1] < 100
    assert pd.Timestamp(n1["worst_time"].iloc[0]) == pd.Timestamp(
        risk["scenarios"][0]["worst_time"]
    )
    assert UNIT.search(grid(at, "cut").proto.columns)  # unroutable demand in bit/s units
    said = [c.value for c in at.caption if "cables scanned" in c.value]
    assert said and said[0].startswith(f"{risk['scanned']} cables scanned (every one not down")
    assert risk["scanned"] == 3 and "shown" not in said[0]  # all three fit under the limit


def test_partition_shows_unroutable_demand(api_env: Api) -> None:
    at = page(fail=["A>B", "A>C"])
    assert not at.exception
    answer = api_env.get("/api/v1/whatif", fail=["A>B", "A>C"]).json()
    assert max(answer["unroutable_bps"]) > 0
    (alarm,) = [e.value for e in at.error]
    assert alarm.startswith("**Unroutable demand.**") and "disconnects the network" in alarm
    assert re.search(r"up to [\d.]+ (k|M|G|T)?bit/s of forecast demand", alarm), alarm
    pairs = table(at, "src")
    assert set(zip(pairs["src"], pairs["dst"], strict=True)) == {
        (p["src"], p["dst"]) for p in answer["unroutable_pairs"]
    }
    assert {m.label: m.value for m in at.metric}["unroutable demand (peak)"].endswith("bit/s")


def test_unknown_link_shows_the_apis_message(api_env: Api) -> None:
    at = page(fail=["A>B", UNKNOWN])
    assert not at.exception
    response = api_env.get("/api/v1/whatif", fail=["A>B", UNKNOWN])
    assert response.status_code in (404, 422), response.text
    detail = response.json()["detail"]
    assert UNKNOWN in str(detail)
    (refusal,) = [e.value for e in at.error]
    assert refusal.startswith("**The API refused the what-if.**") and UNKNOWN in refusal
    assert at.multiselect(key="fail").value == ["A>B", UNKNOWN]  # kept, so it can be removed
    n1 = table(at, "cut")  # the rest of the page still answers
    assert "A>B" in n1["cut"].iloc[0]


def test_unreachable_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKCAST_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LINKCAST_TOKEN", "lc_whatever")
    at = page(fail="A>B")
    assert not at.exception
    assert "The linkcast API is unreachable" in at.error[0].value


# --- in Chromium --------------------------------------------------------------------------


@pytest.fixture
def dashboard(api: Api) -> Iterator[str]:
    """The dashboard as ``linkcast ui`` starts it, reading the seeded API."""
    from linkcast.up import streamlit_command

    port = free_port()
    env = os.environ | {"LINKCAST_API_URL": api.url, "LINKCAST_TOKEN": api.token}
    cmd = [*streamlit_command("127.0.0.1", port), "--server.fileWatcherType=none"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the dashboard", lambda: proc.poll() is not None or http_ok(f"{url}/_stcore/health")
        )
        assert proc.poll() is None, "streamlit exited"
        yield url
    finally:
        stop_process(proc, grace=10)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser(dashboard: str, api: Api, tmp_path: Path) -> None:
    """Choosing a link in the page draws it failed on the map and lists the link that
    would overload; the URL keeps the choice; an unknown link in the URL shows the API's
    message, not a traceback."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, timezone_id=TIMEZONE
            )
            page = context.new_page()
            page.goto(dashboard, wait_until="domcontentloaded")
            page.get_by_role("link", name="What if", exact=True).click()
            expect(page.get_by_role("heading", name="linkcast: what if")).to_be_visible(
                timeout=30_000
            )
            expect(page.get_by_text("Choose links to fail above")).to_be_visible(timeout=30_000)
            page.get_by_role("combobox", name="Links to fail").click()
            page.get_by_role("option", name="A>B", exact=True).click()
            page.keyboard.press("Escape")
            page.wait_for_url(lambda u: f"fail={quote('A>B', safe='')}" in u, timeout=30_000)
            # two maps (as things are, with the failure) and the utilisation chart
            expect(page.locator(CHART)).to_have_count(3, timeout=30_000)
            for name in ("A>B", "B>A"):  # the cable: both directions
                failed = page.locator(f'{CHART} [aria-label*="link: {name}; status: failed"]')
                expect(failed).to_have_count(1, timeout=30_000)  # on the what-if map only
                assert failed.first.get_attribute("stroke") == "#111111", name
                assert failed.first.get_attribute("stroke-dasharray"), name
            hot = page.locator(
                f'{CHART} [aria-label*="link: A>C; status: up; peak with the failure: 1.30 Gbit/s"]'
            )
            expect(hot).to_have_count(1)
            assert "utilisation: 130" in str(hot.get_attribute("aria-label"))
            axis = page.locator(f"{CHART} .role-axis-label text").all_text_contents()
            times = [t for t in axis if ":" in t]  # the utilisation chart's, 24-hour UTC
            assert times and all(CLOCK.fullmatch(t) for t in times), axis
            hours = {t.split(" ")[-1][:2] for t in times}
            assert hours <= {
                f"{(api.issued_at + timedelta(minutes=m)).hour:02d}" for m in range(13)
            }
            legend = page.locator(f"{CHART} .role-legend-title text").all_text_contents()
            assert "utilisation" in legend and "out of service" in legend, legend
            expect(page.get_by_text("Links that would overload")).to_be_visible()
            # the tables' cells, as the grid renders them for assistive technology
            overloaded = page.get_by_test_id("stDataFrame").first
            expect(overloaded.get_by_test_id("glide-cell-0-0")).to_have_text("A>C", timeout=30_000)
            peak = overloaded.get_by_test_id("glide-cell-1-0").inner_text()  # the raw number
            assert float(peak) == pytest.approx(130, abs=0.1), peak
            expect(overloaded.get_by_text("peak utilisation (%)")).to_have_count(1)
            expect(overloaded.get_by_text("peak load (Gbit/s)")).to_have_count(1)
            n1 = page.get_by_test_id("stDataFrame").last
            expect(n1.get_by_test_id("glide-cell-0-0")).to_have_text("A>B, B>A")  # worst first
            expect(n1.get_by_test_id("glide-cell-1-0")).to_have_text("130 %")
            expect(n1.get_by_test_id("glide-cell-2-0")).to_have_text("A>C")
            assert not page.locator('[data-testid="stException"]').count()
            page.set_viewport_size({"width": 1400, "height": 1900})  # the whole page
            page.wait_for_timeout(1000)  # let the charts finish drawing
            page.screenshot(path=tmp_path / "whatif.png", full_page=True)
            shutil.copy(tmp_path / "whatif.png", SCREENSHOTS / "whatif.png")

            # both of A's cables cut: A's demands have no path, said in words and bit/s
            page.goto(f"{dashboard}/whatif?fail=A%3EB&fail=A%3EC")
            alarm = page.get_by_text("Unroutable demand.")
            expect(alarm).to_be_visible(timeout=30_000)
            expect(page.get_by_text("disconnects the network: up to 1.80 Gbit/s")).to_be_visible()
            expect(page.locator(CHART)).to_have_count(3, timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=SCREENSHOTS / "whatif-partition.png", full_page=True)
            page.goto(f"{dashboard}/whatif?fail={quote(UNKNOWN, safe='')}")
            expect(page.get_by_text("The API refused the what-if.")).to_be_visible(timeout=30_000)
            expect(page.get_by_text(UNKNOWN).first).to_be_visible()
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
    assert (SCREENSHOTS / "whatif.png").stat().st_size > 10_000


# --- last: no forecasts (this empties the forecast table) ----------------------------------


def test_no_forecasts_yet(api_env: Api, db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        conn.execute(text("TRUNCATE forecast"))
    at = page(fail="A>B")
    no_problem(at)
    infos = [i.value for i in at.info]
    assert len(infos) == 2 and all(i.startswith("**No forecasts yet**") for i in infos), infos
    assert api_env.get("/api/v1/whatif", fail="A>B").status_code == 409
