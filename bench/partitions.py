"""Time partitions at scale: ingest rate into an empty `sample` vs one holding 100 M rows,
and how long retention takes to drop a day's partition while ingest runs.

WIPES the database it is given (it downgrades and upgrades the schema, and drops it all
again at the end unless --keep): use a database of your own.

1. Ingest on an empty table: client threads push batches (one sample per link) through
   the project's ingest path (`db.ingest.write_samples`: one COPY per batch, one
   transaction) for --seconds; samples/s.
2. Fill: --rows rows over --links links, one per link every 60 s, ending two hours ago,
   with one INSERT .. SELECT generate_series per UTC day (day partitions created first
   as retention would: `db.partitions.ensure`).
3. Ingest again, the same way, with the rows stored; the ratio to 1.
4. A newest-sample-per-link read (the dashboard's overview) with the catch-all ranges,
   and with an empty DEFAULT partition attached (why db/partitions.py has none).
5. Retention while ingest runs: `db.partitions.drop_older_than` for the oldest day, then
   the next ones (--drops), each timed; the ingest batches' latency during the run.

    python bench/partitions.py --database-url postgresql://postgres@127.0.0.1:5432/NAME
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import partitions  # noqa: E402
from db.ingest import LinkIds, write_samples  # noqa: E402
from db.migrate import downgrade, upgrade  # noqa: E402
from db.partitions import DAY, floor_day  # noqa: E402
from db.session import make_engine  # noqa: E402

STEP = timedelta(seconds=60)


def disk_free_gb(path: str) -> float:
    return shutil.disk_usage(path).free / 1e9


class Ingest:
    """Client threads writing one batch (a sample per link) per call, timestamps from
    ``base`` on in steps of 1 ms per batch (distinct, so every batch takes the COPY
    path); rows, and each batch's latency in seconds."""

    def __init__(self, engine: Engine, links: list[str], base: datetime, clients: int) -> None:
        self.engine, self.links, self.base, self.clients = engine, links, base, clients
        self.stop = threading.Event()
        self.rows = 0
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        ids = LinkIds()
        try:
            while not self.stop.is_set():
                with self._lock:
                    n, self._next = self._next, self._next + 1
                ts = (self.base + timedelta(milliseconds=n)).isoformat()
                batch = [(name, ts, 1e9 + n) for name in self.links]
                t = time.perf_counter()
                written = write_samples(self.engine, batch, ids).rows
                with self._lock:
                    self.rows += written
                    self.latencies.append((t, time.perf_counter() - t))
        except BaseException as exc:  # noqa: BLE001 - counted and printed by the caller
            self.errors.append(exc)

    def __enter__(self) -> Ingest:
        self.t0 = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()
        self.seconds = time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def measure_ingest(
    engine: Engine, links: list[str], base: datetime, args: argparse.Namespace
) -> float:
    with Ingest(engine, links, base, args.clients) as run:
        time.sleep(args.seconds)
    if run.errors:
        raise SystemExit(f"ingest failed: {run.errors[0]!r}")
    return run.rate


