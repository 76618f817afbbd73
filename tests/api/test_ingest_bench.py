"""bench/ingest.py, bounded: every format pushed through a real `linkcast api` on its own
embedded PostgreSQL, then the COPY references, and the table printed.

The full run (400,000 samples a format) belongs to bench/; this one keeps the command
working: each format's push is acknowledged in full (the bench raises on any status
but the format's success) and its row names a rate, both ratios and the CPU columns.
Rates are never compared (timings are the bench's to report, not a test's to assert).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("json", "remote-write", "line", "otlp")
NUMBER = r"[\d,]+(?:\.\d+)?"


def bench(tmp_path: Path, args: list[str]) -> str:
    """bench/ingest.py's output with ``args``, each format on an embedded PostgreSQL
    under ``tmp_path``; fails the test unless it exits 0."""
    env = {k: v for k, v in os.environ.items() if k != "LINKCAST_DATABASE_URL"}
    env["TMPDIR"] = str(tmp_path)  # the embedded databases' data directories
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest.py"), *args, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_ingest_bench_runs_every_format_and_its_copy_references(tmp_path) -> None:
    args = ["--format", "all", "--samples", "12000", "--batch", "2000", "--links", "50"]
    args += ["--clients", "2", "--workers", "1"]
    args += ["--zeros", "0.25"]  # idle links' 0 bit/s: each must still be stored (bench checks)
    out = bench(tmp_path, args)
    for fmt in FORMATS:
        # samples/s, / COPY bin, / text, api, db and client CPU per sample
        row = re.search(rf"^HTTP {fmt} \(\S+\)\s+((?:{NUMBER}\s+){{5}}{NUMBER})$", out, re.M)
        assert row, f"no row for {fmt}:\n{out}"
        rate, *_ = (float(x.replace(",", "")) for x in row.group(1).split())
        assert rate > 0
        refs = re.search(rf"^  {fmt}\s+text ({NUMBER}) .*; binary ({NUMBER}) ", out, re.M)
        assert refs and all(float(x.replace(",", "")) > 0 for x in refs.groups()), out
    # 12,000 asked; the 2 warm-up batches of 2,000 are not counted
    assert out.count("pushing 8,000 samples (after 2 warm-up batches)") == len(FORMATS)
    assert "25% of them 0)" in out
    assert not list(tmp_path.glob("linkcast-bench-*"))  # each session's files removed


def test_the_ingest_bench_pushes_octet_counters(tmp_path) -> None:
    """--counters: the collector formats push octet counters, each series in time order
    through one client; the bench stops unless the stored loads are exactly those the
    counters imply (first reading of each link a baseline), so a rate lost, doubled or
    wrong fails it."""
    args = ["--format", "all", "--counters", "--samples", "8000", "--batch", "500"]
    out = bench(tmp_path, [*args, "--clients", "2", "--workers", "2"])
    for fmt in FORMATS[1:]:  # JSON has no counters
        row = re.search(rf"^HTTP {fmt} counters \(\S+\)\s+{NUMBER}", out, re.M)
        assert row, f"no row for {fmt}:\n{out}"
    assert "HTTP json" not in out
    # links default to batch x clients: 1,000 links, 8 rounds
    assert "1,000 links" in out and "octet counters" in out
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest.py"), "--format", "json", "--counters"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "no counters" in bad.stderr
