"""Forecast-quality metrics, NaN-aware (entries where ``y`` or the forecast is NaN are
ignored).

Formulas (``y``: actual, ``f``: forecast, mean over the valid entries):

- ``rmse = sqrt(mean((y - f) ** 2))``
- ``mae = mean(|y - f|)``
- ``mape = 100 * mean(|y - f| / max(|y|, eps))`` in per cent; ``eps`` (default
  1 bit/s) keeps it finite at zero load (a zero-load error of 1 kbit/s then counts
  100,000 %: report it next to RMSE, as the paper does).
- ``coverage = mean(lower <= y <= upper)``
- time to convergence: see :func:`convergence` (the one definition, with its
  defaults ``TTC_*`` below, shared by ``linkcast evaluate``, the events API and the
  dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: Time to convergence (see :func:`convergence`), in steps: the smoothing window (the
#: forecast horizon), how long the error must stay back, the tolerance on the
#: pre-event error and an absolute slack (a ratio of the current load: 1 point).
TTC_WINDOW_STEPS = 12
TTC_HOLD_STEPS = 36
TTC_TOLERANCE = 1.5
TTC_SLACK = 0.01
#: Fewest errors before the event for a baseline, and steps after it for an answer.
TTC_MIN_PRE_STEPS = 12
TTC_MIN_POST_STEPS = 24
#: :func:`step_ape` scores a load below this share of the link's mean load against it.
APE_FLOOR_RATIO = 0.05


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


def forward_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over the ``window`` steps starting at each step, ``[k, k + window)``, cut at
    the end of ``x`` (NaN-aware; NaN where the window holds no value).

    Examples
    --------
    >>> forward_mean([1.0, 3.0, float("nan"), 5.0], window=2)
    array([2., 3., 5., 5.])
    """
    x = np.asarray(x, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ok = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(x.size)
    hi = np.minimum(idx + window, x.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[hi] - c[idx]) / (n[hi] - n[idx])


def step_ape(y: np.ndarray, f: np.ndarray, floor: np.ndarray | float | None = None) -> np.ndarray:
    """Per-step absolute percentage error, as a ratio, averaged over links: the error
    that :func:`time_to_convergence` expects.

    ``y`` and ``f`` are ``(steps,)`` or ``(steps, links)``; at each step, the mean over
    the links with a finite entry of ``|y - f| / max(|y|, floor)`` (NaN where none).
    ``floor`` defaults to, per link, ``APE_FLOOR_RATIO`` (5 %) of its mean ``|y|`` over
    the given steps, at least 1 bit/s: an idle link (say one the failure emptied) is
    scored against 5 % of its usual load instead of against ~0, where any error
    would count thousands of per cent.

    Examples
    --------
    >>> y = np.array([[100.0, 10.0], [300.0, 30.0]])
    >>> step_ape(y, y * 1.1)
    array([0.1, 0.1])
    >>> step_ape([0.0, 100.0], [5.0, 100.0], floor=50.0)
    array([0.1, 0. ])
    """
    y, f = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(f, dtype=np.float64))
    if y.ndim == 1:
        y, f = y[:, None], f[:, None]
    if floor is None:
        fin = np.isfinite(y)
        count = fin.sum(axis=0)
        level = np.where(fin, np.abs(y), 0.0).sum(axis=0) / np.maximum(count, 1)
        floor = np.maximum(APE_FLOOR_RATIO * level, 1.0)
    ape = np.abs(y - f) / np.maximum(np.abs(y), floor)
    ok = np.isfinite(ape)
    n = ok.sum(axis=1)
    total = np.where(ok, ape, 0.0).sum(axis=1)
    out = np.full(n.shape, np.nan)
    out[n > 0] = total[n > 0] / n[n > 0]
    return out


class ConvergenceStatus(StrEnum):
    """What :func:`convergence` could say about a model after an event."""

    CONVERGED = "converged"  # back: ``ttc_steps`` says after how many steps
    NOT_CONVERGED = "not_converged"  # not back within the data after the event
    PENDING = "pending"  # too little data after the event yet: not yet known
    NO_BASELINE = "no_baseline"  # too few errors before the event to compare with


@dataclass(frozen=True)
class Convergence:
    """The answer of :func:`convergence`; ``baseline`` and ``threshold`` are NaN
    without a baseline; ``post_steps``: steps from the event to the last error."""

    status: ConvergenceStatus
    ttc_steps: int | None
    baseline: float
    threshold: float
    post_steps: int


