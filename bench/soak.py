"""Soak (issue 14): linkcast served as `linkcast up` serves it, pushed at a steady rate for
minutes while the engine ticks and dashboards poll; latency, errors, memory and disk.

Serving: `linkcast api --workers N` and `linkcast engine` (the two parts `linkcast up`
runs in one process, as compose runs them), or `linkcast up --no-ui` itself with --up,
on a fresh embedded PostgreSQL (unless --database-url), the engine on a grid of --step
seconds (LINKCAST_STEP_SECONDS), one thread per numeric library. Other LINKCAST_*
settings in the environment reach the servers (LINKCAST_SEASON_STEPS, say).

Load (this process):
- writers: one round of samples for every link each links/rate seconds, with real time
  stamps (a distinct (link, ts) per sample), as JSON bodies of --batch samples posted
  on a schedule by --connections keep-alive connections (stdlib http.client, the
  lightest client, so that the generator leaves the CPU to the server); a request
  that falls behind its schedule is sent late, never skipped, so a slow server shows
  as an achieved rate below the target;
- readers: --readers dashboards, each refreshing every --read-every seconds with the
  calls ui/client.py makes for the overview and a link page: every link's latest load
  (`GET /links/latest?model=hybrid`), the alerts (`GET /alerts`), one link's samples
  and its hybrid forecasts (one step ahead, and the latest issue) over the last 30
  steps.

After --warmup seconds and the engine's first tick (not measured: the links are
registered, the models built, the connections opened) it measures for --duration
seconds, printing a line every 10 s, then prints, with the targets of issue 14 and a verdict each:
- write rate achieved against the target; latency (request sent to answer) p50/p99 of
  writes (target p99 < 1 s) and of reads (target p99 < 500 ms), by route;
- answers by status (target: none but 2xx), over the whole run;
- engine ticks: duration p50/p99/max, bucket end to tick done, buckets missed;
- resident memory of the server processes after the warm-up and at the end (target:
  growth < 10 %);
- database growth: each growing table's rows inserted times its bytes per row (from
  PostgreSQL's storage layout, see :func:`row_bytes`) against what it grew (target:
  within 0.8 to 1.25 of that);
- samples acknowledged, stored, lost (acknowledged, not stored: target 0), and the
  requests without a 200 stored whole, not at all or in part (target: none in part);
- the CPU the generator took (writers, readers, the whole process) beside the servers'
  and the load average, since the generator shares the machine with what it measures.

    python bench/soak.py                      # 10 min, 50,000 samples/s, 10,000 links
    python bench/soak.py --duration 120 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import math
import os
import queue
import random
import re
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import Tick, encode_json, rss_mb, tick_of, wait_ready  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.queries import create_token  # noqa: E402
from db.session import make_engine, make_sessionmaker, session_scope  # noqa: E402
from tests.procs import Proc, env_for, stop_process  # noqa: E402

LINK_PREFIX = "soak"
READ_P99_S = 0.5  # issue 14's targets
WRITE_P99_S = 1.0
RSS_GROWTH = 0.10
DISK_RATIO = (0.8, 1.25)  # measured growth / rows x bytes per row
ROW_TABLES = ("sample", "forecast", "forecast_error")
BTREE_LEAF_FILL = 0.9  # btree fillfactor: leaves split at 90 % when keys arrive in order
PAGE = 8192  # bytes; a heap page keeps 8168 for tuples, a btree leaf 8152
IDLE_RECONNECT_S = 4.0  # uvicorn closes a keep-alive connection idle for 5 s


@dataclass
class SoakConfig:
    """One soak run; times in seconds, rate in samples/s."""

    duration: float = 600.0
    warmup: float = 60.0
    rate: float = 50_000.0
    links: int = 10_000
    step: int = 10
    workers: int = 2
    up: bool = False
    database_url: str | None = None
    connections: int = 4
    batch: int = 5_000
    readers: int = 2
    read_every: float = 2.0
    data_dir: Path | None = None
    progress_every: float = 10.0


@dataclass
class Call:
    """One HTTP request: when it was sent (monotonic s), how long it took, its answer."""

    route: str
    sent: float
    seconds: float
    status: str  # "200", "503", or the exception's name when no answer came
    samples: int = 0  # writes: samples in the body
    ts: float = 0.0  # writes: the samples' time (epoch s), one for the whole body
    first: int = 0  # writes: the body's first link (index), then samples links in order


@dataclass
class Snapshot:
    """The servers and the database at one moment."""

    at: float  # monotonic s
    rss_mb: dict[str, float]
    cpu_s: dict[str, float]  # user + system CPU seconds so far, by process group
    machine_cpu_s: float  # busy CPU seconds of the whole machine so far
    loadavg: tuple[float, float, float]
    db_bytes: int
    table_bytes: dict[str, int]
    rows_written: dict[str, int]  # tuples inserted or updated so far (pg_stat_user_tables)
    checkpoint_bytes: int  # live checkpoint state


@dataclass
class SoakResult:
    config: SoakConfig
    measured_s: float
    calls: list[Call]
    acknowledged: int
    stored: int
    unacknowledged: list[tuple[int, int]]  # requests without a 200: (samples sent, stored)
    sent_requests: int
    start: Snapshot
    end: Snapshot
    row_bytes: dict[str, float]
    ticks: list[tuple[float, Tick]]  # (epoch s of the log line, the tick)
    measure_from: float  # epoch s when the measured window began
    measure_to: float
    generator_cpu_s: dict[str, float]  # writers, readers, process: CPU s in the window
    behind_s: float  # how far the writers ran behind their schedule at most (s)
    workers_killed: int = 0  # "Child process [..] died": uvicorn killed a worker
    late_samples: int = 0  # samples the engine logged as late (not used)


def load_bps(k: np.ndarray, ts: float) -> np.ndarray:
    """A smooth hourly wave per link, 1 to 30 Gbit/s."""
    return 1e9 * (1 + k % 10) * (2 + np.sin(2 * np.pi * ts / 3600 + k))


class Stats:
    """Calls made by the generator's threads, and the CPU each kind of thread used."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.cpu_s: dict[str, float] = {"writers": 0.0, "readers": 0.0}
        self.behind_s = 0.0
        self.measuring = False
        self.pushed: set[int] = set()  # first link of each body acknowledged so far
        self.all_pushed = threading.Event()  # every link acknowledged once: all exist

    def add(self, call: Call, cpu_kind: str, cpu_s: float, parts: int = 0) -> None:
        with self.lock:
            self.calls.append(call)
            self.cpu_s[cpu_kind] += cpu_s
            if parts and call.status == "200" and not self.all_pushed.is_set():
                self.pushed.add(call.first)
                if len(self.pushed) == parts:
                    self.all_pushed.set()


