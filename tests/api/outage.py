"""A database outage under load, as issue 14 states it: shared by tests/api/test_db_outage.py
(one 30-s outage per kind of database, in CI) and bench/outage.py (longer, faster runs).

A running linkcast (:class:`Stack`: its API's address, a write token, its database for
the checks, its log) is pushed to by client threads at a steady total rate, each request
a distinct set of (link, ts) near now. A 503 is retried after its ``Retry-After`` with the
same body, at most ``max_attempts`` attempts in all, then given up (so that an outage
longer than the retries leaves requests never acknowledged, whose samples must be stored
all or none). A probe client pushes one sample every ``probe_every`` seconds and never
retries: it measures how soon the API answers 503 after the stop and 2xx after the
database's return (the steady clients sleep Retry-After = 5 s after a 503, so their own
first 2xx says more about their back-off; it is reported too).

A :class:`Fault` stops the database and brings it back; :func:`run_outage` runs the load
around it and returns a :class:`Report` of what the clients sent and heard against what
the database holds: samples acknowledged, stored, refused, lost, doubled, and the
engine's forecasts on every grid step across the outage. The stacks:

* :func:`server_stack`: `linkcast api --workers 2` and `linkcast engine` on a PostgreSQL
  of the run's own (tests/pg_private.py), stopped with ``pg_ctl stop -m fast`` and
  started again (:class:`ServerStop`); with ``proxy``, reached through a TCP proxy
  (tests/db_proxy.py) that is cut instead, the server running on (:class:`ProxyCut`);
* :func:`embedded_stack`: `linkcast up` without a database URL; its pgserver PostgreSQL
  is stopped and kept from starting for the outage (:class:`EmbeddedStop`), and
  `linkcast up` starts it again itself.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
import orjson
import psycopg

from db.models import ModelName
from tests.conftest import free_port
from tests.db_proxy import DbProxy
from tests.pg_private import PrivatePostgres
from tests.procs import Proc, env_for, wait_for

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROBE_LINK = "probe>x"
JSON = {"Content-Type": "application/json"}
MODELS = ModelName.ALL


class Fault(Protocol):
    """Stops the database (:meth:`cut`) and brings it back (:meth:`restore`, which
    returns the ``time.monotonic()`` at which the database accepted connections again)."""

    name: str

    def cut(self) -> None: ...

    def restore(self) -> float: ...


@dataclass
class Stack:
    """A running linkcast: where its API listens, a write token, the database it uses
    (a psycopg URL, for the checks), its engine's grid step and its log."""

    base_url: str
    token: str
    database_url: str
    step_seconds: int
    log_text: Callable[[], str]
    alive: Callable[[], bool]


@dataclass
class Load:
    rate: float = 20_000.0  # samples/s, all clients together
    clients: int = 4
    links_per_client: int = 10
    ts_per_request: int = 40  # a request: links_per_client x ts_per_request samples
    max_attempts: int = 5  # the first try and retries after Retry-After
    probe_every: float = 0.2  # seconds


@dataclass
class Report:
    fault: str
    outage_s: float
    pushing_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    stored: int = 0
    refused_responses: int = 0
    refused_samples: int = 0
    retried: int = 0
    given_up_requests: int = 0
    given_up_samples: int = 0
    not_acked: int = 0
    stored_whole: int = 0  # requests never acknowledged whose samples were all stored
    stored_whole_samples: int = 0
    stored_partial: list[int] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    wrong: int = 0
    not_sent: int = 0
    unknown: list[int] = field(default_factory=list)
    early_503: int = 0
    late_503: int = 0  # refused 10 s or more after the return
    first_503_s: float = math.inf  # after the stop
    first_2xx_s: float = math.inf  # after the database's return (the probe)
    steady_2xx_s: float = math.inf  # after the return (the steady clients)
    forecasts_expected: int = 0
    forecasts_stored: int = 0
    forecasts_missing: list[tuple] = field(default_factory=list)
    forecasts_doubled: int = 0
    forecasts_unexpected: int = 0
    buckets: int = 0
    stepped_down: int = 0
    led: int = 0

    def text(self) -> str:
        rate = self.acknowledged / self.pushing_s if self.pushing_s else 0.0
        return (
            f"{self.fault}: database stopped {self.outage_s:.0f} s under load"
            f" ({rate:,.0f} samples/s acknowledged while it was up); requests"
            f" {sum(self.requests.values())} {self.requests}; samples acknowledged"
            f" {self.acknowledged:,}, stored {self.stored:,}, refused (503s)"
            f" {self.refused_responses} responses / {self.refused_samples:,} samples,"
            f" retries {self.retried}, given up {self.given_up_requests} requests"
            f" ({self.given_up_samples:,} samples), not acknowledged {self.not_acked}"
            f" requests ({self.stored_whole} stored whole: {self.stored_whole_samples:,}"
            f" samples; {len(self.stored_partial)} in part), lost {self.lost}, doubled"
            f" {self.doubled}, wrong value {self.wrong},"
            f" not sent {self.not_sent}; first 503 {self.first_503_s:.3f} s after the stop,"
            f" first 2xx {self.first_2xx_s:.3f} s after the database's return (steady"
            f" clients' first: {self.steady_2xx_s:.3f} s)\nforecasts: {self.buckets} buckets"
            f" across the outage, expected {self.forecasts_expected}, stored"
            f" {self.forecasts_stored}, missing {len(self.forecasts_missing)}, doubled"
            f" {self.forecasts_doubled}, unexpected {self.forecasts_unexpected}; engine"
            f" stepped down {self.stepped_down}, took the lead {self.led} times"
        )


