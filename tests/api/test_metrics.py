"""GET /metrics: counters that move by what pushes carried, gauges from the database,
uvicorn workers and the engine process merged in one scrape, and the real Prometheus
reading it.

The in-process app keeps its metrics in prometheus-client's default registry, shared by
every test of the run: the checks compare a scrape before and after.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from api.main import create_app
from engine import EngineConfig, LiveEngine
from engine.metrics import record_tick
from linkcast.metrics import metrics_root, remove_dead
from linkcast.settings import Settings
from tests.alertmanager import wait_for
from tests.conftest import auth, free_port
from tests.db_proxy import DbProxy
from tests.factories import sample, samples
from tests.prometheus import needs_prometheus, running_prometheus, scrape_error

URL = "/api/v1/telemetry"
ROOT = Path(__file__).resolve().parents[2]

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Scrape:
    """Every sample of a text exposition: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def scrape(client: TestClient | httpx.Client) -> Scrape:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version="), r.headers
    return parse(r.text)


def value(scraped: Scrape, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def metric(client: TestClient | httpx.Client, name: str, **labels: str) -> float:
    """The first sample of ``name`` whose labels include ``labels``, scraped now (0 when
    absent): a counter of one format and reason, whatever its other labels."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def latency_count(scraped: Scrape, status: int, route: str = URL, method: str = "POST") -> float:
    return value(
        scraped,
        "linkcast_http_request_duration_seconds_count",
        method=method,
        route=route,
        status=str(status),
    )


@pytest.fixture
def small_client(settings: Settings, clean_db: Engine) -> Iterator[TestClient]:
    """The app with small limits: 5 samples a batch, 4 KiB a body."""
    small = settings.model_copy(update={"max_batch_samples": 5, "max_body_bytes": 4096})
    with TestClient(create_app(small)) as c:
        yield c


def test_json_pushes_move_the_counters_by_what_they_carried(small_client, tokens):
    c, write = small_client, auth(tokens["write"])
    r = c.post(
        "/api/v1/links", json={"name": "q>r", "capacity_bps": 1e9}, headers=auth(tokens["admin"])
    )
    assert r.status_code in (200, 201), r.text
    before = scrape(c)

    good = [sample(link="q>r", value=5e9), *samples(n_links=3, n_steps=1)]  # q>r over line rate
    r = c.post(URL, json={"samples": good}, headers=write)
    assert r.json() == {"accepted": 4, "quarantined": 1}
    assert c.post(URL, content=b'{"samples": [', headers=write).status_code == 400
    bad_ts = [*samples(n_links=2, n_steps=1), sample(ts="yesterday")]
    assert c.post(URL, json={"samples": bad_ts}, headers=write).status_code == 422
    assert c.post(URL, json={"samples": samples(6, 1)}, headers=write).status_code == 413
    big = {"samples": samples(2, 1), "pad": "x" * 5000}  # over the body limit: not parsed
    assert c.post(URL, json=big, headers=write).status_code == 413
    assert c.post(URL, json={"samples": good}).status_code == 401
    assert c.post(URL, json={"samples": good}, headers=auth(tokens["read"])).status_code == 403
    after = scrape(c)

    def refused(reason: str) -> tuple[float, float]:
        labels = {"format": "json", "reason": reason}
        return (
            moved(before, after, "linkcast_push_requests_refused_total", **labels),
            moved(before, after, "linkcast_samples_refused_total", **labels),
        )

    assert moved(before, after, "linkcast_samples_accepted_total", format="json") == 4
    assert moved(before, after, "linkcast_samples_quarantined_total", format="json") == 1
    assert refused("malformed") == (1, 0)
    assert refused("invalid") == (1, 3)
    assert refused("too_large") == (2, 6)  # the body too big had uncounted samples
    assert refused("unauthorized") == (2, 0)  # no token, then a read token
    for status, n in ((200, 1), (400, 1), (401, 1), (403, 1), (413, 2), (422, 1)):
        assert latency_count(after, status) - latency_count(before, status) == n, status


def test_a_push_refused_for_an_unreachable_database_counts_and_the_scrape_still_answers(
    database_url, tokens, tmp_path
):
    proxy = DbProxy(database_url)
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path)
    body = {"samples": [sample(link="x>y")]}
    try:
        with TestClient(create_app(settings)) as c:
            assert c.post(URL, json=body, headers=auth(tokens["write"])).status_code == 200
            before = scrape(c)
            assert value(before, "linkcast_database_up") == 1
            proxy.stop()
            assert c.post(URL, json=body, headers=auth(tokens["write"])).status_code == 503
            after = scrape(c)  # the counters, without the database's gauges
    finally:
        proxy.stop()
    labels = {"format": "json", "reason": "unavailable"}
    assert moved(before, after, "linkcast_push_requests_refused_total", **labels) == 1
    assert value(after, "linkcast_database_up") == 0
    assert not any(name == "linkcast_alerts" for name, _ in after)


def test_latency_is_labelled_by_route_template_not_path(client, tokens):
    read = auth(tokens["read"])
    before = scrape(client)
    for name in ("a>b", "c>d", "e>f"):
        assert client.get(f"/api/v1/links/{name}/samples", headers=read).status_code in (200, 404)
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)
    routes = {dict(labels).get("route") for _, labels in after}
    assert "/api/v1/links/{link}/samples" in routes and "unmatched" in routes
    assert not any(r and (">" in r or r.startswith("/no/")) for r in routes)
    samples_route = "/api/v1/links/{link}/samples"
    got = sum(
        latency_count(after, s, samples_route, "GET")
        - latency_count(before, s, samples_route, "GET")
        for s in (200, 404)
    )
    assert got == 3
    # Not part of the REST API's schema, and no token needed (as exporters serve it).
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


T1 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def seed_forecasts(engine: Engine) -> None:
    """Links a (10 Gbit/s), b (no capacity), c (a capacity, no forecast); hybrid
    forecasts of two issues for a, one for b; other models' peaks higher; alerts."""
    rows = [
        ("a", "hybrid", T1 - timedelta(minutes=1), [1e9, 9e9, 2e9]),  # older issue
        ("a", "hybrid", T1, [3e9, 6e9, None, 4e9]),  # a gap: NULL, as the engine stores NaN
        ("a", "liquid", T1, [8e9, 8e9, 8e9]),
        ("b", "hybrid", T1, [1e9, 2e9, 1.5e9]),
        ("b", "seasonal", T1 + timedelta(minutes=1), [7e9]),
    ]
    with engine.begin() as conn:
        for name, capacity in (("a", 10e9), ("b", None), ("c", 1e9)):
            conn.execute(
                text("INSERT INTO link (name, capacity_bps) VALUES (:n, :c)"),
                {"n": name, "c": capacity},
            )
        for name, model, issued, values in rows:
            conn.execute(
                text(
                    "INSERT INTO forecast (link_id, model, issued_at, step_seconds, value_bps,"
                    " lower_bps, upper_bps) SELECT id, :m, :t, 60, :v, :v, :v FROM link"
                    " WHERE name = :n"
                ),
                {"n": name, "m": model, "t": issued, "v": values},
            )
        for kind, state in [("capacity", "firing")] * 2 + [
            ("drift", "pending"),
            ("failure", "resolved"),
        ]:
            conn.execute(
                text("INSERT INTO alert (kind, state, onset, message) VALUES (:k, :s, :t, 'x')"),
                {"k": kind, "s": state, "t": T1},
            )


def test_forecast_utilisation_load_and_alert_gauges_come_from_the_database(
    client, tokens, clean_db
):
    seed_forecasts(clean_db)
    # a's newest sample is implausible (quarantined at ingest): the load is the one before.
    push = [sample(link="a", ts=T1.isoformat(), value=5e9)]
    push.append(sample(link="a", ts=(T1 + timedelta(minutes=1)).isoformat(), value=1e14))
    r = client.post(URL, json={"samples": push}, headers=auth(tokens["write"]))
    assert r.json() == {"accepted": 2, "quarantined": 1}

    got = scrape(client)
    assert value(got, "linkcast_database_up") == 1
    peaks = {dict(k)["link"]: v for (n, k), v in got.items() if n == "linkcast_forecast_peak_bps"}
    assert peaks == {"a": pytest.approx(6e9), "b": pytest.approx(2e9)}  # the newest hybrid issue
    ratios = {
        dict(k)["link"]: v
        for (n, k), v in got.items()
        if n == "linkcast_forecast_utilization_ratio"
    }
    assert ratios == {"a": pytest.approx(0.6)}  # b has no capacity, c no forecast
    assert value(got, "linkcast_link_load_bps", link="a") == 5e9
    assert value(got, "linkcast_forecast_last_issued_timestamp_seconds") == T1.timestamp()
    alerts = {
        (dict(k)["kind"], dict(k)["state"]): v
        for (n, k), v in got.items()
        if n == "linkcast_alerts"
    }
    assert alerts == {
        (kind, state): 0.0
        for kind in ("drift", "failure", "capacity")
        for state in ("pending", "firing", "resolved")
    } | {("capacity", "firing"): 2.0, ("drift", "pending"): 1.0, ("failure", "resolved"): 1.0}


def test_engine_ticks_late_samples_and_their_metrics(client, tokens, settings):
    """A sample stored for a bucket the engine had processed is late: the tick says so
    and record_tick (what engine/run.py calls after each tick) counts it."""
    step, t0 = 60, datetime(2026, 1, 1, tzinfo=UTC)
    write = auth(tokens["write"])
    at = lambda k: (t0 + timedelta(seconds=step * k)).isoformat()  # noqa: E731
    batch = [
        sample(link=f"l{i}", ts=at(k), value=1e6 * (i + 1) + k) for k in range(10) for i in range(2)
    ]
    assert client.post(URL, json={"samples": batch}, headers=write).status_code == 200
    now = {"t": t0 + timedelta(seconds=step * 10 + 20)}
    engine = LiveEngine(
        settings.resolved_database_url,
        EngineConfig(step_seconds=step, horizon=3, season_steps=8),
        clock=lambda: now["t"],
    )
    before = scrape(client)
    try:
        assert engine.try_lead()
        first = engine.tick()
        record_tick(first)
        late = [sample(link="l2", ts=at(9), value=1e6)]  # bucket 9: processed already
        assert client.post(URL, json={"samples": late}, headers=write).status_code == 200
        now["t"] += timedelta(seconds=step)
        second = engine.tick()
        record_tick(second)
    finally:
        engine.release()
    assert (first.buckets, first.late_samples, second.buckets, second.late_samples) == (10, 0, 1, 1)
    after = scrape(client)
    assert moved(before, after, "linkcast_engine_late_samples_total") == 1
    assert moved(before, after, "linkcast_engine_buckets_processed_total") == 11
    assert moved(before, after, "linkcast_engine_tick_duration_seconds_count") == 2
    assert moved(before, after, "linkcast_engine_tick_duration_seconds_sum") == pytest.approx(
        first.seconds + second.seconds
    )


def test_a_tick_that_raises_is_counted_and_raised(client):
    """An engine job that fails (here: a bucket PostgreSQL refuses) is counted in
    linkcast_engine_tick_failures_total and its exception goes on (logged by the
    scheduler, retried at the next tick); one that works counts no failure."""
    from engine.metrics import failures_counted

    refused = psycopg.errors.NumericValueOutOfRange('"-5e-324" is out of range for type real')
    before = scrape(client)
    for _ in range(2):
        with pytest.raises(psycopg.errors.NumericValueOutOfRange), failures_counted():
            raise refused
    with failures_counted():
        pass
    after = scrape(client)
    assert moved(before, after, "linkcast_engine_tick_failures_total") == 2


def test_dead_processes_metric_folders_are_removed(tmp_path):
    root = metrics_root(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name in (f"api-{gone.pid}", f"engine-{os.getpid()}", "notes"):
        (root / name).mkdir(parents=True)
    assert remove_dead(root) == [root / f"api-{gone.pid}"]
    assert sorted(p.name for p in root.iterdir()) == [f"engine-{os.getpid()}", "notes"]


# --- real processes -------------------------------------------------------------------


def linkcast_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return env | {
        "LINKCAST_DATABASE_URL": database_url,
        "LINKCAST_DATA_DIR": str(data_dir),
        "LINKCAST_STEP_SECONDS": "1",  # the engine ticks every second
        "LINKCAST_LATE_SECONDS": "0.2",
        "LINKCAST_HORIZON": "3",
        "LINKCAST_SEASON_STEPS": "10",
    }


@contextmanager
def linkcast(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``linkcast ARGS`` as a real process, stopped with SIGTERM (its clean stop)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from linkcast.cli import main; main()", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fresh_get(url: str) -> httpx.Response:
    """A GET on a connection of its own, so any worker may take it."""
    with httpx.Client(timeout=10) as http:
        return http.get(url)


@pytest.mark.timeout(120)
def test_two_workers_and_the_engine_process_add_up_in_every_scrape(database_url, tokens, tmp_path):
    """`linkcast api --workers 2` and `linkcast engine` on one host: whichever worker
    answers, /metrics counts every worker's pushes and shows the engine's ticks."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = linkcast_env(database_url, tmp_path / "data")
    with (
        linkcast(
            "api", "--workers", "2", f"--port={port}", env=env, log=tmp_path / "api.log"
        ) as api,
        linkcast("engine", env=env, log=tmp_path / "engine.log") as engine,
    ):

        def api_ready() -> bool:
            assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            try:
                return fresh_get(f"{base}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the api", api_ready, timeout=60)
        folder = metrics_root(tmp_path / "data") / f"api-{api.pid}"
        assert folder.is_dir()

        def workers_with_counts() -> set[str]:
            return {f.stem.split("_")[-1] for f in folder.glob("counter_*.db")}

        # Push on fresh connections until both workers have stored some (the kernel
        # spreads connections over the workers that listen; the second may still start).
        pushed = requests = 0
        deadline = time.monotonic() + 60
        while len(workers_with_counts()) < 2:
            assert time.monotonic() < deadline, "one worker took every connection"
            time.sleep(0.05)
            now = datetime.now(UTC)
            batch = [
                sample(link=f"w{i}", ts=now.isoformat(), value=1e6 * (i + 1)) for i in range(3)
            ]
            with httpx.Client(timeout=10, headers=auth(tokens["write"])) as http:
                assert http.post(f"{base}{URL}", json={"samples": batch}).status_code == 200
            pushed, requests = pushed + len(batch), requests + 1
        for _ in range(6):
            got = parse(fresh_get(f"{base}/metrics").text)
            assert value(got, "linkcast_samples_accepted_total", format="json") == pushed
            assert latency_count(got, 200) == requests

        def engine_ticked() -> Scrape | None:
            assert engine.poll() is None, (tmp_path / "engine.log").read_text()[-3000:]
            got = parse(fresh_get(f"{base}/metrics").text)
            return got if value(got, "linkcast_engine_tick_duration_seconds_count") > 0 else None

        got = wait_for("an engine tick in the API's /metrics", engine_ticked, timeout=60)
        assert value(got, "linkcast_engine_buckets_processed_total") >= 1
        assert value(got, "linkcast_engine_last_tick_timestamp_seconds") > time.time() - 60
        assert {f.name.split("-")[0] for f in folder.parent.iterdir()} == {"api", "engine"}
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=fresh_get(f"{base}/metrics").content,
            capture_output=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@needs_prometheus
@pytest.mark.timeout(90)
def test_the_real_prometheus_scrapes_it(live_api, tokens, clean_db, tmp_path):
    seed_forecasts(clean_db)
    body = {"samples": samples(n_links=4, n_steps=2)}
    r = httpx.post(f"{live_api.url}{URL}", json=body, headers=auth(tokens["write"]), timeout=10)
    assert r.status_code == 200, r.text
    ours = parse(httpx.get(f"{live_api.url}/metrics", timeout=10).text)
    accepted = value(ours, "linkcast_samples_accepted_total", format="json")
    assert accepted >= 8
    with running_prometheus(tmp_path, live_api.url.removeprefix("http://")) as prometheus:

        def scraped() -> bool:
            got = prometheus.value('linkcast_samples_accepted_total{format="json"}')
            return got == accepted

        wait_for("Prometheus to hold linkcast's count", scraped, timeout=30)

        def clean_scrape() -> bool:  # a scrape slowed past its 1-s timeout on a loaded
            # machine is retried; one Prometheus cannot parse fails every time
            return scrape_error(prometheus) == "" and prometheus.value('up{job="linkcast"}') == 1

        wait_for("a scrape without error", clean_scrape, timeout=30)
        assert prometheus.value('linkcast_forecast_utilization_ratio{link="a"}') == pytest.approx(
            0.6
        )


@needs_prometheus
def test_the_readmes_alert_rules_are_valid_and_name_our_metrics(client, clean_db, tmp_path):
    """The README's rules file (engine liveness) passes promtool and its expressions
    use metrics that /metrics serves (a renamed metric would leave the alert silent)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(# rules\.yml.*?)```", readme, re.S)
    assert block, "no rules.yml block in the README"
    rules = tmp_path / "rules.yml"
    rules.write_text(block.group(1))
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    import engine.metrics  # noqa: F401 (the engine's metrics, as in linkcast up)

    seed_forecasts(clean_db)  # the newest issue's time is served once there is one
    served = set(re.findall(r"^(linkcast_[a-z_]+)[{ ]", client.get("/metrics").text, re.M))
    named = set(re.findall(r"linkcast_[a-z_]+", block.group(1)))
    assert len(named) == 4 and named <= served, named - served


def test_a_bucket_given_up_is_counted(client):
    """The buckets the engine gave up on (engine/loop.py, processed as if no link had
    reported after failing give_up_after times), as engine/run.py records them after
    every tick, reach linkcast_engine_buckets_given_up_total."""
    from engine.metrics import record_given_up

    before = scrape(client)
    record_given_up(2)
    record_given_up(0)
    after = scrape(client)
    assert moved(before, after, "linkcast_engine_buckets_given_up_total") == 2
