"""Prediction intervals calibrated online: adaptive conformal quantile tracking.

For each link ``i`` and step ``h`` the conformity score is the absolute error
normalised by the link's level, ``s = |y - yhat| / L_i`` (``L_i``: EWMA of ``|y|``,
floor 1 bit/s). The interval is ``yhat -/+ q[i, h] * L_i`` (lower bound clipped at
0: loads are non-negative). When the forecast issued ``h`` steps ago matures, ``q``
takes one step of adaptive conformal inference (Gibbs & Candes 2021) in its
quantile-tracking form (Angelopoulos, Candes & Tibshirani 2023), in log space:

    q <- q * exp(gamma * (miss - (1 - level))),   miss = 1{s > q}

Stationary point: the miss rate equals ``1 - level``. After a shift the misses push
``q`` up geometrically (``gamma = 0.1``: x1.09 per miss), so coverage recovers in
tens of steps without storing past scores. The miss is computed with the current
``q`` (the one that issued the interval may have moved by a few per cent since).
"""

from __future__ import annotations

import numpy as np


class AdaptiveConformal:
    """Online-calibrated intervals for one model, per link and horizon step.

    Parameters
    ----------
    n_links, horizon
        Shape of the forecasts.
    level
        Target coverage (0.9: 90% intervals).
    gamma
        Step size of the log-quantile update.
    level_alpha
        EWMA factor of the per-link level used to normalise the scores.
    q_init
        Initial half-width relative to the level.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ci = AdaptiveConformal(n_links=1, horizon=1, level=0.9)
    >>> hits = []
    >>> for t in range(3000):
    ...     y = 100.0 + rng.normal(0.0, 5.0, size=1)
    ...     lo, hi = ci.interval(np.full((1, 1), 100.0))
    ...     hits.append(lo[0, 0] <= y[0] <= hi[0, 0])
    ...     ci.update(y, np.ones(1, bool), y[:, None] - 100.0)
    >>> round(float(np.mean(hits[500:])), 2)
    0.9
    """

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        level: float = 0.9,
        gamma: float = 0.1,
        level_alpha: float = 0.1,
        q_init: float = 0.1,
    ) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.horizon = horizon
        self.level = level
        self.gamma = gamma
        self.level_alpha = level_alpha
        self.q_init = q_init
        self._q = np.full((n_links, horizon), q_init, dtype=np.float32)
        self._level = np.zeros(n_links)
        self._seen = np.zeros(n_links, dtype=bool)

    @property
    def n_links(self) -> int:
        return self._q.shape[0]

    def _norm(self) -> np.ndarray:
        return np.maximum(self._level, 1.0)

    def update(self, y: np.ndarray, observed: np.ndarray, residuals: np.ndarray) -> None:
        """Score matured forecasts (``residuals``: ``(n_links, H)``, NaN if none)."""
        score = np.abs(residuals) / self._norm()[:, None]
        valid = np.isfinite(score) & observed[:, None]
        miss = score > self._q
        step = np.exp(self.gamma * (miss - (1.0 - self.level)))
        q = np.where(valid, self._q * step, self._q)
        self._q = np.clip(q, 1e-6, 1e6).astype(np.float32)
        y = np.where(observed, np.abs(y), 0.0)
        first = observed & ~self._seen
        ewma = self._level + self.level_alpha * (y - self._level)
        self._level = np.where(first, y, np.where(observed, ewma, self._level))
        self._seen |= observed

    def interval(self, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds around ``forecast`` ``(n_links, H)``."""
        half = self._q.astype(np.float64) * self._norm()[:, None]
        return np.maximum(forecast - half, 0.0), forecast + half

    def add_links(self, n: int) -> None:
        extra = np.full((n, self.horizon), self.q_init, dtype=np.float32)
        self._q = np.concatenate([self._q, extra])
        self._level = np.concatenate([self._level, np.zeros(n)])
        self._seen = np.concatenate([self._seen, np.zeros(n, dtype=bool)])