#: The engine's settings in these runs: a 2-s grid, short horizon and season.
ENGINE = {
    "horizon": "4",
    "season_steps": "8",
    "checkpoint_every": "3",
    "retrain_seconds": "3600",
}


def wait_accepting(url: str, timeout: float = 60) -> float:
    """Poll until a client can connect to ``url``; the monotonic time it first could."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return time.monotonic()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class ServerStop:
    """``pg_ctl stop -m fast`` (clients are disconnected, as when an operator stops the
    server), then ``pg_ctl start``; the return is when a client could connect again."""

    name = "PostgreSQL server"

    def __init__(self, pg: PrivatePostgres) -> None:
        self.pg = pg

    def cut(self) -> None:
        self.pg.stop()

    def restore(self) -> float:
        self.pg.start(wait=False)
        return wait_accepting(self.pg.url)


class ProxyCut:
    """The TCP path to the server cut (connections reset, new ones refused) and restored."""

    name = "PostgreSQL server behind a cut TCP proxy"

    def __init__(self, proxy: DbProxy) -> None:
        self.proxy = proxy

    def cut(self) -> None:
        self.proxy.stop()

    def restore(self) -> float:
        self.proxy.start()
        return time.monotonic()


def postmaster_ready(pgdata: Path) -> int | None:
    """The pid in ``pgdata/postmaster.pid`` once the server there accepts connections."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


