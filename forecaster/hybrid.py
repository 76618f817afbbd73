"""Hybrid: per link and horizon step, a soft follow-the-leader over member forecasts.

The paper's authors suggest combining the LNN (best under a drastic shift) with the
retrained MLP (best under a moderate one). For every link ``i`` and step ``h`` each
member ``m`` keeps ``E[m, i, h]``, an EWMA (factor ``error_alpha``, fast) of its
squared error on the forecasts that matured. The weights are

    w[m] = softmax_m( -sharpness * (sqrt(E[m] / min_k E[k]) - 1) )

i.e. exponentiated weights on the RMSE ratio to the current leader: a member 10%
worse than the leader gets ``exp(-0.1 * sharpness)`` of its weight. Weights are
scale-free (only ratios within a link matter) and start equal.

Common shocks
    When a failure re-routes traffic, every member's forecast for that step is wrong
    by the whole jump, by nearly the same amount. Taken as is, that one squared error
    swamps each member's running error for ``~1/error_alpha`` steps, the ratios all
    go to 1 and the weights to equal, just when some members (a model re-fitted on a
    schedule, the value a season ago) go on forecasting the old level. So a step at
    which *every* member's squared error exceeds ``shock`` times its running error
    is a common shock: each member's error enters capped at ``shock`` times its
    running error (the ranking before the shock survives it).

After a shock: who followed the jump
    A cap alone leaves the weights of the shock step as they were before it, and they
    make the next forecasts: a member that missed the jump keeps its weight until its
    own errors after the jump have matured, one step later at ``h = 1`` and ``h``
    steps later for the ``h``-step forecast, which was issued with those same stale
    weights. Measured on nobel-eu drastic (seeds 0-2, the design seeds): the
    incremental MLP, one of the two best members before the failure, went on
    forecasting the old level; the hybrid's 1-step error at the step after the
    failure was 80 times liquid's, its settled 1-step skill was -16 % against
    liquid's +23 %, and its 12-step error 12 to 24 steps after the failure 10 to 50
    times liquid's.

    The shock step itself says which members followed the jump: each member has just
    seen the new value and issued new forecasts. When the 1-step column of a link is
    a common shock (every member off by the jump; a level shift, which a failure's
    re-route is, is taken to persist), the hybrid scores each member on that link, in
    every column, by its running error plus the square of the part of the jump its
    new forecast has not followed,

        left[m] = (y_t - f_m(t+1 | t)) + (f_m(t+1 | t-1) - f_m(t | t-1)),

    the distance of its new 1-step forecast from the newest value, less the change
    it expected over that step anyway. A member that follows a level shift has
    ``left`` near 0 (persistence exactly 0); one that keeps the old level has
    ``left`` near the whole jump and loses its weight at once, for every horizon
    (its ``h``-step forecasts come from the same state as its 1-step one). This is a
    one-step pseudo-observation in the same EWMA, so the weights return to the
    long-run ones as the evidence after the shock accrues (a member that catches up,
    e.g. at its next re-fit, regains its weight as its real errors come in). The
    1-step ``left`` serves every horizon: on the design seeds the ``h``-step
    analogue (``left`` from the revision of the ``h``-step forecast) over-stated the
    liquid model's 12-step error three-fold, because liquid scales the daily swing
    to the new level rather than shifting it.

    For ``h`` steps after a shock on a link, the ``h``-step errors that mature were
    issued before it: they measure the jump, not the members, and enter capped like
    a common shock whether or not every member is off.

    Only a jump far beyond the noise counts: every member's squared 1-step error above
    ``change`` (25, i.e. 5 running RMS) times its running error at once. On the design
    seeds that fired at the failure and in the first 50 steps of a run (running errors
    not yet formed), never in the days between; the cap's own test (``shock``, 4) is
    met by noise on about 5 % of link-steps, where re-scoring would move weight to
    whichever member chased the noise. Measured with ``linkcast evaluate --topology
    nobel-eu --traffic sine --scenario drastic --seeds 0-2`` (the design seeds), before
    / after: hybrid over its best member's post-failure 1-step RMSE 1.054 / 0.996;
    settled skill against persistence -16.4 % / +24.7 % at 1 step (liquid +23.3 %),
    +65.9 % / +73.3 % at 12 (liquid +71.0 %); pre-failure windows unchanged (skill
    +25.1 % and +76.8 %).

    A transient spike (real traffic) is a jump too: the members that do not follow it
    lose weight at once, and persistence, which does, loses it when the spike is gone
    and its forecasts from the spike mature (argued, not designed on; Abilene's
    results in ``bench/results`` measure it).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import PendingForecasts


class HybridForecaster(Forecaster):
    """Weighted combination of member forecasts, weights from recent errors.

    The hybrid owns its members: :meth:`observe` scores every member's (and its own)
    matured forecasts, lets the members observe and forecast, then updates the weights
    (at a jump with the members' new forecasts, see the module doc) and combines.

    Parameters
    ----------
    members
        Member models by name (all with the same ``n_links`` and ``horizon``).
        Members not in ``combine`` are only scored (e.g. extra incremental variants).
    combine
        Names of the members combined; ``None``: all of them.
    error_alpha
        EWMA factor of the squared errors (higher reacts faster).
    sharpness
        How strongly the weights follow the leader.
    shock
        A step where every member's squared error exceeds this many times its running
        error is a common shock, capped (see the module doc); ``None``: no cap and no
        re-scoring at a jump.
    change
        A common shock whose 1-step squared errors all exceed this many times the
        running error is a jump: the members are re-scored by how far they followed
        it (see the module doc).

    Examples
    --------
    >>> import numpy as np
    >>> from forecaster.baselines import PersistenceForecaster, SeasonalForecaster
    >>> h = HybridForecaster({"persistence": PersistenceForecaster(1, horizon=2),
    ...                       "seasonal": SeasonalForecaster(1, horizon=2, season_steps=4)})
    >>> for t in range(40):
    ...     h.observe(np.array([[1.0, 5.0, 1.0, 5.0][t % 4]]))
    >>> w = h.weights()
    >>> bool(w["seasonal"][0, 0] > 0.9)
    True
    """

    name: ClassVar[str] = "hybrid"

    def __init__(
        self,
        members: dict[str, Forecaster],
        combine: tuple[str, ...] | None = None,
        error_alpha: float = 0.05,
        sharpness: float = 8.0,
        shock: float | None = 4.0,
        change: float = 25.0,
    ) -> None:
        if not members:
            raise ValueError("a hybrid needs at least one member")
        combine = tuple(members) if combine is None else tuple(combine)
        unknown = [c for c in combine if c not in members]
        if unknown:
            raise ValueError(f"combine names {unknown} are not members; valid: {list(members)}")
        horizons = {m.horizon for m in members.values()}
        sizes = {m.n_links for m in members.values()}
        if len(horizons) != 1 or len(sizes) != 1:
            raise ValueError("members must share n_links and horizon")
        self.members = members
        self.combine = combine
        self.error_alpha = error_alpha
        self.sharpness = sharpness
        self.shock = shock
        self.change = change
        self.horizon = horizons.pop()
        n = sizes.pop()
        self._pending = {k: PendingForecasts(self.horizon, n) for k in self.names}
        self._err = np.zeros((len(combine), n, self.horizon), dtype=np.float32)
        # steps since the last shock on each link, at most horizon (= none within reach)
        self._since = np.full(n, self.horizon, dtype=np.int32)
        self._residuals: dict[str, np.ndarray] | None = None
        self._cache: dict[str, np.ndarray] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Member names, then ``hybrid``."""
        return (*self.members, self.name)

    @property
    def n_links(self) -> int:
        return self._err.shape[1]

    def __setstate__(self, state: dict) -> None:
        # a checkpoint from before the shock re-weighting: no shock within reach
        if "_since" not in state:
            state["_since"] = np.full(state["_err"].shape[1], state["horizon"], dtype=np.int32)
        state.setdefault("change", 25.0)  # the constructor's default
        self.__dict__.update(state)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_residuals"] = None  # transient: recomputed on the next observe
        state["_cache"] = None  # transient: a pure function of the state
        return state

    def weights(self) -> dict[str, np.ndarray]:
        """Current weight of each combined member, each ``(n_links, horizon)``."""
        err = self._err.astype(np.float64)
        best = err.min(axis=0)
        tiny = 1e-12 * err.max(axis=0) + 1e-30
        ratio = np.sqrt((err + tiny) / (best + tiny))
        logits = -self.sharpness * (ratio - 1.0)
        w = np.exp(logits - logits.max(axis=0))
        w /= w.sum(axis=0)
        return dict(zip(self.combine, w, strict=True))

    def _combine(self, member_fc: dict[str, np.ndarray]) -> np.ndarray:
        w = self.weights()
        return sum(w[k] * member_fc[k] for k in self.combine)

    def forecast_all(self) -> dict[str, np.ndarray]:
        """Every member's forecast and the hybrid's, by name (no side effects)."""
        if self._cache is not None:
            return {k: v.copy() for k, v in self._cache.items()}
        out = {k: m.forecast() for k, m in self.members.items()}
        out[self.name] = self._combine(out)
        return out

    def forecast(self) -> np.ndarray:
        return self.forecast_all()[self.name]

    @property
    def last_residuals(self) -> dict[str, np.ndarray]:
        """``y - forecast issued h steps ago`` from the last :meth:`observe`, by name.

        Shape ``(n_links, horizon)``; column ``h-1`` is the ``h``-step forecast. NaN
        where the link was not observed or no forecast was pending.
        """
        if self._residuals is None:
            return {k: np.full((self.n_links, self.horizon), np.nan) for k in self.names}
        return self._residuals

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        # 1) score what matured now
        res = {}
        for k, p in self._pending.items():
            r = values[:, None] - p.matured()
            res[k] = np.where(observed[:, None], r, np.nan)
        sq = np.stack([res[k] ** 2 for k in self.combine])
        ok = np.isfinite(sq).all(axis=0)
        sq = np.minimum(np.nan_to_num(sq), 3e38)
        err = self._err.astype(np.float64)
        shocked = np.zeros(self.n_links, dtype=bool)
        if self.shock is not None:
            cap = self.shock * err
            common = ((err > 0) & (sq > cap)).all(axis=0)
            jump = ((err > 0) & (sq > self.change * err)).all(axis=0)
            shocked = common[:, 0] & jump[:, 0] & ok[:, 0]
            self._since = np.where(shocked, 0, np.minimum(self._since + 1, self.horizon))
            # h-step forecasts issued before a shock on their link measure the jump
            before = self._since[:, None] < np.arange(1, self.horizon + 1)[None, :]
            sq = np.where((common | before)[None], np.minimum(sq, cap), sq)
        self._residuals = res
        # 2) members learn and forecast
        for m in self.members.values():
            m.observe(y, mask)
        fc = {k: m.forecast() for k, m in self.members.items()}
        if shocked.any():
            sq = self._after_shock(sq, err, values, fc, shocked)
        # 3) the weights, then issue and remember the new forecasts
        a = self.error_alpha
        upd = (1 - a) * err + a * sq
        self._err = np.where(ok[None], upd, err).astype(np.float32)
        fc[self.name] = self._combine(fc)
        for k, p in self._pending.items():
            p.roll(fc[k])
        self._cache = fc

    def _after_shock(
        self,
        sq: np.ndarray,
        err: np.ndarray,
        values: np.ndarray,
        fc: dict[str, np.ndarray],
        shocked: np.ndarray,
    ) -> np.ndarray:
        """``sq`` with the shocked links' entries replaced by each member's running
        error plus the square of the part of the jump it has not followed (module doc).

        ``sq`` and ``err`` are ``(members, n_links, H)``; ``fc`` the members' new
        forecasts (before :meth:`PendingForecasts.roll`: the pending ones are still
        those issued a step ago); ``shocked`` ``(n_links,)``.
        """
        out = sq.copy()
        for j, k in enumerate(self.combine):
            prev = self._pending[k].latest()  # issued at t-1; column h-1 for t-1+h
            left = values - fc[k][:, 0]
            if self.horizon > 1:
                left = left + (prev[:, 1] - prev[:, 0])
            use = shocked & np.isfinite(left)
            pseudo = err[j] + np.minimum(left**2, 3e38)[:, None]
            out[j] = np.where(use[:, None], pseudo, sq[j])
        return out

    def add_links(self, n: int) -> None:
        for m in self.members.values():
            m.add_links(n)
        for p in self._pending.values():
            p.add_links(n)
        extra = np.zeros((len(self.combine), n, self.horizon), dtype=np.float32)
        self._err = np.concatenate([self._err, extra], axis=1)
        self._since = np.concatenate([self._since, np.full(n, self.horizon, dtype=np.int32)])
        self._residuals = None
        self._cache = None
