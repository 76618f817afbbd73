"""bench/targets.py's ceiling of the post-window skill: checked against errors whose
pooled RMSEs are known exactly, and run over the shipped results."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "bench" / "targets.py")
assert _spec is not None and _spec.loader is not None
targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(targets)


def _row(errors: np.ndarray, h: int) -> dict[str, float]:
    """rmse_post and rmse_settled at ``h`` as evaluate pools them: the post window's
    squared errors (steps x links), the settled ones without the first ``h`` steps."""
    suffix = "" if h == 1 else f"_h{h}"
    return {
        f"rmse_post{suffix}": float(np.sqrt(np.mean(errors**2))),
        f"rmse_settled{suffix}": float(np.sqrt(np.mean(errors[h:] ** 2))),
    }


@pytest.mark.parametrize("h", [1, 12])
def test_the_ceiling_is_the_skill_of_a_hybrid_exact_once_it_has_seen_the_failure(h) -> None:
    rng = np.random.default_rng(3)
    steps, links = 288, 4
    jump = np.zeros((steps, links))
    jump[:h] = rng.normal(100.0, 10.0, size=(h, links))  # forecast before the failure
    hybrid = jump + rng.normal(0.0, 2.0, size=(steps, links))
    persistence = jump + rng.normal(0.0, 4.0, size=(steps, links))
    exact = np.where(np.arange(steps)[:, None] < h, hybrid, 0.0)  # 0 once it has seen it
    rows = {
        (0, "hybrid"): _row(hybrid, h),
        (0, "persistence"): _row(persistence, h),
        (0, "exact"): _row(exact, h),
    }
    by = pd.DataFrame.from_dict(rows, orient="index")
    by.index = pd.MultiIndex.from_tuples(by.index, names=["seed", "model"])
    post = targets.metric_column("rmse_post", h)
    achieved = 1 - by.loc[(0, "exact"), post] / by.loc[(0, "persistence"), post]
    top = targets.ceiling(by, 0, "hybrid", h)
    # what the exact hybrid scores: exactly given the window's length, and without it
    # up to the h / N the ceiling then leaves out (on the generous side)
    assert targets.ceiling(by, 0, "hybrid", h, steps) == pytest.approx(achieved, abs=1e-12)
    assert achieved <= top <= achieved + 0.01
    assert top > 1 - by.loc[(0, "hybrid"), post] / by.loc[(0, "persistence"), post]
    assert targets.ceiling(by, 0, "exact", h) == pytest.approx(achieved, abs=1e-12)


def test_targets_prints_a_ceiling_under_every_post_window_skill() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "targets.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    posts = [i for i, line in enumerate(lines) if line.startswith("- hybrid skill post ")]
    assert len(posts) == 12  # two result folders, three scenarios, h = 1 and 12
    for i in posts:
        assert lines[i + 1].startswith("  - ceiling, exact once the failure is seen: ")


def test_the_post_window_length_is_read_from_the_report() -> None:
    assert targets.post_steps(ROOT / "bench" / "results" / "nobel-eu-sine") == 288
    assert targets.post_steps(ROOT / "bench") is None  # no report.md there
