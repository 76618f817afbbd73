"""Forecast-quality metrics, NaN-aware (entries where ``y`` or the forecast is NaN are
ignored).

Formulas (``y``: actual, ``f``: forecast, mean over the valid entries):

- ``rmse = sqrt(mean((y - f) ** 2))``
- ``mae = mean(|y - f|)``
- ``mape = 100 * mean(|y - f| / max(|y|, eps))`` in per cent; ``eps`` (default
  1 bit/s) keeps it finite at zero load (a zero-load error of 1 kbit/s then counts
  100,000 %: report it next to RMSE, as the paper does).
- ``coverage = mean(lower <= y <= upper)``
- time to convergence: see :func:`time_to_convergence`.
"""

from __future__ import annotations

import numpy as np


def _valid(y: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, f = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(f, dtype=np.float64))
    ok = np.isfinite(y) & np.isfinite(f)
    return y[ok], f[ok]


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    """Root mean squared error.

    Examples
    --------
    >>> rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    1.1547005383792515
    """
    y, f = _valid(y, f)
    return float(np.sqrt(np.mean((y - f) ** 2))) if y.size else float("nan")


def mae(y: np.ndarray, f: np.ndarray) -> float:
    """Mean absolute error.

    Examples
    --------
    >>> mae([1.0, 2.0, float("nan")], [2.0, 2.0, 0.0])
    0.5
    """
    y, f = _valid(y, f)
    return float(np.mean(np.abs(y - f))) if y.size else float("nan")


def mape(y: np.ndarray, f: np.ndarray, eps: float = 1.0) -> float:
    """Mean absolute percentage error, ``100 * mean(|y - f| / max(|y|, eps))``.

    Examples
    --------
    >>> mape([100.0, 0.0], [110.0, 0.5])
    30.0
    """
    y, f = _valid(y, f)
    if not y.size:
        return float("nan")
    return float(100.0 * np.mean(np.abs(y - f) / np.maximum(np.abs(y), eps)))


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside ``[lower, upper]``.

    Examples
    --------
    >>> coverage([1.0, 5.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 4.0, 4.0])
    0.75
    """
    y, lo, hi = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (y, lower, upper)))
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return float("nan")
    return float(np.mean((lo[ok] <= y[ok]) & (y[ok] <= hi[ok])))


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (NaN-aware; NaN until one value is seen).

    Examples
    --------
    >>> rolling_mean([1.0, 3.0, float("nan"), 5.0], window=2)
    array([1., 2., 3., 5.])
    """
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[idx] - c[lo]) / (n[idx] - n[lo])


def time_to_convergence(
    errors: np.ndarray,
    event_step: int,
    tolerance: float = 1.5,
    window: int = 10,
    baseline_steps: int = 100,
    hold: int | None = None,
) -> int | None:
    """Steps after an event until the rolling error is back near its pre-event level.

    The baseline is the mean of ``errors`` over the ``baseline_steps`` before
    ``event_step``. The rolling error is the trailing mean over ``window`` steps. The
    answer is the smallest ``k >= 0`` such that the rolling error at ``event_step + k``
    and at every later step (or the next ``hold`` steps) is ``<= tolerance *
    baseline``; ``None`` if that never happens. Pass a per-step error such as the
    absolute percentage error, so that a level change does not count as error.

    Examples
    --------
    >>> import numpy as np
    >>> err = np.r_[np.ones(100), np.full(5, 10.0), np.ones(50)]
    >>> time_to_convergence(err, 100, window=2)
    6
    >>> time_to_convergence(np.r_[np.ones(100), np.full(50, 3.0)], 100) is None
    True
    """
    errors = np.asarray(errors, dtype=np.float64)
    pre = errors[max(event_step - baseline_steps, 0) : event_step]
    base = np.nanmean(pre) if np.isfinite(pre).any() else np.nan
    if not np.isfinite(base):
        return None
    roll = rolling_mean(errors, window)[event_step:]
    ok = roll <= tolerance * base
    n = ok.size
    span = n if hold is None else hold
    for k in range(n):
        end = n if hold is None else min(k + span, n)
        if ok[k] and ok[k:end].all():
            return k
    return None