def load_day(engine: Engine, day: datetime, first: datetime, last: datetime, n_links: int) -> int:
    """One day's rows (grid points ``first`` to ``last``, a row per link at each) into a
    table of its own with no index, its primary key and BRIN index built once, attached
    in place of the empty day partition (a CHECK constraint of the range spares ATTACH
    its scan), then vacuumed: a day restored in bulk."""
    name = partitions.day_name("sample", day)
    lo, hi = f"'{day.isoformat()}'", f"'{(day + DAY).isoformat()}'"
    with engine.begin() as conn:  # short: the parent's lock is not held while loading
        conn.execute(text(f"ALTER TABLE sample DETACH PARTITION {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        conn.execute(
            text(f"CREATE TABLE {name} (LIKE sample INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        )
        n = conn.execute(
            text(
                f"INSERT INTO {name} (link_id, ts, value_bps, quality)"
                " SELECT l.id, g.ts, 1e9 + l.id, 'ok'"
                " FROM generate_series(CAST(:a AS timestamptz), :b, interval '60 s') g(ts)"
                " CROSS JOIN (SELECT id FROM link ORDER BY id LIMIT :n) l"
            ),
            {"a": first, "b": last, "n": n_links},
        ).rowcount
        conn.execute(text(f"ALTER TABLE {name} ADD PRIMARY KEY (link_id, ts)"))
        conn.execute(text(f"CREATE INDEX ON {name} USING brin (ts)"))
        check = f"CHECK (ts >= {lo} AND ts < {hi})"
        conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range {check}"))
    with engine.begin() as conn:
        conn.execute(
            text(f"ALTER TABLE sample ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
        )
        conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range"))
    # A restored day is vacuumed once (else autovacuum does it, for minutes, in the
    # middle of the ingest measurements: it did in a first run)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM (ANALYZE) {name}"))
    return int(n)


def fill(engine: Engine, rows: int, n_links: int, end: datetime, workers: int) -> tuple[int, float]:
    """``rows // n_links`` grid points 60 s apart ending before ``end``, a row per link
    at each, one day at a time (:func:`load_day`, ``workers`` days at once). Returns
    rows and seconds."""
    steps = rows // n_links
    start = end - steps * STEP
    partitions.ensure(engine, "sample", start, end)
    days, k = [], 0
    while k < steps:
        day = floor_day(start + k * STEP)
        last = min(steps, k + -(-(day + DAY - start - k * STEP) // STEP)) - 1
        days.append((day, start + k * STEP, start + last * STEP))
        k = last + 1
    t = time.perf_counter()
    total = 0
    with ThreadPoolExecutor(workers) as pool:
        jobs = {pool.submit(load_day, engine, *d, n_links): d[0] for d in days}
        for job in as_completed(jobs):
            n = job.result()
            total += n
            print(
                f"   filled {jobs[job]:%Y-%m-%d}: {n:,} rows"
                f" ({time.perf_counter() - t:.0f} s so far)",
                flush=True,
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE sample"))
    return total, time.perf_counter() - t


def newest_per_link(engine: Engine) -> float:
    query = text(
        "SELECT count(x.ts) FROM link l CROSS JOIN LATERAL"
        " (SELECT ts FROM sample s WHERE s.link_id = l.id ORDER BY ts DESC LIMIT 1) x"
    )
    with engine.connect() as conn:
        conn.execute(query)  # warm
        t = time.perf_counter()
        conn.execute(query)
        return time.perf_counter() - t


def prepare(url: str, links: list[str], now: datetime) -> Engine:
    """A fresh schema with the links registered and no sample."""
    downgrade(url)
    upgrade(url)
    engine = make_engine(url, pool_size=8)
    write_samples(
        engine, [(n, (now - timedelta(hours=3)).isoformat(), 1.0) for n in links], LinkIds()
    )
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE sample"))
    return engine


def rounds(
    full: Engine, empty: Engine, links: list[str], base: datetime, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Ingest rate (samples/s) of ``args.rounds`` alternating rounds into each database:
    the machine is shared, so only rates measured side by side compare."""
    a, b = [], []
    for r in range(args.rounds):
        a.append(measure_ingest(full, links, base + r * timedelta(minutes=2), args))
        b.append(measure_ingest(empty, links, base + r * timedelta(minutes=2), args))
        print(f"   round {r + 1}: {a[-1]:,.0f} vs {b[-1]:,.0f} samples/s", flush=True)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url", required=True, help="the big one (wiped)")
    ap.add_argument("--empty-database-url", required=True, help="the empty one (wiped)")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--links", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0, help="per ingest round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=3, help="days loaded at once")
    ap.add_argument("--drops", type=int, default=3, help="day partitions to drop, one at a time")
    ap.add_argument("--keep", action="store_true", help="leave the data in the database")
    args = ap.parse_args()
    # db.partitions says when it had to retry for the lock
    logging.basicConfig(format="   %(name)s: %(message)s")
    logging.getLogger("db.partitions").setLevel(logging.INFO)

    probe = make_engine(args.database_url, pool_size=1)
    with probe.connect() as conn:
        data_dir = str(conn.scalar(text("SHOW data_directory")))
        version = conn.scalar(text("SHOW server_version"))
    probe.dispose()
    local = Path(data_dir).exists()
    print(f"PostgreSQL {version}, data in {data_dir}")
    if local:
        print(f"disk free before: {disk_free_gb(data_dir):.1f} GB")
    links = [f"bench{k}>x" for k in range(args.links)]
    now = datetime.now(UTC)
    engine = prepare(args.database_url, links, now)
    empty = prepare(args.empty_database_url, links, now)
    batch = f"{args.clients} clients x batches of {args.links:,} samples"

    print(f"1. ingest, both tables empty (control): {batch}, db.ingest.write_samples (COPY)")
    a0, b0 = rounds(engine, empty, links, now - timedelta(hours=1, minutes=30), args)
    control = statistics.median(a0) / statistics.median(b0)
    print(f"   ratio of medians {control:.2f} (1 up to the machine's noise)")

    print(f"2. fill {args.rows:,} rows ({args.links:,} links, one sample a link every 60 s)")
    filled, seconds = fill(engine, args.rows, args.links, now - timedelta(hours=2), args.workers)
    with engine.connect() as conn:
        size = conn.scalar(
            text(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                " WHERE inhparent = 'sample'::regclass"
            )
        )
        per_part: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT c.relname, c.reltuples::bigint FROM pg_inherits i"
                    " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'sample'::regclass"
                )
            ).all()
        )
    print(
        f"   {filled:,} rows in {seconds:.0f} s ({filled / seconds:,.0f} rows/s);"
        f" sample: {float(size) / 1e9:.1f} GB with indexes, {len(per_part)} partitions"
    )
    if local:
        print(f"   disk free: {disk_free_gb(data_dir):.1f} GB")

    print(f"3. ingest, {filled:,} rows stored vs an empty table, alternating: {batch}")
    a1, b1 = rounds(engine, empty, links, now - timedelta(hours=1), args)
    ratio = statistics.median(a1) / statistics.median(b1)
    print(
        f"   median {statistics.median(a1):,.0f} samples/s with {filled:,} rows stored,"
        f" {statistics.median(b1):,.0f} samples/s empty: ratio {ratio:.2f} (control {control:.2f})"
    )

    print(f"4. newest sample of each of {args.links:,} links (ORDER BY ts DESC LIMIT 1 per link)")
    plain = newest_per_link(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sample_bench_default PARTITION OF sample DEFAULT"))
    with_default = newest_per_link(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE sample_bench_default"))
    print(
        f"   catch-all ranges: {plain * 1e3:.0f} ms; with an empty DEFAULT partition:"
        f" {with_default * 1e3:.0f} ms ({with_default / plain:.1f}x)"
    )

    print(f"5. retention while ingest runs ({batch}): one day partition at a time")
    with engine.connect() as conn:
        parts = [p for p in partitions.partitions(conn, "sample") if p.lower and p.upper]
    bounds = [p.upper for p in parts if p.upper is not None]
    drops: list[tuple[float, float]] = []
    held: list[float] = []
    with Ingest(engine, links, now - timedelta(minutes=30), args.clients) as run:
        time.sleep(3)
        for part, bound in list(zip(parts, bounds, strict=True))[: args.drops]:
            t = time.perf_counter()
            done = partitions.drop_older_than(engine, "sample", bound)
            took = time.perf_counter() - t
            drops.append((t, took))
            held.append(done.locked_seconds)
            print(
                f"   {part.name} (~{per_part.get(part.name, 0):,} rows):"
                f" {done.dropped} dropped in {took:.3f} s,"
                f" table locked {done.locked_seconds:.3f} s",
                flush=True,
            )
            time.sleep(3)
    if run.errors:
        raise SystemExit(f"ingest failed during retention: {run.errors[0]!r}")
    near = [any(a - 1 <= t <= a + d for a, d in drops) for t, _ in run.latencies]
    during = [s for (_, s), n in zip(run.latencies, near, strict=True) if n]
    other = [s for (_, s), n in zip(run.latencies, near, strict=True) if not n]
    print(
        f"   retention of a day: median {statistics.median(d for _, d in drops):.3f} s,"
        f" max {max(d for _, d in drops):.3f} s; table locked (writers may wait):"
        f" median {statistics.median(held):.3f} s, max {max(held):.3f} s"
    )
    print(
        f"   ingest meanwhile: {run.rate:,.0f} samples/s; batch latency max"
        f" {max(during) * 1e3:.0f} ms around the drops (within 1 s before to the end),"
        f" median {statistics.median(other) * 1e3:.0f} ms otherwise; 0 failed batches"
    )
    with engine.connect() as conn:
        left = conn.scalar(
            text("SELECT count(*) FROM sample WHERE ts < :t"), {"t": bounds[args.drops - 1]}
        )
    print(f"   rows left older than the last bound: {left}")

    engine.dispose()
    empty.dispose()
    if not args.keep:
        for url in (args.database_url, args.empty_database_url):
            wipe = make_engine(url, pool_size=1)
            with wipe.begin() as conn:  # not row by row through the downgrade's copy
                conn.execute(text("TRUNCATE sample"))
            wipe.dispose()
            downgrade(url)
            upgrade(url)
        if local:
            print(f"cleaned up; disk free: {disk_free_gb(data_dir):.1f} GB")


if __name__ == "__main__":
    main()
