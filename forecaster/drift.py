"""Drift detection per link (river's Page-Hinkley), re-route detection, resolution.

Two signals per link, each watched by a ``river.drift.PageHinkley`` detector:

``level``
    ``x = log((y + 1) / (L + 1))`` with ``L`` an EWMA of the load (``level_alpha``,
    ~50 steps): near 0 while the load moves slowly (a diurnal cycle), jumps when a
    re-route adds or removes traffic. Two-sided. Magnitude: ``exp(xf) - 1``, the
    relative change (``xf``: fast EWMA of ``x``), e.g. +2.0 when the load triples.
``residual``
    the monitored model's one-step relative error ``e = |y - yhat| / (L + 1)``
    divided by its slow EWMA (so ~1 when nothing changed). Upward only. Magnitude:
    ``ef / e0 - 1`` (fast EWMA over the pre-event baseline).

Onset: the step at which the signal last left its quiet band (``|x| > 0.1`` for the
level, ``e > 2 e0`` for the residual), which is at or before the detection step.

A level detection re-anchors ``L`` at the new load (the new normal). A detection
opens an incident on the link; it is *resolved* (:class:`DriftResolved`)
once the fast relative error stays within ``resolve_tolerance`` times its
pre-event level for ``resolve_steps`` consecutive steps, so a live alert can close.
A :class:`RerouteEvent` is emitted when at least ``reroute_min_links`` links have a
level event within ``reroute_window`` steps (a failure re-routes several links at once).
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
    level_alpha
        EWMA factor of the reference level.
    error_alpha
        EWMA factor of the slow (baseline) relative error.
    level_delta, level_threshold
        Page-Hinkley ``delta`` and ``threshold`` for the level signal.
    residual_delta, residual_threshold
        Page-Hinkley ``delta`` and ``threshold`` for the residual signal.
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
    >>> mon = DriftMonitor(n_links=4, reroute_min_links=3)
    >>> found = []
    >>> for t in range(200):
    ...     shift = 1.0 + 2.0 * (t >= 100) * (np.arange(4) < 3)
    ...     y = 1e9 * shift * (1 + 0.01 * rng.standard_normal(4))
    ...     events, reroute, _ = mon.update(t, y, np.ones(4, bool), np.full(4, np.nan))
    ...     found += [(e.link, e.kind) for e in events]
    ...     if reroute:
    ...         print(reroute.links, reroute.onset)
    (0, 1, 2) 100
    >>> found
    [(0, 'level'), (1, 'level'), (2, 'level')]
    """

    def __init__(
        self,
        n_links: int,
        level_alpha: float = 0.02,
        error_alpha: float = 0.02,
        level_delta: float = 0.05,
        level_threshold: float = 3.0,
        residual_delta: float = 0.5,
        residual_threshold: float = 20.0,
        min_instances: int = 30,
        reroute_min_links: int = 3,
        reroute_window: int = 5,
        resolve_tolerance: float = 1.5,
        resolve_steps: int = 10,
    ) -> None:
        self.level_alpha = level_alpha
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
        self._err_slow = np.concatenate([self._err_slow, zf])
        self._err_fast = np.concatenate([self._err_fast, zf])
        self._err_seen = np.concatenate([self._err_seen, zb])
        self._res_since = np.concatenate([self._res_since, zi])
        self._open = np.concatenate([self._open, zb])
        self._open_kind += [""] * n
        self._open_onset = np.concatenate([self._open_onset, zi])
        self._baseline = np.concatenate([self._baseline, zf])
        self._good = np.concatenate([self._good, zi])

    def update(
        self, step: int, y: np.ndarray, observed: np.ndarray, residual: np.ndarray
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
        x = np.log((y + 1.0) / (self._ref + 1.0))
        self._xf = np.where(observed, self._xf + 0.5 * (x - self._xf), self._xf)
        quiet = np.abs(x) <= 0.1
        self._lvl_since = np.where(observed & quiet, step + 1, self._lvl_since)
        for i in np.flatnonzero(observed).tolist():
            ph = self._level_ph[i]
            ph.update(float(x[i]))
            if ph.drift_detected:
                mag = float(np.expm1(self._xf[i]))
                onset = int(min(self._lvl_since[i], step))
                events.append(DriftEvent(i, LEVEL, step, onset, mag))
        self._ref = np.where(observed, self._ref + self.level_alpha * (y - self._ref), self._ref)
        for e in events:  # the new level is the new normal: re-anchor the reference
            self._ref[e.link] = y[e.link]
            self._xf[e.link] = 0.0
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
        self._err_fast = np.where(valid, self._err_fast + 0.3 * (rel - self._err_fast),
                                  self._err_fast)
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
