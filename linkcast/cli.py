"""The `linkcast` command line: one entry point that wires the packages together."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkcast.metrics import use_metrics_dir
from linkcast.settings import Settings
from linkcast.up import DEMO_SPEED, DEMO_STEP_SECONDS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

app = typer.Typer(
    help="linkcast: live link-load forecasting that keeps up when failures re-route traffic.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")

HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(help="API port.", min=1, max=65535)]
TopologyFileOpt = Annotated[
    Path | None, typer.Option(help="SNDlib XML network file.", exists=True, dir_okay=False)
]
TrafficFileOpt = Annotated[
    Path | None,
    typer.Option(
        help="Gzipped CSV: timestamp, then SRC>DST columns in Mbit/s.", exists=True, dir_okay=False
    ),
]


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable and the problem
        typer.secho(f"invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _upgraded(settings: Settings) -> str:
    from db.migrate import upgrade

    url = settings.resolved_database_url
    upgrade(url)
    return url


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (embedded database unless LINKCAST_DATABASE_URL is set)."""
    _upgraded(_settings())
    typer.echo("database schema is up to date")


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="read (query), write (push and query), admin (all).")],
    name: Annotated[str, typer.Option(help="A note on who uses it.")] = "",
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from db.models import Scope
    from db.queries import create_token
    from db.session import make_engine, make_sessionmaker, session_scope

    if scope not in Scope.ALL:
        raise typer.BadParameter(f"choose one of {', '.join(Scope.ALL)}", param_hint="--scope")
    url = _upgraded(_settings())
    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        new = create_token(session=session, scope=scope, name=name)
    engine.dispose()
    typer.echo(new.token)


