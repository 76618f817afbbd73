"""Drift detection per link (river's Page-Hinkley), re-route detection, resolution.

Two signals per link, each watched by a ``river.drift.PageHinkley`` detector [1]_:

``level``
    ``x = log((y + eps) / (r + eps))``, the log-ratio of the load ``y`` to a
    reference ``r``, two-sided, clipped to ``+-level_clip`` before it reaches the
    detector (so one outlier, e.g. a single zero sample, cannot fire it alone).
    ``eps = level_floor * L + level_floor_bps`` (``L``: slow EWMA of the load)
    keeps the ratio finite at zero load.

    *Seasonal reference* (``season_steps`` set, what :class:`~forecaster.suite.ModelSuite`
    uses): ``r_t = y_{t-P} * lambda(t) / lambda(t-P)``, the value one season
    earlier (the seasonal-naive forecast, i.e. seasonal differencing in log space
    [2]_, ch. 9.1), rescaled by the level factor ``lambda`` of the *era* each
    step belongs to. An ordinary daily cycle cancels out: on a clean series ``x``
    is only noise (``sqrt(2)`` times the relative noise). A level event starts a
    new era at its onset with ``lambda_new = lambda * sum(y) / sum(r)`` (over the
    steps since the onset), so the signal is ~0 again at once, and the era
    boundary is honoured when it falls one season back, where the raw seasonal
    ratio drops back to 0 by itself; near a boundary (+-``level_guard`` steps,
    for onset errors) the candidate with the smallest ``|x|`` is used. A link
    that went to zero has ``lambda = 0``, so its reference is 0 and its dead load
    reads ``x = 0``; its return is detected, after which (the new level is not
    expressible relative to a dead era) the link re-warms for one season. No
    level events before a full season of the link's history is known (warm-up)
    nor where the value one season earlier is missing: a pre-season reference
    cannot tell a daily cycle (often 3-10x peak to trough) from a re-route;
    the residual detector still watches those steps.

    *EWMA reference* (``season_steps=None``, non-seasonal series): ``r = L``,
    re-anchored at the new load after a level event. This is what the monitor did
    for every series before: on a diurnal series it fires every few tens of steps.

    Magnitude: ``sum(y) / sum(r) - 1`` over the steps since the onset (relative
    change: ``+2.0`` when the load triples, ``-1.0`` when it goes to zero).
``residual``
    the monitored model's one-step relative error ``e = |y - yhat| / (L + 1)``
    divided by its slow EWMA (so ~1 when nothing changed). Upward only. Magnitude:
    ``ef / e0 - 1`` (fast EWMA over the pre-event baseline).

Onset: the step at which the signal last left its quiet band (``|x| >
max(level_quiet, 4 mean|x|)`` for the level, ``e > 2 e0`` for the residual), which
is at or before the detection step.

A level detection re-anchors ``L`` at the new load (the new normal). A detection
opens an incident on the link; it is *resolved* (:class:`DriftResolved`)
once the fast relative error stays within ``resolve_tolerance`` times its
pre-event level for ``resolve_steps`` consecutive steps, so a live alert can close.
A :class:`RerouteEvent` is emitted when at least ``reroute_min_links`` links have a
level event within ``reroute_window`` steps (a failure re-routes several links at once).

Measured (``tests/forecaster/test_drift.py``'s series, 8 links, 2% noise): with
the EWMA reference a clean diurnal series raised 2.0 (``P=96``) and 3.3
(``P=288``) level events per link and season, and false re-routes; with the
seasonal reference, none after the first season. A re-route at ``T`` (x3 on four
links, one to zero) is detected at ``T+2`` with onset ``T`` (error 0), relative
magnitudes 1.93-2.10 for x3 and -1.00 for zero, one re-route with onset ``T``; a
x0.5 at ``T+4``; nothing at the era boundary ``T+P``. At 10% noise the onsets stay
at ``T`` but a few small events (``|magnitude| < 0.2``) appear.

References
----------
.. [1] E. S. Page, "Continuous inspection schemes", Biometrika 41 (1954) 100-115;
   ``river.drift.PageHinkley`` (river 0.26).
.. [2] R. J. Hyndman, G. Athanasopoulos, *Forecasting: Principles and Practice*,
   3rd ed., OTexts 2021, https://otexts.com/fpp3/stationarity.html (seasonal
   differencing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from river.drift import PageHinkley

LEVEL = "level"
RESIDUAL = "residual"


@dataclass(frozen=True)
class DriftEvent:
    """A drift detected on one link.

    Attributes
    ----------
    link
        Link index in the batch.
    kind
        ``level`` or ``residual``.
    step
        Grid step at which it was detected.
    onset
        Estimated grid step at which the change began (``<= step``).
    magnitude
        Relative change (``+2.0``: the load, or the error, tripled).
    """

    link: int
    kind: str
    step: int
    onset: int
    magnitude: float


@dataclass(frozen=True)
class DriftResolved:
    """A link's incident is over: its error is back near its pre-event level."""

    link: int
    kind: str
    onset: int
    step: int


