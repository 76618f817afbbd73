"""Ingestion throughput of each push format through the api vs raw COPY into the same database.

For each format in turn, in a session of its own: starts `linkcast api` (on a new
embedded PostgreSQL unless --database-url or LINKCAST_DATABASE_URL), pushes N samples
in batches from concurrent clients, then COPYs the same number of rows straight into
the `sample` table, --copy-runs times (5) as text and as many in PostgreSQL's binary format,
and prints samples/s and their ratio to each COPY (the references, the medians of their
runs, measured in the same session: these machines are shared and noisy, so only ratios
compare across runs). Also the CPU time the api's
processes spent per sample of each format (user + system, all workers): what a format
costs the server, which other work on the machine slows down but does not inflate as
it does the rates.

Formats (each a gauge in bit/s, so every request stores what it carries):
  json          POST /api/v1/telemetry     {"samples": [{"link", "ts", "value"}]}
  remote-write  POST /api/v1/write         snappy protobuf WriteRequest, link_load_bps{link}
  line          POST /api/v2/write         InfluxDB line protocol, link_load,link=.. bps=..
  otlp          POST /v1/metrics           OTLP protobuf, gauge link_load_bps, attribute link

    python bench/ingest.py --format all --samples 400000 --clients 8 --workers 2
    python bench/ingest.py --format remote-write --zeros 0.3   # idle links' 0 bit/s
    python bench/ingest.py --format remote-write --counters    # octet counters, as collectors send
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import cramjam
import psutil
import psycopg
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.remote_write import WriteRequest  # noqa: E402
from bench.serving import Rows, encode_json, wait_ready  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.queries import create_token  # noqa: E402
from db.session import make_engine, make_sessionmaker, session_scope  # noqa: E402


def rows_of(n: int, n_links: int, t0: datetime, offset: int = 0, zeros: float = 0.0) -> Rows:
    """n samples over n_links links, one grid step (60 s) per round of links; a share
    ``zeros`` of them 0 bit/s (an idle link's), spread evenly (a Weyl sequence)."""
    base = t0.timestamp()
    golden = 0.6180339887498949
    return [
        (
            f"bench{i % n_links}>x",
            base + 60 * (i // n_links),
            0.0 if (i * golden) % 1.0 < zeros else 1e9 + i + offset,
        )
        for i in range(n)
    ]


# --counters: every link's load as an octet counter of this name (one series rule,
# given to the api as its LINKCAST_SERIES_FILE), the way collectors send interfaces
COUNTER = "link_octets_total"
COUNTER_RULES = f"""[[series]]
metric = "{COUNTER}"
link = "{{link}}"
unit = "octets"
"""


def encode_line(rows: Rows, counter: bool = False) -> bytes:
    # tag values escape commas, spaces and equals signs; bench names have none
    if counter:  # measurement link_octets, field total: the series link_octets_total
        return "".join(
            f"link_octets,link={k} total={int(v)}u {int(ts)}\n" for k, ts, v in rows
        ).encode()
    return "".join(f"link_load,link={k} bps={v!r} {int(ts)}\n" for k, ts, v in rows).encode()


def encode_otlp(rows: Rows, counter: bool = False) -> bytes:
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add()
    if counter:  # a cumulative monotonic sum of integers, as an OTel SDK's Counter
        metric.name, metric.unit = COUNTER, "By"
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
        points = metric.sum.data_points
    else:
        metric.name, metric.unit = "link_load_bps", "bit/s"
        points = metric.gauge.data_points
    for link, ts, v in rows:
        p = points.add()
        p.time_unix_nano = int(ts) * 1_000_000_000
        if counter:
            p.as_int = int(v)
        else:
            p.as_double = v
        a = p.attributes.add()
        a.key, a.value.string_value = "link", link
    return req.SerializeToString()


def encode_remote_write(rows: Rows, counter: bool = False) -> bytes:
    req = WriteRequest()
    metric = COUNTER if counter else "link_load_bps"
    for link, ts, v in rows:
        series = req.timeseries.add()
        for name, value in (("__name__", metric), ("link", link)):
            label = series.labels.add()
            label.name, label.value = name, value
        sample = series.samples.add()
        sample.value, sample.timestamp = v, int(ts * 1000)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


# format -> (path, headers, encoder, success status)
FORMATS: dict[str, tuple[str, dict[str, str], Callable[..., bytes], int]] = {
    "json": ("/api/v1/telemetry", {"Content-Type": "application/json"}, encode_json, 200),
    "remote-write": (
        "/api/v1/write",
        {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        encode_remote_write,
        204,
    ),
    "line": (
        "/api/v2/write?org=bench&bucket=bench&precision=s",
        {"Content-Type": "text/plain; charset=utf-8"},
        encode_line,
        204,
    ),
    "otlp": ("/v1/metrics", {"Content-Type": "application/x-protobuf"}, encode_otlp, 200),
}


def bodies(fmt: str, rows: Rows, batch: int) -> list[bytes]:
    """Pre-serialised requests, so the clients spend their time on HTTP, not encoding."""
    encode = FORMATS[fmt][2]
    return [encode(rows[i : i + batch]) for i in range(0, len(rows), batch)]


def counter_bodies(
    fmt: str, n: int, n_links: int, t0: datetime, batch: int, clients: int
) -> tuple[list[bytes], Rows]:
    """Requests of octet counters (``n`` readings over ``n_links`` links, a reading of
    each per 60-s round), and the loads they must store.

    Each link's series goes through one client, in time order, as Prometheus' shards
    send a series (readings of one series racing each other would be stale, and give
    no load): link ``l`` is client ``l mod clients``'s, each client's readings cut into
    requests of ``batch``, and the requests dealt out in turn (request ``j`` is client
    ``j mod clients``'s; the two warm-up requests go first, then :func:`push_all` deals
    the rest in turn, so each client's requests stay with one client, in order). Link ``l`` carries
    ``1e9 + 8 l`` bit/s, so the counter rises by ``60 x (1.25e8 + l)`` octets a round;
    its first reading is the series' baseline and stores nothing. Returns the bodies
    and the (link, ts, bit/s) the api must store: exact, every number a whole one.
    """
    base, rounds = t0.timestamp(), n // n_links
    streams: list[Rows] = [[] for _ in range(clients)]
    stored: Rows = []
    for k in range(rounds):
        for link in range(n_links):
            name, ts, m = f"bench{link}>x", base + 60 * k, 125_000_000 + link
            streams[link % clients].append((name, ts, float(10**12 + 60 * m * k)))
            if k:
                stored.append((name, ts, 8.0 * m))
    encode = FORMATS[fmt][2]
    per_client = [
        [encode(rows[i : i + batch], True) for i in range(0, len(rows), batch)] for rows in streams
    ]
    out = [b for turn in zip(*per_client, strict=True) for b in turn]
    return out, stored


def push_all(api: str, token: str, fmt: str, payloads: list[bytes], clients: int) -> float:
    """Each client a keep-alive connection (stdlib http.client: the lightest Python client,
    so the clients take as little as possible of the CPU that the server needs)."""
    path, headers, _, ok = FORMATS[fmt]
    headers = {**headers, "Authorization": f"Bearer {token}"}
    host, port = urlsplit(api).hostname, urlsplit(api).port

    def worker(part: list[bytes]) -> int:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            for p in part:
                conn.request("POST", path, body=p, headers=headers)
                r = conn.getresponse()
                answer = r.read()
                if r.status != ok:
                    raise RuntimeError(f"{fmt} push failed: {r.status} {answer[:200]!r}")
        finally:
            conn.close()
        return len(part)

    parts = [payloads[i::clients] for i in range(clients)]
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        sum(pool.map(worker, parts))
    return time.perf_counter() - t


def copy_rate(
    url: str, n: int, n_links: int, t0: datetime, binary: bool, prefix: str, server: int | None
) -> tuple[float, float]:
    """The reference: the same number of rows, one COPY straight into `sample`: rows/s,
    and PostgreSQL's CPU seconds (:func:`db_cpu_s` of ``server``).

    The rows go to links of their own (``prefix`` + a number), so that every run
    writes into empty key ranges, as the api's first push does. The payload is made
    before the clock starts: text as written here, or PostgreSQL's binary COPY format
    as PostgreSQL itself writes it (the rows copied into a temporary table, then out
    with ``COPY .. TO STDOUT (FORMAT BINARY)``). Only the COPY into `sample` and its
    commit are timed.
    """
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO link (name) SELECT %s || g FROM generate_series(0, %s) g"
                " ON CONFLICT DO NOTHING",
                (prefix, n_links - 1),
            )
            cur.execute(
                "SELECT id FROM link WHERE starts_with(name, %s)"
                " ORDER BY substr(name, length(%s) + 1)::int",
                (prefix, prefix),
            )
            ids = [r[0] for r in cur.fetchall()]
        conn.commit()
        lines = []
        for i in range(n):
            step, link = divmod(i, n_links)
            ts = (t0 + timedelta(seconds=60 * step)).isoformat()
            lines.append(f"{ids[link]}\t{ts}\t{1e9 + i!r}\n")
        payload = "".join(lines).encode()
        fmt = ""
        if binary:
            fmt = " (FORMAT BINARY)"
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE ref (link_id int, ts timestamptz, value_bps float8)")
                with cur.copy("COPY ref FROM STDIN") as copy:
                    copy.write(payload)
                with cur.copy("COPY ref TO STDOUT (FORMAT BINARY)") as copy:
                    payload = b"".join(bytes(chunk) for chunk in copy)
                cur.execute("DROP TABLE ref")
            conn.commit()
        db = db_cpu_s(server)
        t = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY sample (link_id, ts, value_bps) FROM STDIN{fmt}") as copy:
                copy.write(payload)
        conn.commit()
        secs = time.perf_counter() - t
        return n / secs, db_cpu_s(server) - db


def db_cpu_s(server: int | None) -> float:
    """User + system CPU seconds of the PostgreSQL server ``server`` (its postmaster's
    pid) and its processes alive now (backends, WAL writer, checkpointer, ...; a backend
    that has exited is not counted, so read it while the connections are open). With
    no pid (a server given by --database-url): every PostgreSQL process on the machine.
    """
    if server is not None:
        return _cpu_s(_tree(server))
    return _cpu_s(p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres")


def api_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the api's process and its workers so far."""
    return _cpu_s(_tree(pid))


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (none if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(procs: Iterable[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass  # exited meanwhile
    return total


@dataclass
class Measured:
    """One format's push and its COPY references, measured in one session."""

    fmt: str
    samples: int
    seconds: float
    api_cpu: float  # CPU seconds: the api's processes, PostgreSQL's, this script's
    db_cpu: float
    client_cpu: float
    copy: dict[str, list[tuple[float, float]]]  # text|binary -> (rows/s, db CPU s) runs

    def reference(self, kind: str) -> float:
        """The median of a COPY reference's runs, rows/s."""
        return statistics.median(rate for rate, _ in self.copy[kind])


def tally(rows: Rows) -> tuple[int, int, int, int, int]:
    """What a stored copy of ``rows`` must add up to: rows, zeros, the sum of the
    values, and of the values times their time (s) and times their link's number
    (a value stored on another time or link changes the last two). Exact: the bench's
    values and times are whole numbers."""
    values = [int(v) for _, _, v in rows]
    return (
        len(rows),
        values.count(0),
        sum(values),
        sum(v * int(ts) for v, (_, ts, _) in zip(values, rows, strict=True)),
        sum(v * int(link[5:].split(">")[0]) for v, (link, _, _) in zip(values, rows, strict=True)),
    )


def stored_tally(url: str) -> tuple[int, int, int, int, int]:
    """:func:`tally` of the samples stored on this bench's links (`bench...`)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE s.value_bps = 0),"
            " coalesce(sum(s.value_bps::numeric), 0),"
            " coalesce(sum(s.value_bps::numeric * extract(epoch FROM s.ts)), 0),"
            " coalesce(sum(s.value_bps::numeric * split_part(substr(l.name, 6), '>', 1)::int), 0)"
            " FROM sample s JOIN link l ON l.id = s.link_id"
            " WHERE starts_with(l.name, 'bench')"
        ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)  # type: ignore[return-value]


def measure(fmt: str, args: argparse.Namespace) -> Measured:
    """Push ``args.samples`` samples in ``fmt`` through a fresh `linkcast api`, then the
    COPY references, three runs of each, into the same database.

    Each format has a session of its own: its own embedded PostgreSQL (or, with
    --database-url, the given one, emptied of this bench's rows) and its own api
    processes, so that none pays for another's rows. Run one after the other in one
    session, each format's database and api CPU per sample grew with the formats
    before it (OTLP last of four: 2.9 to 3.2 us of api CPU and 2.7 to 3.0 of
    database CPU; first: 2.4 and 2.0).
    """
    data_dir = tempfile.mkdtemp(prefix="linkcast-bench-")
    url = args.database_url
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(data_dir)
    server = None
    if not args.database_url:
        from db.embedded import postmaster_pid

        server = postmaster_pid(Path(data_dir, "pg").resolve())
    try:
        upgrade(url)
        with psycopg.connect(url) as conn:  # rows of an earlier run would collide
            conn.execute(
                "DELETE FROM sample WHERE link_id IN"
                " (SELECT id FROM link WHERE name LIKE 'bench%' OR name LIKE 'copy%')"
            )
            # and the COPY runs' links go, so that each run's are new (new ids: their
            # keys land where no dead index entry of an earlier run lies)
            conn.execute(r"DELETE FROM link WHERE name ~ '^copy([0-9]+[tb]_)?[0-9]+$'")
        engine = make_engine(url, pool_size=1)
        with session_scope(make_sessionmaker(engine)) as session:
            token = create_token(session=session, scope="write", name="bench").token
        engine.dispose()
        env = os.environ | {"LINKCAST_DATABASE_URL": url, "LINKCAST_DATA_DIR": data_dir}
        if args.counters:
            rules = Path(data_dir, "series.toml")
            rules.write_text(COUNTER_RULES)
            env["LINKCAST_SERIES_FILE"] = str(rules)
        api = f"http://127.0.0.1:{args.port}"
        cmd = [sys.executable, "-m", "linkcast.cli", "api", "--port", str(args.port)]
        proc = subprocess.Popen(
            cmd + ["--workers", str(args.workers)], env=env, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(api, proc)
            t0 = datetime(2025, 1, 1, tzinfo=UTC)
            print(f"{fmt}: preparing {args.samples:,} samples ...", flush=True)
            if args.counters:
                payloads, expected = counter_bodies(
                    fmt, args.samples, args.links, t0, args.batch, args.clients
                )
            else:
                expected = rows_of(args.samples, args.links, t0, zeros=args.zeros)
                payloads = bodies(fmt, expected, args.batch)
            push_all(api, token, fmt, payloads[:2], 1)  # warm-up: connections, token cache
            pushed = min(args.samples, args.batch * len(payloads)) - 2 * args.batch
            print(f"{fmt}: pushing {pushed:,} samples (after 2 warm-up batches) ...", flush=True)
            cpu, db, client = api_cpu_s(proc.pid), db_cpu_s(server), time.process_time()
            secs = push_all(api, token, fmt, payloads[2:], args.clients)
            used = (
                api_cpu_s(proc.pid) - cpu,
                db_cpu_s(server) - db,
                time.process_time() - client,
            )
        finally:
            proc.terminate()
            proc.wait(10)
        if not args.counters:
            expected = expected[: pushed + 2 * args.batch]
        sent, stored = tally(expected), stored_tally(url)
        if stored != sent:
            raise SystemExit(
                f"{fmt}: pushed (rows, zeros, sums of values, x time, x link) {sent},"
                f" stored {stored}"
            )
        print(f"{fmt}: stored = sent: {sent[0]:,} loads (rows, zeros and sums checked)")
        print(f"{fmt}: COPY references ...", flush=True)
        # Each reference --copy-runs times (a COPY is short, this machine noisy): medians.
        refs: dict[str, list[tuple[float, float]]] = {"text": [], "binary": []}
        for r in range(args.copy_runs):
            for j, kind in enumerate(refs):
                t0 = datetime(2010 - 2 * r - j, 1, 1, tzinfo=UTC)
                prefix = f"copy{r}{kind[0]}_"
                binary = kind == "binary"
                refs[kind].append(copy_rate(url, pushed, args.links, t0, binary, prefix, server))
        return Measured(fmt, pushed, secs, *used, copy=refs)
    finally:
        if not args.database_url:
            from db.embedded import stop_embedded

            stop_embedded()  # before its files go
        shutil.rmtree(data_dir, ignore_errors=True)


class _Help(argparse.RawTextHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module's text as written, and each option's default."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    ap.add_argument(
        "--format",
        default="all",
        choices=[*FORMATS, "all"],
        help="push format to measure (all: one after the other, each in a session of its own)",
    )
    ap.add_argument(
        "--samples", type=int, default=400_000, help="samples per format, 2 batches of them warm-up"
    )
    ap.add_argument("--batch", type=int, default=5_000, help="samples per request")
    ap.add_argument(
        "--copy-runs",
        type=int,
        default=5,
        help="runs of each COPY reference (text, binary) per format; the median is the reference",
    )
    ap.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    ap.add_argument("--workers", type=int, default=2, help="api server processes")
    ap.add_argument(
        "--links",
        type=int,
        default=0,
        help="distinct links (0: 1,000; with --counters, --batch x --clients)",
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get("LINKCAST_DATABASE_URL"),
        help="a PostgreSQL to use (its bench rows are deleted first) instead of a new"
        " embedded one per format; its CPU is then read off every PostgreSQL process",
    )
    ap.add_argument("--port", type=int, default=8765, help="the api's port")
    ap.add_argument(
        "--zeros",
        type=float,
        default=0.0,
        help="share of the pushed samples that are 0 bit/s (idle links; remote write's"
        " protobuf then leaves their values off the wire)",
    )
    ap.add_argument(
        "--counters",
        action="store_true",
        help=f"push octet counters ({COUNTER}, a rule of unit octets; not json, which has"
        " none) instead of gauges: the readings that collectors send (snmp_exporter's"
        " ifHCOutOctets), turned into bit/s against each series' last reading. Each"
        " request then holds one reading of each of --batch series (as Prometheus sends"
        " them), so --links defaults to --batch x --clients",
    )
    args = ap.parse_args()
    if not 0 <= args.zeros <= 1:
        ap.error(f"--zeros is a share, from 0 to 1 (got {args.zeros})")
    if args.copy_runs < 1:
        ap.error("--copy-runs must be at least 1")
    if args.samples <= 2 * args.batch:
        ap.error(f"--samples must exceed 2 x --batch ({2 * args.batch:,}): two are warm-up")
    formats = list(FORMATS) if args.format == "all" else [args.format]
    if args.counters:
        if args.format == "json":
            ap.error("--counters: the JSON API takes loads in bit/s, no counters")
        if args.zeros:
            ap.error("--counters: --zeros applies to gauges only")
        formats = [f for f in formats if f != "json"]
        args.links = args.links or args.batch * args.clients
        if args.links % args.clients or args.samples % args.links:
            ap.error(
                "--counters: --links must be a multiple of --clients and --samples of --links"
                f" (got {args.links:,} links, {args.clients} clients, {args.samples:,} samples)"
            )
        if (args.samples // args.clients) % args.batch:
            ap.error(
                "--counters: each client's readings (--samples / --clients) must fill whole batches"
            )
    else:
        args.links = args.links or 1_000
    results = [measure(fmt, args) for fmt in formats]

    head = f"{'path':<46}{'samples/s':>11}{'/ COPY bin':>11}{'/ text':>8}"
    print(f"{head}{'CPU us/sample: api':>20}{'db':>6}{'client':>8}")
    for m in results:
        kind = " counters" if args.counters else ""
        name = f"HTTP {m.fmt}{kind} ({FORMATS[m.fmt][0].split('?')[0]})"
        rate = m.samples / m.seconds
        print(
            f"{name:<46}{rate:>11,.0f}{rate / m.reference('binary'):>11.2f}"
            f"{rate / m.reference('text'):>8.2f}{m.api_cpu / m.samples * 1e6:>20.2f}"
            f"{m.db_cpu / m.samples * 1e6:>6.2f}{m.client_cpu / m.samples * 1e6:>8.2f}"
        )
    print(
        f"COPY references (rows/s, median of {args.copy_runs} runs; database CPU us/row),"
        " per session:"
    )
    for m in results:
        parts = []
        for kind in m.copy:
            db = statistics.median(d for _, d in m.copy[kind]) / m.samples * 1e6
            runs = ", ".join(f"{rate:,.0f}" for rate, _ in m.copy[kind])
            parts.append(f"{kind} {m.reference(kind):,.0f} ({runs}; db {db:.2f} us/row)")
        print(f"  {m.fmt:<14}" + "; ".join(parts))
    print(
        "(/ COPY bin, / text: samples/s over the session's binary and text COPY references;"
        " CPU: user + system per sample, of the api's processes, of the PostgreSQL"
        " server's processes, and of this script's HTTP clients)"
    )
    what = (
        "octet counters: samples/s are readings/s; each series' first reading is its"
        " baseline and stores nothing"
        if args.counters
        else f"{args.zeros:.0%} of them 0"
    )
    print(
        f"({args.samples:,} samples a format, {args.clients} clients, {args.workers} api"
        f" workers, batch {args.batch:,}, {args.links:,} links, {what})"
    )


if __name__ == "__main__":
    main()
