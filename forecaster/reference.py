"""A reference from a well-kept library: statsforecast's MSTL, refitted on a schedule.

What a data scientist would try first on link loads with a daily cycle: MSTL
(Bandara, Hyndman and Bergmeir 2021, arXiv 2107.13462; statsforecast's
``statsforecast.models.MSTL``) with one season of ``season_steps`` (a day: 288 at
5-minute steps) and an AutoETS trend forecaster (Hyndman et al. 2008, "Forecasting
with exponential smoothing: the state space approach"; ``statsforecast.models.AutoETS``,
a mirror of R's ``forecast::ets``). Evaluation only: not in the live engine.

Schedule
    As the incremental model: every ``retrain_every`` observed steps, one MSTL per link
    is fitted (``MSTL.fit``) on the latest ``max(retrain_window, 2 * season_steps)``
    steps (STL needs two full seasons; 576 = 2 x 288 at 5-minute steps). Until the
    first fit, and for links never observed in the window, it forecasts the last value.

Forecasts at every step, anchored on the newest data
    ``MSTL.forward`` re-runs the whole STL decomposition on the new series (~150 ms a
    link at 576 points here), far too slow for ~240,000 link-steps per seed. So between
    fits the library's *fitted* MSTL is applied the way its own ``predict`` applies it:

    - the seasonal part is the fitted seasonal profile, repeated (what
      ``MSTL.predict`` adds to the trend forecast: the last season of the fitted
      seasonal component, tiled);
    - the non-seasonal part is the fitted AutoETS, run by its own ``forward`` (fitted
      parameters and initial states, no re-estimation) over the series it was fitted
      on (trend + remainder of the fit window) extended with each newer observation
      minus its seasonal profile value, then forecast ``horizon`` steps.

    Right after a fit this is exactly ``MSTL.predict(h)`` (tested); ``k`` steps later
    it is what the same fitted model says given the ``k`` newer observations. Nothing
    of STL or ETS is re-implemented here. Cost: one ``AutoETS.forward`` per link and
    step (~0.1 ms at 600 to 900 points), one MSTL fit per link and refit (~30 ms).

Choices, argued
    - ``ets_model="AZN"``: AutoETS chooses the trend (none, additive, damped) by AICc,
      with additive errors. Multiplicative errors are undefined at zero load, and a
      failed or drained link carries zero, which the fitted model then meets through
      ``forward`` without re-selection; AZN also fits in half the time of ZZN.
    - STL's loess jumps follow R's ``stl`` defaults (``s.jump = ceiling(s.window/10)``,
      likewise ``t.jump`` and ``l.jump``), which R's ``forecast::mstl`` (the model
      statsforecast mirrors) runs with; statsmodels defaults to 1 (every point), which
      costs 30 times more here for a decomposition that differs by about 1e-4 of the
      level.
    - Each link is divided by its mean absolute load over the fit window (so the
      optimiser sees values near 1, not 1e9) and multiplied back; forecasts are bit/s.
    - Missing values are carried forward (the library refuses NaN); leading gaps in
      the fit window take the first observed value.
    - A fit the library refuses, or a non-finite forecast, leaves that link on its
      last value (counted in :attr:`MSTLForecaster.n_fit_failures`).

Shapes: ``observe`` takes ``(n_links,)`` bit/s; ``forecast`` returns ``(n_links,
horizon)`` bit/s, finite and non-negative.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import numpy as np
from statsforecast.models import MSTL, AutoETS

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import HistoryRing
from forecaster.incremental import _ffill_windows

log = logging.getLogger(__name__)

#: MSTL's seasonal loess window for a single season (R's forecast::mstl: 7 + 4 * 1).
_S_WINDOW = 11


def _odd(x: float) -> int:
    n = math.ceil(x)
    return n if n % 2 else n + 1


def r_stl_jumps(period: int, seasonal: int = _S_WINDOW) -> dict[str, int]:
    """R ``stl``'s default loess jumps, as statsmodels ``STL`` keyword arguments.

    Windows as both R and statsmodels default them (trend
    ``nextodd(1.5 period / (1 - 1.5 / s.window))``, low pass ``nextodd(period)``);
    each jump is ``ceiling(window / 10)``.

    Examples
    --------
    >>> r_stl_jumps(288)
    {'seasonal_jump': 2, 'trend_jump': 51, 'low_pass_jump': 29}
    """
    trend = _odd(1.5 * period / (1 - 1.5 / seasonal))
    low_pass = _odd(period)
    return {
        "seasonal_jump": math.ceil(seasonal / 10),
        "trend_jump": math.ceil(trend / 10),
        "low_pass_jump": math.ceil(low_pass / 10),
    }


class MSTLForecaster(Forecaster):
    """statsforecast MSTL + AutoETS per link, refitted on a schedule (see the module doc).

    Parameters
    ----------
    n_links
        Number of links.
    horizon
        Steps forecast ahead.
    season_steps
        Season length in steps (>= 2; one day).
    retrain_every
        Re-fit every this many observed steps; ``None``: only on :meth:`retrain`.
    retrain_window
        Re-fit on the latest this many steps (at least two seasons are used).
    ets_model
        AutoETS model string for the trend forecaster (seasonal part ``N``).
    r_jumps
        Use R's loess jumps in STL (see the module doc); False: statsmodels' defaults.

    Examples
    --------
    >>> import numpy as np
    >>> m = MSTLForecaster(n_links=2, horizon=3, season_steps=12, retrain_every=24,
    ...                    retrain_window=24)
    >>> t = np.arange(48)
    >>> for k in t:
    ...     m.observe(1e9 * (2 + np.sin(2 * np.pi * k / 12 + np.array([0.0, 1.0]))))
    >>> m.n_fits, m.forecast().shape
    (2, (2, 3))
    """

    name: ClassVar[str] = "mstl"

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        season_steps: int = 288,
        retrain_every: int | None = 288,
        retrain_window: int = 576,
        ets_model: str = "AZN",
        r_jumps: bool = True,
    ) -> None:
        if season_steps < 2:
            raise ValueError(f"season_steps must be >= 2, got {season_steps}")
        if retrain_every is not None and retrain_every < 1:
            raise ValueError(f"retrain_every must be None or >= 1, got {retrain_every}")
        if len(ets_model) != 3 or ets_model[2] != "N":
            raise ValueError(f"ets_model must be 3 letters ending in 'N', got {ets_model!r}")
        self.horizon = horizon
        self.season_steps = season_steps
        self.retrain_every = retrain_every
        self.retrain_window = retrain_window
        self.ets_model = ets_model
        self.r_jumps = r_jumps
        self._ring = HistoryRing(self.fit_window, n_links)
        self._last = np.zeros(n_links)
        self._since_fit = 0
        self._n_fits = 0
        self._n_fit_failures = 0
        # per link, from the latest fit (None / NaN where not fitted)
        self._models: list[MSTL | None] = [None] * n_links
        self._scale = np.ones(n_links)
        self._x_sa = np.full((n_links, 0), np.nan)  # trend + remainder of the fit window
        self._profile = np.zeros((n_links, season_steps))  # seasonal[-season:], scaled
        self._tail = np.full((n_links, 0), np.nan)  # newer observations, deseasonalised
        self._k = 0  # observations since the latest fit
        self._cache: np.ndarray | None = None

    @property
    def fit_window(self) -> int:
        """Steps each fit uses: ``max(retrain_window, 2 * season_steps)``."""
        return max(self.retrain_window, 2 * self.season_steps)

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    @property
    def n_fits(self) -> int:
        """Re-fits done so far."""
        return self._n_fits

    @property
    def n_fit_failures(self) -> int:
        """Link fits the library refused (those links forecast their last value)."""
        return self._n_fit_failures

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = None  # a pure function of the state
        return state

    def model(self, link: int) -> MSTL | None:
        """The fitted statsforecast ``MSTL`` of a link (``None`` if not fitted)."""
        return self._models[link]

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        self._ring.push(values, observed)
        self._last = np.where(observed, values, self._last)  # carried forward
        self._cache = None
        if self._n_fits:
            if self._k == self._tail.shape[1]:  # grow by doubling
                grow = np.full((self.n_links, max(self._k, self.season_steps)), np.nan)
                self._tail = np.concatenate([self._tail, grow], axis=1)
            seasonal = self._profile[:, self._k % self.season_steps]
            self._tail[:, self._k] = self._last / self._scale - seasonal
            self._k += 1
        self._since_fit += 1
        if self.retrain_every is not None and self._since_fit >= self.retrain_every:
            self.retrain()

    def retrain(self) -> bool:
        """Fit every observed link's MSTL on the latest window; False if too few steps.

        With fewer than two seasons seen it does nothing (and the schedule tries again
        at the next step).
        """
        span = min(self.fit_window, self._ring.count)
        if span < 2 * self.season_steps:
            return False
        self._since_fit = 0
        data = self._ring.last(span).T  # (n_links, span), NaN where missing
        seen = np.isfinite(data).any(axis=1)
        filled = _ffill_windows(data)
        scale = np.abs(filled).mean(axis=1)
        scale = np.where(scale > 0, scale, 1.0)
        stl_kwargs = r_stl_jumps(self.season_steps) if self.r_jumps else {}
        models: list[MSTL | None] = [None] * self.n_links
        x_sa = np.full((self.n_links, span), np.nan)
        profile = np.zeros((self.n_links, self.season_steps))
        for i in np.flatnonzero(seen):
            mstl = MSTL(
                season_length=self.season_steps,
                trend_forecaster=AutoETS(model=self.ets_model),
                stl_kwargs=stl_kwargs,
            )
            try:
                mstl.fit(filled[i] / scale[i])
            except Exception as exc:  # the library raises bare Exception too
                self._n_fit_failures += 1
                log.warning("mstl: fit of link %d refused: %s", i, exc)
                continue
            parts = mstl.model_
            models[i] = mstl
            x_sa[i] = parts["trend"].to_numpy() + parts["remainder"].to_numpy()
            profile[i] = parts["seasonal"].to_numpy()[-self.season_steps :]
        self._models, self._x_sa, self._profile, self._scale = models, x_sa, profile, scale
        self._tail = np.full((self.n_links, self.season_steps), np.nan)
        self._k = 0
        self._cache = None
        self._n_fits += 1
        return True

    def forecast(self) -> np.ndarray:
        if self._cache is None:
            self._cache = self._forecast()
        return self._cache.copy()

    def _forecast(self) -> np.ndarray:
        out = np.repeat(self._last[:, None], self.horizon, axis=1)
        # step h ahead is k + h steps after the fit: seasonal[-season:][(k + h - 1) % season]
        phase = (self._k + np.arange(self.horizon)) % self.season_steps
        for i, mstl in enumerate(self._models):
            if mstl is None:
                continue
            y = np.concatenate([self._x_sa[i], self._tail[i, : self._k]])
            trend = mstl.trend_forecaster.forward(y=y, h=self.horizon)["mean"]
            f = self._scale[i] * (trend + self._profile[i, phase])
            if np.isfinite(f).all():
                out[i] = f
        return np.maximum(out, 0.0)

    def add_links(self, n: int) -> None:
        self._ring.add_links(n)
        self._last = np.concatenate([self._last, np.zeros(n)])
        self._models = self._models + [None] * n
        self._scale = np.concatenate([self._scale, np.ones(n)])
        self._x_sa = np.concatenate([self._x_sa, np.full((n, self._x_sa.shape[1]), np.nan)])
        self._profile = np.concatenate([self._profile, np.zeros((n, self.season_steps))])
        self._tail = np.concatenate([self._tail, np.full((n, self._tail.shape[1]), np.nan)])
        self._cache = None
