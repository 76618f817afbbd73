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

Known failures: a counterfactual shift (issue 10)
    When links are known to be down (an operator's failure event, a detector's re-route
    event), the traffic they carried has moved onto other paths, and the network model
    predicts where: :func:`network.reroute.reroute` routes the demands estimated from the
    link loads (:func:`network.demand.tomogravity`) around the failed links. The caller
    gives the suite that prediction as a per-link *shift* ``s`` (predicted load with the
    failure minus predicted load without it, bit/s) and the failed links ``d``
    (:meth:`ModelSuite.set_reroute`). Until it is cleared, every model works on the
    loads the network *would* carry without the failure, ``x = max(y - s, 0)`` with the
    failed links not observed, and every forecast and interval bound at horizon ``h``
    comes back as ``max(f_h + r_h * s, 0)`` (0 on a failed link), ``r_h`` the ratio by
    which the shift follows the model's traffic (below; 1 at ``h = 1``).

    Why a shift of the inputs rather than a ``reroute`` model or a prior the others
    take up: the failure changes the routing, not the demands. What each model learned
    (the daily cycle, the level, the liquid model's state, the incremental models'
    windows, the hybrid's weights, the interval widths) is about the demands, and stays
    valid in the counterfactual world; only the mapping from demands to this link
    changed, and that is what the network model computes. So every model keeps its
    skill from the first tick after the failure, instead of learning the new level
    from the loads that follow it (a time to convergence of at least the horizon), and
    the hybrid sees no common shock. A separate ``reroute`` model would have to be one
    forecaster (persistence of the re-routed loads, say) and would lose what the others
    know; a prior that each model "takes up" would need every model to change. What the
    shift gets wrong (an estimation error of the demands) shows as ordinary residuals,
    and the models correct it as they would any level error, except where the shift is
    larger than the link's load: there the counterfactual would be clipped at 0, which
    no model can learn away, so that link's shift gives way to its loads (see
    :meth:`ModelSuite._give_way`). A repair clears the shift and the models need
    nothing: they already forecast the intact network.

    The shift is the load of the demands that moved, so it follows the traffic: the
    caller scales it to each step's total load (:func:`network.reroute.scale_shift`),
    and over the horizon each model's shift is scaled by that model's own forecast of
    the traffic, its total over the links up at ``h`` over its total at ``h = 1``
    (:data:`SHIFT_AHEAD_RANGE` bounds it). Held flat, a shift set at the morning's
    level is too small for the evening peak an hour ahead, by the whole rise of the
    moved demands; on nobel-eu's drastic failures (held-out seed 100) the 12-step
    forecasts of the hybrid told of the failure were 15 % better than persistence
    once settled with the shift held over the horizon, 58 % with it scaled ahead (the
    same hybrid not told: 72 %).

    Scoring: the hybrid's weights, the drift detectors and the history ring see the
    counterfactual loads (a drift detected meanwhile is what the known failure does
    *not* explain); the residuals in :class:`StepOutput` and the intervals' calibration
    are on the real loads against the forecasts as issued, so a forecast issued before
    the failure was known is scored unshifted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
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

#: Bounds of the ratio by which a known failure's shift follows a model's forecast of
#: the traffic over the horizon (:meth:`_Reroute.ratio`): a forecast that strays far
#: from its own next step does not take the shift with it.
SHIFT_AHEAD_RANGE = (0.5, 2.0)


