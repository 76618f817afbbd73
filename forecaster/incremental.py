"""The paper's reference: an MLP on a sliding window, frozen between retrains.

Ayoub, Andreoletti et al. (arXiv 2404.05304) compare an LNN that adapts online with
an MLP that is retrained periodically on the latest batch of data ("incremental
learning", several retraining batch sizes). Here the MLP maps the last ``n_lags``
values of a link, divided by their mean, to the next ``H`` values (same units). Its
weights change only in :meth:`IncrementalForecaster.retrain`: every ``retrain_every``
steps (``None``: only when called, e.g. by the engine's scheduled job), on windows of
the latest ``retrain_window`` points of (at most ``fit_links``) links. A re-fit warm
starts from the current weights (incremental learning, as in the paper). Until the
first fit it forecasts the last value.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import HistoryRing


class WindowMLP(nn.Module):
    """``n_lags`` normalised values -> ``horizon`` normalised values.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> WindowMLP(n_lags=6, horizon=2)(torch.zeros(3, 6)).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_lags: int, horizon: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_lags, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, horizon),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _ffill_windows(w: np.ndarray) -> np.ndarray:
    """Carry forward along the last axis; leading gaps take the first value, else 0."""
    obs = np.isfinite(w)
    idx = np.where(obs, np.arange(w.shape[-1]), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    out = np.take_along_axis(w, idx, axis=-1)
    first = np.argmax(obs, axis=-1)
    lead = np.take_along_axis(w, first[..., None], axis=-1)
    out = np.where(np.isfinite(out), out, lead)
    return np.where(np.isfinite(out), out, 0.0)


def _normalise(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    filled = _ffill_windows(windows)
    level = np.maximum(filled.mean(axis=-1), 1.0)
    return filled / level[..., None] - 1.0, level


class IncrementalForecaster(Forecaster):
    """Sliding-window MLP retrained on a schedule (the paper's incremental baseline).

    Parameters
    ----------
    n_links
        Number of links.
    horizon
        Steps forecast ahead.
    n_lags
        Input window length.
    hidden
        MLP width.
    retrain_every
        Re-fit every this many observed steps; ``None``: only on :meth:`retrain`.
    retrain_window
        Re-fit on the latest this many points (the paper's retraining batch size).
    epochs, batch_size, lr
        Fit schedule (Adam).
    fit_links
        At most this many links (sampled at random) per re-fit.
    max_samples
        At most this many windows per re-fit.
    seed
        Seeds initialisation and sampling.
    history
        A ring shared with other models (the owner pushes to it); ``None``: own ring.

    Examples
    --------
    >>> import numpy as np
    >>> m = IncrementalForecaster(n_links=2, horizon=3, n_lags=6, retrain_every=40,
    ...                           retrain_window=40, epochs=2, seed=0)
    >>> t = np.arange(80)
    >>> for k in t:
    ...     m.observe(1e9 * (2 + np.sin(2 * np.pi * k / 20 + np.array([0.0, 1.0]))))
    >>> m.n_fits, m.forecast().shape
    (2, (2, 3))
    """

    name: ClassVar[str] = "incremental"

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        n_lags: int = 24,
        hidden: int = 64,
        retrain_every: int | None = 240,
        retrain_window: int = 480,
        epochs: int = 3,
        batch_size: int = 256,
        lr: float = 1e-3,
        fit_links: int = 256,
        max_samples: int = 20_000,
        seed: int = 0,
        history: HistoryRing | None = None,
    ) -> None:
        if retrain_window < n_lags + horizon:
            raise ValueError("retrain_window must be >= n_lags + horizon")
        if retrain_every is not None and retrain_every < 1:
            raise ValueError(f"retrain_every must be None or >= 1, got {retrain_every}")
        self.horizon = horizon
        self.n_lags = n_lags
        self.hidden = hidden
        self.retrain_every = retrain_every
        self.retrain_window = retrain_window
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.fit_links = fit_links
        self.max_samples = max_samples
        self.seed = seed
        if history is not None and history.length < retrain_window:
            raise ValueError("a shared history must hold at least retrain_window steps")
        self._owns_history = history is None
        self._ring = HistoryRing(retrain_window, n_links) if history is None else history
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = WindowMLP(n_lags, horizon, hidden)
        self._opt = torch.optim.Adam(self._net.parameters(), lr=lr)
        self._rng = np.random.default_rng(seed)
        self._last = np.zeros(n_links)
        self._since_fit = 0
        self._n_fits = 0

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    @property
    def n_fits(self) -> int:
        """Re-fits done so far."""
        return self._n_fits

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        if self._owns_history:
            self._ring.push(values, observed)
        self._last = np.where(observed, values, self._last)
        self._since_fit += 1
        if self.retrain_every is not None and self._since_fit >= self.retrain_every:
            self.retrain()

    def retrain(self) -> bool:
        """Re-fit the MLP on the latest ``retrain_window`` points; False if too few."""
        span = min(self.retrain_window, self._ring.count)
        if span < self.n_lags + self.horizon:
            return False
        self._since_fit = 0
        links = np.arange(self.n_links)
        if links.size > self.fit_links:
            links = np.sort(self._rng.choice(links, self.fit_links, replace=False))
        data = self._ring.last(span)[:, links].T  # (B, span)
        n_win = span - self.n_lags - self.horizon + 1
        starts = np.arange(n_win)
        idx = starts[:, None] + np.arange(self.n_lags + self.horizon)
        win = data[:, idx].reshape(-1, self.n_lags + self.horizon)  # (B * n_win, L + H)
        inputs, level = _normalise(win[:, : self.n_lags])
        target = win[:, self.n_lags :] / level[:, None] - 1.0
        tmask = np.isfinite(target)
        keep = np.flatnonzero(tmask.any(axis=1) & np.isfinite(win[:, : self.n_lags]).any(axis=1))
        if keep.size == 0:
            return False
        if keep.size > self.max_samples:
            keep = np.sort(self._rng.choice(keep, self.max_samples, replace=False))
        x = torch.from_numpy(inputs[keep].astype(np.float32))
        target = np.clip(np.where(tmask, target, 0.0)[keep], -10, 10)
        y = torch.from_numpy(target.astype(np.float32))
        m = torch.from_numpy(tmask[keep])
        self._net.train()
        for _ in range(self.epochs):
            order = torch.from_numpy(self._rng.permutation(keep.size))
            for b in range(0, keep.size, self.batch_size):
                sel = order[b : b + self.batch_size]
                err = (self._net(x[sel]) - y[sel]) ** 2
                loss = (err * m[sel]).sum() / m[sel].sum().clamp(min=1)
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                self._opt.step()
        self._net.eval()
        self._n_fits += 1
        return True

    def forecast(self) -> np.ndarray:
        if self._n_fits == 0:
            return np.repeat(self._last[:, None], self.horizon, axis=1)
        recent = self._ring.last(self.n_lags).T
        x, level = _normalise(recent)
        with torch.no_grad():
            out = self._net(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
        f = level[:, None] * (1.0 + out)
        never = ~np.isfinite(recent).any(axis=1)
        f = np.where(never[:, None], self._last[:, None], f)
        return np.maximum(f, 0.0)

    def add_links(self, n: int) -> None:
        if self._owns_history:
            self._ring.add_links(n)
        self._last = np.concatenate([self._last, np.zeros(n)])