def convergence(
    errors: np.ndarray,
    event_step: int,
    *,
    tolerance: float = TTC_TOLERANCE,
    window: int = TTC_WINDOW_STEPS,
    hold: int = TTC_HOLD_STEPS,
    slack: float = TTC_SLACK,
    baseline_steps: int | None = None,
    min_pre_steps: int = TTC_MIN_PRE_STEPS,
    min_post_steps: int = TTC_MIN_POST_STEPS,
) -> Convergence:
    """Time to convergence after an event, with its status; the one definition that
    ``linkcast evaluate``, ``GET /api/v1/events/{id}/errors`` and the dashboard's
    Failures page use.

    Definition (``e``: ``errors``, one value per step, NaN for a step without one,
    never skipped, so that offsets ``k`` count steps from the event at ``event_step``):

    1. ``e_t`` is the per-step absolute percentage error relative to the *current*
       load, as a ratio, averaged over the affected links (:func:`step_ape`:
       ``mean over links of |y - f| / max(|y|, floor)``). A model whose forecasts
       follow a link whose load tripled, by the same percentage as before, is as
       good as before; an error divided by the pre-event load would look three times
       larger forever and never "converge".
    2. ``baseline = mean(e)`` over the ``baseline_steps`` before the event (all of
       them when None), from at least ``min_pre_steps`` values (12, so the baseline
       is at least as smoothed as what it is compared with); otherwise
       ``no_baseline``.
    3. ``smoothed(k) = mean(e)`` over the *forward* window ``[k, k + window)``
       (``window`` = 12 steps, the forecast horizon). It looks only at errors from
       ``k`` on: a spike before ``k`` does not count against ``k``. (A trailing mean
       keeps a spike at ``t = 0`` for ``window`` steps, so every model would take at
       least ``window`` steps and a model back after 1 step could not be told from
       one back after 11.) Only offsets whose whole window lies in the data count;
       a window without any value is not back.
    4. ``threshold = tolerance * baseline + slack``: ``tolerance`` 1.5 absorbs the
       noise of a 12-step mean; ``slack`` 0.01 (one percentage point of the current
       load, below what anyone would act on) keeps a near-zero baseline (a model
       almost exact before the event) from making convergence impossible.
    5. ``ttc = `` the smallest ``k >= 0`` with ``smoothed <= threshold`` at ``k`` and
       at every offset up to ``k + hold`` (``hold`` = 36 steps: three horizons, 3 h
       at 5-minute steps), or up to the last offset in the data when that comes
       first. A fixed hold, not "until the end of the data": otherwise the answer
       would depend on how much later data a query happens to include (a later
       event or one late spike would erase a convergence).

    Statuses: ``converged`` (``ttc_steps`` set); ``not_converged`` (no such ``k``
    within the data); ``pending`` (fewer than ``min_post_steps``, 24, steps after the
    event: one window at ``k = 0`` and a horizon to hold it; not yet known);
    ``no_baseline``. On live data both ``converged`` and ``not_converged`` describe
    the data so far: with more data, a relapse within the hold can move a ``ttc``
    later and a model not yet converged can converge.

    The defaults are module constants (``TTC_*``), in steps, the same everywhere.

    Examples
    --------
    A level that triples at the event: the model's percentage error spikes for 2
    steps, then is back at its pre-event level.

    >>> e = np.r_[np.full(50, 0.02), 0.6, 0.3, np.full(60, 0.02)]
    >>> c = convergence(e, 50)
    >>> c.status.value, c.ttc_steps, round(c.threshold, 3)
    ('converged', 2, 0.04)
    >>> convergence(np.r_[np.full(50, 0.02), np.full(60, 0.2)], 50).status.value
    'not_converged'
    >>> convergence(np.r_[np.full(50, 0.02), np.full(10, 0.02)], 50).status.value
    'pending'
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if hold < 0:
        raise ValueError(f"hold must be >= 0, got {hold}")
    if not tolerance > 0 or not slack >= 0:
        raise ValueError(f"tolerance must be > 0 and slack >= 0, got {tolerance}, {slack}")
    if baseline_steps is not None and baseline_steps < 1:
        raise ValueError(f"baseline_steps must be >= 1 or None, got {baseline_steps}")
    e = np.asarray(errors, dtype=np.float64).ravel()
    event_step = int(event_step)
    if not 0 <= event_step <= e.size:
        raise ValueError(f"event_step must be within 0..{e.size}, got {event_step}")

    post = e[event_step:]
    seen = np.flatnonzero(np.isfinite(post))
    post_steps = int(seen[-1]) + 1 if seen.size else 0
    first = 0 if baseline_steps is None else max(event_step - baseline_steps, 0)
    pre = e[first:event_step]
    pre = pre[np.isfinite(pre)]
    if pre.size < max(min_pre_steps, 1):
        nan = float("nan")
        return Convergence(ConvergenceStatus.NO_BASELINE, None, nan, nan, post_steps)
    baseline = float(np.mean(pre))
    threshold = tolerance * baseline + slack
    if post_steps < max(min_post_steps, window):
        return Convergence(ConvergenceStatus.PENDING, None, baseline, threshold, post_steps)

    smoothed = forward_mean(post[:post_steps], window)[: post_steps - window + 1]
    ok = smoothed <= threshold  # NaN (a window without data) is not back
    bad = np.concatenate([[0], np.cumsum(~ok)])
    ks = np.arange(ok.size)
    end = np.minimum(ks + hold, ok.size - 1) + 1
    held = ok & (bad[end] == bad[ks])
    if held.any():
        ttc = int(np.argmax(held))
        return Convergence(ConvergenceStatus.CONVERGED, ttc, baseline, threshold, post_steps)
    return Convergence(ConvergenceStatus.NOT_CONVERGED, None, baseline, threshold, post_steps)


def time_to_convergence(
    errors: np.ndarray,
    event_step: int,
    tolerance: float = TTC_TOLERANCE,
    window: int = TTC_WINDOW_STEPS,
    baseline_steps: int | None = None,
    hold: int = TTC_HOLD_STEPS,
    slack: float = TTC_SLACK,
) -> int | None:
    """Steps after an event until the model's error is back: :func:`convergence`'s
    ``ttc_steps`` (its docstring has the definition); None when not converged, not
    yet known or without a baseline (ask :func:`convergence` which).

    Pass the per-step absolute percentage error as a ratio (:func:`step_ape`).

    Examples
    --------
    >>> err = np.r_[np.full(100, 0.05), np.full(5, 0.5), np.full(50, 0.05)]
    >>> time_to_convergence(err, 100)
    5
    >>> time_to_convergence(np.r_[np.full(100, 0.05), np.full(50, 0.15)], 100) is None
    True
    """
    return convergence(
        errors,
        event_step,
        tolerance=tolerance,
        window=window,
        hold=hold,
        slack=slack,
        baseline_steps=baseline_steps,
    ).ttc_steps