@token_app.command("list")
def token_list() -> None:
    """List the tokens: id, name, scope, created, revoked (never the token: only its hash
    is stored)."""
    from db.session import make_engine, make_sessionmaker, session_scope
    from db.tokens import list_tokens

    engine = make_engine(_upgraded(_settings()), pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        rows = [
            (str(t.id), t.name, t.scope, _when(t.created_at), _when(t.revoked_at))
            for t in list_tokens(session=session)
        ]
    engine.dispose()
    header = ("ID", "NAME", "SCOPE", "CREATED", "REVOKED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@token_app.command("revoke")
def token_revoke(
    key: Annotated[
        str, typer.Argument(help="A token's id (see `token list`), or a name: all of that name.")
    ],
) -> None:
    """Revoke tokens: the API refuses them within a second, in every process."""
    from db.session import make_engine, make_sessionmaker, session_scope
    from db.tokens import revoke_tokens

    engine = make_engine(_upgraded(_settings()), pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        done = revoke_tokens(session=session, key=key)
    engine.dispose()
    if not done.matched:
        typer.secho(
            f"error: no token has the id or name {key!r} (see `linkcast token list`)",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    before = len(done.matched) - done.revoked
    names = ", ".join(f"{t.id} ({t.name}, {t.scope})" for t in done.matched)
    typer.echo(
        f"revoked {done.revoked} token{'' if done.revoked == 1 else 's'}: {names}"
        + (f"; {before} already revoked" if before else "")
    )


def _when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def api(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
) -> None:
    """Serve the REST API (after bringing the schema up to date)."""
    import uvicorn

    settings = _settings()
    use_metrics_dir(settings.data_dir, "api")  # before prometheus_client loads; workers inherit
    url = _upgraded(settings)
    logging.basicConfig(level=logging.INFO)
    # Workers are separate processes: they get the resolved URL, not the embedded server.
    import os

    os.environ["LINKCAST_DATABASE_URL"] = url
    if workers > 1:
        from linkcast.supervisor import see_worker_deaths_at_once

        see_worker_deaths_at_once()
    uvicorn.run(
        "linkcast.cli:served_app",  # each worker process builds its app with it
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


# How long uvicorn's supervisor waits for a worker's answer to its health ping before it
# kills and replaces the worker (uvicorn's default: 5 s). At 5 s, on a starved 2-core
# machine (the soak, an outage), busy workers were killed mid-request. A worker that is
# truly hung is replaced after this long; one that dies, within about half a second
# (linkcast.supervisor), unless the supervisor is waiting on a sibling's
# answer (it pings them one after the other): then once that sibling answers, at most
# this long later (a sibling still starting).
WORKER_HEALTHCHECK_SECONDS = 60

# How long an idle keep-alive connection is held open (uvicorn's default: 5 s).
# Prometheus sends a remote write batch about every 5 s (batch_send_deadline) on
# connections it keeps for minutes: at 5 s the server closed them just as the next batch
# went out, and Prometheus logged "Failed to send batch, retrying ... EOF" and resent it.
# Above the push intervals of the collectors (Prometheus about 5 s, Telegraf's default
# 10 s, the OpenTelemetry SDK's periodic reader 60 s), so that a connection in use is not
# closed between two pushes.
KEEP_ALIVE_SECONDS = 75


#: The services' log lines: time, level (a bucket the engine gave up on is an ERROR, each
#: failure before it a WARNING), logger, message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Allocations between two young-generation collections in a serving API worker
# (CPython's default: 700); see served_app.
GC_YOUNG_THRESHOLD = 50_000


def served_app(settings: Settings | None = None) -> FastAPI:
    """The API app as ``linkcast api`` serves it: :func:`api.main.create_app`, and once
    it has started, the process's objects frozen out of the garbage collector's reach
    (``gc.freeze``) and its youngest generation collected every
    :data:`GC_YOUNG_THRESHOLD` allocations instead of 700 (both undone at shutdown).

    What is loaded by then (about 325,000 objects: the modules, torch among them, the
    routes, SQLAlchemy) lives as long as the worker process, so that the full
    collections which a push's per-sample objects set off every few requests no longer
    walk it. bench/ingest.py (commit abf0fa1): api CPU per sample 8.0-8.8 -> 4.0-4.4 us
    for remote write, line protocol and OTLP. A push of 5,000 samples then still holds
    some 30,000 tuples and dicts alive while it is decoded and mapped, and at 700 the
    young collections walk them over and over; at 50,000 they run about once a request
    (bench/ingest.py: a further 3.7-4.2 -> 2.9-3.6 us per sample for the three collector
    formats). Uncollected cycles wait at most that many allocations. A process-wide
    step, so it is taken here, where a worker serves, and not by ``create_app`` (which
    tests call many times).
    """
    import gc
    from contextlib import asynccontextmanager

    from api.main import create_app

    served = create_app(settings)
    started = served.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            gc.collect()  # garbage first: what is frozen is never collected
            gc.freeze()
            thresholds = gc.get_threshold()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
            try:
                yield state
            finally:
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    served.router.lifespan_context = lifespan
    return served


@app.command(
    help="Start everything: database (embedded unless LINKCAST_DATABASE_URL), schema, API, "
    "engine and dashboard; with --demo, a simulated network pushing through the API.\n\n"
    "The demo runs the engine on a fast grid (300 / speed seconds per step, "
    f"{DEMO_STEP_SECONDS} s by default) so that forecasts, a failure, its alerts and the "
    "adaptation show within minutes."
)
def up(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    ui_port: Annotated[int, typer.Option(help="Dashboard port.", min=1, max=65535)] = 8501,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo/--no-demo",
            help="Also feed a simulated network (nobel-eu, a failure a few minutes in).",
        ),
    ] = False,
    speed: Annotated[
        float,
        typer.Option(help="Demo: simulated seconds per real second (5-min steps).", min=1),
    ] = DEMO_SPEED,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Start the dashboard.")] = True,
) -> None:
    """Start everything (the help is in ``app.command``: it names the demo's pace)."""
    from linkcast.up import run_up

    settings = _settings()
    use_metrics_dir(settings.data_dir, "up")  # the API and the engine thread, one process
    run_up(settings, host=host, port=port, ui_port=ui_port, demo=demo, speed=speed, ui=ui)


@app.command()
def engine() -> None:
    """Run the forecasting engine: ticks, retraining and checkpoints (one leader at a time)."""
    import signal
    import threading

    from linkcast.up import engine_config

    settings = _settings()
    use_metrics_dir(settings.data_dir, "engine")  # the API's /metrics reads it (same host)
    url = _upgraded(settings)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skipped ticks while catching up
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from engine import run_engine

    try:
        run_engine(
            url,
            engine_config(settings),
            stop,
            retrain_seconds=settings.retrain_seconds,
            retention_forecast_days=settings.forecast_retention_days,
            retention_sample_days=settings.sample_retention_days,
        )
    except KeyboardInterrupt:
        stop.set()


@app.command()
def ui(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Dashboard port.", min=1, max=65535)] = 8501,
) -> None:
    """Serve the dashboard; it reads LINKCAST_API_URL with LINKCAST_TOKEN (read scope)."""
    import subprocess
    import sys

    from linkcast.up import streamlit_command

    settings = _settings()
    if not settings.token:
        typer.secho("warning: LINKCAST_TOKEN is unset; the dashboard will ask for one", err=True)
    raise typer.Exit(subprocess.call(streamlit_command(host, port), executable=sys.executable))


@app.command()
def evaluate(
    out: Annotated[
        Path, typer.Option(help="Folder for results.csv, summary.csv, report.md and plots.")
    ],
    topology: Annotated[
        str | None, typer.Option(help="Built-in topology: nobel-eu, abilene, geant.")
    ] = None,
    topology_file: TopologyFileOpt = None,
    traffic: Annotated[
        str, typer.Option(help="sine (synthetic) or abilene (real, 2004).")
    ] = "sine",
    traffic_file: TrafficFileOpt = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="drastic, moderate or mixed; repeat for several (default: all)."),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Seeds, one independent repetition each (traffic noise, failures, models): "
            "0-9, or a list such as 0,3,5-7 (default: 0)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="A single seed (same as --seeds N).", min=0)
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes for the seeds (default: the number of CPUs).", min=1),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A short smoke test (no promise of quality).")
    ] = False,
    edge_links: Annotated[
        bool,
        typer.Option(
            help="Whether the simulated routers' edge (access, peering) links are measured: "
            "the re-route-aware forecasts' tomogravity takes each node's traffic in and out "
            "from them, as the live engine does with links labelled edge; without, it fits "
            "them to the backbone's link loads."
        ),
    ] = True,
) -> None:
    """The offline experiment: fail links, re-route, and score every model around it.

    Each seed runs in a worker process; the report gives means and 95 % intervals over
    the seeds. Exits 1 if a seed failed (the others' results are written), 2 on bad input.
    """
    from simulator.evaluate import SCENARIOS, EvaluationFailed, parse_seeds, run_evaluation

    if topology and topology_file:
        raise typer.BadParameter("give --topology or --topology-file, not both")
    if seeds is not None and seed is not None:
        raise typer.BadParameter("give --seeds or --seed, not both", param_hint="--seed")
    scenarios = scenario or list(SCENARIOS)
    for name in scenarios:
        if name not in SCENARIOS:
            raise typer.BadParameter(
                f"{name!r}; choose from {', '.join(SCENARIOS)}", param_hint="--scenario"
            )
    try:
        seed_list = parse_seeds(seeds) if seeds is not None else [seed or 0]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--seeds") from None
    try:
        result = run_evaluation(
            topology=None if topology_file else (topology or "nobel-eu"),
            topology_file=topology_file,
            traffic=traffic,
            traffic_file=traffic_file,
            scenarios=scenarios,
            seeds=seed_list,
            out=out,
            quick=quick,
            workers=workers,
            edge_links=edge_links,
        )
    except ValueError as exc:  # bad topology, traffic or scenario: say so, no traceback
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    except EvaluationFailed as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {result.results_csv}, {result.summary_csv} and {result.report_md}")
    for s, error in result.failed.items():
        typer.secho(f"error: seed {s} failed: {error}", fg="red", err=True)
    if result.failed:
        raise typer.Exit(1)