class EmbeddedStop:
    """Stops the embedded server of a running `linkcast up` and keeps it from starting for
    the outage: its configuration file is unreadable (made so before the stop, which the
    running server does not notice: it reads the file when it starts), so each restart
    that `linkcast up` attempts fails until the file is readable again. The return is
    when the server says it accepts connections (``postmaster.pid``)."""

    name = "embedded PostgreSQL of linkcast up"

    def __init__(self, pgdata: Path) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.pgdata = pgdata
        self.conf = pgdata / "postgresql.conf"
        self.pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        owner = pgdata.stat().st_uid
        self.user = None if os.geteuid() != 0 or owner == 0 else owner
        self.mode = self.conf.stat().st_mode & 0o7777
        self.restart_s = math.nan  # from the file readable again to the server ready

    def cut(self) -> None:
        self.conf.chmod(0)
        subprocess.run(
            [self.pg_ctl, "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            user=self.user,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )

    def readable_again(self) -> None:
        self.conf.chmod(self.mode)

    def restore(self) -> float:
        self.readable_again()
        released = time.monotonic()
        wait_for(
            "linkcast up to start its database again",
            lambda: postmaster_ready(self.pgdata),
            30,
            every=0.02,
        )
        back = time.monotonic()
        self.restart_s = back - released
        return back


def _readyz(base_url: str, proc: Proc) -> bool:
    assert proc.alive(), proc.text()[-3000:]
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def server_stack(
    workdir: Path, step: int, *, proxy: bool = False
) -> Iterator[tuple[Stack, ServerStop | ProxyCut]]:
    """A private PostgreSQL, the schema, a write token, `linkcast api --workers 2` and
    `linkcast engine` on a ``step``-s grid (through a TCP proxy with ``proxy``); all
    stopped and removed on exit."""
    from db.migrate import upgrade
    from db.queries import create_token
    from db.session import make_engine, make_sessionmaker, session_scope

    pg = PrivatePostgres()
    db_proxy = DbProxy(pg.url) if proxy else None
    procs: list[Proc] = []
    try:
        pg.start()
        upgrade(pg.url)
        db = make_engine(pg.url, pool_size=1)
        with session_scope(make_sessionmaker(db)) as session:
            token = create_token(session=session, scope="write").token
        db.dispose()
        url = pg.url
        if db_proxy is not None:
            db_proxy.start()
            url = db_proxy.url
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        api = Proc(
            ["api", "--workers", "2", f"--port={port}"],
            env_for(url, workdir / "api"),
            workdir / "api.log",
        )
        procs.append(api)
        settings = ENGINE | {"step_seconds": str(step)}
        engine = Proc(["engine"], env_for(url, workdir / "engine", **settings), workdir / "e.log")
        procs.append(engine)
        wait_for("the api", lambda: _readyz(base_url, api), 180)
        stack = Stack(base_url, token, pg.url, step, engine.text, engine.alive)
        yield stack, (ServerStop(pg) if db_proxy is None else ProxyCut(db_proxy))
    finally:
        for p in procs:
            p.stop()
        if db_proxy is not None:
            db_proxy.stop()
        pg.remove()


def embedded_url(pgdata: Path) -> str:
    """A psycopg URL of the embedded server running in ``pgdata`` (its Unix socket)."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"


@contextmanager
def embedded_stack(workdir: Path, step: int) -> Iterator[tuple[Stack, EmbeddedStop, Proc]]:
    """`linkcast up --no-ui` with no database URL on a ``step``-s grid (its log in
    ``workdir``), its admin token; stopped (SIGTERM) on exit, and its PostgreSQL with it
    if a failure left one behind.

    Its data directory is a new one under the system's temporary directory, not under
    pytest's: run as root, pgserver runs PostgreSQL as another user, who must traverse
    every directory above the data, and each pytest session that starts sets pytest's
    own root (/tmp/pytest-of-root) back to mode 0700, which cuts off a server running
    there (PANIC: could not open global/pg_control) when tests run side by side."""
    top = Path(tempfile.mkdtemp(prefix="linkcast-up-"))
    data = top / "data"
    pgdata = data / "pg"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = env_for("", data, **(ENGINE | {"step_seconds": str(step)}))
    del env["LINKCAST_DATABASE_URL"]
    up = Proc(["up", "--no-ui", f"--port={port}"], env, workdir / "up.log")
    fault = None
    try:
        wait_for("linkcast up", lambda: _readyz(base_url, up), 180)
        fault = EmbeddedStop(pgdata)
        token = (data / "admin-token").read_text().strip()
        yield Stack(base_url, token, embedded_url(pgdata), step, up.text, up.alive), fault, up
    finally:
        if fault is not None:
            fault.readable_again()
        up.stop()
        left = postmaster_ready(pgdata)
        if left is not None:  # a failure above: stop what the run started
            os.kill(left, signal.SIGQUIT)  # immediate shutdown
            time.sleep(2)
        shutil.rmtree(top, ignore_errors=True)


def _now_us() -> int:
    return time.time_ns() // 1000


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _value(k: int, us: int) -> float:
    """A smooth load in bit/s (no excursions), distinct per link and time."""
    return 1e8 * (1 + k % 5) * (2 + math.sin(2 * math.pi * us / 16e6 + k)) + us % 1000


class _Log:
    """What the clients sent and heard, shared by their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], tuple[int, float]] = {}  # (link, ts us) -> (req, value)
        self.sizes: dict[int, int] = {}  # request -> samples
        self.outcome: dict[int, str] = {}  # request -> ack | given up | failed ...
        # every attempt: (request, monotonic sent, monotonic answered, status or 0, probe)
        self.attempts: list[tuple[int, float, float, int, bool]] = []
        self.ids = itertools.count()

    def new_request(self, samples: list[tuple[str, int, float]]) -> int:
        with self.lock:
            req = next(self.ids)
            for link, us, value in samples:
                assert (link, us) not in self.sent
                self.sent[(link, us)] = (req, value)
            self.sizes[req] = len(samples)
        return req

    def post(self, http: httpx.Client, req: int, body: bytes, probe: bool) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = http.post("/api/v1/telemetry", content=body, headers=JSON)
        except httpx.HTTPError as exc:
            with self.lock:
                self.attempts.append((req, t0, time.monotonic(), 0, probe))
                self.outcome[req] = f"failed {type(exc).__name__}"
            return None
        with self.lock:
            self.attempts.append((req, t0, time.monotonic(), r.status_code, probe))
        return r


