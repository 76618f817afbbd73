"""bench/abilene_smoothing.py, bounded to three days: a row per rule with both
horizons, the last value's own skill 0 by construction, and a clear refusal of a
window too short to score."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "abilene_smoothing.py"
_spec = importlib.util.spec_from_file_location("abilene_smoothing", BENCH)
assert _spec is not None and _spec.loader is not None
smoothing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoothing)


def test_the_bench_prints_every_rule_at_both_horizons() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--days", "3"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    cell = r"[+-]\d+\.\d% / [+-]\d+\.\d%"
    rows = re.findall(rf"^\| (.+?) \| {cell} \| {cell} \|$", run.stdout, re.M)
    assert rows == list(smoothing.RULES), run.stdout
    best = re.findall(r"^best at (\d+) step\(s\), chosen after the fact: ", run.stdout, re.M)
    assert best == ["1", "12"], run.stdout


def test_skill_is_zero_for_the_last_value_and_follows_a_known_error() -> None:
    rng = np.random.default_rng(0)
    y = 1e9 + rng.normal(0.0, 1e7, size=(3 * smoothing.DAY, 2)).cumsum(axis=0)
    assert smoothing.skills(y, smoothing.last_value, 1) == (0.0, 0.0)

    # forecasts with half the last value's error at every step: skill exactly 50 %
    def halfway(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
        return (y[t] + y[t + h]) / 2

    median, pooled = smoothing.skills(y, halfway, 12)
    assert abs(median - 0.5) < 1e-12 and abs(pooled - 0.5) < 1e-12


def test_moving_mean_and_smoothing_forecast_what_they_say() -> None:
    y = np.arange(30.0).reshape(-1, 1)
    t = np.array([5, 9])
    assert smoothing.moving_mean(3)(y, t, 1).ravel().tolist() == [4.0, 8.0]
    level = smoothing.smoothed(0.5)(np.array([[0.0], [2.0], [4.0]]), np.array([2]), 1)
    assert level.ravel().tolist() == [2.5]  # 0 -> 1 -> 2.5


def test_a_window_too_short_is_refused() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--days", "2"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "--days must be 3 to 14" in run.stderr