@app.command(
    epilog=(
        "Clock: --step-seconds is real seconds per simulated step and the grid of the "
        "timestamps (default LINKCAST_STEP_SECONDS, so the engine's grid); --speed is the "
        "same said as simulated seconds per real second (5-minute steps at "
        f"--speed {DEMO_SPEED:g} = --step-seconds {DEMO_STEP_SECONDS}). Example, the demo's "
        "pace (linkcast up --demo): linkcast simulate --push http://127.0.0.1:8000 --token $T "
        f"--step-seconds {DEMO_STEP_SECONDS} --backfill 288 --fail-at 60"
    )
)
def simulate(
    push: Annotated[
        str | None,
        typer.Option(help="API base URL (default: LINKCAST_API_URL, else http://127.0.0.1:8000)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token with the write scope, admin with --edge-links (default: LINKCAST_TOKEN)."
        ),
    ] = None,
    topology: Annotated[
        str | None,
        typer.Option(help="Built-in topology: nobel-eu (default), abilene, geant."),
    ] = None,
    topology_file: TopologyFileOpt = None,
    traffic: Annotated[
        str, typer.Option(help="sine (synthetic, 5-min steps) or abilene (real, 2004).")
    ] = "sine",
    traffic_file: TrafficFileOpt = None,
    scenario: Annotated[
        str, typer.Option(help="Failure: drastic, moderate, mixed or none.")
    ] = "drastic",
    seed: Annotated[int, typer.Option(help="Seed for traffic and failure.")] = 0,
    fail_at: Annotated[
        int, typer.Option(help="Live steps before the failure (after the backfill).", min=0)
    ] = 60,
    repair_after: Annotated[
        int | None, typer.Option(help="Repair the failed links this many steps later.", min=1)
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Live steps to push; 0: forever, replaying the traffic.", min=0)
    ] = 0,
    step_seconds: Annotated[
        float | None,
        typer.Option(help="Real seconds per simulated step (default: LINKCAST_STEP_SECONDS)."),
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Simulated seconds per real second (or --step-seconds).")
    ] = None,
    backfill: Annotated[
        int, typer.Option(help="Push this many steps of history first, ending now.", min=0)
    ] = 0,
    max_links: Annotated[
        int | None, typer.Option(help="Push at most N links (failed and shifted first).", min=1)
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for each step's time; --no-wait pushes at once.")
    ] = True,
    log_every: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 30.0,
    edge_links: Annotated[
        bool,
        typer.Option(
            help="Also push each router's edge links, NODE:in and NODE:out (the traffic "
            "entering and leaving the network there), registered with the label edge "
            "(needs an admin token): the engine's demand estimate takes its node totals "
            "from them."
        ),
    ] = False,
) -> None:
    """A simulated network as a live collector: push link loads and failures to the API."""
    import signal
    import threading

    from simulator.feeder import Feeder, FeederError, build_network, select_links

    if step_seconds is not None and speed is not None:
        raise typer.BadParameter("give --step-seconds or --speed, not both")
    settings = _settings()
    token = token or settings.token
    if not token:
        raise typer.BadParameter("no token: pass --token or set LINKCAST_TOKEN")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        network = build_network(
            topology=topology,
            topology_file=topology_file,
            traffic=traffic,
            traffic_file=traffic_file,
            scenario=scenario,
            seed=seed,
            fail_at=fail_at,
            backfill=backfill,
            repair_after=repair_after,
            edge_links=edge_links,
        )
        feeder = Feeder(
            network,
            push or settings.api_url,
            token,
            step_seconds=settings.step_seconds
            if step_seconds is None and not speed
            else step_seconds,
            speed=speed,
            backfill=backfill,
            steps=steps or None,
            loop=not steps,
            links=select_links(network, max_links) if max_links else None,
            realtime=wait,
            log_every_seconds=log_every,
        )
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()

    def _interrupt(signum: int, frame: object) -> None:
        typer.echo("stopping (Ctrl-C again to abort)", err=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        stats = feeder.run(stop)
    except FeederError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if stats.unsent_samples:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
