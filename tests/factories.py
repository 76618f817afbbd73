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