def _writer_schedule(
    cfg: SoakConfig, names: list[str], bodies: queue.Queue, stats: Stats, stop: threading.Event
) -> None:
    """Put each request's body on ``bodies`` at its time: a round of every link each
    links / rate seconds, split in requests of ``batch`` samples spread over the round."""
    period = cfg.links / cfg.rate
    parts = [(i, min(i + cfg.batch, cfg.links)) for i in range(0, cfg.links, cfg.batch)]
    k = np.arange(cfg.links)
    wall0, mono0 = time.time(), time.monotonic()
    cpu0 = time.thread_time()
    for r in itertools.count():
        ts = round(wall0 + r * period, 6)
        values = load_bps(k, ts).round().tolist()
        for j, (a, b) in enumerate(parts):
            due = mono0 + r * period + period * j / len(parts)
            wait = due - time.monotonic()
            if wait > 0:
                if stop.wait(wait):
                    break
            elif stats.measuring:
                stats.behind_s = max(stats.behind_s, -wait)
            body = encode_json([(names[i], ts, values[i]) for i in range(a, b)])
            while not stop.is_set():
                try:
                    bodies.put((body, b - a, ts, a), timeout=0.5)
                    break
                except queue.Full:
                    continue
        with stats.lock:
            stats.cpu_s["writers"] += time.thread_time() - cpu0
        cpu0 = time.thread_time()
        if stop.is_set():
            break


