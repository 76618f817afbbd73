"""Live latency: `linkcast up` on the embedded database, 1,000 links pushed every step.

Starts `linkcast up --no-ui` in a subprocess (embedded PostgreSQL in a fresh data dir,
unless --database-url), backfills some history, then pushes one sample per link per
step as a collector would and measures, for a few watched links:

- latency from the push (made as the bucket ends, as a collector that reports each
  interval's average would) to the stored forecast that uses it,
- the same measured from the bucket's end: with every link in, the bucket closes
  early (engine/loop.py), well before its late allowance (shown for reference),
- tick duration (from the engine's log) as a share of the step,
- the resident memory of the `linkcast up` process (API + engine).

    python bench/live.py --links 1000 --step 10 --steps 12
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import rss_mb, tick_of  # noqa: E402


def load(link: int, step: int) -> float:
    return 1e9 * (1 + link % 10) * (2 + math.sin(2 * math.pi * step / 288 + link))


def push(client: httpx.Client, links: int, step: int, ts: datetime) -> None:
    samples = [
        {"link": f"bench{k}>x", "ts": ts.isoformat(), "value": load(k, step)} for k in range(links)
    ]
    for i in range(0, len(samples), 5000):
        r = client.post("/api/v1/telemetry", json={"samples": samples[i : i + 5000]})
        r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--links", type=int, default=1000)
    ap.add_argument("--step", type=int, default=10, help="LINKCAST_STEP_SECONDS")
    ap.add_argument("--steps", type=int, default=12, help="live steps measured")
    ap.add_argument("--backfill", type=int, default=48, help="steps of history first")
    ap.add_argument("--watch", type=int, default=5, help="links whose forecasts are polled")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="linkcast-live-")
    env = os.environ | {
        "LINKCAST_DATA_DIR": data_dir,
        "LINKCAST_STEP_SECONDS": str(args.step),
        "LINKCAST_SEASON_STEPS": "288",
    }
    env.pop("LINKCAST_DATABASE_URL", None)
    if args.database_url:
        env["LINKCAST_DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "linkcast.cli", "up", "--no-ui", "--port", str(args.port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    ticks: list[tuple[int, float]] = []

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tick = tick_of(line)
            if tick:
                ticks.append((tick.buckets, tick.seconds))

    threading.Thread(target=read_log, daemon=True).start()
    api = f"http://127.0.0.1:{args.port}"
    token_file = Path(data_dir) / "admin-token"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if token_file.exists() and httpx.get(f"{api}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        sys.exit("linkcast up did not become ready")
    token = token_file.read_text().strip()
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    step = timedelta(seconds=args.step)
    late = args.step / 4
    try:
        now = datetime.now(UTC)
        anchor = datetime.fromtimestamp(int(now.timestamp()) // args.step * args.step, UTC)
        print(f"backfilling {args.backfill} steps x {args.links} links ...", flush=True)
        for k in range(args.backfill):
            push(client, args.links, k, anchor - step * (args.backfill - k))
        # Wait for the engine to digest the backfill before measuring.
        while not ticks or sum(b for b, _ in ticks) < args.backfill:
            time.sleep(0.5)
        warm_ticks = len(ticks)
        latencies, after_end = [], []
        # The buckets since the backfill, up to the current one, as a collector that kept
        # reporting would have sent them: a bucket after one without samples (a collector
        # outage) waits for its late allowance, since nothing says which links to expect.
        gap, k0 = anchor, args.backfill
        while gap <= datetime.now(UTC):
            push(client, args.links, k0, gap)
            gap, k0 = gap + step, k0 + 1
        # Live: a collector sends each bucket's measurement when the bucket ends.
        live = gap
        for j in range(args.steps):
            k = k0 + j
            bucket = live + step * j
            wait = (bucket + step - datetime.now(UTC)).total_seconds() - 0.2
            if wait > 0:
                time.sleep(wait)
            push(client, args.links, k, bucket)
            pushed = time.time()
            ended = (bucket + step).timestamp()
            issued = (bucket + step).isoformat().replace("+00:00", "Z")
            watched = {f"bench{w * args.links // args.watch}>x" for w in range(args.watch)}
            while watched and time.time() < ended + late + 30:
                for link in list(watched):
                    r = client.get(
                        f"/api/v1/links/{link}/forecasts",
                        params={"model": "liquid", "latest": "true", "step": 1},
                    )
                    data = r.json()["data"]
                    if data and data[0]["issued_at"] >= issued:
                        seen = time.time()
                        latencies.append(seen - pushed)
                        after_end.append(seen - ended)
                        watched.discard(link)
                time.sleep(0.05)
            print(
                f"step {j + 1}/{args.steps}: {len(latencies)} forecasts seen,"
                f" push -> stored up to {max(latencies[-args.watch :], default=math.nan):.2f} s",
                flush=True,
            )
        memory = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    live_ticks = [s for b, s in ticks[warm_ticks:] if b == 1]
    lat, aft = np.array(latencies), np.array(after_end)
    print()
    print(f"links {args.links}, step {args.step} s, late allowance {late:.1f} s")
    for label, x in (("push -> forecast stored", lat), ("bucket end -> stored", aft)):
        print(f"{label:<26}p50 {np.median(x):6.2f} s   p95 {np.percentile(x, 95):6.2f} s")
    if live_ticks:
        t = np.array(live_ticks)
        print(
            f"tick duration (1 bucket)  p50 {np.median(t):6.2f} s   max {t.max():6.2f} s"
            f"   = {np.median(t) / args.step:.1%} of the step (median)"
        )
    print(f"memory of linkcast up (api + engine): {memory:.0f} MB RSS")


if __name__ == "__main__":
    main()