@dataclass
class StepOutput:
    """What one :meth:`ModelSuite.step` produced.

    Attributes
    ----------
    step
        Grid step index of the observation just taken (0-based).
    forecasts, lower, upper
        Model name -> ``(n_links, horizon)`` bit/s for steps ``step+1 .. step+H``
        (with the re-route's shift while one is set, see :meth:`ModelSuite.set_reroute`).
    residuals
        Model name -> ``(n_links, horizon)``: ``y - forecast issued h steps ago``
        (column ``h-1``; the real load against the forecast as issued), NaN where
        unknown.
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
        self._shift: np.ndarray | None = None
        self._down: np.ndarray | None = None
        # the share of each link's shift that its measured loads allow (see _give_way)
        self._allowed: np.ndarray | None = None
        # the re-route each of the last H issues was made with, newest first
        self._issued: list[_Reroute | None] = [None] * horizon

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a checkpoint from before set_reroute existed: no known failure
        state.setdefault("_shift", None)
        state.setdefault("_down", None)
        state.setdefault("_allowed", None)
        state.setdefault("_issued", [None] * state["horizon"])
        self.__dict__.update(state)

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
        reroute = self.reroute
        shifted = reroute is not None or any(r is not None for r in self._issued)
        # the forecasts maturing now, as the models made them (before any shift)
        made = {k: p.matured() for k, p in self._hybrid._pending.items()} if shifted else {}
        if reroute is None:
            x, seen = values, observed
        else:
            reroute = self._give_way(values, observed)
            x = np.maximum(values - reroute.shift_bps, 0.0)
            seen = observed & ~reroute.down
        season_ago = self._history.lag(self.season_steps - 1)  # x[t - season], NaN: unknown
        self._history.push(x, seen)
        self._hybrid.observe(x, seen)  # scores, hybrid weights, models observe
        residuals = self._hybrid.last_residuals
        drift_residuals = residuals[self.monitor][:, 0]
        if shifted:  # score the forecasts as issued against the real loads
            issued = {k: self._matured_as_issued(k, m) for k, m in made.items()}
            residuals = {
                k: np.where(observed[:, None], values[:, None] - f, np.nan)
                for k, f in issued.items()
            }
        for k, ci in self._intervals.items():
            ci.update(values, observed, residuals[k])
        events, rerouted, resolved = self._drift.update(
            self._t, x, seen, drift_residuals, seasonal=season_ago
        )
        forecasts, lower, upper, ratios = self._issue()
        latest = None if reroute is None else replace(reroute, ratios=ratios)
        self._issued = [latest, *self._issued[:-1]]
        out = StepOutput(self._t, forecasts, lower, upper, residuals, events, rerouted, resolved)
        self._t += 1
        return out

    def _give_way(self, values: np.ndarray, observed: np.ndarray) -> _Reroute:
        """Lower the share of a link's shift that its own loads rule out; returns the
        re-route in force after it.

        A link that carries less than the shift predicted onto it (``y < s``, the
        estimated demands put more on it than it has) would give the models a
        counterfactual load clipped at 0 for as long as the failure lasts: they could
        not learn the error away, and every forecast would stay above the load by the
        excess (on the real Abilene traffic, one link of one failure over every step of
        the day after it). So each step a link's share of its shift (1 at the estimate)
        falls by ``(s - y) / s`` times ``1 / horizon``: an exponential approach with a
        time constant of the horizon, so that one step's dip moves it a little and an
        excess that lasts is gone within a few horizons. It only falls, and only on
        links with a positive shift: a shift that is too small leaves the models a
        positive level error, which they correct as any other. It is kept while the
        same links stay down and starts again at 1 when they change.
        """
        assert self._shift is not None and self._down is not None
        if self._allowed is None:
            self._allowed = np.ones(self.n_links)
        shift = self._shift * self._allowed
        over = observed & ~self._down & (self._shift > 0) & (values < shift)
        if over.any():
            excess = (shift[over] - values[over]) / self._shift[over]
            self._allowed[over] = np.maximum(self._allowed[over] - excess / self.horizon, 0.0)
        return _Reroute(self._shift * self._allowed, self._down)

    def _matured_as_issued(self, model: str, made: np.ndarray) -> np.ndarray:
        """``made`` ``(n_links, H)``, ``model``'s forecasts maturing now (column ``h-1``
        issued ``h`` steps ago), as issued."""
        out = made.copy()
        for h, r in enumerate(self._issued):
            if r is not None:
                ratio = 1.0 if r.ratios is None or model not in r.ratios else r.ratios[model][h]
                out[:, h] = r.apply(made[:, h], ratio)
        return out

    def _issue(
        self,
    ) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]
    ]:
        """Forecasts, lower and upper bounds, and the ratio the shift took at each horizon,
        by model (no ratios when no failure is known)."""
        made = self._hybrid.forecast_all()
        forecasts, lower, upper, ratios = {}, {}, {}, {}
        r = self.reroute
        for k, f in made.items():
            lo, hi = self._intervals[k].interval(f)
            if r is None:
                forecasts[k], lower[k], upper[k] = f, lo, hi
            else:
                ratios[k] = ratio = r.ratio(f)  # the shift follows this model's traffic
                forecasts[k] = r.apply(f, ratio)
                lower[k], upper[k] = r.apply(lo, ratio), r.apply(hi, ratio)
        return forecasts, lower, upper, ratios

    def forecast(self) -> dict[str, np.ndarray]:
        """The latest forecasts by model name, as issued (no side effects).

        Each ``(n_links, horizon)`` bit/s; with the re-route's shift while one is set
        (so after :meth:`set_reroute` this re-issues the latest forecasts with it).
        """
        return self._issue()[0]

    def issue(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The latest forecasts and interval bounds by model name, as issued (no side effects).

        Returns ``(forecasts, lower, upper)``, each model name -> ``(n_links, horizon)``
        bit/s, exactly as the last :meth:`step` returned them unless
        :meth:`set_reroute` was called since: then with the new shift. This is how a
        caller re-issues the forecasts at the failure (or repair) instant, before the
        next measurement.
        """
        return self._issue()[:3]

    @property
    def reroute(self) -> _Reroute | None:
        """The known failure's shift in force, or ``None``."""
        if self._shift is None or self._down is None:
            return None
        allowed = 1.0 if self._allowed is None else self._allowed
        return _Reroute(self._shift * allowed, self._down)

    @property
    def reroute_as_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The shift (``(n_links,)`` bit/s) and failed links (``(n_links,)`` bool) as last
        given to :meth:`set_reroute` (before any link's share gave way, which
        :attr:`reroute` includes), or ``None``: what a caller that keeps scaling the
        shift restores from a checkpoint."""
        if self._shift is None or self._down is None:
            return None
        return self._shift, self._down

    def set_reroute(
        self, shift_bps: np.ndarray | None, down: np.ndarray | None, *, reissue: bool = True
    ) -> None:
        """Set (or clear, with both ``None``) the counterfactual shift of a known failure.

        See the module doc. From now on :meth:`step` gives the models
        ``max(y - shift_bps, 0)`` with the ``down`` links not observed (a link's
        positive shift scaled down where its loads rule it out, kept while the same
        links are down: :meth:`_give_way`), and every
        forecast and interval bound at horizon ``h`` comes back as
        ``max(f_h + r_h * shift_bps, 0)``, 0 on the ``down`` links, ``r_h`` the model's
        own forecast total over the links up at ``h`` over its total at ``h = 1``
        (clipped to :data:`SHIFT_AHEAD_RANGE`). The latest forecasts count as
        re-issued with the new shift and their ratios: :meth:`issue` returns them, and
        they are scored so as they mature. Call it
        again whenever the prediction is updated (each step if need be); clear it when
        the failure is repaired.

        Parameters
        ----------
        shift_bps
            ``(n_links,)`` bit/s: each link's predicted load with the failure minus its
            predicted load without it, from routing the estimated demands around the
            failed links (:func:`network.reroute.reroute`); 0 on unaffected links.
            ``None`` with ``down`` given: no shift, only the failed links.
        down
            ``(n_links,)`` bool, True on the failed links; ``None`` with
            ``shift_bps`` given: none.
        reissue
            Whether the latest forecasts count as re-issued with the new shift (the
            failure or repair instant, or a refreshed prediction published at once).
            ``False`` when the shift was estimated from the load about to be stepped
            (the forecast for that step was issued before it and is scored as it was);
            the models still see that load less the new shift.

        Raises
        ------
        ValueError
            If a shape is not ``(n_links,)`` or a shift is not finite.
        """
        if shift_bps is None and down is None:
            self._shift = self._down = self._allowed = None
        else:
            n = self.n_links
            shift = np.zeros(n) if shift_bps is None else np.array(shift_bps, dtype=np.float64)
            failed = np.zeros(n, bool) if down is None else np.array(down, dtype=bool)
            if shift.shape != (n,):
                raise ValueError(f"shift_bps must have shape ({n},), got {shift.shape}")
            if failed.shape != (n,):
                raise ValueError(f"down must have shape ({n},), got {failed.shape}")
            if not np.isfinite(shift).all():
                raise ValueError("shift_bps must be finite (bit/s)")
            if self._down is None or not np.array_equal(failed, self._down):
                self._allowed = None  # another failure: all of its shift allowed again
            self._shift, self._down = shift, failed
        if reissue and self._t > 0:  # the latest issue now carries the new shift
            r = self.reroute
            if r is not None:  # the ratios the re-issued forecasts take
                made = self._hybrid.forecast_all()
                r = replace(r, ratios={k: r.ratio(f) for k, f in made.items()})
            self._issued[0] = r

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

    def drop_models(self, names: tuple[str, ...]) -> None:
        """Stop running models that the hybrid does not combine (scored-only variants).

        For a copy of the suite that reports only some models (the evaluation's
        re-route-aware copy): the hybrid, its members and the monitored model stay, so
        their forecasts are unchanged.

        Raises
        ------
        ValueError
            If a name is unknown, the hybrid, one of its members or the monitored model.
        """
        keep = {*self._hybrid.combine, "hybrid", self.monitor}
        for k in names:
            if k not in self._hybrid.members or k in keep:
                droppable = [m for m in self._hybrid.members if m not in keep]
                raise ValueError(f"cannot drop {k!r}; droppable: {droppable}")
        for k in names:
            del self._hybrid.members[k]
            del self._hybrid._pending[k]
            del self._intervals[k]
        self._hybrid._cache = None

    def add_links(self, n: int) -> None:
        """Append ``n`` cold links (finite forecasts from the start)."""
        self._history.add_links(n)
        self._hybrid.add_links(n)
        for ci in self._intervals.values():
            ci.add_links(n)
        self._drift.add_links(n)
        if self._shift is not None and self._down is not None:
            self._shift = np.concatenate([self._shift, np.zeros(n)])
            self._down = np.concatenate([self._down, np.zeros(n, bool)])
        if self._allowed is not None:
            self._allowed = np.concatenate([self._allowed, np.ones(n)])
        self._issued = [None if r is None else r.padded(n) for r in self._issued]


@dataclass(frozen=True)
class _Reroute:
    """A known failure's shift (bit/s) and failed links, both ``(n_links,)``; once
    issued, the ratio each model's shift was scaled by at each horizon (``ratios``,
    model name -> ``(H,)``; ``None``: 1, as a checkpoint from before it holds)."""

    shift_bps: np.ndarray
    down: np.ndarray
    ratios: dict[str, np.ndarray] | None = None

    def ratio(self, f: np.ndarray) -> np.ndarray:
        """How the traffic moves over the horizon in a model's forecast: ``f`` is its
        counterfactual point forecast ``(n_links, H)``; returns ``(H,)``, the total of
        each column over the links up divided by the first column's (1 at ``h = 1``),
        clipped to :data:`SHIFT_AHEAD_RANGE`."""
        total = np.nansum(f[~self.down], axis=0)
        if not total[0] > 0:
            return np.ones(f.shape[1])
        return np.clip(total / total[0], *SHIFT_AHEAD_RANGE)

    def apply(self, f: np.ndarray, ratio: np.ndarray | float = 1.0) -> np.ndarray:
        """Counterfactual values ``f`` ``(n_links, ...)`` as they will be with the failure:
        the shift times ``ratio`` (one per column of ``f``) added, failed links 0."""
        extra = (slice(None),) + (None,) * (f.ndim - 1)
        shift = self.shift_bps[extra] * ratio
        return np.where(self.down[extra], 0.0, np.maximum(f + shift, 0.0))

    def padded(self, n: int) -> _Reroute:
        return _Reroute(
            np.r_[self.shift_bps, np.zeros(n)], np.r_[self.down, np.zeros(n, bool)], self.ratios
        )