def _body(samples: list[tuple[str, int, float]]) -> bytes:
    """The JSON body (orjson: the clients share the machine with what they measure)."""
    iso: dict[int, str] = {}
    for _, us, _ in samples:
        if us not in iso:
            iso[us] = _at(us).isoformat()
    body = {"samples": [{"link": n, "ts": iso[us], "value": v} for n, us, v in samples]}
    return orjson.dumps(body)


def _client(c: int, stack: Stack, load: Load, log: _Log, stop: threading.Event) -> None:
    links = [f"c{c}l{k}>y" for k in range(load.links_per_client)]
    per_request = load.links_per_client * load.ts_per_request
    every = per_request * load.clients / load.rate  # seconds between this client's requests
    headers = {"Authorization": f"Bearer {stack.token}"}
    last = 0
    due = time.monotonic() + every * c / load.clients  # the clients spread over an interval
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) as http:
        while not stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + every, time.monotonic())  # steady; behind: no burst to catch up
            first = _now_us() - (load.ts_per_request - 1) * 100  # 100 us apart
            if first <= last:
                continue
            stamps = [first + j * 100 for j in range(load.ts_per_request)]
            last = stamps[-1]
            samples = [
                (name, us, _value(c * load.links_per_client + k, us))
                for us in stamps
                for k, name in enumerate(links)
            ]
            req = log.new_request(samples)
            body = _body(samples)
            for attempt in range(1, load.max_attempts + 1):
                r = log.post(http, req, body, probe=False)
                if r is None:
                    break
                if r.is_success:
                    log.outcome[req] = "ack"
                    break
                if r.status_code != 503:
                    log.outcome[req] = f"refused {r.status_code}"
                    break
                if attempt == load.max_attempts:
                    log.outcome[req] = "given up"
                    break
                time.sleep(float(r.headers["Retry-After"]))  # the same body again after it