def _writer(
    api: str, token: str, bodies: queue.Queue, stats: Stats, stop: threading.Event, parts: int
) -> None:
    """Post the bodies it is given on one keep-alive connection; reconnect after an error,
    and before the server would close it as idle (uvicorn: after 5 s), so that no request
    meets a connection closed under it."""
    host, port = api.split("//")[1].split(":")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn: http.client.HTTPConnection | None = None
    last_used = 0.0
    cpu0 = time.thread_time()
    while not (stop.is_set() and bodies.empty()):
        try:
            body, n, ts, first = bodies.get(timeout=0.5)
        except queue.Empty:
            continue
        if conn is not None and time.monotonic() - last_used > IDLE_RECONNECT_S:
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        t = time.monotonic()
        try:
            conn.request("POST", "/api/v1/telemetry", body=body, headers=headers)
            r = conn.getresponse()
            answer = r.read()
            status = str(r.status)
            if r.status == 200 and orjson.loads(answer).get("accepted") != n:
                status = "200 (accepted != sent)"
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            conn.close()
            conn = None
        last_used = time.monotonic()
        cpu1 = time.thread_time()
        stats.add(
            Call("POST /telemetry", t, time.monotonic() - t, status, n, ts, first),
            "writers",
            cpu1 - cpu0,
            parts,
        )
        cpu0 = cpu1
    if conn is not None:
        conn.close()


