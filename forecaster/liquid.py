"""The liquid model: an ``ncps.torch.CfC`` shared by all links, adapted online.

Two parts, as in ncps and torch: :class:`LiquidNet` is the ``nn.Module`` (CfC cell,
Hasani et al. 2022, plus a direct multi-output head); :class:`LiquidForecaster` is
the online loop around it (per-link normalisation and hidden state, the history it
reads, optimizer, weight averaging, the adaptation steps).

How a link is seen by the network
    The CfC reads one step at a time ``[dz, observed, gap, sin, cos]``: ``dz`` is the
    change since the last observed value divided by a per-link scale ``s`` (EWMA of
    ``|dy|``), winsorised at ``dz_clip`` (3) both as an input and in the update of
    ``s``. A failure's jump is then one large step among many, not an input ten
    times outside the training range: with the first clip of 10 the jump kicked the
    hidden state and doubled ``s``, and the 1-step error stayed above persistence's
    for hours after a failure. The anchor below absorbs the jump itself. ``observed``
    is 1/0, ``gap`` is ``log1p(steps since the last observation) / 4`` and
    ``sin/cos`` give the phase within a season. Its hidden state is carried per link
    forever. The head also reads a *seasonal context* ``c`` (:func:`seasonal_context`):
    for ``h = 1..H`` the change that the same hours one season earlier would predict,
    ``y_last * (S[t+h-P] / S[t-P] - 1) / s`` (``S``: the values a season back,
    smoothed over 5 steps; relative, so a re-route that doubles the level doubles the
    predicted swing), and how well the last ``H`` steps followed the season.
    The head predicts ``(y[t+h] - y_last) / s`` for ``h = 1..H`` from the hidden state
    and the context (a small MLP plus a linear path on the context); the forecast is
    ``y_last + s * out`` (clipped at 0). Anchoring on the last value absorbs a level
    shift at once; the scale follows within ~1/alpha steps; the network learns how
    much of the seasonal swing to trust and how much of the last change is noise.

Gaps
    ncps 1.0.1 fails with ``timespans`` when the batch has more than one row (ncps
    issues #81-#83), so elapsed time is not passed as ``timespans``. A missing step is
    fed as ``dz = 0`` with ``observed = 0`` and a growing ``gap`` feature (the value is
    carried forward); when the link comes back, ``dz`` is the whole change since its
    last observation. NaN never reaches the network.

Adaptation (predict, then adapt), and why it no longer oscillates
    Each :meth:`LiquidForecaster.observe` takes ``adapt_steps`` Adam steps, then
    advances every link's hidden state by one step. The first version trained on the
    *newest* window of each link only: consecutive ticks saw nearly the same,
    strongly correlated windows, each Adam step chased them, and the 12-step error
    oscillated with a period near the horizon (``bench/results`` of issue 4). Now:

    - *Replay*: each step trains on ``adapt_links`` windows drawn at random over links
      and over the last ``replay_steps`` complete windows (experience replay, Lin
      1992; Mnih et al. 2015), so one step's gradient is not one moment's.
    - *A reservoir*: half of each batch comes from a uniform sample of all windows
      seen so far (:class:`WindowReservoir`), so the network keeps the other hours of
      the day and earlier regimes in view (with recent windows alone it forgot them
      and chased the present).
    - *Weight averaging*: the forecasts and the live hidden states come from an
      exponential moving average of the trained weights (Polyak & Juditsky 1992;
      ``torch.optim.swa_utils.AveragedModel``, decay ``ema_decay``), which smooths
      what the optimizer's noise would add.
    - *A gate*: a window whose season did not hold (its last ``H`` steps strayed from
      the season-ago change by more than ``stray_gate`` scales, or the season is
      unknown, e.g. it contained a failure's jump) is not learned from. Without it, in
      the seasons after a shift of every link's daily shape the network learned that
      the season is worthless and settled 2 to 4 times above its frozen copy for
      several seasons (``tests/forecaster/test_adaptation.py``).
    - A constant learning rate. A stream whose regime changes at every failure is
      tracked, not converged on. A step size that shrank as seasons passed (to a
      quarter of ``lr``, the default before) left the network close to where it stood
      before a shift: adapting settled no better than the same network frozen at the
      shift (level-shift test, seeds 0-9: 0.88 to 1.09 of frozen, mean 0.98, four
      seeds worse). With the rate constant: 0.72 to 0.96, mean 0.87, no seed worse.
      Two candidates were tried on seeds 0-2 of that test only (no reservoir: 1.04 to
      1.28, worse; no decay: kept), then seeds 3-9 were run (0.72 to 0.96, mean 0.86).
      The cost, measured in the paper's experiment (``bench/results``, 10 seeds): on
      nobel-eu's synthetic traffic the liquid model lost about 2 points of 1-step skill
      and 2 to 4 at 12 steps, before and after failures (a constant rate is noisier
      where the traffic does not change); the hybrid moved by at most 1.5 points; on
      Abilene every column moved by at most 1.2 points, either way. Checkpoints made
      before keep working and take the constant rate (:meth:`__setstate__`).

    Known limits: the first season, with no season-ago context, trains nothing (the
    head is untrained; forecasts stay near the last value, and the hybrid leans on the
    other members). Learning from every window in the first two seasons instead was
    tried and measured (10 seeds, nobel-eu): it cost 4 to 5 points of 1-step skill
    before failures for good (24.3 % to 19.6 % on drastic, with the decaying rate of
    then), so it was not kept.
    Training windows start from a zero hidden state while the live state is carried
    forever; the per-link scale of a replayed window is today's.

    The weights are never re-initialised; after a failure the same steps adapt them
    to the windows that now include the new level.

Memory per link: the hidden state (``units`` float32), the context (``H + 2``
float32), five scalars, and the shared float16 history ring (one season and a few
horizons), about 3 KB in all (``bench/engine_step.py``); the reservoir (2.6 MB) does
not grow with the links.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import numpy as np
import torch
from ncps.torch import CfC
from torch import nn
from torch.optim.swa_utils import AveragedModel

from forecaster.base import Forecaster, check_observation
from forecaster.buffers import HistoryRing

N_FEATURES = 5
_MODES = ("default", "pure", "no_gate")
_CTX_CLIP = 10.0
_STRAY_CLIP = 5.0
#: Half-width of the smoothing of the season-ago values (5 steps in all).
_SMOOTH = 2


def _ema_update(
    averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: int, decay: float
) -> None:
    """``AveragedModel``'s multi-tensor update for an exponential moving average.

    The same update as ``torch.optim.swa_utils.get_ema_multi_avg_fn`` (whose closure
    cannot be pickled, and the model's whole state is pickled in checkpoints).
    """
    torch._foreach_lerp_(averaged, current, 1.0 - decay)


def context_size(horizon: int) -> int:
    """Length of the seasonal context vector for ``horizon`` steps."""
    return horizon + 2


def seasonal_context(
    season: np.ndarray,
    y_now: np.ndarray,
    y_back: np.ndarray,
    scale: np.ndarray,
    shock: float = 6.0,
) -> np.ndarray:
    """The seasonal context of the head, for a batch of links.

    Parameters
    ----------
    season
        ``(2 * (H + 2 + _SMOOTH) + 1 ... , B)``: values at ``t - P + j`` for
        ``j = -H - _SMOOTH .. H + _SMOOTH`` (``P``: season, ``t``: now), bit/s, NaN
        where unknown.
    y_now, y_back
        ``(B,)`` the last observed value at ``t`` and at ``t - H`` (NaN if unknown).
    scale
        ``(B,)`` the per-link scale ``s`` of changes, bit/s.
    shock
        A season block with a step change above ``shock`` scales (a failure or a
        repair one season ago) says nothing about today's shape: unknown.

    Returns
    -------
    numpy.ndarray
        ``(B, H + 2)`` float32: ``H`` seasonal deltas (``y_now * (S[h] / S[0] - 1) /
        s``), then how far the last ``H`` steps strayed from the season (the change
        seen minus the change the season predicted, ``/ s``), then 1 where the season
        was known (0: all zeros, no season yet).

    Examples
    --------
    >>> import numpy as np
    >>> H = 2
    >>> season = np.arange(1, 2 * (H + 2) + 2, dtype=float)[:, None] * 10.0  # rising
    >>> c = seasonal_context(season, np.array([100.0]), np.array([90.0]), np.array([20.0]))
    >>> c.shape, bool(c[0, 0] > 0), float(c[0, -1])
    ((1, 4), True, 1.0)
    """
    n_rows = season.shape[0]
    horizon = (n_rows - 1) // 2 - _SMOOTH
    k = 2 * _SMOOTH + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        # centred means over 5 steps, for j = -H .. H (nanmean, all-NaN -> NaN)
        ok = np.isfinite(season)
        zero = np.zeros((1, season.shape[1]))
        csum = np.concatenate([zero, np.cumsum(np.where(ok, season, 0), 0)])
        ccnt = np.concatenate([zero, np.cumsum(ok, 0)])
        smooth = (csum[k:] - csum[:-k]) / (ccnt[k:] - ccnt[:-k])  # rows j = -H .. H
        base = smooth[horizon]
        ratio = smooth[horizon + 1 :] / base - 1.0  # (H, B)
        ahead = y_now * ratio / scale
        seen = (y_now - y_back) / scale
        expected = y_now * (1.0 - smooth[0] / base) / scale
        stray = seen - expected
        jumps = np.nanmax(np.abs(np.diff(season, axis=0)), axis=0, initial=0.0) / scale
    known = np.isfinite(ahead).all(axis=0) & (base > 0) & ~(jumps > shock)
    out = np.zeros((season.shape[1], horizon + 2), dtype=np.float32)
    out[:, :horizon] = np.where(known, np.clip(np.nan_to_num(ahead), -_CTX_CLIP, _CTX_CLIP), 0).T
    stray = np.where(known & np.isfinite(stray), stray, 0.0)
    out[:, horizon] = np.clip(stray, -_STRAY_CLIP, _STRAY_CLIP)
    out[:, horizon + 1] = known
    return out


class LiquidNet(nn.Module):
    """CfC over per-link feature sequences with a direct ``horizon``-step head.

    Follows ``torch.nn.RNN``: ``forward(x, hx=None, ctx=None) -> (y, hx)`` with
    ``batch_first`` input ``(batch, time, features)``; ``y`` is the head applied to the
    last step's state and the context ``ctx`` ``(batch, context)`` (zeros if None),
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
    context
        Length of the context vector the head reads (0: none).
    head_units
        Width of the head's hidden layer.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> net = LiquidNet(input_size=5, units=8, horizon=3, context=5)
    >>> y, hx = net(torch.zeros(4, 10, 5), ctx=torch.zeros(4, 5))
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
        context: int = 0,
        head_units: int = 32,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; valid options are {list(_MODES)}")
        self.input_size = input_size
        self.units = units
        self.horizon = horizon
        self.context = context
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
        self.head = nn.Sequential(
            nn.Linear(units + context, head_units), nn.Tanh(), nn.Linear(head_units, horizon)
        )
        self.skip = nn.Linear(context, horizon) if context else None

    def forward(
        self, x: torch.Tensor, hx: torch.Tensor | None = None, ctx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, time, features), got shape {tuple(x.shape)}")
        h, hx = self.rnn(x, hx)
        return self.readout(h, ctx), hx

    def readout(self, hx: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """The head on a hidden state (a non-wired CfC outputs its state) and context."""
        if not self.context:
            return self.head(hx)
        if ctx is None:
            ctx = hx.new_zeros(hx.shape[0], self.context)
        assert self.skip is not None
        return self.head(torch.cat([hx, ctx], dim=1)) + self.skip(ctx)


class WindowReservoir:
    """A uniform sample of every training window offered so far (Vitter's algorithm R).

    Holds at most ``capacity`` windows, already normalised (inputs, context, targets
    and target mask, as :meth:`LiquidForecaster._replay_batch` makes them), so its
    size does not grow with the number of links: 4,096 windows of 24 steps take
    about 2.6 MB. Mixed into every training batch, it keeps the times of day and
    the regimes of the past in view while the recent windows follow the present
    (experience replay against forgetting: Rolnick et al., NeurIPS 2019).

    Examples
    --------
    >>> import numpy as np, torch
    >>> r = WindowReservoir(capacity=3)
    >>> for k in range(10):
    ...     r.add([torch.full((2, 1), float(k))], np.random.default_rng(k), keep=2)
    >>> r.size, r.seen
    (3, 20)
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._data: list[torch.Tensor] | None = None
        self.size = 0
        self.seen = 0

    def add(self, batch: list[torch.Tensor], rng: np.random.Generator, keep: int) -> None:
        """Offer ``keep`` random windows of ``batch`` (tensors sharing the first axis)."""
        rows = rng.choice(batch[0].shape[0], min(keep, batch[0].shape[0]), replace=False)
        if self._data is None:
            self._data = [torch.zeros((self.capacity, *t.shape[1:]), dtype=t.dtype) for t in batch]
        for r in rows:
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                slot = int(rng.integers(0, self.seen + 1))
            self.seen += 1
            if slot < self.capacity:
                for store, t in zip(self._data, batch, strict=True):
                    store[slot] = t[r]

    def sample(self, n: int, rng: np.random.Generator) -> list[torch.Tensor]:
        """``n`` windows drawn with replacement (empty list while empty)."""
        if self._data is None or self.size == 0:
            return []
        idx = torch.from_numpy(rng.integers(0, self.size, n))
        return [store[idx] for store in self._data]


def _phase(steps: np.ndarray, season_steps: int) -> tuple[np.ndarray, np.ndarray]:
    angle = 2.0 * np.pi * (steps % season_steps) / season_steps
    return np.sin(angle), np.cos(angle)


def _ffill(raw: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward along axis 0 (leading NaN stay NaN)."""
    idx = np.where(np.isfinite(raw), np.arange(raw.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(raw, idx, axis=0)


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
        Season of the phase features and of the seasonal context (one day of 60 s
        steps by default).
    window
        Input steps of a training window (truncated BPTT from a zero state).
    adapt_steps
        Adam steps per :meth:`observe` (0 freezes the weights).
    adapt_links
        Training windows per step (drawn over links and recent times).
    replay_steps
        Windows are drawn from the last this many complete windows of each link.
    lr
        Adam learning rate at the start.
    ema_decay
        Decay of the weight average that forecasts (about ``1 / (1 - decay)`` steps of
        memory: 25).
    adam_beta2
        Adam's second-moment decay (0.99: a memory of ~100 steps, so a burst of large
        gradients after a failure does not damp the steps for a thousand more).
    stray_gate
        Windows whose last ``H`` steps strayed more than this many scales from the
        season, or whose season is unknown, are not learned from (``None``: all are);
        see the module doc.
    lr_decay_seasons, lr_floor
        ``None`` (the default): a constant rate ``lr``. Else the rate is
        ``lr / sqrt(1 + seasons seen / lr_decay_seasons)``, never below ``lr_floor * lr``
        (see the module doc for why the default does not decay).
    reservoir_size, reservoir_keep
        Capacity of the :class:`WindowReservoir` of past windows (0: none) and the
        windows of each step offered to it.
    scale_alpha
        EWMA factor of the per-link scale of changes.
    dz_clip
        Changes are winsorised at this many scales (input and scale update).
    seed
        Seeds the weight initialisation and the sampling.
    history
        A ring shared with other models (the owner pushes to it before
        :meth:`observe`); ``None``: own ring. It must hold :meth:`history_steps`.

    Examples
    --------
    >>> import numpy as np
    >>> m = LiquidForecaster(n_links=3, horizon=4, units=8, window=8, season_steps=12, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(40):
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
        adapt_steps: int = 1,
        adapt_links: int = 128,
        replay_steps: int = 48,
        lr: float = 2e-3,
        ema_decay: float = 0.96,
        adam_beta2: float = 0.99,
        stray_gate: float | None = 2.0,
        lr_decay_seasons: float | None = None,
        lr_floor: float = 0.25,
        reservoir_size: int = 4096,
        reservoir_keep: int = 16,
        scale_alpha: float = 0.1,
        dz_clip: float = 3.0,
        seed: int = 0,
        history: HistoryRing | None = None,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if replay_steps < 1:
            raise ValueError(f"replay_steps must be >= 1, got {replay_steps}")
        if season_steps <= horizon + _SMOOTH:
            raise ValueError(f"season_steps must exceed horizon + {_SMOOTH}, got {season_steps}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.horizon = horizon
        self.units = units
        self.backbone_units = backbone_units
        self.season_steps = season_steps
        self.window = window
        self.adapt_steps = adapt_steps
        self.adapt_links = adapt_links
        self.replay_steps = replay_steps
        self.lr = lr
        self.ema_decay = ema_decay
        self.adam_beta2 = adam_beta2
        self.stray_gate = stray_gate
        self.lr_decay_seasons = lr_decay_seasons
        self.lr_floor = lr_floor
        self.reservoir_size = reservoir_size
        self.reservoir_keep = reservoir_keep
        self._reservoir = WindowReservoir(reservoir_size) if reservoir_size > 0 else None
        self.scale_alpha = scale_alpha
        self.dz_clip = dz_clip
        self.seed = seed
        need = self.history_steps(horizon, season_steps, window, replay_steps)
        if history is not None and history.length < need:
            raise ValueError(f"a shared history must hold at least {need} steps")
        self._owns_history = history is None
        self._ring = HistoryRing(need, n_links) if history is None else history

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = LiquidNet(
                N_FEATURES, units, horizon, backbone_units, context=context_size(horizon)
            )
        self._avg = AveragedModel(self._net, multi_avg_fn=partial(_ema_update, decay=ema_decay))
        self._opt = torch.optim.Adam(self._net.parameters(), lr=lr, betas=(0.9, self.adam_beta2))
        self._rng = np.random.default_rng(seed)
        self._hx = torch.zeros(n_links, units)
        self._ctx = np.zeros((n_links, context_size(horizon)), dtype=np.float32)
        self._scale = np.ones(n_links)
        self._last = np.zeros(n_links)
        self._seen = np.zeros(n_links, dtype=bool)
        self._scaled = np.zeros(n_links, dtype=bool)
        self._gap = np.zeros(n_links, dtype=np.int64)
        self._t = 0
        self._constant_rate_era = True  # see __setstate__

    def __setstate__(self, state: dict) -> None:
        # A checkpoint from before the rate became constant by default carries the old
        # default (decay to a quarter), which no setting of linkcast's exposes: it takes
        # the new one, as a model built now would. One from before the floor existed
        # gets the floor's default.
        state.setdefault("lr_floor", 0.25)
        if not state.get("_constant_rate_era", False):
            state["lr_decay_seasons"] = None
            state["_constant_rate_era"] = True
        self.__dict__.update(state)

    @staticmethod
    def history_steps(
        horizon: int, season_steps: int, window: int = 24, replay_steps: int = 48
    ) -> int:
        """Steps of history the model reads: the replayed windows and a season before."""
        return replay_steps + horizon + max(season_steps + horizon + _SMOOTH, window) + 1

    @property
    def n_links(self) -> int:
        return self._last.shape[0]

    # -- features -------------------------------------------------------------------
    def _floor(self, level: np.ndarray) -> np.ndarray:
        return np.maximum(1e-4 * np.abs(level), 1.0)

    def _season_offsets(self) -> np.ndarray:
        h = self.horizon + _SMOOTH
        return np.arange(-h, h + 1)

    def _live_context(self) -> np.ndarray:
        """Seasonal context of every link as of the newest step in the ring."""
        lags = self.season_steps - self._season_offsets()  # t - P + j is P - j back
        season = self._ring.lags(lags)
        back = self._ring.lag(self.horizon)
        return seasonal_context(season, self._last, back, self._scale)

    def _live_features(self, values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        known = observed & self._seen
        dz = np.where(known, (values - self._last) / self._scale, 0.0)
        dz = np.clip(dz, -self.dz_clip, self.dz_clip)
        gap = np.where(observed, 0, self._gap + 1)
        sin, cos = _phase(np.array(self._t), self.season_steps)
        x = np.empty((self.n_links, N_FEATURES), dtype=np.float32)
        x[:, 0] = dz
        x[:, 1] = observed
        x[:, 2] = np.log1p(gap) / 4.0
        x[:, 3] = sin
        x[:, 4] = cos
        return x

    def _replay_batch(
        self, links: np.ndarray, ends: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs ``(B, W, F)``, context ``(B, C)``, targets and mask ``(B, H)``.

        Window ``b`` of link ``links[b]`` ends ``ends[b]`` steps before the newest step
        minus the horizon (its targets are the ``H`` steps after it, all in the past).
        """
        w, h, p = self.window, self.horizon, self.season_steps
        end = h + ends  # lag of each window's last input step (0: the newest step)
        # inputs (with the step before them) and targets, oldest first: (w + h + 1, B)
        raw = self._ring.gather(end[None, :] - np.arange(-w, h + 1)[:, None], links)
        obs = np.isfinite(raw)
        filled = _ffill(raw)
        scale = self._scale[links]
        x = np.zeros((len(links), w, N_FEATURES), dtype=np.float32)
        gap = np.zeros(len(links))
        step_of_end = self._t - 1 - end  # grid step index of each window's last input
        for k in range(1, w + 1):
            known = obs[k] & np.isfinite(filled[k - 1])
            dz = np.where(known, (raw[k] - filled[k - 1]) / scale, 0.0)
            gap = np.where(obs[k], 0.0, gap + 1.0)
            sin, cos = _phase(step_of_end - w + k, p)
            x[:, k - 1, 0] = np.clip(np.nan_to_num(dz), -self.dz_clip, self.dz_clip)
            x[:, k - 1, 1] = obs[k]
            x[:, k - 1, 2] = np.log1p(gap) / 4.0
            x[:, k - 1, 3] = sin
            x[:, k - 1, 4] = cos
        anchor = filled[w]
        season = self._ring.gather(end[None, :] + p - self._season_offsets()[:, None], links)
        back = self._ring.gather(end[None, :] + h, links)[0]
        ctx = seasonal_context(season, anchor, back, scale)
        # targets: the change from the anchor as a sum of per-step changes, each
        # winsorised like the inputs, so a window that straddles a failure's jump
        # teaches "a large step", not "+40 scales" (the anchor absorbs the rest)
        steps = np.diff(filled[w:], axis=0) / scale  # (H, B)
        steps = np.clip(np.nan_to_num(steps), -self.dz_clip, self.dz_clip)
        tmask = obs[w + 1 :] & np.isfinite(anchor)[None, :]
        if self.stray_gate is not None:
            tmask &= ((np.abs(ctx[:, h]) <= self.stray_gate) & (ctx[:, h + 1] > 0))[None, :]
        target = np.where(tmask, np.cumsum(steps, axis=0), 0.0)
        return (
            torch.from_numpy(x),
            torch.from_numpy(ctx),
            torch.from_numpy(target.T.astype(np.float32)),
            torch.from_numpy(tmask.T),
        )

    # -- the online loop --------------------------------------------------------------
    def _adapt(self) -> None:
        candidates = np.flatnonzero(self._seen)
        available = min(self._ring.count, self._ring.length) - self.horizon - self.window - 1
        if candidates.size == 0 or available < 1:
            return
        depth = min(self.replay_steps, available)
        decay = 1.0
        if self.lr_decay_seasons is not None:
            seasons = self._t / self.season_steps
            decay = max(1.0 / np.sqrt(1.0 + seasons / self.lr_decay_seasons), self.lr_floor)
        for group in self._opt.param_groups:  # also resets a restored model's decayed rate
            group["lr"] = self.lr * decay
        self._net.train()
        for _ in range(self.adapt_steps):
            links = self._rng.choice(candidates, self.adapt_links)
            ends = self._rng.integers(0, depth, self.adapt_links)
            batch = list(self._replay_batch(links, ends))
            if self._reservoir is not None:
                usable = batch[3].any(dim=1).numpy()
                if usable.any():
                    fresh = [t[torch.from_numpy(usable)] for t in batch]
                    self._reservoir.add(fresh, self._rng, keep=self.reservoir_keep)
                old = self._reservoir.sample(self.adapt_links, self._rng)
                if old:
                    batch = [torch.cat([a, b]) for a, b in zip(batch, old, strict=True)]
            x, ctx, target, tmask = batch
            if not bool(tmask.any()):
                break
            pred, _ = self._net(x, ctx=ctx)
            err = nn.functional.huber_loss(pred, target, reduction="none", delta=1.0)
            loss = (err * tmask).sum() / tmask.sum()
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self._net.parameters(), 1.0)
            self._opt.step()
            self._avg.update_parameters(self._net)
        self._net.eval()

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, observed = check_observation(y, mask, self.n_links)
        if self._owns_history:
            self._ring.push(values, observed)
        x = self._live_features(values, observed)
        # per-link scale of changes: robust EWMA, initialised by the first change
        known = observed & self._seen
        dy = np.abs(values - self._last)
        floor = self._floor(np.where(observed, values, self._last))
        first = known & ~self._scaled
        upd = known & self._scaled
        clipped = np.minimum(dy, self.dz_clip * self._scale)
        self._scale = np.where(
            upd, self._scale + self.scale_alpha * (clipped - self._scale), self._scale
        )
        self._scale = np.where(first, dy, self._scale)
        self._scale = np.maximum(self._scale, floor)
        self._scaled |= known
        self._gap = np.where(observed, 0, self._gap + 1)
        self._last = np.where(observed, values, self._last)
        self._seen |= observed
        self._t += 1
        # predict-then-adapt: learn from replayed windows that have completed ...
        if self.adapt_steps > 0:
            self._adapt()
        # ... then carry every link's hidden state one step with the averaged weights
        with torch.no_grad():
            self._hx = self._avg.module.rnn(torch.from_numpy(x)[:, None, :], self._hx)[1]
        self._ctx = self._live_context()

    def forecast(self) -> np.ndarray:
        with torch.no_grad():
            out = self._avg.module.readout(self._hx, torch.from_numpy(self._ctx))
        f = self._last[:, None] + self._scale[:, None] * out.numpy().astype(np.float64)
        return np.where(self._seen[:, None], np.maximum(f, 0.0), 0.0)

    def add_links(self, n: int) -> None:
        if self._owns_history:
            self._ring.add_links(n)
        self._hx = torch.cat([self._hx, torch.zeros(n, self.units)])
        extra_ctx = np.zeros((n, self._ctx.shape[1]), dtype=np.float32)
        self._ctx = np.concatenate([self._ctx, extra_ctx])
        self._scale = np.concatenate([self._scale, np.ones(n)])
        self._last = np.concatenate([self._last, np.zeros(n)])
        self._seen = np.concatenate([self._seen, np.zeros(n, dtype=bool)])
        self._scaled = np.concatenate([self._scaled, np.zeros(n, dtype=bool)])
        self._gap = np.concatenate([self._gap, np.zeros(n, dtype=np.int64)])
