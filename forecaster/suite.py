"""``ModelSuite``: every model, the hybrid, intervals and drift detection in one tick.

This is what the live engine and the offline evaluation both drive. One
:meth:`ModelSuite.step` per grid step:

1. score the forecasts issued earlier against ``y`` (residuals for every model and
   horizon step; hybrid weights; interval calibration),
2. every model observes ``y`` (the liquid model adapts; incremental models re-fit
   when their schedule says so),
3. drift detectors on the level (relative to the load one season earlier, read from
   the history ring before this step is pushed) and on the monitored model's residuals,
4. issue the new forecasts and intervals.

The seasonal model and every incremental model read one shared float16 history ring
(the suite pushes to it once per step), which keeps the state near 4 KB per link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecaster.base import Forecaster, Stateful, check_observation
from forecaster.baselines import PersistenceForecaster, SeasonalForecaster
from forecaster.buffers import HistoryRing
from forecaster.drift import DriftEvent, DriftMonitor, DriftResolved, RerouteEvent
from forecaster.hybrid import HybridForecaster
from forecaster.incremental import IncrementalForecaster
from forecaster.intervals import AdaptiveConformal
from forecaster.liquid import LiquidForecaster


@dataclass
class StepOutput:
    """What one :meth:`ModelSuite.step` produced.

    Attributes
    ----------
    step
        Grid step index of the observation just taken (0-based).
    forecasts, lower, upper
        Model name -> ``(n_links, horizon)`` bit/s for steps ``step+1 .. step+H``.
    residuals
        Model name -> ``(n_links, horizon)``: ``y - forecast issued h steps ago``
        (column ``h-1``), NaN where unknown.
    events, reroute, resolved
        Drift detected at this step.
    """

    step: int
    forecasts: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    residuals: dict[str, np.ndarray]
    events: list[DriftEvent] = field(default_factory=list)
    reroute: RerouteEvent | None = None
    resolved: list[DriftResolved] = field(default_factory=list)


class ModelSuite(Stateful):
    """Liquid, incremental (plus variants), persistence, seasonal and hybrid together.

    Parameters
    ----------
    n_links
        Links at the start (more with :meth:`add_links`).
    horizon
        Steps forecast ahead.
    level
        Interval coverage target.
    seed
        Seeds every model.
    season_steps
        Season of the seasonal model and the liquid model's phase features.
    retrain_every, retrain_window
        Schedule of the main ``incremental`` model (``retrain_every=None``: only on
        :meth:`retrain`).
    incremental_variants
        Extra incremental models, name -> ``retrain_every`` (e.g.
        ``{"incremental_b60": 60, "incremental_b240": 240}``); scored, with
        intervals, but not combined by the hybrid.
    hybrid_members
        Models the hybrid combines.
    monitor
        Model whose residuals feed the residual drift detector.
    liquid_kwargs, incremental_kwargs, hybrid_kwargs, interval_kwargs, drift_kwargs
        Extra constructor arguments of the parts.
    reference_models
        Extra models, name -> factory called as ``factory(n_links, horizon)`` (a
        class or a ``functools.partial``: the suite's state is pickled); scored, with
        intervals, but not combined by the hybrid unless named in ``hybrid_members``.

    Examples
    --------
    >>> import numpy as np
    >>> suite = ModelSuite(n_links=3, horizon=4, season_steps=48, retrain_every=40,
    ...                    retrain_window=40, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for t in range(60):
    ...     out = suite.step(1e9 * (2 + np.sin(2 * np.pi * t / 48)) + 1e7 * rng.random(3))
    >>> suite.model_names
    ('liquid', 'incremental', 'persistence', 'seasonal', 'hybrid')
    >>> out.forecasts["hybrid"].shape, bool((out.lower["liquid"] <= out.upper["liquid"]).all())
    ((3, 4), True)
    """

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        level: float = 0.9,
        seed: int = 0,
        season_steps: int = 1440,
        retrain_every: int | None = 240,
        retrain_window: int = 480,
        incremental_variants: dict[str, int | None] | None = None,
        hybrid_members: tuple[str, ...] = ("liquid", "incremental", "persistence", "seasonal"),
        monitor: str = "hybrid",
        liquid_kwargs: dict[str, Any] | None = None,
        incremental_kwargs: dict[str, Any] | None = None,
        hybrid_kwargs: dict[str, Any] | None = None,
        interval_kwargs: dict[str, Any] | None = None,
        drift_kwargs: dict[str, Any] | None = None,
        reference_models: dict[str, Callable[[int, int], Forecaster]] | None = None,
    ) -> None:
        self.horizon = horizon
        self.level = level
        self.seed = seed
        self.season_steps = season_steps
        self.retrain_every = retrain_every
        self.retrain_window = retrain_window
        self.incremental_variants = incremental_variants
        self.hybrid_members = hybrid_members
        self.monitor = monitor
        self.liquid_kwargs = liquid_kwargs
        self.incremental_kwargs = incremental_kwargs
        self.hybrid_kwargs = hybrid_kwargs
        self.interval_kwargs = interval_kwargs
        self.drift_kwargs = drift_kwargs
        self.reference_models = reference_models

        for name in incremental_variants or {}:
            if not name.startswith("incremental_"):
                raise ValueError(f"variant names must start with 'incremental_', got {name!r}")
        liq_kw = dict(liquid_kwargs or {})
        sizes = {k: liq_kw[k] for k in ("window", "replay_steps") if k in liq_kw}
        liquid_steps = LiquidForecaster.history_steps(horizon, season_steps, **sizes)
        self._history = HistoryRing(max(season_steps, retrain_window, liquid_steps), n_links)
        inc_kw = dict(incremental_kwargs or {})
        members: dict[str, Forecaster] = {
            "liquid": LiquidForecaster(
                n_links,
                horizon,
                season_steps=season_steps,
                seed=seed,
                history=self._history,
                **liq_kw,
            ),
            "incremental": IncrementalForecaster(
                n_links,
                horizon,
                retrain_every=retrain_every,
                retrain_window=retrain_window,
                seed=seed,
                history=self._history,
                **inc_kw,
            ),
        }
        for k, (name, every) in enumerate((incremental_variants or {}).items()):
            members[name] = IncrementalForecaster(
                n_links,
                horizon,
                retrain_every=every,
                retrain_window=retrain_window,
                seed=seed + 1 + k,
                history=self._history,
                **inc_kw,
            )
        for name, factory in (reference_models or {}).items():
            if name in members or name in ("persistence", "seasonal", "hybrid"):
                raise ValueError(f"reference model name {name!r} is taken")
            members[name] = factory(n_links, horizon)
        members["persistence"] = PersistenceForecaster(n_links, horizon)
        members["seasonal"] = SeasonalForecaster(
            n_links, horizon, season_steps=season_steps, history=self._history
        )
        self._hybrid = HybridForecaster(members, combine=hybrid_members, **(hybrid_kwargs or {}))
        if monitor not in self._hybrid.names:
            raise ValueError(f"unknown monitor {monitor!r}; valid: {list(self._hybrid.names)}")
        self._intervals = {
            k: AdaptiveConformal(n_links, horizon, level=level, **(interval_kwargs or {}))
            for k in self._hybrid.names
        }
        # the level detector compares each load with the one a season earlier (the
        # shared ring), so a daily cycle is not a level shift; drift_kwargs may override
        self._drift = DriftMonitor(
            n_links, **{"season_steps": season_steps, **(drift_kwargs or {})}
        )
        self._t = 0

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every model's name (the hybrid last)."""
        return self._hybrid.names

    @property
    def models(self) -> dict[str, Forecaster]:
        """Every model by name (the hybrid included)."""
        return {**self._hybrid.members, "hybrid": self._hybrid}

    @property
    def n_links(self) -> int:
        return self._hybrid.n_links

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return self._t

    def step(self, y: np.ndarray, mask: np.ndarray | None = None) -> StepOutput:
        """Take one grid step of loads ``y`` (bit/s, ``(n_links,)``); see the module doc."""
        values, observed = check_observation(y, mask, self.n_links)
        season_ago = self._history.lag(self.season_steps - 1)  # y[t - season], NaN: unknown
        self._history.push(values, observed)
        self._hybrid.observe(values, observed)  # scores, hybrid weights, models observe
        residuals = self._hybrid.last_residuals
        for k, ci in self._intervals.items():
            ci.update(values, observed, residuals[k])
        events, reroute, resolved = self._drift.update(
            self._t, values, observed, residuals[self.monitor][:, 0], seasonal=season_ago
        )
        forecasts = self._hybrid.forecast_all()
        lower, upper = {}, {}
        for k, f in forecasts.items():
            lower[k], upper[k] = self._intervals[k].interval(f)
        out = StepOutput(self._t, forecasts, lower, upper, residuals, events, reroute, resolved)
        self._t += 1
        return out

    def forecast(self) -> dict[str, np.ndarray]:
        """The latest forecasts by model name (no side effects)."""
        return self._hybrid.forecast_all()

    def retrain(self, names: tuple[str, ...] | None = None) -> dict[str, bool]:
        """Re-fit the incremental models (all, or ``names``) on their latest window."""
        names = names or tuple(k for k in self._hybrid.members if k.startswith("incremental"))
        out = {}
        for k in names:
            model = self._hybrid.members[k]
            if not isinstance(model, IncrementalForecaster):
                raise ValueError(f"{k!r} is not an incremental model")
            out[k] = model.retrain()
        if out:
            self._hybrid._cache = None  # forecasts changed
        return out

    def add_links(self, n: int) -> None:
        """Append ``n`` cold links (finite forecasts from the start)."""
        self._history.add_links(n)
        self._hybrid.add_links(n)
        for ci in self._intervals.values():
            ci.add_links(n)
        self._drift.add_links(n)