@dataclass(frozen=True)
class RerouteEvent:
    """Several links shifted level together (a failure re-routed traffic)."""

    step: int
    onset: int
    links: tuple[int, ...]
    magnitudes: tuple[float, ...]


class DriftMonitor:
    """Per-link level and residual drift detectors, re-route and resolution logic.

    Parameters
    ----------
    n_links
        Number of links.
    season_steps
        Season ``P`` in grid steps: the level reference is the value one season
        earlier, passed to :meth:`update` as ``seasonal``. ``None``: a non-seasonal
        EWMA reference (see the module doc; fires on a daily cycle).
    level_alpha
        EWMA factor of the slow level ``L`` (the EWMA reference and the scale of
        ``eps`` and of the residual).
    error_alpha
        EWMA factor of the slow (baseline) relative error.
    level_delta, level_threshold
        Page-Hinkley ``delta`` and ``threshold`` for the level signal.
    residual_delta, residual_threshold
        Page-Hinkley ``delta`` and ``threshold`` for the residual signal.
    level_clip
        The level signal is clipped to ``+-level_clip`` for the detector (below
        ``level_threshold``: at least two steps out of band are needed).
    level_quiet
        Quiet band of the level signal (onset: the last step inside it); widened
        to 4 times the link's mean ``|x|`` (winsorised EWMA) on noisy links.
    level_floor, level_floor_bps
        ``eps = level_floor * L + level_floor_bps``: loads far below it read as 0.
    level_guard
        Steps either side of an era boundary one season back where the closest
        of the neighbouring eras' references is used (onset errors).
    min_instances
        Observations before a detector may fire.
    reroute_min_links, reroute_window
        A re-route needs this many links with a level event within this many steps.
    resolve_tolerance, resolve_steps
        Resolution: fast error <= tolerance x pre-event error for this many steps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> P = 48
    >>> mon = DriftMonitor(n_links=4, season_steps=P, reroute_min_links=3)
    >>> ys, found = [], []
    >>> for t in range(200):
    ...     shift = 1.0 + 2.0 * (t >= 150) * (np.arange(4) < 3)
    ...     daily = 2 + np.sin(2 * np.pi * t / P + np.arange(4))
    ...     ys.append(1e9 * shift * daily * (1 + 0.01 * rng.standard_normal(4)))
    ...     ref = ys[t - P] if t >= P else np.full(4, np.nan)  # one season earlier
    ...     events, reroute, _ = mon.update(
    ...         t, ys[t], np.ones(4, bool), np.full(4, np.nan), seasonal=ref
    ...     )
    ...     found += [(e.link, e.kind, e.onset, round(e.magnitude, 1)) for e in events]
    ...     if reroute:
    ...         print(reroute.links, reroute.onset)
    (0, 1, 2) 150
    >>> found
    [(0, 'level', 150, 2.0), (1, 'level', 150, 2.0), (2, 'level', 150, 2.0)]
    """

    def __init__(
        self,
        n_links: int,
        season_steps: int | None = None,
        level_alpha: float = 0.02,
        error_alpha: float = 0.02,
        level_delta: float = 0.05,
        level_threshold: float = 3.0,
        level_clip: float = 1.5,
        level_quiet: float = 0.1,
        level_floor: float = 0.01,
        level_floor_bps: float = 1e6,
        level_guard: int = 2,
        residual_delta: float = 0.5,
        residual_threshold: float = 20.0,
        min_instances: int = 30,
        reroute_min_links: int = 3,
        reroute_window: int = 5,
        resolve_tolerance: float = 1.5,
        resolve_steps: int = 10,
    ) -> None:
        if season_steps is not None and season_steps < 1:
            raise ValueError(f"season_steps must be >= 1 or None, got {season_steps}")
        self.season_steps = season_steps
        self.level_alpha = level_alpha
        self.level_clip = level_clip
        self.level_quiet = level_quiet
        self.level_floor = level_floor
        self.level_floor_bps = level_floor_bps
        self.level_guard = level_guard
        self.error_alpha = error_alpha
        self.level_delta = level_delta
        self.level_threshold = level_threshold
        self.residual_delta = residual_delta
        self.residual_threshold = residual_threshold
        self.min_instances = min_instances
        self.reroute_min_links = reroute_min_links
        self.reroute_window = reroute_window
        self.resolve_tolerance = resolve_tolerance
        self.resolve_steps = resolve_steps
        self._level_ph: list[PageHinkley] = []
        self._res_ph: list[PageHinkley] = []
        self._ref = np.zeros(0)
        self._seen = np.zeros(0, dtype=bool)
        self._xf = np.zeros(0)
        self._lvl_since = np.zeros(0, dtype=np.int64)
        self._acc_y = np.zeros(0)  # sums of y and of the reference since the level onset
        self._acc_r = np.zeros(0)
        self._noise = np.zeros(0)  # EWMA of |x| (winsorised): the quiet band's scale
        self._warm_from = np.zeros(0, dtype=np.int64)  # seasonal refs valid from this step
        # link -> [(onset, lambda), ...]: level eras of the last season (before: 1.0)
        self._eras: dict[int, list[tuple[int, float]]] = {}
        self._err_slow = np.zeros(0)
        self._err_fast = np.zeros(0)
        self._err_seen = np.zeros(0, dtype=bool)
        self._res_since = np.zeros(0, dtype=np.int64)
        self._open = np.zeros(0, dtype=bool)
        self._open_kind: list[str] = []
        self._open_onset = np.zeros(0, dtype=np.int64)
        self._baseline = np.zeros(0)
        self._good = np.zeros(0, dtype=np.int64)
        self._recent: deque[DriftEvent] = deque()
        self._last_reroute = -(10**9)
        self.add_links(n_links)

    @property
    def n_links(self) -> int:
        return self._ref.shape[0]

    def _ph(self, delta: float, threshold: float, mode: str) -> PageHinkley:
        return PageHinkley(
            min_instances=self.min_instances, delta=delta, threshold=threshold, mode=mode
        )

    def add_links(self, n: int) -> None:
        """Append ``n`` links with fresh detectors."""
        self._level_ph += [
            self._ph(self.level_delta, self.level_threshold, "both") for _ in range(n)
        ]
        self._res_ph += [
            self._ph(self.residual_delta, self.residual_threshold, "up") for _ in range(n)
        ]
        zf, zb, zi = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        self._ref = np.concatenate([self._ref, zf])
        self._seen = np.concatenate([self._seen, zb])
        self._xf = np.concatenate([self._xf, zf])
        self._lvl_since = np.concatenate([self._lvl_since, zi])
        self._acc_y = np.concatenate([self._acc_y, zf])
        self._acc_r = np.concatenate([self._acc_r, zf])
        self._noise = np.concatenate([self._noise, zf])
        self._warm_from = np.concatenate([self._warm_from, np.full(n, -(2**62), np.int64)])
        self._err_slow = np.concatenate([self._err_slow, zf])
        self._err_fast = np.concatenate([self._err_fast, zf])
        self._err_seen = np.concatenate([self._err_seen, zb])
        self._res_since = np.concatenate([self._res_since, zi])
        self._open = np.concatenate([self._open, zb])
        self._open_kind += [""] * n
        self._open_onset = np.concatenate([self._open_onset, zi])
        self._baseline = np.concatenate([self._baseline, zf])
        self._good = np.concatenate([self._good, zi])

    def __setstate__(self, state: dict) -> None:
        """Load pickled state, old checkpoints (EWMA reference) included."""
        self.__dict__.update(state)
        n = self._ref.shape[0]
        defaults = {
            "season_steps": None,
            "level_clip": 1.5,
            "level_quiet": 0.1,
            "level_floor": 0.01,
            "level_floor_bps": 1e6,
            "level_guard": 2,
            "_acc_y": np.zeros(n),
            "_acc_r": np.zeros(n),
            "_noise": np.zeros(n),
            "_warm_from": np.full(n, -(2**62), np.int64),
            "_eras": {},
        }
        for k, v in defaults.items():
            self.__dict__.setdefault(k, v)

    _DEAD = 0.01  # a level factor below this: the link carries (almost) nothing

    def _lam(self, eras: list[tuple[int, float]], s: int) -> float:
        """Level factor of the era holding step ``s`` (1.0 before the first)."""
        lam = 1.0
        for onset, value in eras:
            if onset > s:
                break
            lam = value
        return lam

    def _seasonal_reference(
        self, step: int, y: np.ndarray, seasonal: np.ndarray, eps: np.ndarray
    ) -> np.ndarray:
        """``y_{t-P} * lambda(t) / lambda(t-P)``; NaN where there is no usable one."""
        assert self.season_steps is not None
        p, g = self.season_steps, self.level_guard
        ref = np.where(np.isfinite(seasonal), np.maximum(seasonal, 0.0), np.nan)
        ref[step - p < self._warm_from] = np.nan
        for i in list(self._eras):
            eras = self._eras[i]
            while len(eras) > 1 and eras[1][0] <= step - p - g:
                eras.pop(0)  # the era before it no longer reaches one season back
            if eras and eras[0][0] <= step - p - g and eras[0][1] == 1.0 and len(eras) == 1:
                del self._eras[i]  # back to the original level everywhere
                continue
            if not np.isfinite(ref[i]):
                continue
            now = self._lam(eras, step)
            best = np.nan
            for then in {self._lam(eras, step - p + d) for d in range(-g, g + 1)}:
                if then < self._DEAD:
                    if now >= self._DEAD:
                        continue  # a dead era says nothing of the new level
                    r = float(ref[i])
                else:
                    r = float(ref[i]) * now / then
                x = abs(np.log((y[i] + eps[i]) / (r + eps[i])))
                if not np.isfinite(best) or x < abs(np.log((y[i] + eps[i]) / (best + eps[i]))):
                    best = r
            ref[i] = best
        return ref

    def _new_era(self, link: int, onset: int, step: int, gain: float) -> None:
        """A level event on ``link``: the load is ``gain`` times its reference."""
        eras = self._eras.setdefault(link, [])
        now = self._lam(eras, step)
        if now < self._DEAD or not np.isfinite(gain):
            # back from zero: the new level is unknown relative to the old eras
            self._eras.pop(link, None)
            self._warm_from[link] = onset
            return
        lam = now * gain
        eras.append((onset, 0.0 if lam < self._DEAD else lam))

    def update(
        self,
        step: int,
        y: np.ndarray,
        observed: np.ndarray,
        residual: np.ndarray,
        seasonal: np.ndarray | None = None,
    ) -> tuple[list[DriftEvent], RerouteEvent | None, list[DriftResolved]]:
        """Feed one grid step.

        Parameters
        ----------
        step
            Grid step index.
        y
            Loads in bit/s ``(n_links,)`` (ignored where not ``observed``).
        observed
            True where ``y`` was observed.
        residual
            One-step residual ``y - yhat`` of the monitored model, NaN if none.
        seasonal
            Loads one season earlier, ``y[step - season_steps]`` (NaN where unknown:
            no level detection there); required when ``season_steps`` is set,
            ignored otherwise.

        Returns
        -------
        events, reroute, resolved
        """
        events: list[DriftEvent] = []
        y = np.where(observed, y, 0.0)
        # ---- level ------------------------------------------------------------------
        first = observed & ~self._seen
        self._ref = np.where(first, y, self._ref)
        self._seen |= observed
        eps = self.level_floor * self._ref + self.level_floor_bps
        if self.season_steps is None:
            ref = self._ref.copy()
        else:
            if seasonal is None:
                raise ValueError("season_steps is set: pass the loads one season earlier")
            ref = self._seasonal_reference(step, y, np.asarray(seasonal, dtype=np.float64), eps)
        valid = observed & np.isfinite(ref)
        ref = np.where(valid, ref, 0.0)
        x = np.where(valid, np.log((y + eps) / (ref + eps)), 0.0)
        self._xf = np.where(valid, self._xf + 0.5 * (x - self._xf), self._xf)
        # quiet band: level_quiet, or 4x the link's mean |x| (noisy links)
        band = np.maximum(self.level_quiet, 4.0 * self._noise)
        self._noise = np.where(
            valid,
            self._noise + self.level_alpha * (np.minimum(np.abs(x), 2 * band) - self._noise),
            self._noise,
        )
        quiet = ~valid | (np.abs(x) <= band)
        restart = observed & quiet
        self._lvl_since = np.where(restart, step + 1, self._lvl_since)
        self._acc_y = np.where(restart, 0.0, np.where(valid, self._acc_y + y, self._acc_y))
        self._acc_r = np.where(restart, 0.0, np.where(valid, self._acc_r + ref, self._acc_r))
        xc = np.clip(x, -self.level_clip, self.level_clip)
        for i in np.flatnonzero(valid).tolist():
            ph = self._level_ph[i]
            ph.update(float(xc[i]))
            if ph.drift_detected:
                onset = int(min(self._lvl_since[i], step))
                if self._acc_r[i] > 0.0 or self._acc_y[i] > 0.0:
                    gain = self._acc_y[i] / self._acc_r[i] if self._acc_r[i] > 0 else np.inf
                    # relative change; from (near) zero load: relative to eps instead
                    mag = float(self._acc_y[i] / max(self._acc_r[i], eps[i]) - 1.0)
                else:  # a slow drift that never left the quiet band
                    gain = float(np.exp(self._xf[i]))
                    mag = float(np.expm1(self._xf[i]))
                events.append(DriftEvent(i, LEVEL, step, onset, mag))
                if self.season_steps is not None:
                    self._new_era(i, onset, step, float(gain))
        self._ref = np.where(observed, self._ref + self.level_alpha * (y - self._ref), self._ref)
        for e in events:  # the new level is the new normal: re-anchor the reference
            self._ref[e.link] = y[e.link]
            self._xf[e.link] = 0.0
            self._acc_y[e.link] = self._acc_r[e.link] = 0.0
            self._lvl_since[e.link] = step + 1
        # ---- residual ---------------------------------------------------------------
        rel = np.abs(residual) / (self._ref + 1.0)
        valid = observed & np.isfinite(rel)
        rel = np.where(valid, rel, 0.0)
        fresh = valid & ~self._err_seen
        self._err_slow = np.where(fresh, rel, self._err_slow)
        self._err_fast = np.where(fresh, rel, self._err_fast)
        self._err_seen |= valid
        tiny = 1e-9
        xr = rel / (self._err_slow + tiny)
        self._res_since = np.where(valid & (xr <= 2.0), step + 1, self._res_since)
        self._err_fast = np.where(
            valid, self._err_fast + 0.3 * (rel - self._err_fast), self._err_fast
        )
        for i in np.flatnonzero(valid).tolist():
            ph = self._res_ph[i]
            ph.update(float(min(xr[i], 1e3)))
            if ph.drift_detected:
                mag = float(self._err_fast[i] / (self._err_slow[i] + tiny) - 1.0)
                onset = int(min(self._res_since[i], step))
                events.append(DriftEvent(i, RESIDUAL, step, onset, mag))
        # the baseline error learns only while no incident is open on the link
        calm = valid & ~self._open
        self._err_slow = np.where(
            calm, self._err_slow + self.error_alpha * (rel - self._err_slow), self._err_slow
        )
        # ---- incidents: open, then resolve ------------------------------------------
        for e in events:
            if not self._open[e.link]:
                self._open[e.link] = True
                self._open_kind[e.link] = e.kind
                self._open_onset[e.link] = e.onset
                self._baseline[e.link] = self._err_slow[e.link]
                self._good[e.link] = 0
        resolved: list[DriftResolved] = []
        opened = self._open & valid
        good = self._err_fast <= self.resolve_tolerance * self._baseline + tiny
        self._good = np.where(opened, np.where(good, self._good + 1, 0), self._good)
        for i in np.flatnonzero(self._open & (self._good >= self.resolve_steps)).tolist():
            resolved.append(DriftResolved(i, self._open_kind[i], int(self._open_onset[i]), step))
            self._open[i] = False
            self._good[i] = 0
        # ---- re-route: several links shifting level together --------------------------
        self._recent.extend(e for e in events if e.kind == LEVEL)
        while self._recent and self._recent[0].step <= step - self.reroute_window:
            self._recent.popleft()
        reroute = None
        latest: dict[int, DriftEvent] = {e.link: e for e in self._recent}
        if (
            len(latest) >= self.reroute_min_links
            and step - self._last_reroute >= self.reroute_window
        ):
            links = tuple(sorted(latest))
            reroute = RerouteEvent(
                step=step,
                onset=min(e.onset for e in latest.values()),
                links=links,
                magnitudes=tuple(latest[i].magnitude for i in links),
            )
            self._last_reroute = step
            self._recent.clear()
        return events, reroute, resolved
