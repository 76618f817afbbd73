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
    running error (the ranking before the shock survives it); a member that alone
    stays wrong afterwards is scored in full and loses its weight within a few steps.

Memory
    ``error_alpha`` 0.05 (about 20 steps): with 0.2 the weights followed the noise of
    single steps and the hybrid ended 2 to 7 % above its best member before failures
    (nobel-eu, seed 1; ``bench/results``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import PendingForecasts


class HybridForecaster(Forecaster):
    """Weighted combination of member forecasts, weights from recent errors.

    The hybrid owns its members: :meth:`observe` scores every member's (and its own)
    matured forecasts, updates the weights, then lets the members observe.

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
        error is a common shock, capped (see the module doc); ``None``: no cap.

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
        self.horizon = horizons.pop()
        n = sizes.pop()
        self._pending = {k: PendingForecasts(self.horizon, n) for k in self.names}
        self._err = np.zeros((len(combine), n, self.horizon), dtype=np.float32)
        self._residuals: dict[str, np.ndarray] | None = None
        self._cache: dict[str, np.ndarray] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Member names, then ``hybrid``."""
        return (*self.members, self.name)

    @property
    def n_links(self) -> int:
        return self._err.shape[1]

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
        if self.shock is not None:
            cap = self.shock * self._err.astype(np.float64)
            common = ((self._err > 0) & (sq > cap)).all(axis=0)
            sq = np.where(common[None], np.minimum(sq, cap), sq)
        a = self.error_alpha
        upd = (1 - a) * self._err + a * sq
        self._err = np.where(ok[None], upd, self._err).astype(np.float32)
        self._residuals = res
        # 2) members learn, 3) issue and remember the new forecasts
        for m in self.members.values():
            m.observe(y, mask)
        self._cache = None
        fc = self.forecast_all()
        for k, p in self._pending.items():
            p.roll(fc[k])
        self._cache = fc

    def add_links(self, n: int) -> None:
        for m in self.members.values():
            m.add_links(n)
        for p in self._pending.values():
            p.add_links(n)
        extra = np.zeros((len(self.combine), n, self.horizon), dtype=np.float32)
        self._err = np.concatenate([self._err, extra], axis=1)
        self._residuals = None
        self._cache = None