def _reader(
    cfg: SoakConfig, api: str, token: str, names: list[str], stats: Stats, stop: threading.Event
) -> None:
    """One dashboard: the overview's and a link page's calls every ``read_every`` s."""
    rng = random.Random(threading.get_ident())
    window = timedelta(seconds=30 * cfg.step)
    # A dashboard opens on a network that exists: asking for a link before its first
    # sample is a 404 (unknown link), the right answer, but not what this measures.
    while not (stats.all_pushed.is_set() or stop.is_set()):
        stats.all_pushed.wait(0.5)
    headers = {"Authorization": f"Bearer {token}"}
    cpu0 = time.thread_time()
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        while not stop.is_set():
            began = time.monotonic()
            link = quote(rng.choice(names), safe="")
            end = datetime.now(UTC)
            span = {"start": (end - window).isoformat(), "end": end.isoformat()}
            calls: list[tuple[str, str, dict]] = [
                ("GET /links/latest", "/api/v1/links/latest", {"model": "hybrid"}),
                ("GET /alerts", "/api/v1/alerts", {}),
                ("GET /links/{link}/samples", f"/api/v1/links/{link}/samples", span),
                (
                    "GET /links/{link}/forecasts",
                    f"/api/v1/links/{link}/forecasts",
                    {**span, "model": "hybrid", "step": 1},
                ),
                (
                    "GET /links/{link}/forecasts",
                    f"/api/v1/links/{link}/forecasts",
                    {"model": "hybrid", "latest": "true"},
                ),
            ]
            for route, path, params in calls:
                t = time.monotonic()
                try:
                    status = str(client.get(path, params=params).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                cpu1 = time.thread_time()
                stats.add(Call(route, t, time.monotonic() - t, status), "readers", cpu1 - cpu0)
                cpu0 = cpu1
            stop.wait(max(0.0, cfg.read_every - (time.monotonic() - began)))


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of a process tree (its first process's children that
    have ended included: PostgreSQL's backends, a replaced API worker)."""
    total = 0.0
    for i, p in enumerate(procs):
        try:
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0)
        except psutil.Error:
            pass
    return total


def _table_sizes(cur: psycopg.Cursor, tables: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes on disk (heap, indexes, TOAST) and tuples inserted or updated so far, per
    table, summed over its partitions where it is partitioned."""
    size, rows = {}, {}
    for t in tables:
        cur.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0),"
            " coalesce(sum(s.n_tup_ins + s.n_tup_upd), 0)"
            " FROM pg_partition_tree(%s::regclass) p"
            " LEFT JOIN pg_stat_user_tables s USING (relid) WHERE p.isleaf",
            (t,),
        )
        b, n = _one(cur)
        size[t], rows[t] = int(b), int(n)
    return size, rows


def row_bytes(cur: psycopg.Cursor, table: str) -> float:
    """Expected bytes on disk per row of ``table`` from PostgreSQL's page layout (the
    PostgreSQL manual, "Database Page Layout"), measured on up to 2,000 of its rows:

    - heap: the tuple (its 24-byte header and the row's data, ``pg_column_size`` of the
      row) padded to 8 bytes, plus a 4-byte line pointer, on pages that keep 8,168 of
      their 8,192 bytes for tuples (fillfactor 100);
    - each btree index: an index tuple (8-byte header and the key's data, padded to 8)
      plus a 4-byte line pointer, on leaves that keep 8,152 bytes and are split at
      fillfactor 90 % (keys arrive in order per link: PostgreSQL's split then leaves the
      left page at the fillfactor); inner pages and BRIN indexes (a few pages) left out.

    Raises ``ValueError`` when the table has no rows to measure.
    """
    cur.execute(
        f"SELECT avg((pg_column_size(t.*) + 7) / 8 * 8), count(*)"
        f" FROM (SELECT * FROM {table} LIMIT 2000) t"
    )
    heap, n = _one(cur)
    if not n:
        raise ValueError(f"{table} has no rows to measure")
    per_row = (float(heap) + 4) * PAGE / 8168
    cur.execute(
        "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
        " CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s::regclass AND am.amname = 'btree' GROUP BY i.indexrelid",
        (table,),
    )
    for (cols,) in cur.fetchall():
        # a composite's data is laid out as an index tuple's, after a 24-byte header
        key = ", ".join(f'"{c}"' for c in cols)
        cur.execute(
            f"SELECT avg((8 + pg_column_size(ROW({key})) - 24 + 7) / 8 * 8)"
            f" FROM (SELECT * FROM {table} LIMIT 2000) t"
        )
        per_row += (float(_one(cur)[0]) + 4) / BTREE_LEAF_FILL * PAGE / 8152
    return per_row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one(cur: psycopg.Cursor) -> tuple:
    row = cur.fetchone()
    assert row is not None  # an aggregate always answers a row
    return row


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True
    )


class Servers:
    """The linkcast processes under test and a connection to their database."""

    def __init__(self, cfg: SoakConfig, url: str, data_dir: Path) -> None:
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.postgres_pid: int | None = None
        env = env_for(url, data_dir / "serve", step_seconds=str(cfg.step))
        (data_dir / "serve").mkdir(parents=True, exist_ok=True)
        if cfg.up:
            self.procs = {
                "up": Proc(["up", "--no-ui", f"--port={self.port}"], env, data_dir / "up.log")
            }
            self.engine_log = data_dir / "up.log"
        else:
            self.procs = {
                "api": Proc(
                    ["api", f"--workers={cfg.workers}", f"--port={self.port}"],
                    env,
                    data_dir / "api.log",
                ),
                "engine": Proc(["engine"], env, data_dir / "engine.log"),
            }
            self.engine_log = data_dir / "engine.log"
        self.url = url

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if not p.alive():
                raise RuntimeError(f"linkcast {name} exited:\n{p.text()[-3000:]}")

    def snapshot(self, db: psycopg.Connection) -> Snapshot:
        groups = {name: _tree(p.pid) for name, p in self.procs.items()}
        rss = {
            name: sum(rss_mb(p.pid) for p in procs if p.is_running())
            for name, procs in groups.items()
        }
        cpu = {name: _cpu_s(procs) for name, procs in groups.items()}
        if self.postgres_pid is not None:
            cpu["postgres (embedded)"] = _cpu_s(_tree(self.postgres_pid))
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        with db.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            db_bytes = int(_one(cur)[0])
            sizes, rows = _table_sizes(cur, list(ROW_TABLES))
            cur.execute("SELECT coalesce(sum(octet_length(state)), 0) FROM model_checkpoint")
            cp = int(_one(cur)[0])
        return Snapshot(
            time.monotonic(), rss, cpu, busy, os.getloadavg(), db_bytes, sizes, rows, cp
        )

    def ticks(self) -> list[tuple[float, Tick]]:
        """(epoch s of the log line, Tick) for each tick the engine logged."""
        out = []
        for line in self.engine_log.read_text(errors="replace").splitlines():
            tick = tick_of(line)
            if tick is not None:
                logged = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone()
                out.append((logged.timestamp(), tick))
        return out

    def log_counts(self) -> tuple[int, int]:
        """API workers uvicorn killed (a worker that does not answer its supervisor's
        ping within 5 s is killed and replaced) and samples the engine found late."""
        text = "\n".join(p.text() for p in self.procs.values())
        late = sum(int(n) for n in re.findall(r"(\d+) late sample\(s\)", text))
        return len(re.findall(r"Child process \[\d+\] died", text)), late

    def stop(self) -> None:
        for p in self.procs.values():
            stop_process(p.popen, grace=60)


def _say(line: str) -> None:
    print(line, flush=True)


def run_soak(cfg: SoakConfig, say: Callable[[str], None] = _say) -> SoakResult:
    """Serve linkcast, load it as ``cfg`` says, measure; see the module's docstring."""
    data_dir = cfg.data_dir or Path(tempfile.mkdtemp(prefix="linkcast-soak-"))
    url = cfg.database_url
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(data_dir)
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        write_token = create_token(session=session, scope="write", name="soak writer").token
        read_token = create_token(session=session, scope="read", name="soak reader").token
    engine.dispose()
    names = [f"{LINK_PREFIX}{k}>x" for k in range(cfg.links)]
    servers = Servers(cfg, url, data_dir)
    if not cfg.database_url:  # the embedded server's postmaster: its CPU is reported
        servers.postgres_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    db = _connect(url)
    stats, stop = Stats(), threading.Event()
    bodies: queue.Queue = queue.Queue(maxsize=2 * cfg.connections)
    parts = -(-cfg.links // cfg.batch)  # bodies per round
    threads: list[threading.Thread] = []
    first_ts = time.time()
    try:
        wait_ready(servers.api, next(iter(servers.procs.values())).popen, timeout=180)
        say(
            f"serving on {servers.api} ({_serving(cfg)}), data in {data_dir};"
            f" warm-up {cfg.warmup:.0f} s"
        )
        threads = [
            threading.Thread(target=_writer_schedule, args=(cfg, names, bodies, stats, stop)),
            *(
                threading.Thread(
                    target=_writer,
                    args=(servers.api, write_token, bodies, stats, stop, parts),
                )
                for _ in range(cfg.connections)
            ),
            *(
                threading.Thread(
                    target=_reader, args=(cfg, servers.api, read_token, names, stats, stop)
                )
                for _ in range(cfg.readers)
            ),
        ]
        for t in threads:
            t.start()
        time.sleep(cfg.warmup)
        # and until every link exists (the dashboards wait for it) and the engine's first
        # tick is done: it builds every link's models
        while not stats.all_pushed.is_set():
            servers.check_alive()
            if stats.all_pushed.wait(1):
                break
            say("waiting for the first round of writes to be acknowledged")
        while not servers.ticks():
            servers.check_alive()
            time.sleep(1)
        with stats.lock:
            stats.measuring = True
            cpu0 = dict(stats.cpu_s)
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        start = servers.snapshot(db)
        measure_from = time.time()
        say(
            f"measuring {cfg.duration:.0f} s: target {cfg.rate:,.0f} samples/s over"
            f" {cfg.links:,} links, engine step {cfg.step} s"
        )
        mark, seen = start.at, len(stats.calls)
        while time.monotonic() < start.at + cfg.duration:
            time.sleep(min(cfg.progress_every, start.at + cfg.duration - time.monotonic()))
            servers.check_alive()
            now = time.monotonic()
            with stats.lock:
                recent = stats.calls[seen:]
                seen = len(stats.calls)
            say(_progress(now - start.at, now - mark, recent, servers))
            mark = now
        measure_to = time.time()
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        with stats.lock:
            stats.measuring = False
            gen = {k: stats.cpu_s[k] - cpu0[k] for k in ("writers", "readers")}
        end = servers.snapshot(db)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    gen["process"] = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    try:
        ticks = servers.ticks()
        servers.check_alive()
    finally:
        servers.stop()
    killed, late = servers.log_counts()
    calls = stats.calls
    acknowledged = sum(c.samples for c in calls if c.status == "200")
    with db.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM sample s JOIN link l ON l.id = s.link_id"
            " WHERE l.name LIKE %s AND s.ts >= %s",
            (f"{LINK_PREFIX}%", datetime.fromtimestamp(first_ts - 1, UTC)),
        )
        stored = int(_one(cur)[0])
        # a request without a 200 (refused, cut off, timed out) may still have been
        # committed: whole, the API says, or not at all
        unacknowledged = []
        for c in calls:
            if c.route.startswith("POST") and c.status != "200":
                cur.execute(
                    "SELECT count(*) FROM sample s JOIN link l ON l.id = s.link_id"
                    " WHERE s.ts = %s AND l.name = ANY(%s)",
                    (datetime.fromtimestamp(c.ts, UTC), names[c.first : c.first + c.samples]),
                )
                unacknowledged.append((c.samples, int(_one(cur)[0])))
        sizes = {}
        for table in ROW_TABLES:
            try:
                sizes[table] = row_bytes(cur, table)
            except ValueError:
                sizes[table] = math.nan
    db.close()
    return SoakResult(
        config=cfg,
        measured_s=end.at - start.at,
        calls=calls,
        acknowledged=acknowledged,
        stored=stored,
        unacknowledged=unacknowledged,
        sent_requests=sum(c.route.startswith("POST") for c in calls),
        start=start,
        end=end,
        row_bytes=sizes,
        ticks=ticks,
        measure_from=measure_from,
        measure_to=measure_to,
        generator_cpu_s=gen,
        behind_s=stats.behind_s,
        workers_killed=killed,
        late_samples=late,
    )


def _serving(cfg: SoakConfig) -> str:
    return "linkcast up --no-ui" if cfg.up else f"linkcast api --workers {cfg.workers} + engine"


def _pct(x: list[float], q: float) -> float:
    return float(np.percentile(x, q)) if x else math.nan


def _progress(elapsed: float, span: float, recent: list[Call], servers: Servers) -> str:
    writes = [c for c in recent if c.route.startswith("POST")]
    reads = [c for c in recent if not c.route.startswith("POST")]
    bad = sum(not c.status.startswith("2") for c in recent)
    rate = sum(c.samples for c in writes if c.status == "200") / span
    rss = sum(
        rss_mb(p.pid) for proc in servers.procs.values() for p in _tree(proc.pid) if p.is_running()
    )
    ticks = servers.ticks()
    last = f"{ticks[-1][1].seconds:.2f} s" if ticks else "none yet"
    return (
        f"{elapsed:6.0f} s: {rate:9,.0f} samples/s acknowledged,"
        f" write p99 {_pct([c.seconds for c in writes], 99) * 1e3:6.0f} ms,"
        f" read p99 {_pct([c.seconds for c in reads], 99) * 1e3:6.0f} ms,"
        f" {bad} errors, last tick {last}, servers {rss:,.0f} MiB RSS,"
        f" load {os.getloadavg()[0]:.1f}"
    )


def _verdict(ok: bool) -> str:
    return "holds" if ok else "MISSES"


def report(res: SoakResult) -> list[str]:
    """The figures and a verdict per target, as printed lines with units."""
    cfg, s0, s1 = res.config, res.start, res.end
    span = res.measured_s
    out = [
        "",
        f"soak: {span:.0f} s measured after {cfg.warmup:.0f} s warm-up; {cfg.links:,} links,"
        f" engine step {cfg.step} s, "
        + _serving(cfg)
        + f"; {cfg.connections} writer connections x {cfg.batch:,} samples/request,"
        f" {cfg.readers} dashboards every {cfg.read_every:g} s",
    ]
    measured = [c for c in res.calls if s0.at <= c.sent < s1.at]
    writes = [c for c in measured if c.route.startswith("POST")]
    rate = sum(c.samples for c in writes if c.status == "200") / span
    out.append(
        f"write rate: {rate:,.0f} samples/s acknowledged of {cfg.rate:,.0f} target"
        f" ({rate / cfg.rate:.1%}); writers at most {res.behind_s:.2f} s behind schedule"
    )
    out.append(
        f"{'latency (sent -> answer)':<34}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    routes = sorted({c.route for c in measured}, key=lambda r: (not r.startswith("POST"), r))
    for route in routes:
        x = [c.seconds * 1e3 for c in measured if c.route == route]
        out.append(f"{route:<34}{len(x):>9,}{_pct(x, 50):>9.0f}{_pct(x, 99):>9.0f}{max(x):>9.0f}")
    wl = [c.seconds for c in writes]
    rl = [c.seconds for c in measured if not c.route.startswith("POST")]
    out.append(
        f"{'all reads':<34}{len(rl):>9,}{_pct(rl, 50) * 1e3:>9.0f}{_pct(rl, 99) * 1e3:>9.0f}"
    )
    statuses = Counter(c.status for c in res.calls)
    out.append(
        "answers by status (whole run, warm-up included): "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items()))
    )
    wrong = Counter((c.route, c.status) for c in res.calls if c.status != "200")
    if wrong:
        out.append(
            "answers not 200, by route: "
            + ", ".join(f"{r} {st}: {v:,}" for (r, st), v in sorted(wrong.items()))
        )
    errors = sum(v for k, v in statuses.items() if k != "200")
    un = res.unacknowledged
    from_un = sum(stored for _, stored in un)
    lost = res.acknowledged - (res.stored - from_un)
    partial = sum(0 < stored < sent for sent, stored in un)
    out.append(
        f"samples acknowledged {res.acknowledged:,}, stored {res.stored:,}, lost {lost:,}"
        f" (acknowledged, not stored); requests without a 200: {len(un):,}, stored whole"
        f" {sum(stored == sent for sent, stored in un):,} ({from_un:,} samples), not at all"
        f" {sum(stored == 0 for _, stored in un):,}, in part {partial:,}; doubled: none can be"
        f" ((link, ts) is the key and no two samples sent share one); api workers killed by"
        f" uvicorn's supervisor (no answer to its ping within 5 s; startup included):"
        f" {res.workers_killed};"
        f" samples the engine logged as late (not used): {res.late_samples:,}"
    )

    # engine ticks logged in the window
    ticks = [
        (at, t)
        for at, t in res.ticks
        if res.measure_from <= at - t.seconds and at <= res.measure_to
    ]
    step = cfg.step
    closed: set[float] = set()
    for _, t in res.ticks:
        last = t.last_bucket.timestamp()
        closed.update(last - step * i for i in range(t.buckets))
    first = math.ceil(res.measure_from / step) * step  # buckets that began in the window
    expected = list(np.arange(first, res.measure_to - 2 * step, step))
    missed = sum(float(b) not in closed for b in expected)
    durations = [t.seconds for _, t in ticks]
    lags = [at - (t.last_bucket.timestamp() + step) for at, t in ticks]
    catch_up = sum(t.buckets > 1 for _, t in ticks)
    if durations:
        out.append(
            f"engine ticks: {len(durations)}; duration p50 {_pct(durations, 50):.2f} s,"
            f" p99 {_pct(durations, 99):.2f} s, max {max(durations):.2f} s"
            f" (step {step} s); bucket end -> tick done p50 {_pct(lags, 50):.2f} s,"
            f" p99 {_pct(lags, 99):.2f} s; buckets missed {missed} of {len(expected)},"
            f" ticks that closed 2+ buckets (catching up) {catch_up}"
        )
    else:
        out.append(
            f"engine ticks: none logged in the window (buckets missed {missed} of {len(expected)})"
        )

    rss0, rss1 = sum(s0.rss_mb.values()), sum(s1.rss_mb.values())
    growth = rss1 / rss0 - 1
    out.append(
        "memory (RSS): "
        + ", ".join(f"{k} {s0.rss_mb[k]:,.0f} -> {s1.rss_mb[k]:,.0f} MiB" for k in s0.rss_mb)
        + f"; servers {rss0:,.0f} -> {rss1:,.0f} MiB ({growth:+.1%})"
    )

    grown = {name: s1.table_bytes[name] - s0.table_bytes[name] for name in ROW_TABLES}
    rows = {name: s1.rows_written[name] - s0.rows_written[name] for name in ROW_TABLES}
    exp = {name: rows[name] * res.row_bytes[name] if rows[name] else 0.0 for name in ROW_TABLES}
    mb = 1024 * 1024
    for name in ROW_TABLES:
        ratio = grown[name] / exp[name] if exp[name] else math.nan
        out.append(
            f"disk {name}: {rows[name]:,} rows x {res.row_bytes[name]:.1f} B ="
            f" {exp[name] / mb:,.1f} MiB expected, grew {grown[name] / mb:,.1f} MiB (x{ratio:.2f})"
        )
    total_exp = sum(exp.values())
    total_grown = sum(grown.values())
    db_grown = s1.db_bytes - s0.db_bytes
    out.append(
        f"disk, database: grew {db_grown / mb:,.1f} MiB; the three tables {total_grown / mb:,.1f}"
        f" MiB; live checkpoint state {s0.checkpoint_bytes / mb:,.1f} ->"
        f" {s1.checkpoint_bytes / mb:,.1f} MiB"
    )
    cores = psutil.cpu_count() or 1
    server_cpu = {k: s1.cpu_s[k] - s0.cpu_s[k] for k in s0.cpu_s}
    machine = s1.machine_cpu_s - s0.machine_cpu_s
    gen = res.generator_cpu_s
    out.append(
        f"CPU in the window (core-seconds per second, {cores} cores): generator"
        f" {gen['process'] / span:.2f} (writers {gen['writers'] / span:.2f},"
        f" readers {gen['readers'] / span:.2f}); "
        + ", ".join(f"{k} {v / span:.2f}" for k, v in server_cpu.items())
        + f"; whole machine {machine / span:.2f} (all else: other work"
        + ("" if "postgres (embedded)" in server_cpu else ", PostgreSQL")
        + ":"
        f" {(machine - gen['process'] - sum(server_cpu.values())) / span:.2f})"
    )
    out.append(
        f"load average (1 min) {s0.loadavg[0]:.2f} at the start, {s1.loadavg[0]:.2f} at the end"
    )

    lo, hi = DISK_RATIO
    disk_ratio = total_grown / total_exp if total_exp else math.nan
    out += [
        "",
        f"write rate >= 99 % of target: {_verdict(rate >= 0.99 * cfg.rate)} ({rate:,.0f} of"
        f" {cfg.rate:,.0f} samples/s)",
        f"writes p99 < {WRITE_P99_S * 1e3:.0f} ms: {_verdict(_pct(wl, 99) < WRITE_P99_S)}"
        f" ({_pct(wl, 99) * 1e3:.0f} ms)",
        f"reads p99 < {READ_P99_S * 1e3:.0f} ms: {_verdict(_pct(rl, 99) < READ_P99_S)}"
        f" ({_pct(rl, 99) * 1e3:.0f} ms)",
        f"no errors: {_verdict(errors == 0)} ({errors:,} answers not 200)",
        f"every acknowledged sample stored, none in part: {_verdict(lost == 0 and not partial)}"
        f" ({lost:,} lost of {res.acknowledged:,}, {partial:,} requests stored in part)",
        f"no bucket missed: {_verdict(missed == 0)} ({missed} of {len(expected)})",
        f"memory growth < {RSS_GROWTH:.0%}: {_verdict(growth < RSS_GROWTH)} ({growth:+.1%})",
        f"disk growth {lo:g} to {hi:g} x expected: {_verdict(lo <= disk_ratio <= hi)}"
        f" (x{disk_ratio:.2f}: {total_grown / mb:,.0f} MiB for {total_exp / mb:,.0f} expected)",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    d = SoakConfig()
    ap.add_argument("--duration", type=float, default=d.duration, help="seconds measured (600)")
    ap.add_argument("--warmup", type=float, default=d.warmup, help="seconds before (60)")
    ap.add_argument("--rate", type=float, default=d.rate, help="samples/s pushed (50,000)")
    ap.add_argument("--links", type=int, default=d.links, help="distinct links (10,000)")
    ap.add_argument("--step", type=int, default=d.step, help="engine grid, s (10)")
    ap.add_argument("--workers", type=int, default=d.workers, help="api processes (2)")
    ap.add_argument(
        "--up", action="store_true", help="serve with `linkcast up --no-ui` (one process)"
    )
    ap.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL to use (default: a fresh embedded one; a scratch database, as the"
        " run adds links soak0>x... and their samples)",
    )
    ap.add_argument("--connections", type=int, default=d.connections, help="writers (4)")
    ap.add_argument("--batch", type=int, default=d.batch, help="samples per request (5,000)")
    ap.add_argument("--readers", type=int, default=d.readers, help="dashboards (2)")
    ap.add_argument("--read-every", type=float, default=d.read_every, help="s between refreshes")
    args = ap.parse_args()
    if args.up and args.workers != d.workers:
        ap.error("--up serves with one process: leave --workers out")
    cfg = SoakConfig(
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        links=args.links,
        step=args.step,
        workers=args.workers,
        up=args.up,
        database_url=args.database_url,
        connections=args.connections,
        batch=args.batch,
        readers=args.readers,
        read_every=args.read_every,
    )
    # a fresh embedded database unless --database-url: removed after the run, the logs kept
    cfg.data_dir = Path(tempfile.mkdtemp(prefix="linkcast-soak-"))
    try:
        for line in report(run_soak(cfg)):
            print(line, flush=True)
    finally:
        if args.database_url is None:
            from db.embedded import stop_embedded

            stop_embedded()
            shutil.rmtree(cfg.data_dir / "pg", ignore_errors=True)
        print(f"the servers' logs: {cfg.data_dir}/*.log", flush=True)


if __name__ == "__main__":
    main()
