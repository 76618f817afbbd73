"""Small factories for test data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(link: str = "A>B", ts: Any = "2026-01-01T00:00:00Z", value: Any = 1.2e9) -> dict:
    return {"link": link, "ts": ts, "value": value}


def samples(n_links: int, n_steps: int, *, step_s: int = 60, t0: datetime = T0) -> list[dict]:
    """n_links x n_steps samples with distinct values, timestamps as RFC 3339 strings."""
    out = []
    for step in range(n_steps):
        ts = (t0 + timedelta(seconds=step * step_s)).isoformat().replace("+00:00", "Z")
        for k in range(n_links):
            out.append({"link": f"n{k}>m{k}", "ts": ts, "value": float(k * 1e6 + step)})
    return out


#: How many steps after the failure each model of :func:`tripled_error_rows` still
#: forecasts the old level (the persistence model is the last value: back after one).
BACK_AFTER = {"liquid": 4, "incremental": 8, "hybrid": 2, "seasonal": 30}


def tripled_error_rows(
    *, pre: int = 60, post: int = 120, step_s: int = 60, t0: datetime = T0, seed: int = 0
) -> list[dict]:
    """One-step error rows (``link, model, ts, actual_bps, error_bps``) around a failure
    at ``t0``: links ``s0>t0`` and ``s1>t1`` triple their load there, ``u0>v0`` does not.
    The persistence model forecasts the last value; the others are off by ~2 % of the
    load, except right after the failure (``BACK_AFTER`` steps of the old level)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    links = {"s0>t0": 1e9, "s1>t1": 4e9, "u0>v0": 2e9}
    steps = np.arange(-pre - 1, post)
    rows = []
    for i, (link, scale) in enumerate(links.items()):
        y = scale * (2 + np.sin(2 * np.pi * steps / 96 + i))
        y *= 1 + 0.01 * rng.standard_normal(y.size)
        if link != "u0>v0":
            y[steps >= 0] *= 3
        for model in ("persistence", *BACK_AFTER):
            if model == "persistence":
                f = np.r_[y[0], y[:-1]]
            else:
                f = y * (1 + 0.02 * rng.standard_normal(y.size))
                old = (steps >= 0) & (steps < BACK_AFTER[model])
                f[old] = y[old] / (3 if link != "u0>v0" else 1)
            for k, a, fc in zip(steps[1:], y[1:], f[1:], strict=True):
                ts = t0 + timedelta(seconds=step_s * int(k))
                rows.append(dict(link=link, model=model, ts=ts, actual_bps=a, error_bps=fc - a))
    return rows
