"""What the benchmarks that serve linkcast share: the JSON push body, waiting for the API,
reading the engine's tick lines, and a process's resident memory.

Used by bench/ingest.py, bench/live.py and bench/soak.py (run as scripts, they put the
repository root on ``sys.path`` to import it as ``bench.serving``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

Rows = list[tuple[str, float, float]]  # (link, ts seconds, bit/s)


def encode_json(rows: Rows) -> bytes:
    """``POST /api/v1/telemetry``'s body for ``rows``: ``{"samples": [{"link", "ts", "value"}]}``
    with ``ts`` in RFC 3339 (whole seconds as ``...:SSZ``, else to the microsecond), each
    distinct time formatted once.

    >>> encode_json([("a>b", 0.0, 1e9), ("a>b", 0.25, 2.0)])
    b'{"samples":[{"link":"a>b","ts":"1970-01-01T00:00:00Z","value":1000000000.0},{"link":"a>b","ts":"1970-01-01T00:00:00.250000Z","value":2.0}]}'
    """
    stamps: dict[float, str] = {}
    samples = []
    for link, ts, v in rows:
        if ts not in stamps:
            when = datetime.fromtimestamp(ts, UTC)
            stamps[ts] = when.strftime(
                "%Y-%m-%dT%H:%M:%SZ" if ts == int(ts) else "%Y-%m-%dT%H:%M:%S.%fZ"
            )
        samples.append({"link": link, "ts": stamps[ts], "value": v})
    return orjson.dumps({"samples": samples})


def wait_ready(api: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Return once ``api``'s ``/readyz`` answers 200; exit if ``proc`` (the server) ends
    first or ``timeout`` seconds pass."""
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


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (``VmRSS`` of /proc), NaN if unknown."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# engine/run.py logs each tick that closed buckets:
# "tick: 1 bucket(s) to 2026-01-01 00:00:10+00:00, 1000 forecasts, ..., 0.27 s"
_TICK = re.compile(r"tick: (\d+) bucket\(s\) to (.+?),.* ([\d.]+) s$")


@dataclass(frozen=True)
class Tick:
    """One engine tick from its log line: buckets closed, the last one's start, seconds."""

    buckets: int
    last_bucket: datetime
    seconds: float


def tick_of(line: str) -> Tick | None:
    """The tick a line of the engine's log reports, or None for any other line.

    >>> t = tick_of("run tick: 2 bucket(s) to 2026-01-01 00:00:10+00:00, 5 forecasts, 0.27 s")
    >>> t.buckets, t.last_bucket.isoformat(), t.seconds
    (2, '2026-01-01T00:00:10+00:00', 0.27)
    """
    m = _TICK.search(line.strip())
    if m is None:
        return None
    return Tick(int(m.group(1)), datetime.fromisoformat(m.group(2)), float(m.group(3)))