def _probe(stack: Stack, load: Load, log: _Log, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            us = _now_us()
            samples = [(PROBE_LINK, us, _value(99, us))]
            req = log.new_request(samples)
            r = log.post(http, req, _body(samples), probe=True)
            if r is not None:
                log.outcome[req] = "ack" if r.is_success else f"refused {r.status_code}"
            stop.wait(load.probe_every)


def _newest_issue(url: str) -> datetime | None:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            got: datetime | None = conn.execute("SELECT max(issued_at) FROM forecast").fetchone()[0]  # type: ignore[index]
            return got
    except psycopg.OperationalError:
        return None


def run_outage(stack: Stack, fault: Fault, load: Load, outage_s: float) -> Report:
    """Push at ``load``, let the engine forecast a few buckets, stop the database for
    ``outage_s`` seconds (``fault``), bring it back, push on until the retries have
    landed and a few more buckets, then count. Raises AssertionError if the stack does
    not recover (no 2xx within 30 s of the return, no forecasts within 30 s of the end)."""
    step = stack.step_seconds
    report = Report(fault=fault.name, outage_s=outage_s)
    log = _Log()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(c, stack, load, log, stop), daemon=True)
        for c in range(load.clients)
    ] + [threading.Thread(target=_probe, args=(stack, load, log, stop), daemon=True)]
    try:
        t_start = time.monotonic()
        for t in threads:
            t.start()
        wait_for(
            "the first forecasts", lambda: stack.alive() and _newest_issue(stack.database_url), 90
        )
        time.sleep(2 * step)  # a few buckets forecast before the stop

        t_cut, wall_cut = time.monotonic(), time.time()
        fault.cut()
        time.sleep(max(0.0, t_cut + outage_s - time.monotonic()))
        t_back = fault.restore()
        wall_back = time.time() - (time.monotonic() - t_back)

        def acked_after_return() -> bool:
            with log.lock:
                return any(a[3] // 100 == 2 and a[1] >= t_back for a in log.attempts)

        wait_for("a 2xx after the database's return", acked_after_return, 30)
        time.sleep(5 + 3 * step)  # the steady clients' retries land; a few ordinary buckets
        wall_stop, t_stop = time.time(), time.monotonic()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client did not finish"

    hi = datetime.fromtimestamp(_floor(wall_stop, step) - step, UTC)  # the last full bucket
    wait_for(
        f"forecasts issued at {hi + timedelta(seconds=step)}",
        lambda: (_newest_issue(stack.database_url) or hi) >= hi + timedelta(seconds=step),
        60,
    )
    lo = datetime.fromtimestamp(_floor(wall_cut, step) - 2 * step, UTC)
    report.pushing_s = t_stop - t_start - outage_s
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        _count_samples(conn, log, t_cut, t_back, report)
        _count_forecasts(conn, lo, hi, step, report)
    text = stack.log_text()
    report.stepped_down = text.count("stepping down")
    report.led = text.count("this engine leads")
    print(
        f"\n{report.text()} (stopped {datetime.fromtimestamp(wall_cut, UTC):%H:%M:%S.%f},"
        f" back {datetime.fromtimestamp(wall_back, UTC):%H:%M:%S.%f}, buckets"
        f" {lo:%H:%M:%S}..{hi:%H:%M:%S})"
    )
    return report


def _floor(t: float, step: int) -> float:
    return t - t % step


def _count_samples(
    conn: psycopg.Connection, log: _Log, t_cut: float, t_back: float, report: Report
) -> None:
    rows = conn.execute(
        "SELECT l.name, s.ts, s.value_bps FROM sample s JOIN link l ON l.id = s.link_id"
    ).fetchall()
    stored: dict[tuple[str, int], int] = {}
    per_req: dict[int, int] = {}
    for name, ts, value in rows:
        key = (name, (ts - EPOCH) // timedelta(microseconds=1))
        stored[key] = stored.get(key, 0) + 1
        got = log.sent.get(key)
        if got is None:
            report.not_sent += 1
            continue
        req, sent = got
        per_req[req] = per_req.get(req, 0) + 1
        if value != sent:
            report.wrong += 1
    acked = [r for r, o in log.outcome.items() if o == "ack"]
    not_acked = [r for r, o in log.outcome.items() if o != "ack"]
    given_up = [r for r, o in log.outcome.items() if o == "given up"]
    refused = [a for a in log.attempts if a[3] == 503]
    for o in log.outcome.values():
        report.requests[o] = report.requests.get(o, 0) + 1
    report.stored = len(rows)
    report.unknown = [r for r in log.sizes if r not in log.outcome]
    report.acknowledged = sum(log.sizes[r] for r in acked)
    report.lost = sum(log.sizes[r] - min(per_req.get(r, 0), log.sizes[r]) for r in acked)
    report.doubled = sum(n - 1 for n in stored.values() if n > 1)
    report.not_acked = len(not_acked)
    report.stored_partial = [r for r in not_acked if per_req.get(r, 0) not in (0, log.sizes[r])]
    whole = [r for r in not_acked if per_req.get(r, 0) == log.sizes[r]]
    report.stored_whole = len(whole)
    report.stored_whole_samples = sum(log.sizes[r] for r in whole)
    report.refused_responses = len(refused)
    report.refused_samples = sum(log.sizes[a[0]] for a in refused)
    report.retried = len(log.attempts) - len(log.sizes)
    report.given_up_requests = len(given_up)
    report.given_up_samples = sum(log.sizes[r] for r in given_up)
    report.early_503 = sum(1 for a in refused if a[2] < t_cut)
    report.late_503 = sum(1 for a in refused if a[1] >= t_back + 10)
    report.first_503_s = min((a[2] for a in refused if a[2] >= t_cut), default=math.inf) - t_cut
    ok_after = [a for a in log.attempts if a[3] // 100 == 2 and a[1] >= t_back]
    report.first_2xx_s = min((a[2] for a in ok_after), default=math.inf) - t_back
    report.steady_2xx_s = min((a[2] for a in ok_after if not a[4]), default=math.inf) - t_back


def _count_forecasts(
    conn: psycopg.Connection, lo: datetime, hi: datetime, step_seconds: int, report: Report
) -> None:
    """Every link x model x bucket from ``lo`` to ``hi`` has its forecast (issued at the
    bucket's end), once."""
    step = timedelta(seconds=step_seconds)
    ids = [r[0] for r in conn.execute("SELECT id FROM link").fetchall()]
    buckets = []
    b = lo
    while b <= hi:
        buckets.append(b)
        b += step
    rows = conn.execute(
        "SELECT link_id, model, issued_at, count(*) FROM forecast"
        " WHERE issued_at >= %s AND issued_at <= %s GROUP BY 1, 2, 3",
        (lo + step, hi + step),
    ).fetchall()
    got = {(r[0], r[1], r[2]): r[3] for r in rows}
    want = {(i, m, b + step) for b in buckets for i in ids for m in MODELS}
    report.buckets = len(buckets)
    report.forecasts_expected = len(want)
    report.forecasts_stored = sum(got.values())
    report.forecasts_missing = sorted(want - set(got), key=lambda k: k[2])
    report.forecasts_doubled = sum(n - 1 for n in got.values() if n > 1)
    report.forecasts_unexpected = len(set(got) - want)
