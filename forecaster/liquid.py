"""The liquid model: an ``ncps.torch.CfC`` shared by all links, adapted online.

Two parts, as in ncps and torch: :class:`LiquidNet` is the ``nn.Module`` (CfC cell,
Hasani et al. 2022, plus a direct multi-output head); :class:`LiquidForecaster` is
the online loop around it (per-link normalisation and hidden state, recent-window
buffer, optimizer, the adaptation steps).

How a link is seen by the network
    Inputs per step are ``[dz, observed, gap, sin, cos]``: ``dz`` is the change since
    the last observed value divided by a per-link scale ``s`` (EWMA of ``|dy|``,
    clipped at 10 s per update so one jump cannot blow it up), ``observed`` is 1/0,
    ``gap`` is ``log1p(steps since the last observation) / 4`` and ``sin/cos`` give
    the phase within a season. The head predicts ``(y[t+h] - y_last) / s`` for
    ``h = 1..H``; the forecast is ``y_last + s * out`` (clipped at 0). Anchoring on the
    last value absorbs a level shift at once; the scale follows within ~1/alpha steps.

Gaps
    ncps 1.0.1 fails with ``timespans`` when the batch has more than one row (ncps
    issues #81-#83), so elapsed time is not passed as ``timespans``. A missing step is
    fed as ``dz = 0`` with ``observed = 0`` and a growing ``gap`` feature (the value is
    carried forward); when the link comes back, ``dz`` is the whole change since its
    last observation. NaN never reaches the network.

Adaptation (predict, then adapt)
    Each :meth:`LiquidForecaster.observe` first takes ``adapt_steps`` Adam steps on the
    newest complete windows (``window`` input steps, then ``H`` targets ending at the
    value that just arrived) of at most ``adapt_links`` links sampled at random, then
    advances every link's hidden state by one step with the updated weights. The
    weights are never re-initialised. Training windows start from a zero hidden state
    (truncated BPTT over ``window`` steps); the live state is carried forever.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from ncps.torch import CfC
from torch import nn

from forecaster.base import Forecaster, check_observation

N_FEATURES = 5
_MODES = ("default", "pure", "no_gate")
_DZ_CLIP = 10.0


class LiquidNet(nn.Module):
    """CfC over per-link feature sequences with a direct ``horizon``-step head.

    Follows ``torch.nn.RNN``: ``forward(x, hx=None) -> (y, hx)`` with ``batch_first``
    input ``(batch, time, features)``; ``y`` is the head applied to the last step,
    shape ``(batch, horizon)``.

    Parameters
    ----------
    input_size
        Features per step.
    units
        CfC hidden units (the per-link state).
    horizon
        Outputs of the head.
    backbone_units, backbone_layers
        The CfC backbone.
    mode
        CfC mode, one of ``default``, ``pure``, ``no_gate``.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> net = LiquidNet(input_size=5, units=8, horizon=3)
    >>> y, hx = net(torch.zeros(4, 10, 5))
    >>> tuple(y.shape), tuple(hx.shape)
    ((4, 3), (4, 8))
    """

    def __init__(
        self,
        input_size: int,
        units: int = 16,
        horizon: int = 12,
        backbone_units: int = 32,
        backbone_layers: int = 1,
        mode: str = "default",
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; valid options are {list(_MODES)}")
        self.input_size = input_size
        self.units = units
        self.horizon = horizon
        # A fresh CfC (and so a fresh wiring, if one were used) per network: ncps
        # wiring objects cannot be shared by two layers.
        self.rnn = CfC(
            input_size,
            units,
            batch_first=True,
            return_sequences=False,
            mode=mode,
            backbone_units=backbone_units,
            backbone_layers=backbone_layers,
        )
        self.head = nn.Linear(units, horizon)

    def forward(
        self, x: torch.Tensor, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, time, features), got shape {tuple(x.shape)}")
        h, hx = self.rnn(x, hx)
        return self.head(h), hx

    def readout(self, hx: torch.Tensor) -> torch.Tensor:
        """The head on a hidden state (a non-wired CfC outputs its state)."""
        return self.head(hx)


def _phase(steps: np.ndarray, season_steps: int) -> tuple[np.ndarray, np.ndarray]:
    angle = 2.0 * np.pi * (steps % season_steps) / season_steps
    return np.sin(angle), np.cos(angle)


class LiquidForecaster(Forecaster):
    """Online liquid (CfC) forecaster: weights shared by all links, adapted every step.

    Parameters
    ----------
    n_links
        Number of links.
    horizon
        Steps forecast ahead.
    units
        CfC hidden units per link (16 float32 = 64 bytes of state per link).
    backbone_units
        Width of the CfC backbone.
    season_steps
        Period of the phase features (one day of 60 s steps by default).
    window
        Input steps of a training window.
    adapt_steps
        Adam steps per :meth:`observe` (0 freezes the weights).
    adapt_links
        At most this many links (sampled at random) per adaptation step.
    lr
        Adam learning rate.
    scale_alpha
        EWMA factor of the per-link scale of changes.
    seed
        Seeds the weight initialisation and the link sampling.

    Examples
    --------
    >>> import numpy as np
    >>> m = LiquidForecaster(n_links=3, horizon=4, units=8, window=8, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(20):
    ...     m.observe(1e9 + 1e7 * rng.standard_normal(3))
    >>> f = m.forecast()
    >>> f.shape, bool(np.isfinite(f).all())
    ((3, 4), True)
    """

    name: ClassVar[str] = "liquid"

    def __init__(
        self,
        n_links: int,
        horizon: int = 12,
        units: int = 16,
        backbone_units: int = 32,
        season_steps: int = 1440,
        window: int = 24,
        adapt_steps: int = 2,
        adapt_links: int = 128,
        lr: float = 3e-3,
        scale_alpha: float = 0.1,
        seed: int = 0,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.horizon = horizon
        self.units = units
        self.backbone_units = backbone_units
        self.season_steps = season_steps
        self.window = window
        self.adapt_steps = adapt_steps
        self.adapt_links = adapt_links
        self.lr = lr
        self.scale_alpha = scale_alpha
        self.seed = seed

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = LiquidNet(N_FEATURES, units, horizon, backbone_units)
        self._opt = torch.optim.Adam(self._net.parameters(), lr=lr)
        self._rng = np.random.default_rng(seed)
        self._hx = torch.zeros(n_links, units)
        self._scale = np.ones(n_links)
        self._last = np.zeros(n_links)
        self._seen = np.zeros(n_links, dtype=bool)
        self._scaled = np.zeros(n_links, dtype=bool)
        self._gap = np.zeros(n_links, dtype=np.int64)
        self._buf_len = window + horizon + 1
        self._buf = np.full((self._buf_len, n_links), np.nan, dtype=np.float32)
        self._pos = 0
        self._t = 0

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    # -- features -------------------------------------------------------------------
    def _floor(self, level: np.ndarray) -> np.ndarray:
        return np.maximum(1e-4 * np.abs(level), 1.0)

    def _live_features(self, values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        known = observed & self._seen
        dz = np.where(known, (values - self._last) / self._scale, 0.0)
        dz = np.clip(dz, -_DZ_CLIP, _DZ_CLIP)
        gap = np.where(observed, 0, self._gap + 1)
        sin, cos = _phase(np.array(self._t), self.season_steps)
        x = np.empty((self.n_links, N_FEATURES), dtype=np.float32)
        x[:, 0] = dz
        x[:, 1] = observed
        x[:, 2] = np.log1p(gap) / 4.0
        x[:, 3] = sin
        x[:, 4] = cos
        return x

    def _window_batch(self, links: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs ``(B, W, F)``, targets ``(B, H)`` and target mask for the newest window."""
        w, h = self.window, self.horizon
        order = (self._pos + np.arange(self._buf_len)) % self._buf_len  # oldest first
        raw = self._buf[order][:, links].astype(np.float64)  # (W+H+1, B)
        obs = np.isfinite(raw)
        filled = raw.copy()
        for k in range(1, raw.shape[0]):  # carry forward
            filled[k] = np.where(obs[k], filled[k], filled[k - 1])
        scale = self._scale[links]
        x = np.zeros((len(links), w, N_FEATURES), dtype=np.float32)
        gap = np.zeros(len(links))
        first = self._t - 1 - h - w  # grid step of raw[0]
        sin, cos = _phase(first + np.arange(1, w + 1), self.season_steps)
        for k in range(1, w + 1):
            known = obs[k] & np.isfinite(filled[k - 1])
            dz = np.where(known, (raw[k] - filled[k - 1]) / scale, 0.0)
            gap = np.where(obs[k], 0.0, gap + 1.0)
            x[:, k - 1, 0] = np.clip(np.nan_to_num(dz), -_DZ_CLIP, _DZ_CLIP)
            x[:, k - 1, 1] = obs[k]
            x[:, k - 1, 2] = np.log1p(gap) / 4.0
            x[:, k - 1, 3] = sin[k - 1]
            x[:, k - 1, 4] = cos[k - 1]
        anchor = filled[w]
        target = (raw[w + 1 :] - anchor) / scale  # (H, B)
        tmask = np.isfinite(target)
        target = np.clip(np.where(tmask, target, 0.0), -100.0, 100.0)
        return (
            torch.from_numpy(x),
            torch.from_numpy(target.T.astype(np.float32)),
            torch.from_numpy(tmask.T),
        )

    # -- the online loop --------------------------------------------------------------
    def _adapt(self) -> None:
        anchor_known = self._seen & np.isfinite(self._buf[(self._pos - 1) % self._buf_len])
        candidates = np.flatnonzero(anchor_known)
        if candidates.size == 0:
            return
        self._net.train()
        for _ in range(self.adapt_steps):
            if candidates.size > self.adapt_links:
                links = np.sort(self._rng.choice(candidates, self.adapt_links, replace=False))
            else:
                links = candidates
            x, target, tmask = self._window_batch(links)
            if not bool(tmask.any()):
                return
            pred, _ = self._net(x)
            err = nn.functional.huber_loss(pred, target, reduction="none", delta=1.0)
            loss = (err * tmask).sum() / tmask.sum()
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self._net.parameters(), 1.0)
            self._opt.step()
        self._net.eval()

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        x = self._live_features(values, observed)
        # per-link scale of changes: robust EWMA, initialised by the first change
        known = observed & self._seen
        dy = np.abs(values - self._last)
        floor = self._floor(np.where(observed, values, self._last))
        first = known & ~self._scaled
        upd = known & self._scaled
        clipped = np.minimum(dy, _DZ_CLIP * self._scale)
        self._scale = np.where(
            upd, self._scale + self.scale_alpha * (clipped - self._scale), self._scale
        )
        self._scale = np.where(first, dy, self._scale)
        self._scale = np.maximum(self._scale, floor)
        self._scaled |= known
        self._gap = np.where(observed, 0, self._gap + 1)
        self._last = np.where(observed, values, self._last)
        self._seen |= observed
        self._buf[self._pos] = np.where(observed, values, np.nan)
        self._pos = (self._pos + 1) % self._buf_len
        self._t += 1
        # predict-then-adapt: learn from the window that just completed ...
        if self.adapt_steps > 0 and self._t >= self._buf_len:
            self._adapt()
        # ... then carry every link's hidden state one step with the updated weights
        with torch.no_grad():
            _, self._hx = self._net(torch.from_numpy(x)[:, None, :], self._hx)

    def forecast(self) -> np.ndarray:
        with torch.no_grad():
            out = self._net.readout(self._hx).numpy().astype(np.float64)
        f = self._last[:, None] + self._scale[:, None] * out
        return np.where(self._seen[:, None], np.maximum(f, 0.0), 0.0)

    def add_links(self, n: int) -> None:
        self._hx = torch.cat([self._hx, torch.zeros(n, self.units)])
        self._scale = np.concatenate([self._scale, np.ones(n)])
        self._last = np.concatenate([self._last, np.zeros(n)])
        self._seen = np.concatenate([self._seen, np.zeros(n, dtype=bool)])
        self._scaled = np.concatenate([self._scaled, np.zeros(n, dtype=bool)])
        self._gap = np.concatenate([self._gap, np.zeros(n, dtype=np.int64)])
        extra = np.full((self._buf_len, n), np.nan, dtype=np.float32)
        self._buf = np.concatenate([self._buf, extra], axis=1)
