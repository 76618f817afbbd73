"""Issue 14, database outage under load: nothing acknowledged is lost, nothing refused is
stored in part, the API says 503 at once and 2xx again soon, the engine leaves no gap.

A real `linkcast api --workers 2` and a real `linkcast engine` (2 s grid) reach the test
database through a TCP proxy (tests/db_proxy.py). Client threads push steadily, each
request a distinct set of (link, ts) near now; a 503 is retried after its Retry-After
with the same body, at most MAX_ATTEMPTS attempts in all, then given up. A probe client
pushes one small request every PROBE_EVERY seconds and never retries: it is what
measures, on the client side, how soon the API answers 503 after the cut and 2xx after
the restore (the steady clients sleep Retry-After = 5 s after a 503, so their own first
2xx says more about their back-off than about the API; it is printed too).

The proxy is cut for OUTAGE_S seconds, then restored. The issue's runs stop PostgreSQL
for 30 s; this test cuts for 12 s to keep CI short. 12 s, not 10: with Retry-After 5 s
and 3 attempts, a request first refused in the outage's first 2 s is given up (its
third attempt falls in the outage) and one refused later is acknowledged on a retry
after the restore, so both kinds occur in every run.

Checked: every acknowledged sample is stored once, with its value; a request that never
got a 2xx stored all of its samples (a commit whose answer was cut) or none; no sample
is stored that was not sent; the first 503 came within 1 s of the cut (asserted with a
margin: 3 s) and the first 2xx within 5 s of the restore (asserted: 10 s); the engine
stepped down and led again, and every bucket from before the cut to after the restore
has a forecast for every link and model, once.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from db.models import ModelName
from tests.conftest import auth, free_port
from tests.db_proxy import DbProxy
from tests.procs import Proc, env_for, wait_for

pytestmark = pytest.mark.timeout(120)

STEP = 2  # seconds: the engine's grid
OUTAGE_S = 12.0  # the issue says 30 s; 12 s keeps CI short (see above)
CLIENTS = 3
LINKS_PER_CLIENT = 10
TS_PER_REQUEST = 40  # a request: LINKS_PER_CLIENT x TS_PER_REQUEST samples
MAX_ATTEMPTS = 3  # the first try and two retries after Retry-After
PROBE_EVERY = 0.2  # seconds
PROBE_LINK = "probe>x"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODELS = ModelName.ALL


def _now_us() -> int:
    return time.time_ns() // 1000


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _value(k: int, us: int) -> float:
    """A smooth load (no excursions), distinct per link and time."""
    return 1e8 * (1 + k % 5) * (2 + math.sin(2 * math.pi * us / 16e6 + k)) + us % 1000


class Log:
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


def _body(samples: list[tuple[str, int, float]]) -> dict:
    return {"samples": [{"link": n, "ts": _at(us).isoformat(), "value": v} for n, us, v in samples]}


def _post(http: httpx.Client, log: Log, req: int, body: dict, probe: bool) -> httpx.Response | None:
    t0 = time.monotonic()
    try:
        r = http.post("/api/v1/telemetry", json=body)
    except httpx.HTTPError as exc:
        with log.lock:
            log.attempts.append((req, t0, time.monotonic(), 0, probe))
            log.outcome[req] = f"failed {type(exc).__name__}"
        return None
    with log.lock:
        log.attempts.append((req, t0, time.monotonic(), r.status_code, probe))
    return r


def _client(c: int, base_url: str, headers: dict, log: Log, stop: threading.Event) -> None:
    links = [f"c{c}l{k}>y" for k in range(LINKS_PER_CLIENT)]
    last = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            now = _now_us()
            first = now - (TS_PER_REQUEST - 1) * 100  # 100 us apart, after the last request's
            if first <= last:
                time.sleep(0.005)
                continue
            stamps = [first + j * 100 for j in range(TS_PER_REQUEST)]
            last = stamps[-1]
            samples = [
                (name, us, _value(c * LINKS_PER_CLIENT + k, us))
                for us in stamps
                for k, name in enumerate(links)
            ]
            req = log.new_request(samples)
            body = _body(samples)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                r = _post(http, log, req, body, probe=False)
                if r is None:
                    break
                if r.is_success:
                    log.outcome[req] = "ack"
                    break
                if r.status_code != 503:
                    log.outcome[req] = f"refused {r.status_code}"
                    break
                if attempt == MAX_ATTEMPTS:
                    log.outcome[req] = "given up"
                    break
                time.sleep(float(r.headers["Retry-After"]))  # the same body again after it


def _probe(base_url: str, headers: dict, log: Log, stop: threading.Event) -> None:
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            us = _now_us()
            samples = [(PROBE_LINK, us, _value(99, us))]
            req = log.new_request(samples)
            r = _post(http, log, req, _body(samples), probe=True)
            if r is not None:
                log.outcome[req] = "ack" if r.is_success else f"refused {r.status_code}"
            stop.wait(PROBE_EVERY)


def _floor(t: float) -> float:
    return t - t % STEP


def test_database_outage_under_load(database_url, tokens, tmp_path):
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    proxy = DbProxy(url)
    proxy.start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = Proc(
        ["api", "--workers", "2", f"--port={port}"],
        env_for(proxy.url, tmp_path / "api"),
        tmp_path / "api.log",
    )
    engine = Proc(
        ["engine"],
        env_for(
            proxy.url,
            tmp_path / "engine",
            step_seconds=str(STEP),
            horizon="4",
            season_steps="8",
            checkpoint_every="3",
            retrain_seconds="3600",
        ),
        tmp_path / "engine.log",
    )
    headers = auth(tokens["write"])
    log = Log()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(c, base_url, headers, log, stop), daemon=True)
        for c in range(CLIENTS)
    ] + [threading.Thread(target=_probe, args=(base_url, headers, log, stop), daemon=True)]

    def ready() -> bool:
        assert api.alive(), api.text()[-3000:]
        try:
            return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        with psycopg.connect(url, autocommit=True) as conn:

            def newest_issue() -> datetime | None:
                return conn.execute("SELECT max(issued_at) FROM forecast").fetchone()[0]

            wait_for("the api", ready, 60)
            t_start = time.monotonic()
            for t in threads:
                t.start()
            wait_for("the first forecasts", lambda: engine.alive() and newest_issue(), 60)
            time.sleep(2 * STEP)  # a few buckets forecast before the cut

            t_cut, wall_cut = time.monotonic(), time.time()
            proxy.stop()
            time.sleep(OUTAGE_S)
            t_back, wall_back = time.monotonic(), time.time()
            proxy.start()

            def acked_after_restore() -> bool:
                with log.lock:
                    return any(a[3] // 100 == 2 and a[1] >= t_back for a in log.attempts)

            wait_for("a 2xx after the restore", acked_after_restore, 30)
            # the steady clients' retries land; then a few buckets of ordinary pushing
            time.sleep(5 + 3 * STEP)
            wall_stop, t_stop = time.time(), time.monotonic()
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a client did not finish"

            hi = datetime.fromtimestamp(_floor(wall_stop) - STEP, UTC)  # last full bucket
            wait_for(
                f"forecasts issued at {hi + timedelta(seconds=STEP)}",
                lambda: (newest_issue() or hi) >= hi + timedelta(seconds=STEP),
                30,
            )
            lo = datetime.fromtimestamp(_floor(wall_cut) - 2 * STEP, UTC)
            _check_samples(conn, log, t_cut, t_back, t_stop - t_start - OUTAGE_S)
            _check_forecasts(conn, lo, hi, wall_cut, wall_back)
        text = engine.text()
        stepped_down = text.count("stepping down")
        led = text.count("this engine leads")
        print(f"engine: stepped down {stepped_down}, took the lead {led} times")
        assert stepped_down >= 1 and led >= 2, text[-3000:]
    finally:
        stop.set()
        engine.stop()
        api.stop()
        proxy.stop()


def _check_samples(
    conn: psycopg.Connection, log: Log, t_cut: float, t_back: float, pushing: float
) -> None:
    rows = conn.execute(
        "SELECT l.name, s.ts, s.value_bps FROM sample s JOIN link l ON l.id = s.link_id"
    ).fetchall()
    stored: dict[tuple[str, int], int] = {}
    per_req: dict[int, int] = {}
    wrong = extra = 0
    for name, ts, value in rows:
        key = (name, (ts - EPOCH) // timedelta(microseconds=1))
        stored[key] = stored.get(key, 0) + 1
        got = log.sent.get(key)
        if got is None:
            extra += 1
            continue
        req, sent = got
        per_req[req] = per_req.get(req, 0) + 1
        if value != sent:
            wrong += 1
    acked = [r for r, o in log.outcome.items() if o == "ack"]
    not_acked = [r for r, o in log.outcome.items() if o != "ack"]
    unknown = [r for r in log.sizes if r not in log.outcome]
    acknowledged = sum(log.sizes[r] for r in acked)
    lost = sum(log.sizes[r] - min(per_req.get(r, 0), log.sizes[r]) for r in acked)
    doubled = sum(n - 1 for n in stored.values() if n > 1)
    partial = [r for r in not_acked if per_req.get(r, 0) not in (0, log.sizes[r])]
    whole = [r for r in not_acked if per_req.get(r, 0) == log.sizes[r]]
    attempts = log.attempts
    refused = [a for a in attempts if a[3] == 503]
    refused_samples = sum(log.sizes[a[0]] for a in refused)
    retried = len(attempts) - len(log.sizes)
    given_up = [r for r, o in log.outcome.items() if o == "given up"]
    early_503 = [a for a in refused if a[2] < t_cut]
    first_503 = min((a[2] for a in refused if a[2] >= t_cut), default=math.inf) - t_cut
    recovery = min(a[2] for a in attempts if a[3] // 100 == 2 and a[1] >= t_back) - t_back
    steady_recovery = (
        min(
            (a[2] for a in attempts if a[3] // 100 == 2 and a[1] >= t_back and not a[4]),
            default=math.inf,
        )
        - t_back
    )
    after_restore_503 = [a for a in refused if a[1] >= t_back + 10]
    kinds: dict[str, int] = {}
    for o in log.outcome.values():
        kinds[o] = kinds.get(o, 0) + 1
    print(
        f"\ndb outage {OUTAGE_S:.0f} s under load ({acknowledged / pushing:.0f} samples/s"
        f" acknowledged while the database was up): requests {len(log.sizes)} {kinds};"
        f" samples acknowledged {acknowledged}, stored {len(rows)}, refused (503s)"
        f" {len(refused)} responses / {refused_samples} samples, retried {retried}"
        f" (given up {len(given_up)} requests, {sum(log.sizes[r] for r in given_up)}"
        f" samples), not acknowledged {len(not_acked)} requests ({len(whole)} stored whole,"
        f" {len(partial)} in part), lost {lost}, doubled {doubled}, wrong value {wrong},"
        f" not sent {extra}; first 503 {first_503:.3f} s after the cut, first 2xx"
        f" {recovery:.3f} s after the restore (steady clients' first: {steady_recovery:.3f} s)"
    )
    assert not unknown, unknown[:5]
    assert lost == 0
    assert doubled == 0
    assert wrong == 0 and extra == 0
    assert not partial, {r: (per_req.get(r), log.sizes[r]) for r in partial}
    assert not early_503, early_503[:5]
    assert not after_restore_503, after_restore_503[:5]
    assert given_up, "no request was given up: the outage did not outlast the retries"
    assert first_503 < 3.0  # the issue: within 1 s
    assert recovery < 10.0  # the issue: within 5 s


def _check_forecasts(
    conn: psycopg.Connection, lo: datetime, hi: datetime, wall_cut: float, wall_back: float
) -> None:
    step = timedelta(seconds=STEP)
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
    missing = sorted(want - set(got), key=lambda k: k[2])
    doubled = sum(n - 1 for n in got.values() if n > 1)
    unexpected = set(got) - want
    print(
        f"forecasts: buckets {lo:%H:%M:%S}..{hi:%H:%M:%S} ({len(buckets)}; cut at"
        f" {datetime.fromtimestamp(wall_cut, UTC):%H:%M:%S.%f}, restored at"
        f" {datetime.fromtimestamp(wall_back, UTC):%H:%M:%S.%f}), {len(ids)} links x"
        f" {len(MODELS)} models: expected {len(want)}, stored {sum(got.values())},"
        f" missing {len(missing)}, doubled {doubled}, unexpected {len(unexpected)}"
    )
    assert not missing, missing[:10]
    assert doubled == 0 and not unexpected, sorted(unexpected)[:10]
