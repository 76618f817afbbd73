"""`linkcast up`: every part in one command, for a laptop or a demo."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from linkcast.settings import Settings

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from types import FrameType

    import uvicorn
    from fastapi import FastAPI

    from engine import EngineConfig

log = logging.getLogger("linkcast")

UI_APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"
DEMO_SIM_STEP_SECONDS = 300  # the simulator's traffic has 5-minute steps
DEMO_DAY_STEPS = 288
#: The demo's pace by default (``linkcast up --speed``): simulated seconds per real second.
DEMO_SPEED = 100.0


def demo_step_seconds(speed: float = DEMO_SPEED) -> int:
    """Real seconds per simulated step of the demo, its engine's grid: 300 / speed, whole."""
    return max(1, round(DEMO_SIM_STEP_SECONDS / speed))


#: Real seconds per step at the demo's default pace (for help texts).
DEMO_STEP_SECONDS = demo_step_seconds()


def engine_config(settings: Settings) -> EngineConfig:
    from engine import EngineConfig
    from engine.notify import NotifyConfig

    return EngineConfig(
        step_seconds=settings.step_seconds,
        horizon=settings.horizon,
        late_seconds=settings.late_seconds,
        season_steps=settings.season_steps,
        retrain_window=settings.retrain_window,
        checkpoint_every=settings.checkpoint_every,
        capacity_ratio=settings.capacity_ratio,
        sustain_steps=settings.alert_sustain_steps,
        min_drift_magnitude=settings.min_drift_magnitude,
        min_reroute_links=settings.min_reroute_links,
        group_steps=settings.alert_group_steps,
        clear_steps=settings.alert_clear_steps,
        capacity_clear_margin=settings.capacity_clear_margin,
        line_rate_margin=settings.line_rate_margin,
        excursion_factor=settings.excursion_factor,
        read_cuts=settings.read_cuts,
        torch_threads=settings.torch_threads,
        notify=NotifyConfig(
            alertmanager_url=settings.alertmanager_url,
            webhook_urls=tuple(settings.webhook_urls),
            webhook_secret=settings.webhook_secret,
            resend_seconds=settings.notify_resend_seconds,
            dashboard_url=settings.dashboard_url,
        ),
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def api_server(
    app: FastAPI,
    *,
    host: str,
    port: int,
    stop: threading.Event,
    on_started: Callable[[], None] | None = None,
) -> uvicorn.Server:
    """uvicorn's server for the API, calling ``on_started`` once it listens (the demo
    feeder starts then, so its first pushes are not refused) and setting ``stop`` as soon
    as it is asked to exit (Ctrl-C, SIGTERM), before it closes the API: the feeder then
    knows that it is being stopped when its next push finds the API gone, and the engine
    starts its checkpoint."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_started is not None:
                on_started()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stop.set()
            super().handle_exit(sig, frame)

    from linkcast.cli import KEEP_ALIVE_SECONDS

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS
    )
    return Server(config)


def streamlit_command(host: str, port: int) -> list[str]:
    """The dashboard's command line: headless, no usage stats, and the toolbar an
    operator needs (``viewer`` hides Streamlit's Deploy button, rerun and clear cache)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(UI_APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def shown_url(url: str) -> str:
    """``url`` with its password masked, as it may be printed: the database it names.

    >>> shown_url("postgresql://linkcast:s3cret@db.example:5432/linkcast")
    'postgresql://linkcast:***@db.example:5432/linkcast'
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "LINKCAST_DATABASE_URL (not shown: not a database URL)"


def local_admin_token(settings: Settings, url: str) -> str:
    """The admin token kept in DATA_DIR/admin-token, created on first start.

    Only the token's hash is in the database, so the plain token is kept in a file
    readable by its owner alone; ``linkcast up`` prints it for curl and the dashboard.
    """
    from db.queries import create_token, token_scope
    from db.session import make_engine, make_sessionmaker, session_scope

    path = Path(settings.data_dir) / "admin-token"
    engine = make_engine(url, pool_size=1)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            if path.exists():
                token = path.read_text().strip()
                if token_scope(session=session, token=token) == "admin":
                    return token
            token = create_token(session=session, scope="admin", name="linkcast up").token
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def demo_settings(settings: Settings, speed: float) -> Settings:
    """The demo's fast grid: one simulated 5-minute step every 300/speed real seconds."""
    step = demo_step_seconds(speed)
    return settings.model_copy(
        update={
            "step_seconds": step,
            "season_steps": DEMO_DAY_STEPS,
            "retrain_seconds": 30.0 * step,
            "retrain_window": DEMO_DAY_STEPS,
            "late_seconds": step / 4,
        }
    )


RATES_BPS = (1e9, 2.5e9, 10e9, 40e9, 100e9, 400e9)  # common interface speeds


def register_demo_links(url: str, network: object) -> int:
    """Give the demo's links what an operator would: a capacity (the smallest common
    interface speed above 1.25x the link's peak before any failure) and the nodes'
    coordinates, so the dashboard can colour utilisation and capacity alerts can fire."""
    import numpy as np

    from db.queries import split_link_name, upsert_link
    from db.session import make_engine, make_sessionmaker, session_scope

    loads = network.loads()  # type: ignore[attr-defined]
    first_failure = min(network.result.failure_steps, default=len(loads))  # type: ignore[attr-defined]
    peaks = np.nanmax(loads[: max(first_failure, 1)], axis=0)
    positions = network.topology.positions  # type: ignore[attr-defined]
    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        for name, peak in zip(network.link_names, peaks, strict=True):  # type: ignore[attr-defined]
            src, dst = split_link_name(name)
            capacity = next((r for r in RATES_BPS if r >= 1.25 * peak), RATES_BPS[-1])
            labels = {}
            if src in positions and dst in positions:  # (lon, lat): the labels /topology reads
                (src_lon, src_lat), (dst_lon, dst_lat) = positions[src], positions[dst]
                labels = {"src_lat": src_lat, "src_lon": src_lon}
                labels |= {"dst_lat": dst_lat, "dst_lon": dst_lon}
            upsert_link(
                session=session, name=name, src=src, dst=dst, capacity_bps=capacity, labels=labels
            )
    engine.dispose()
    return len(peaks)


def run_up(
    settings: Settings,
    *,
    host: str,
    port: int,
    ui_port: int,
    demo: bool,
    speed: float = DEMO_SPEED,
    ui: bool = True,
) -> None:
    from db.migrate import upgrade
    from engine import run_engine
    from linkcast.cli import LOG_FORMAT, served_app  # served_app: gc.freeze once started

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A tick that outlasts its step (catching up) makes APScheduler warn on every skip.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if demo:
        settings = demo_settings(settings, speed)
    # From here on SIGTERM (docker stop, systemd) ends like Ctrl-C: uvicorn raises the
    # signal that stopped it again once the API is closed, under this handler, and the
    # stop goes through the checkpoint below instead of killing the process there. Set
    # before the database starts: a SIGTERM that killed the process then left the
    # embedded PostgreSQL running (db/embedded.py stops it at exit).
    signal.signal(signal.SIGTERM, _interrupt)
    if settings.database_url:
        typer.echo(f"linkcast: using the database at {shown_url(settings.database_url)}")
    else:
        typer.echo(f"linkcast: starting the database (embedded, data in {settings.data_dir})")
    url = settings.resolved_database_url
    upgrade(url)
    token = local_admin_token(settings, url)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{local}:{port}"

    stop = threading.Event()
    if not settings.database_url:
        from db.embedded import supervise_embedded

        # The embedded PostgreSQL is linkcast's own: if it stops (by hand, killed, short
        # of memory), start it again, as no operator of the one command is there to.
        supervise_embedded(stop)
    engine = threading.Thread(
        target=run_engine,
        args=(url, engine_config(settings), stop),
        kwargs={
            "retrain_seconds": settings.retrain_seconds,
            "retention_forecast_days": settings.forecast_retention_days,
            "retention_sample_days": settings.sample_retention_days,
            "standby_poll_seconds": 0.5,
        },
        name="engine",
        daemon=True,
    )
    feeders: list[threading.Thread] = []  # started once the API listens
    if demo:
        from simulator.feeder import demo_feeder

        feeder = demo_feeder(base, token, step_seconds=settings.step_seconds)
        register_demo_links(url, feeder.network)
        feeders.append(
            threading.Thread(target=feeder.run, args=(stop,), name="feeder", daemon=True)
        )
    ui_proc = None
    if ui:
        env = os.environ | {"LINKCAST_API_URL": base, "LINKCAST_TOKEN": token}
        ui_proc = subprocess.Popen(streamlit_command(host, ui_port), env=env)
    engine.start()

    def api_started() -> None:
        for t in feeders:
            t.start()

    typer.echo(
        f"linkcast: API on {base} (docs at {base}/docs)\n"
        + (f"linkcast: dashboard on http://{local}:{ui_port}\n" if ui else "")
        + f"linkcast: engine step {settings.step_seconds} s, horizon {settings.horizon} steps\n"
        + (
            f"linkcast: demo feeder: nobel-eu, a failure in about {60 * settings.step_seconds} s\n"
            if demo
            else ""
        )
        + f"linkcast: admin token {token} (kept in {settings.data_dir}/admin-token)\n"
        "linkcast: Ctrl-C stops everything"
    )
    server = api_server(
        served_app(settings), host=host, port=port, stop=stop, on_started=api_started
    )
    try:
        try:
            server.run()
        except KeyboardInterrupt:  # the Ctrl-C or SIGTERM again, once the API is closed
            pass
        if not server.started:
            raise SystemExit(3)  # as uvicorn.run: the API could not start (port taken?)
    finally:
        typer.echo("linkcast: stopping (engine checkpoint, feeder, dashboard)")
        stop.set()
        for t in (engine, *feeders):
            if t.is_alive():  # a feeder is not started if the API did not start
                t.join(timeout=30)
        if ui_proc is not None:
            ui_proc.terminate()
            try:
                ui_proc.wait(10)
            except subprocess.TimeoutExpired:
                ui_proc.kill()
        from db.embedded import stop_embedded

        stop_embedded()  # last, as nothing uses it any more (not left to atexit alone)
