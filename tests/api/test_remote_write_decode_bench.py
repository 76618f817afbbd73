"""bench/remote_write_decode.py, bounded: its table is printed for every share of
zeros, and both reads agree on every request before either is timed (the bench
asserts it). Times are never compared here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_decode_bench_prints_a_row_per_share_of_zeros() -> None:
    args = ["--series", "200", "--zeros", "0", "0.5", "1", "--rounds", "1", "--repeat", "1"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "remote_write_decode.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = re.findall(r"^\| (\d+)% \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", run.stdout, re.M)
    assert rows == ["0", "50", "100"], run.stdout


def test_the_decode_bench_refuses_a_share_above_one() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "remote_write_decode.py"), "--zeros", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "--zeros are shares, from 0 to 1" in run.stderr
