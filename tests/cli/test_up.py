"""`linkcast up`: the dashboard's command line, the demo's pace, its links' capacities
and coordinates."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session
from streamlit import config as streamlit_config
from typer.testing import CliRunner

from db.topology import link_records
from linkcast import cli
from linkcast.settings import Settings
from linkcast.up import (
    RATES_BPS,
    api_server,
    demo_settings,
    register_demo_links,
    shown_url,
    streamlit_command,
)
from network.records import build_topology
from simulator.feeder import demo_feeder
from tests.conftest import free_port


def test_dashboard_hides_streamlits_deploy_button():
    command = streamlit_command("127.0.0.1", 8501)
    i = command.index("--client.toolbarMode")
    assert command[i + 1] == "viewer"  # no Deploy, rerun or clear cache for an operator
    streamlit_config.get_option("client.toolbarMode")  # an option this Streamlit knows


def test_ctrl_c_sets_stop_before_the_api_closes():
    # The feeder and engine learn they are being stopped before the API goes away.
    stop = threading.Event()
    server = api_server(FastAPI(), host="127.0.0.1", port=8000, stop=stop)
    server.handle_exit(signal.SIGINT, None)
    assert stop.is_set() and server.should_exit


def test_the_demo_feeder_starts_once_the_api_listens():
    # So that its first pushes are not refused (and logged as not accepted).
    port, stop, started = free_port(), threading.Event(), threading.Event()
    server = api_server(FastAPI(), host="127.0.0.1", port=port, stop=stop, on_started=started.set)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert started.wait(60), "the API did not start"
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not stop.is_set()


def test_simulate_help_gives_the_demos_real_pace():
    speed = inspect.signature(cli.up).parameters["speed"].default  # `linkcast up --speed`
    step = demo_settings(Settings(), speed).step_seconds  # the grid `up --demo` runs on
    result = CliRunner().invoke(cli.app, ["simulate", "--help"])
    assert result.exit_code == 0
    shown = " ".join(result.output.split())  # as one line, however the help wraps
    assert f"--speed {speed:g} = --step-seconds {step})" in shown
    assert "the demo's pace (linkcast up --demo): linkcast simulate --push" in shown
    assert f"--step-seconds {step} --backfill" in shown


def test_demo_links_get_capacities_above_their_peak_and_coordinates(settings, clean_db):
    network = demo_feeder("http://127.0.0.1:1", "unused", step_seconds=3).network
    assert register_demo_links(settings.database_url, network) == len(network.link_names)
    with clean_db.connect() as conn:
        rows = {
            r[0]: (r[1], r[2])
            for r in conn.execute(text("SELECT name, capacity_bps, labels FROM link"))
        }
    assert set(rows) == set(network.link_names)
    failure = network.result.failure_steps[0]
    peaks = np.nanmax(network.loads()[:failure], axis=0)
    for name, peak in zip(network.link_names, peaks, strict=True):
        capacity, labels = rows[name]
        assert capacity in RATES_BPS and capacity >= 1.25 * peak
        assert set(labels) == {"src_lat", "src_lon", "dst_lat", "dst_lon"}
    # the labels the network model reads: every node of the demo placed on the map
    # (src_pos/dst_pos, which the demo wrote before, left GET /topology without any)
    with clean_db.connect() as conn:
        built = build_topology(link_records(session=Session(conn)))
    assert built.problems == () and built.unplaced == ()
    positions = network.topology.positions
    assert built.topology.has_coordinates and set(built.topology.positions) == set(positions)
    for node, (lon, lat) in positions.items():
        assert built.topology.positions[node] == pytest.approx((lon, lat), abs=1e-9)


def test_sigterm_stops_like_ctrl_c(settings, clean_db, tmp_path):
    """`docker stop` and systemd send SIGTERM: linkcast up closes down in order (engine
    checkpoint, dashboard) and exits 0, instead of dying once the API is closed."""
    port = free_port()
    env = os.environ | {
        "LINKCAST_DATABASE_URL": settings.database_url,
        "LINKCAST_DATA_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-c", "from linkcast.cli import main; main()", "up", "--no-ui"]
    proc = subprocess.Popen(
        [*cmd, f"--port={port}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "linkcast up did not start"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text_out = out.decode()
    assert proc.returncode == 0, text_out[-2000:]
    assert "linkcast: stopping (engine checkpoint, feeder, dashboard)" in text_out
    # an external database is used, not started (its password never printed)
    assert f"linkcast: using the database at {shown_url(settings.database_url)}" in text_out
    assert "starting the database" not in text_out


def test_every_alert_threshold_setting_reaches_the_engine(monkeypatch):
    """Each threshold of the alert policy and the plausibility checks is a setting
    (LINKCAST_...), validated at start, and the engine runs with it."""
    from linkcast.up import engine_config

    given = {
        "LINKCAST_ALERT_SUSTAIN_STEPS": ("sustain_steps", "7"),
        "LINKCAST_ALERT_CLEAR_STEPS": ("clear_steps", "9"),
        "LINKCAST_CAPACITY_CLEAR_MARGIN": ("capacity_clear_margin", "0.1"),
        "LINKCAST_LINE_RATE_MARGIN": ("line_rate_margin", "0.2"),
        "LINKCAST_EXCURSION_FACTOR": ("excursion_factor", "12"),
        "LINKCAST_MIN_DRIFT_MAGNITUDE": ("min_drift_magnitude", "0.4"),
        "LINKCAST_MIN_REROUTE_LINKS": ("min_reroute_links", "3"),
        "LINKCAST_ALERT_GROUP_STEPS": ("group_steps", "4"),
        "LINKCAST_CAPACITY_RATIO": ("capacity_ratio", "0.8"),
        "LINKCAST_TORCH_THREADS": ("torch_threads", "3"),
    }
    for env, (_, value) in given.items():
        monkeypatch.setenv(env, value)
    assert engine_config(Settings()).read_cuts is True  # on by default
    monkeypatch.setenv("LINKCAST_READ_CUTS", "false")
    cfg = engine_config(Settings())
    for env, (field, value) in given.items():
        assert getattr(cfg, field) == type(getattr(cfg, field))(value), env
    assert cfg.read_cuts is False
