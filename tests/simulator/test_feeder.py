"""The live feeder against the real API and database: what it stores, how it retries."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from linkcast.cli import app
from linkcast.settings import Settings
from simulator.failures import LinkEvent, Scenario
from simulator.feeder import EVENTS_PATH, Feeder, FeederError, build_network, select_links
from simulator.network import SimulatedNetwork
from simulator.topology import Topology
from simulator.traffic import sine_traffic
from tests.conftest import LiveServer, auth
from tests.db_proxy import DbProxy

FAILED = ("WASHng", "NYCMng")
FAILED_NAMES = {"WASHng>NYCMng", "NYCMng>WASHng"}


@pytest.fixture(scope="module")
def small_net(abilene: Topology) -> SimulatedNetwork:
    """12 steps of abilene, WASHng-NYCMng failing at step 6."""
    traffic = sine_traffic(abilene, n_steps=12, seed=3)
    return SimulatedNetwork(abilene, traffic, Scenario((LinkEvent(6, FAILED),), "test"))


def stored(engine: Engine) -> dict[str, list[tuple[datetime, float]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.name, s.ts, s.value_bps FROM sample s JOIN link l ON l.id = s.link_id"
                " ORDER BY l.name, s.ts"
            )
        )
        out: dict[str, list[tuple[datetime, float]]] = {}
        for name, ts, value in rows:
            out.setdefault(name, []).append((ts, value))
        return out


def wait_for(condition, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


def has_events_route(url: str) -> bool:
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    return "post" in paths.get(EVENTS_PATH, {})


def test_pushes_every_step_on_the_grid_with_the_failure(
    live_api, tokens, clean_db, small_net, caplog
):
    caplog.set_level(logging.INFO, logger="simulator.feeder")
    feeder = Feeder(
        small_net, live_api.url, tokens["write"], step_seconds=0.25, backfill=4, steps=6
    )
    before = datetime.now(UTC)
    stats = feeder.run()
    assert (stats.steps_pushed, stats.samples_pushed, stats.unsent_samples) == (10, 300, 0)
    assert stats.failures_injected == 1

    rows = stored(clean_db)
    assert set(rows) == set(small_net.link_names)
    assert stats.first_ts is not None
    assert int(stats.first_ts.timestamp() * 1000) % 250 == 0  # on the grid
    grid = [stats.first_ts + timedelta(milliseconds=250 * k) for k in range(10)]
    # The backfill ends just before the first live step, which was stamped at start (on
    # the grid step under way then: a step boundary may fall just after `before`).
    assert before < grid[5] and grid[4] <= before + timedelta(seconds=1)
    assert grid[-1] <= datetime.now(UTC)
    loads = small_net.loads()[:10]
    for j, name in enumerate(small_net.link_names):
        assert [ts for ts, _ in rows[name]] == grid
        np.testing.assert_allclose([v for _, v in rows[name]], loads[:, j])
    for name in FAILED_NAMES:
        values = [v for _, v in rows[name]]
        assert min(values[:6]) > 0 and values[6:] == [0.0] * 4

    if has_events_route(live_api.url):
        r = httpx.get(f"{live_api.url}{EVENTS_PATH}", headers=auth(tokens["read"]))
        events = r.json()["data"]
        assert [(e["kind"], set(e["links"])) for e in events] == [("failure", FAILED_NAMES)]
        assert stats.events_posted == 1
    else:
        warnings = [r for r in caplog.records if "no POST /api/v1/events" in r.message]
        assert len(warnings) == 1 and stats.events_posted == 0


def test_database_outage_is_retried_not_lost(
    database_url, tmp_path, clean_db, tokens, small_net, caplog
):
    proxy = DbProxy(database_url)
    proxy.start()
    server = LiveServer(Settings(database_url=proxy.url, data_dir=tmp_path))
    feeder = Feeder(
        small_net,
        server.url,
        tokens["write"],
        step_seconds=60,
        steps=3,
        realtime=False,
        max_backoff_seconds=0.2,  # the API says Retry-After: 5
    )
    result = {}
    with server:
        proxy.stop()
        thread = threading.Thread(target=lambda: result.update(stats=feeder.run()))
        thread.start()
        wait_for(lambda: logged(caplog, "(503 database unreachable"), "a 503")
        wait_for(lambda: logged(caplog, "retry 2 in 0.2 s"), "a second retry")
        assert thread.is_alive() and stored(clean_db) == {}  # still retrying, nothing stored
        proxy.start()
        thread.join(timeout=20)
        proxy.stop()
    stats = result["stats"]
    assert stats.retries >= 2 and stats.unsent_samples == 0
    rows = stored(clean_db)
    assert len(rows) == 30 and all(len(v) == 3 for v in rows.values())


def test_api_down_at_start_is_retried_until_it_comes_up(
    settings, clean_db, tokens, small_net, caplog
):
    server = LiveServer(settings)  # its port refuses connections until it starts
    feeder = Feeder(
        small_net, server.url, tokens["write"], steps=2, realtime=False, max_backoff_seconds=0.1
    )
    result = {}
    thread = threading.Thread(target=lambda: result.update(stats=feeder.run()))
    thread.start()
    wait_for(lambda: logged(caplog, "(ConnectError"), "a refused connection")
    with server:
        thread.join(timeout=20)
    assert result["stats"].retries >= 1
    assert sum(len(v) for v in stored(clean_db).values()) == 60


def test_events_name_only_pushed_links(live_api, tokens, clean_db, small_net):
    # Links the API has never seen would be refused: the event names the pushed ones.
    links = ["WASHng>NYCMng", "ATLAng>HSTNng"]
    feeder = Feeder(small_net, live_api.url, tokens["write"], steps=7, realtime=False, links=links)
    stats = feeder.run()
    assert stats.samples_pushed == 14 and set(stored(clean_db)) == set(links)
    if has_events_route(live_api.url):
        r = httpx.get(f"{live_api.url}{EVENTS_PATH}", headers=auth(tokens["read"]))
        assert [e["links"] for e in r.json()["data"]] == [["WASHng>NYCMng"]]


def test_an_api_without_the_events_route_gets_telemetry_and_one_warning(
    settings, clean_db, tokens, small_net, caplog
):
    server = LiveServer(settings)
    api = server.server.config.app

    async def before_events_landed(scope, receive, send):  # the real api, as it was
        if scope["type"] == "http" and scope["path"] == EVENTS_PATH:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
            return
        await api(scope, receive, send)

    server.server.config.app = before_events_landed
    with server:
        stats = Feeder(small_net, server.url, tokens["write"], realtime=False).run()
    assert stats.samples_pushed == 12 * 30 and stats.events_posted == 0
    warnings = [r for r in caplog.records if "no POST" in r.getMessage()]
    assert len(warnings) == 1


def test_bad_token_stops_with_a_clear_error(live_api, tokens, clean_db, small_net):
    with pytest.raises(FeederError, match=r"401.*refused the token.*--token"):
        Feeder(small_net, live_api.url, "not-a-token", steps=1, realtime=False).run()
    with pytest.raises(FeederError, match=r"403.*write scope"):
        Feeder(small_net, live_api.url, tokens["read"], steps=1, realtime=False).run()
    assert stored(clean_db) == {}


def test_stop_event_ends_a_looping_run_cleanly(live_api, tokens, clean_db, small_net):
    feeder = Feeder(small_net, live_api.url, tokens["write"], step_seconds=0.05, loop=True)
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(stats=feeder.run(stop)))
    thread.start()
    # Past the 12 steps of the traffic: it loops.
    wait_for(lambda: len(stored(clean_db).get("WASHng>NYCMng", [])) > 14, "a second pass")
    stop.set()
    thread.join(timeout=10)
    stats = result["stats"]
    assert not thread.is_alive() and stats.unsent_samples == 0
    assert stats.steps_pushed > 12 and stats.failures_injected >= 1
    rows = stored(clean_db)
    assert all(len(v) == stats.steps_pushed for v in rows.values())


class ApiGoesAway(httpx.BaseTransport):
    """The real API until push number ``at``, which first closes it (and sets ``stop``
    when given: Ctrl-C in `linkcast up` sets the feeder's stop, then closes the API)."""

    def __init__(self, server: LiveServer, at: int, stop: threading.Event | None = None):
        self.server, self.at, self.stop = server, at, stop
        self.inner = httpx.HTTPTransport()
        self.pushes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.pushes += 1
        if self.pushes == self.at:
            if self.stop is not None:
                self.stop.set()
            self.server.__exit__()
            # the push below must find the API gone, not racing its shutdown
            assert not self.server.thread.is_alive(), "the API did not stop within 10 s"
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def feeder_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    records = [r for r in caplog.records if r.name == "simulator.feeder"]
    return [r.getMessage() for r in records if r.levelno == level]


def test_a_stop_that_closes_the_api_first_is_one_calm_line(
    settings, clean_db, tokens, small_net, caplog
):
    caplog.set_level(logging.INFO, logger="simulator.feeder")
    stop = threading.Event()
    with LiveServer(settings) as server:
        transport = ApiGoesAway(server, at=3, stop=stop)
        feeder = Feeder(small_net, server.url, tokens["write"], realtime=False, transport=transport)
        stats = feeder.run(stop)
    assert (stats.samples_pushed, stats.unsent_samples, stats.retries) == (60, 30, 0)
    assert feeder_records(caplog, logging.WARNING) == []
    [line] = [m for m in feeder_records(caplog, logging.INFO) if "not pushed" in m]
    assert line.startswith(
        "feeder stopped; 30 samples of the last step were not pushed (last push: ConnectError"
    )


def test_the_api_going_away_while_running_is_a_warning(
    settings, clean_db, tokens, small_net, caplog
):
    caplog.set_level(logging.INFO, logger="simulator.feeder")
    stop = threading.Event()
    with LiveServer(settings) as server:
        transport = ApiGoesAway(server, at=3)
        feeder = Feeder(
            small_net,
            server.url,
            tokens["write"],
            realtime=False,
            transport=transport,
            max_backoff_seconds=0.1,
        )
        result = {}
        thread = threading.Thread(target=lambda: result.update(stats=feeder.run(stop)))
        thread.start()
        wait_for(lambda: logged(caplog, "retry 2 in"), "a second retry")
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive() and result["stats"].unsent_samples == 30
    warnings = feeder_records(caplog, logging.WARNING)
    assert warnings[0].startswith("30 samples not accepted (ConnectError")
    assert warnings[-1] == "stopped with 30 samples and 0 events not pushed"
    assert not any("feeder stopped" in m for m in feeder_records(caplog, logging.INFO))


def test_build_network_places_the_failure_after_the_backfill(abilene):
    net = build_network(topology="abilene", scenario="drastic", fail_at=5, backfill=3, n_steps=400)
    assert net.scenario.failure_steps == (8,)
    links = select_links(net, 4)
    assert len(links) == 4
    assert {f"{a}>{b}" for e in net.scenario.events for a, b in [e.link, e.link[::-1]]} <= set(
        links
    )
    with pytest.raises(ValueError, match="beyond"):
        build_network(topology="abilene", fail_at=500, n_steps=400)
    with pytest.raises(ValueError, match="step_seconds or speed"):
        Feeder(net, "http://x", "t", step_seconds=1, speed=2)


def test_simulate_help():
    result = CliRunner().invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--push", "--token", "--speed", "--step-seconds", "--backfill", "--fail-at"):
        assert option in result.output


def test_simulate_pushes_through_the_api(live_api, tokens, clean_db):
    args = ["simulate", "--push", live_api.url, "--token", tokens["write"], "--topology"]
    args += ["abilene", "--scenario", "none", "--steps", "2", "--no-wait", "--max-links", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = stored(clean_db)
    assert len(rows) == 3 and all(len(v) == 2 for v in rows.values())


def test_simulate_bad_token_exits_with_the_reason(live_api, clean_db):
    args = ["simulate", "--push", live_api.url, "--token", "nope", "--scenario", "none"]
    result = CliRunner().invoke(app, [*args, "--steps", "1", "--no-wait"])
    assert result.exit_code == 1
    assert "401" in result.output and "--token" in result.output


def test_edge_links_are_registered_with_their_label_and_pushed(live_api, tokens, clean_db):
    """``simulate --edge-links``: each router's NODE:in and NODE:out, labelled, carrying
    the traffic its demands send and receive; the topology lists them as edge links."""
    args = ["simulate", "--push", live_api.url, "--token", tokens["admin"], "--topology"]
    args += ["abilene", "--scenario", "none", "--steps", "2", "--no-wait", "--edge-links"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    net = build_network(topology="abilene", scenario="none", edge_links=True)
    rows = stored(clean_db)
    nodes = net.topology.nodes
    assert set(rows) == set(net.link_names) | {f"{n}:{d}" for n in nodes for d in ("in", "out")}
    x = net.traffic.demands_bps[:2]
    for node in nodes:
        sent = x[:, [a == node for a, _ in net.traffic.pairs]].sum(axis=1)
        received = x[:, [b == node for _, b in net.traffic.pairs]].sum(axis=1)
        np.testing.assert_allclose([v for _, v in rows[f"{node}:in"]], sent, rtol=1e-9)
        np.testing.assert_allclose([v for _, v in rows[f"{node}:out"]], received, rtol=1e-9)
    body = httpx.get(f"{live_api.url}/api/v1/topology", headers=auth(tokens["read"])).json()
    assert {(e["name"], e["node"], e["direction"]) for e in body["edges"]} == {
        (f"{n}:{d}", n, "ingress" if d == "in" else "egress") for n in nodes for d in ("in", "out")
    }
    assert body["problems"] == [] and len(body["links"]) == len(net.link_names)

    # a token without the admin scope cannot label links: a clear stop, nothing pushed
    with clean_db.begin() as conn:
        conn.execute(text("TRUNCATE link, sample"))
    args[args.index(tokens["admin"])] = tokens["write"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "403" in result.output and "admin scope" in result.output
    assert stored(clean_db) == {}


def test_a_simulated_networks_edge_links_follow_its_scenario(abilene):
    """A failure that strands ATLAM5: its egress edge link carries 0 from the failure on
    (the demands to it have no path), its ingress what it sends."""
    traffic = sine_traffic(abilene, n_steps=12, seed=3)
    scenario = Scenario((LinkEvent(6, ("ATLAM5", "ATLAng")),), "strand")
    net = SimulatedNetwork(abilene, traffic, scenario, edge_links=True)
    steps = list(net.iter_steps())
    sent = [p for p, (a, _) in enumerate(traffic.pairs) if a == "ATLAM5"]
    to = [p for p, (_, b) in enumerate(traffic.pairs) if b == "ATLAM5"]
    out = [s.loads_bps["ATLAM5:out"] for s in steps]
    np.testing.assert_allclose(out[:6], traffic.demands_bps[:6, to].sum(axis=1))
    assert out[6:] == [0.0] * 6
    ins = [s.loads_bps["ATLAM5:in"] for s in steps]
    np.testing.assert_allclose(ins, traffic.demands_bps[:, sent].sum(axis=1))
