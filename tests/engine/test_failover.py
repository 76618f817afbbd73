"""Issue 14, crashes: `kill -9` of the leading engine mid-tick, a second one waiting.

Real `linkcast engine` processes on a 2 s grid against the test database; a feeder
writes every link's load each step; the leader is killed with SIGKILL while one of its
database transactions is open (a bucket being processed), three times, a fresh spare
started after each. The follower must take over and issue the forecasts of the bucket
two steps after the kill; every bucket before, during and after has its forecasts and
errors exactly once; an alert raised and cleared around the kills is stored once and
told once per receiver.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import psycopg
import pytest

from db.live import ENGINE_LOCK_KEY
from db.models import ModelName
from tests.conftest import free_port
from tests.procs import Proc, database_port, db_client_ports, env_for, wait_for

STEP = 2  # seconds
N_LINKS = 30
HOT = "f0>g0"  # its capacity is lowered, then raised again, around the kills
KILLS = 3
MODELS = ModelName.ALL
pytestmark = pytest.mark.timeout(300)  # a hang guard: each wait inside has its own bound


def _load(k: int, step: int) -> float:
    rng = random.Random(step * 1000 + k)
    v = 1e9 * (1 + k % 5) * (2 + math.sin(2 * math.pi * step / 8 + k))
    return v * (1 + 0.01 * rng.gauss(0, 1))


def _floor(t: float) -> float:
    return t - t % STEP


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Feeder(threading.Thread):
    """Writes one sample per link a quarter into every grid bucket, as a collector would
    (straight into the database: the API is not what is under test here)."""

    def __init__(self, url: str, ids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.url, self.ids = url, ids
        self.stop = threading.Event()
        self.last_bucket: float | None = None
        self.error: BaseException | None = None

    def write(self, conn: psycopg.Connection, bucket: float) -> None:
        step = int(bucket // STEP)
        ts = _at(bucket + STEP / 4)
        rows = [(self.ids[f"f{k}>g{k}"], ts, _load(k, step)) for k in range(N_LINKS)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sample (link_id, ts, value_bps) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                rows,
            )

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    bucket = _floor(time.time())
                    if bucket != self.last_bucket:
                        self.write(conn, bucket)
                        self.last_bucket = bucket
                    self.stop.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class Load(threading.Thread):
    """Ingest load on the same database while the engines tick and are killed: about
    ``rate`` samples/s of the same links (their bucket's value, so the buckets' means
    do not move), by COPY in batches every 0.1 s, as the API would store them."""

    def __init__(self, url: str, ids: dict[str, int], rate: int = 10_000) -> None:
        super().__init__(daemon=True)
        self.url, self.ids, self.per_batch = url, ids, max(1, rate // 10 // N_LINKS)
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    now = time.time()
                    bucket = _floor(now)
                    step = int(bucket // STEP)
                    feeder_ts = bucket + STEP / 4  # the feeder's sample: not this one's
                    stamps = [
                        t
                        for t in (round(now - j * 1e-4, 6) for j in range(self.per_batch))
                        if t >= bucket and t != feeder_ts
                    ]
                    with conn.cursor().copy(
                        "COPY sample (link_id, ts, value_bps) FROM STDIN"
                    ) as copy:
                        for k in range(N_LINKS):
                            value = _load(k, step)
                            for t in stamps:
                                copy.write_row((self.ids[f"f{k}>g{k}"], _at(t), value))
                    self.written += N_LINKS * len(stamps)
                    self.stop.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class Receiver:
    """A webhook receiver: every delivery (its id and status) it was sent."""

    def __init__(self) -> None:
        got: list[tuple[str, str, int | None]] = []
        self.got = got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                alert = body.get("alert") or {}
                got.append(
                    (
                        self.headers.get("X-Linkcast-Delivery", ""),
                        body.get("status"),
                        alert.get("id"),
                    )
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _leader(engines: list[Proc]) -> Proc:
    """The live engine that logged taking the lock, checked against pg_locks: the
    backend holding the advisory lock serves a connection of that process."""
    leading = [p for p in engines if p.alive() and "this engine leads" in p.text()]
    assert len(leading) == 1, [p.pid for p in leading]
    return leading[0]


def _lock_holder_port(conn: psycopg.Connection) -> int | None:
    row = conn.execute(
        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (ENGINE_LOCK_KEY >> 32, ENGINE_LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    return None if row is None else int(row[0])


def _kill_mid_tick(conn: psycopg.Connection, leader: Proc, db_port: int) -> tuple[float, str]:
    """SIGKILL ``leader`` while a transaction of its own (a tick's: samples read,
    forecasts and errors written) is open; returns the wall time and its last query."""

    def open_tick() -> str | None:
        ports = db_client_ports(leader.pid, db_port)
        if not ports:
            return None
        row = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE client_port = ANY(%s)"
            " AND application_name = 'linkcast' AND xact_start IS NOT NULL"
            " AND state IN ('active', 'idle in transaction')"
            " AND query !~* 'notification'",
            (list(ports),),
        ).fetchone()
        return None if row is None else str(row[0])

    query = wait_for("the leader to process a bucket", open_tick, 10 * STEP, every=0.01)
    time.sleep(random.uniform(0, 0.05))  # somewhere in the tick, not always its start
    t = time.time()
    leader.kill9()
    return t, " ".join(query.split())[:70]


def test_sigkill_of_the_leader_mid_tick_loses_and_doubles_nothing(database_url, clean_db, tmp_path):
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    db_port = database_port(url)
    if db_port is None:
        pytest.skip(
            "the database is reached over a Unix socket: its backends cannot be tied"
            " to processes (set LINKCAST_TEST_DATABASE_URL to a TCP server, as CI does)"
        )
    receiver = Receiver()
    settings = dict(
        step_seconds=str(STEP),
        horizon="4",
        season_steps="8",
        checkpoint_every="3",  # a takeover restores an older state and replays buckets
        alert_sustain_steps="1",
        alert_clear_steps="2",
        webhook_urls=f"http://127.0.0.1:{receiver.port}/hook",
        webhook_secret="s3cret",
        retrain_seconds="3600",
    )
    engines: list[Proc] = []
    feeder: Feeder | None = None
    load: Load | None = None

    def start_engine() -> Proc:
        n = len(engines)
        proc = Proc(
            ["engine"], env_for(url, tmp_path / f"e{n}", **settings), tmp_path / f"engine{n}.log"
        )
        engines.append(proc)
        return proc

    def waiting(proc: Proc) -> bool:
        # started: its scheduler and delivery worker run (a pooled connection stays open)
        assert proc.alive(), proc.text()[-2000:]
        return (
            bool(db_client_ports(proc.pid, db_port)) and psutil.Process(proc.pid).num_threads() >= 3
        )

    def newest_issue() -> datetime | None:
        return conn.execute("SELECT max(issued_at) FROM forecast").fetchone()[0]

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cur:
                for k in range(N_LINKS):
                    cur.execute(
                        "INSERT INTO link (name, capacity_bps) VALUES (%s, 1e12)", (f"f{k}>g{k}",)
                    )
            ids = {n: i for i, n in conn.execute("SELECT id, name FROM link").fetchall()}
            feeder = Feeder(url, ids)
            now = _floor(time.time())
            for j in range(20, 0, -1):  # some history: the first leader learns from it
                feeder.write(conn, now - j * STEP)
            feeder.start()
            load = Load(url, ids)
            load.start()

            first = start_engine()
            wait_for("a leader", lambda: "this engine leads" in first.text(), 60)
            # each log line names its level (linkcast.cli.LOG_FORMAT): an operator greps
            # the engine's WARNING and ERROR lines (a bucket failing, then given up)
            assert " INFO engine.loop this engine leads" in first.text()
            wait_for("the first forecasts", newest_issue, 60)
            start_engine()
            wait_for("the follower to start", lambda: waiting(engines[-1]), 60)
            time.sleep(STEP)

            kills: list[tuple[datetime, datetime, float, float, str]] = []
            for i in range(KILLS):
                leader = _leader(engines)
                holder = _lock_holder_port(conn)
                assert holder in db_client_ports(leader.pid, db_port), (
                    f"kill {i}: lock held from port {holder}; engines"
                    f" {[(p.pid, p.alive(), sorted(db_client_ports(p.pid, db_port))) for p in engines]}"  # noqa: E501
                    f"\n{leader.text()[-3000:]}"
                )
                if i == 0:  # a capacity breach: the alert is raised around the kill
                    conn.execute("UPDATE link SET capacity_bps = 2e9 WHERE name = %s", (HOT,))
                if i == KILLS - 1:  # and cleared around the last one
                    conn.execute("UPDATE link SET capacity_bps = 1e12 WHERE name = %s", (HOT,))
                t_kill, query = _kill_mid_tick(conn, leader, db_port)
                # takeover: another engine holds the leader's lock (it tries on every
                # grid tick; PostgreSQL frees the lock when the dead client's socket closes)
                wait_for(
                    "another engine to take the lead",
                    lambda old=holder: _lock_holder_port(conn) not in (None, old),
                    30,
                    every=0.02,
                )
                took = (time.time() - t_kill) / STEP
                spare = start_engine()  # the next kill's follower, starting meanwhile
                kill_bucket = _at(_floor(t_kill))
                target = kill_bucket + timedelta(seconds=2 * STEP)
                # the follower takes over and issues for the bucket two steps on
                wait_for(
                    f"forecasts issued at {target} after the kill at {_at(t_kill)}",
                    lambda kb=kill_bucket, tg=target: (newest_issue() or kb) >= tg,
                    60,
                )
                reached = time.time()
                kills.append((kill_bucket, target, took, (reached - t_kill) / STEP, query))
                wait_for("a new follower to start", lambda: waiting(spare), 60)  # noqa: B023
                time.sleep(STEP)

            time.sleep(2 * STEP)
            load.stop.set()
            load.join(timeout=10)
            assert load.error is None, load.error
            feeder.stop.set()
            feeder.join(timeout=10)
            assert feeder.error is None, feeder.error
            print(f"\nload: {load.written:,} samples written beside the engines")
            last = _at(feeder.last_bucket)
            wait_for(
                "the last bucket's forecasts",
                lambda: (newest_issue() or last) >= last + timedelta(seconds=STEP),
                60,
            )
            # every notification delivered (at least once) before the engines stop
            wait_for(
                "the notifications to be delivered",
                lambda: conn.execute(
                    "SELECT count(*) = 0 FROM notification WHERE delivered_at IS NULL"
                ).fetchone()[0],
                60,
            )
            for p in engines:
                p.stop()
            # each takeover restored the newest checkpoint and replayed the buckets after it
            restored = sum(p.text().count("restored checkpoint of") for p in engines[1:])
            assert restored >= KILLS, restored
            _check(conn, kills, ids, last)
            _check_alerts(conn, receiver, ids)
    finally:
        if load is not None:
            load.stop.set()
        if feeder is not None:
            feeder.stop.set()
        for p in engines:
            p.stop()
        receiver.close()


def _check(conn: psycopg.Connection, kills, ids: dict[str, int], last: datetime) -> None:  # noqa: ANN001
    step = timedelta(seconds=STEP)
    lo = kills[0][0] - 4 * step  # from before the first kill
    buckets = []
    b = lo
    while b <= last:
        buckets.append(b)
        b += step
    # forecasts: issued at the end of each bucket, every link (all have reported) x model
    rows = conn.execute(
        "SELECT link_id, model, issued_at, count(*) FROM forecast"
        " WHERE issued_at >= %s AND issued_at <= %s GROUP BY 1, 2, 3",
        (lo + step, last + step),
    ).fetchall()
    got = {(r[0], r[1], r[2]): r[3] for r in rows}
    want = {(i, m, b + step) for b in buckets for i in ids.values() for m in MODELS}
    f_missing = sorted(want - set(got), key=lambda k: k[2])
    f_doubled = sum(n - 1 for n in got.values() if n > 1)
    f_extra = set(got) - want
    # errors: each bucket with an ok sample of a link is scored for every model
    observed = conn.execute(
        "SELECT DISTINCT link_id, to_timestamp(floor(extract(epoch FROM ts) / %s) * %s)"
        " FROM sample WHERE ts >= %s AND ts < %s AND quality = 'ok'",
        (STEP, STEP, lo, last + step),
    ).fetchall()
    e_want = {(i, m, b) for i, b in observed for m in MODELS}
    rows = conn.execute(
        "SELECT link_id, model, ts, count(*) FROM forecast_error"
        " WHERE ts >= %s AND ts <= %s GROUP BY 1, 2, 3",
        (lo, last),
    ).fetchall()
    e_got = {(r[0], r[1], r[2]): r[3] for r in rows}
    e_missing = sorted(e_want - set(e_got), key=lambda k: k[2])
    e_doubled = sum(n - 1 for n in e_got.values() if n > 1)
    print(
        f"\nfailover: {len(kills)} kills; buckets expected {len(buckets)}"
        f" ({len(want)} forecasts, {len(e_want)} errors); forecasts stored"
        f" {sum(got.values())}, missing {len(f_missing)}, doubled {f_doubled},"
        f" unexpected {len(f_extra)}; errors stored {sum(e_got.values())},"
        f" missing {len(e_missing)}, doubled {e_doubled}"
    )
    for kill_bucket, target, took, steps, query in kills:
        print(
            f"  killed in bucket {kill_bucket:%H:%M:%S} during {query!r}: the follower led"
            f" {took:.2f} steps after the kill; issued at {target:%H:%M:%S} (2 steps on)"
            f" {steps:.1f} steps after the kill"
        )
    # the issue: takes over within two steps (measured on a quiet machine: README);
    # one step more here for a machine shared with other work
    assert all(took <= 3 for _, _, took, _, _ in kills), kills
    assert not f_missing, f_missing[:10]
    assert f_doubled == 0 and not f_extra
    assert not e_missing, e_missing[:10]
    assert e_doubled == 0


def _check_alerts(conn: psycopg.Connection, receiver: Receiver, ids: dict[str, int]) -> None:
    alerts = conn.execute(
        "SELECT id, kind, link_id, created_at, state, firing_at, parent_id FROM alert"
    ).fetchall()
    same = {}
    for a in alerts:
        same.setdefault((a[1], a[2], a[3]), []).append(a[0])
    a_doubled = sum(len(v) - 1 for v in same.values())
    open_per = {}
    for a in alerts:
        if a[4] != "resolved":
            open_per.setdefault((a[1], a[2]), []).append(a[0])
    hot = [a for a in alerts if a[1] == "capacity" and a[2] == ids[HOT]]
    notes = conn.execute(
        "SELECT id, receiver, alert_id, payload->>'status' FROM notification"
    ).fetchall()
    per = {}
    for n in notes:
        per.setdefault((n[1], n[2], n[3]), []).append(n[0])
    n_doubled = sum(len(v) - 1 for v in per.values())
    fired = [a for a in alerts if a[5] is not None and a[6] is None]
    n_missing = [a[0] for a in fired if not any(k[1] == a[0] and k[2] == "firing" for k in per)]
    r_missing = [
        a[0]
        for a in fired
        if a[4] == "resolved" and not any(k[1] == a[0] and k[2] == "resolved" for k in per)
    ]
    delivered = {d for d, _, _ in receiver.got}
    undelivered = [n[0] for n in notes if str(n[0]) not in delivered]
    print(
        f"alerts: {len(alerts)} stored (capacity on {HOT}: {len(hot)}, states"
        f" {[a[4] for a in hot]}), doubled {a_doubled}; notifications {len(notes)} stored,"
        f" missing {len(n_missing) + len(r_missing)}, doubled {n_doubled};"
        f" webhook deliveries {len(receiver.got)} ({len(receiver.got) - len(delivered)}"
        f" re-sent), undelivered {len(undelivered)}"
    )
    assert hot and hot[0][5] is not None, "no capacity alert fired on the hot link"
    assert a_doubled == 0, same
    assert all(len(v) == 1 for v in open_per.values()), open_per
    assert n_doubled == 0 and not n_missing and not r_missing, (per, n_missing, r_missing)
    assert not undelivered, undelivered
