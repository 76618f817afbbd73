"""The error around an event, aligned at t = 0: the paper's comparison, on live data.

Given one-step errors and actuals of every link around an event, find the links whose
load shifted (relative change of the mean actual after vs before at least
``threshold``), and for each model, per step offset, the mean over those links of the
absolute percentage error relative to the current load (``ape``, as
:func:`forecaster.metrics.step_ape` computes it), plus the time to convergence of that
curve (:func:`forecaster.metrics.convergence`, whose docstring is the definition).

Offsets are whole steps from the event on a dense grid: a step with no row (a bucket
the engine missed) is a gap, not the next step, so ``ttc_steps`` counts steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from forecaster.metrics import APE_FLOOR_RATIO, Convergence, convergence


@dataclass
class AlignedErrors:
    affected: list[str]
    rows: list[dict[str, float | int | str]]  # model, offset_steps, ape, rel_error, mae_bps, links
    ttc_steps: dict[str, int | None]
    convergence: dict[str, Convergence]


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

    ``only`` fixes the affected links instead of detecting them. ``before``: steps
    before the event that form the baseline. Per row of the answer, ``ape`` is the
    mean over the affected links of ``|error| / max(|actual|, floor)`` (the floor: 5 %
    of the link's mean load over the rows), and ``rel_error`` the older
    ``|error| / link's pre-event mean`` (kept for existing clients; it cannot show a
    model converging on a link whose load changed).

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [dict(link=l, model="liquid", ts=t0 + timedelta(minutes=k),
    ...              actual_bps=(3.0 if k >= 0 and l == "a" else 1.0),
    ...              error_bps=(0.03 if k >= 0 and l == "a" else 0.01))
    ...         for k in range(-12, 24) for l in ("a", "b")]
    >>> out = aligned_errors(rows, t0=t0, step_seconds=60, before=12)
    >>> out.affected, out.rows[0]["offset_steps"], round(out.rows[-1]["ape"], 3)
    (['a'], -12, 0.01)
    >>> out.ttc_steps, out.convergence["liquid"].status.value
    ({'liquid': 0}, 'converged')
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
    floor: dict[str, float] = {}
    affected: list[str] = []
    for link, per_model in sorted(by_link.items()):
        actuals: dict[int, float] = {}
        for series in per_model.values():
            actuals.update({k: a for k, (a, _) in series.items()})
        pre = [a for k, a in actuals.items() if k < 0]
        post = [a for k, a in actuals.items() if k >= 0]
        if not pre or not post:
            continue
        m_pre, m_post = float(np.mean(pre)), float(np.mean(post))
        pre_mean[link] = max(m_pre, 1.0)
        floor[link] = max(APE_FLOOR_RATIO * float(np.mean(np.abs(pre + post))), 1.0)
        change = abs(m_post - m_pre) / max(m_pre, 1.0)
        if (only is not None and link in only) or (only is None and change >= threshold):
            affected.append(link)

    out_rows: list[dict[str, float | int | str]] = []
    result: dict[str, Convergence] = {}
    models = sorted({m for link in affected for m in by_link[link]})
    for model in models:
        offsets = sorted({k for link in affected for k in by_link[link].get(model, {})})
        lo, hi = min(offsets[0], -1), max(offsets[-1], 0)
        curve = np.full(hi - lo + 1, np.nan)  # dense: index k - lo holds offset k
        for k in offsets:
            ape, rel, absolute = [], [], []
            for link in affected:
                hit = by_link[link].get(model, {}).get(k)
                if hit is not None and np.isfinite(hit[0]) and np.isfinite(hit[1]):
                    actual, error = abs(hit[0]), abs(hit[1])
                    ape.append(error / max(actual, floor[link]))
                    rel.append(error / pre_mean[link])
                    absolute.append(error)
            if ape:
                out_rows.append(
                    {
                        "model": model,
                        "offset_steps": k,
                        "ape": float(np.mean(ape)),
                        "rel_error": float(np.mean(rel)),
                        "mae_bps": float(np.mean(absolute)),
                        "links": len(ape),
                    }
                )
                curve[k - lo] = float(np.mean(ape))
        result[model] = convergence(curve, -lo, baseline_steps=before)
    return AlignedErrors(
        affected=affected,
        rows=out_rows,
        ttc_steps={m: c.ttc_steps for m, c in result.items()},
        convergence=result,
    )
