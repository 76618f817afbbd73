"""Ingestion throughput: HTTP pushes through the api vs raw COPY into the same database.

Starts `linkcast api` (embedded PostgreSQL unless --database-url or LINKCAST_DATABASE_URL),
pushes N samples in batches from concurrent clients, then COPYs the same number of rows
straight into the `sample` table, and prints samples/s for both and their ratio.

    python bench/ingest.py --samples 800000 --clients 8 --workers 2
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg

from db.migrate import upgrade
from db.queries import create_token
from db.session import make_engine, make_sessionmaker, session_scope


def bodies(n: int, batch: int, n_links: int, t0: datetime) -> list[bytes]:
    """Pre-serialised requests, so the clients spend their time on HTTP, not on JSON."""
    out, chunk = [], []
    for i in range(n):
        step, link = divmod(i, n_links)
        ts = (t0 + timedelta(seconds=60 * step)).strftime("%Y-%m-%dT%H:%M:%SZ")
        chunk.append({"link": f"bench{link}>x", "ts": ts, "value": 1e9 + i})
        if len(chunk) == batch:
            out.append(orjson.dumps({"samples": chunk}))
            chunk = []
    if chunk:
        out.append(orjson.dumps({"samples": chunk}))
    return out


def push_all(api: str, token: str, payloads: list[bytes], clients: int) -> float:
    """Each client a keep-alive connection (stdlib http.client: the lightest Python client,
    so the clients take as little as possible of the CPU that the server needs)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = urlsplit(api).hostname, urlsplit(api).port

    def worker(part: list[bytes]) -> int:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            for p in part:
                conn.request("POST", "/api/v1/telemetry", body=p, headers=headers)
                r = conn.getresponse()
                answer = r.read()
                if r.status != 200:
                    raise RuntimeError(f"push failed: {r.status} {answer[:200]!r}")
        finally:
            conn.close()
        return len(part)

    parts = [payloads[i::clients] for i in range(clients)]
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        sum(pool.map(worker, parts))
    return time.perf_counter() - t


def copy_all(url: str, n: int, n_links: int, t0: datetime) -> float:
    """The reference: the same number of rows, one COPY straight into `sample`."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO link (name) SELECT 'copy' || g FROM generate_series(0, %s) g"
                " ON CONFLICT DO NOTHING",
                (n_links - 1,),
            )
            cur.execute("SELECT id FROM link WHERE name LIKE 'copy%%' ORDER BY id")
            ids = [r[0] for r in cur.fetchall()]
        conn.commit()
        lines = []
        for i in range(n):
            step, link = divmod(i, n_links)
            ts = (t0 + timedelta(seconds=60 * step)).isoformat()
            lines.append(f"{ids[link]}\t{ts}\t{1e9 + i!r}\n")
        payload = "".join(lines).encode()
        t = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy("COPY sample (link_id, ts, value_bps) FROM STDIN") as copy:
                copy.write(payload)
        conn.commit()
        return time.perf_counter() - t


def wait_ready(api: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"linkcast api exited with {proc.returncode}")
        try:
            if httpx.get(f"{api}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit("linkcast api did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=800_000, help="samples to push (and COPY)")
    ap.add_argument("--batch", type=int, default=5_000, help="samples per request")
    ap.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    ap.add_argument("--workers", type=int, default=2, help="api server processes")
    ap.add_argument("--links", type=int, default=1_000, help="distinct links")
    ap.add_argument("--database-url", default=os.environ.get("LINKCAST_DATABASE_URL"))
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="linkcast-bench-")
    url = args.database_url
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(data_dir)
    upgrade(url)
    with psycopg.connect(url) as conn:  # rows of an earlier run would collide with COPY's
        conn.execute(
            "DELETE FROM sample WHERE link_id IN"
            " (SELECT id FROM link WHERE name LIKE 'bench%' OR name LIKE 'copy%')"
        )
    engine = make_engine(url, pool_size=1)
    with session_scope(make_sessionmaker(engine)) as session:
        token = create_token(session=session, scope="write", name="bench").token
    engine.dispose()

    env = os.environ | {"LINKCAST_DATABASE_URL": url, "LINKCAST_DATA_DIR": data_dir}
    api = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "linkcast.cli", "api", "--port", str(args.port)]
    proc = subprocess.Popen(
        cmd + ["--workers", str(args.workers)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(api, proc)
        # Start times far apart so the HTTP rows and the COPY rows never collide.
        t_http = datetime(2025, 1, 1, tzinfo=UTC)
        t_copy = datetime(2024, 1, 1, tzinfo=UTC)
        print(f"preparing {args.samples:,} samples in batches of {args.batch:,} ...", flush=True)
        payloads = bodies(args.samples, args.batch, args.links, t_http)
        push_all(api, token, payloads[:2], 1)  # warm-up: connections, token cache
        http_s = push_all(api, token, payloads[2:], args.clients)
        pushed = sum(orjson.loads(p)["samples"].__len__() for p in payloads[2:])
        copy_s = copy_all(url, pushed, args.links, t_copy)
    finally:
        proc.terminate()
        proc.wait(10)
    http_rate, copy_rate = pushed / http_s, pushed / copy_s
    print(f"{'path':<36}{'samples':>10}{'seconds':>10}{'samples/s':>12}")
    print(f"{'HTTP POST /telemetry':<36}{pushed:>10,}{http_s:>10.2f}{http_rate:>12,.0f}")
    ref = "raw COPY into sample (reference)"
    print(f"{ref:<36}{pushed:>10,}{copy_s:>10.2f}{copy_rate:>12,.0f}")
    print(
        f"ratio HTTP / COPY: {http_rate / copy_rate:.2f}   "
        f"({args.clients} clients, {args.workers} api workers, batch {args.batch:,}, "
        f"{args.links:,} links)"
    )


if __name__ == "__main__":
    main()
