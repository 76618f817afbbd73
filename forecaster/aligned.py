"""The error around an event, aligned at t = 0: the paper's comparison, on live data.

Given one-step errors and actuals of every link around an event, find the links whose
load shifted (relative change of the mean actual after vs before at least
``threshold``), and for each model the mean over those links of
``|error| / link's pre-event mean`` per step offset, plus the time to convergence
(:func:`forecaster.metrics.time_to_convergence`, tolerance 1.5x).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from forecaster.metrics import time_to_convergence


@dataclass
class AlignedErrors:
    affected: list[str]
    rows: list[dict[str, float | int | str]]  # model, offset_steps, rel_error, mae_bps, links
    ttc_steps: dict[str, int | None]


def aligned_errors(
    rows: Iterable[Mapping[str, object]],
    *,
    t0: datetime,
    step_seconds: int,
    before: int,
    threshold: float = 0.1,
    only: list[str] | None = None,
) -> AlignedErrors:
    """Rows hold ``link, model, ts, actual_bps, error_bps`` (one-step errors).

    ``only`` fixes the affected links instead of detecting them.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [dict(link=l, model="liquid", ts=t0 + timedelta(minutes=k),
    ...              actual_bps=(3.0 if k >= 0 and l == "a" else 1.0), error_bps=0.1)
    ...         for k in range(-5, 5) for l in ("a", "b")]
    >>> out = aligned_errors(rows, t0=t0, step_seconds=60, before=5)
    >>> out.affected, out.rows[0]["offset_steps"], round(out.rows[0]["rel_error"], 2)
    (['a'], -5, 0.1)
    """
    by_link: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for r in rows:
        ts = r["ts"]
        assert isinstance(ts, datetime)
        k = round((ts - t0).total_seconds() / step_seconds)
        link, model = str(r["link"]), str(r["model"])
        actual, error = float(r["actual_bps"]), float(r["error_bps"])  # type: ignore[arg-type]
        by_link.setdefault(link, {}).setdefault(model, {})[k] = (actual, error)

    pre_mean: dict[str, float] = {}
    affected: list[str] = []
    for link, models in sorted(by_link.items()):
        series = next(iter(models.values()))
        pre = [a for k, (a, _) in series.items() if k < 0]
        post = [a for k, (a, _) in series.items() if k >= 0]
        if not pre or not post:
            continue
        m_pre, m_post = float(np.mean(pre)), float(np.mean(post))
        pre_mean[link] = max(m_pre, 1.0)
        change = abs(m_post - m_pre) / max(m_pre, 1.0)
        if (only is not None and link in only) or (only is None and change >= threshold):
            affected.append(link)

    out_rows: list[dict[str, float | int | str]] = []
    ttc: dict[str, int | None] = {}
    models = sorted({m for link in affected for m in by_link[link]})
    for model in models:
        offsets = sorted({k for link in affected for k in by_link[link].get(model, {})})
        curve = []
        for k in offsets:
            rel, absolute = [], []
            for link in affected:
                hit = by_link[link].get(model, {}).get(k)
                if hit is not None:
                    rel.append(abs(hit[1]) / pre_mean[link])
                    absolute.append(abs(hit[1]))
            if rel:
                out_rows.append(
                    {
                        "model": model,
                        "offset_steps": k,
                        "rel_error": float(np.mean(rel)),
                        "mae_bps": float(np.mean(absolute)),
                        "links": len(rel),
                    }
                )
                curve.append((k, float(np.mean(rel))))
        ks = np.array([k for k, _ in curve])
        errs = np.array([e for _, e in curve])
        if ks.size and (ks < 0).any() and (ks >= 0).any():
            event_index = int(np.searchsorted(ks, 0))
            window = max(1, min(5, before // 4))
            ttc[model] = time_to_convergence(
                errs, event_index, window=window, baseline_steps=before
            )
        else:
            ttc[model] = None
    return AlignedErrors(affected=affected, rows=out_rows, ttc_steps=ttc)
