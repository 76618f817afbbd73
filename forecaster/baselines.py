"""Honest references: persistence (last value) and seasonal naive (one season earlier)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import HistoryRing


class PersistenceForecaster(Forecaster):
    """Forecast the last observed value for every step ahead.

    Links never observed forecast 0.0.

    Parameters
    ----------
    n_links
        Number of links.
    horizon
        Steps forecast ahead.

    Examples
    --------
    >>> import numpy as np
    >>> m = PersistenceForecaster(n_links=2, horizon=3)
    >>> m.observe(np.array([1e9, np.nan]))
    >>> m.forecast()
    array([[1.e+09, 1.e+09, 1.e+09],
           [0.e+00, 0.e+00, 0.e+00]])
    """

    name: ClassVar[str] = "persistence"

    def __init__(self, n_links: int, horizon: int = 12) -> None:
        self.horizon = horizon
        self._last = np.zeros(n_links)

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        self._last = np.where(observed, values, self._last)

    def forecast(self) -> np.ndarray:
        return np.repeat(self._last[:, None], self.horizon, axis=1)

    def add_links(self, n: int) -> None:
        self._last = np.concatenate([self._last, np.zeros(n)])


class SeasonalForecaster(Forecaster):
    """Seasonal naive: the value observed one season earlier (``season_steps``).

    Step ``h`` forecasts the value seen ``season_steps - h`` steps before the newest
    one. Where that value is unknown (less than a season seen, or missing then) it
    falls back to the last observed value. The ring is float16 relative to a per-link
    scale (relative error <= 5e-4), which keeps a day of 1-minute steps in 2.9 KB.

    Parameters
    ----------
    n_links
        Number of links.
    horizon
        Steps forecast ahead (at most ``season_steps``).
    season_steps
        Season length in grid steps (one day of 60 s steps by default).
    history
        A ring shared with other models (the owner pushes to it); ``None``: own ring.

    Examples
    --------
    >>> import numpy as np
    >>> m = SeasonalForecaster(n_links=1, horizon=2, season_steps=3)
    >>> for v in (1.0, 2.0, 3.0):
    ...     m.observe(np.array([v]))
    >>> m.forecast()  # t+1 and t+2 are one season after 1.0 and 2.0
    array([[1., 2.]])
    """

    name: ClassVar[str] = "seasonal"

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        season_steps: int = 1440,
        history: HistoryRing | None = None,
    ) -> None:
        if not 1 <= horizon <= season_steps:
            raise ValueError(f"need 1 <= horizon <= season_steps, got {horizon}, {season_steps}")
        if history is not None and history.length < season_steps:
            raise ValueError("a shared history must hold at least season_steps steps")
        self.horizon = horizon
        self.season_steps = season_steps
        self._owns_history = history is None
        self._ring = HistoryRing(season_steps, n_links) if history is None else history
        self._last = np.zeros(n_links)

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        if self._owns_history:
            self._ring.push(values, observed)
        self._last = np.where(observed, values, self._last)

    def forecast(self) -> np.ndarray:
        lags = self.season_steps - np.arange(1, self.horizon + 1)  # step h: s-h back
        out = self._ring.lags(lags).T
        return np.where(np.isfinite(out), out, self._last[:, None])

    def add_links(self, n: int) -> None:
        if self._owns_history:
            self._ring.add_links(n)
        self._last = np.concatenate([self._last, np.zeros(n)])
