"""Excursions: one bucket far outside a link's recent range that reverts at once.

A counter reset that a collector's wrap correction turns into 1e14 bit/s, or a missed
read that turns into 0, shows up as one bucket far off the link's level followed by a
return to it. Learned, it sends the models, the drift detectors and the capacity
check after something that never happened. Above a link's line rate such a value is
caught at ingest (``over_line_rate``, see :mod:`db.ingest`); this module catches the
rest, with or without a capacity, from the bucket values themselves.

Per link it keeps a robust recent range over the last ``window`` accepted bucket
values: a centre ``m``, the median of the newest five of them, and a robust spread,
from the median absolute deviation (MAD) of their changes from bucket to bucket. A
value is *outside* when

    ``|v - m| > factor * max(1.4826 * MAD(changes) / sqrt(2), 0.05 * |m|)``

(1.4826 MAD estimates a normal spread, and a change between two buckets carries the
noise of both, hence the square root of 2; the 5 % floor keeps a flat series from
making every wiggle an outlier). Why changes and not the values themselves: a window
that spans a daily ramp has a MAD of values that measures the ramp, not the noise, and
a drop to 0 at a daily peak then fell inside the range. Measured on a sinusoidal day
with 2 % noise, 5 seeds, 8 phases: the MAD of values caught 14 of 40 drops to 0 with a
96-step day and 33 of 40 with a 288-step one; the MAD of changes, with the recent centre,
40 of 40 in both, and neither held one bucket of the clean series.

An outside value is a *suspect*: it is held back (the models
see the link as missing for that bucket) until the link's next accepted value decides:

- back inside the range: the suspect reverted at once, an **excursion**; its samples
  are marked ``excursion`` in the database and nothing ever learns from them;
- outside, near the suspect (within the same spread around it): the level **stayed**,
  a real shift (a re-route, a link that went to 0 and stays): the range restarts at the
  new level and values are accepted from there, so drift and failure alerts fire as
  they always did, one bucket later;
- outside and far from the suspect too (a 0 then a catch-up spike): the suspect was an
  excursion, and the new value is the next suspect.

A bucket without accepted samples (a gap in reporting, or only quarantined samples)
decides nothing: a suspect waits for the link's next value. The first ``min_history``
values of a link, and those right after a shift, are accepted as they come: there is
no range to judge them against yet.

Restart. The state is not in the models' checkpoint: it is rebuilt on restore by
running the filter over the stored buckets before the checkpoint's one (:meth:`rebuild`,
fed from :func:`db.live.bucket_history`). The samples are the truth and the filter is a
deterministic function of the accepted bucket values, so the rebuilt state is the one
the engine had (up to samples that arrived after their bucket closed, which the running
engine did not see and the rebuild does). Keeping it in the checkpoint instead would
change the checkpoint's format, and every existing checkpoint would be refused
(``LCF2``) for the sake of thirty numbers a link.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> f = ExcursionFilter(factor=8.0)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> for k in range(30):
...     _ = f.step(t0 + timedelta(minutes=k), {7: 4e8 * (1 + 0.02 * rng.standard_normal())})
>>> f.step(t0 + timedelta(minutes=30), {7: 1e14}).accepted  # held back
{}
>>> judged = f.step(t0 + timedelta(minutes=31), {7: 4.1e8})
>>> judged.accepted, [(e.link_id, e.bucket.minute) for e in judged.excursions]
({7: 410000000.0}, [(7, 30)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal noise
MIN_RELATIVE_SPREAD = 0.05  # the spread is at least this fraction of the centre
CENTRE_VALUES = 5  # the centre: median of this many newest accepted values


class Excursion(NamedTuple):
    """A held bucket that reverted: mark the link's samples in ``[bucket, bucket + step)``
    farther than ``limit_bps`` from ``centre_bps`` (the centre it was judged against)."""

    link_id: int
    bucket: datetime
    centre_bps: float
    limit_bps: float


@dataclass
class Judgement:
    """One bucket judged: the values the models may learn from (held ones left out),
    and the earlier buckets now known to be excursions."""

    accepted: dict[int, float]
    excursions: list[Excursion] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # links whose value waits for a verdict


class ExcursionFilter:
    """Per-link robust recent range over accepted bucket values; holds suspects back.

    Parameters
    ----------
    factor
        How many robust spreads off the centre make a value suspect
        (``EngineConfig.excursion_factor``).
    window
        Accepted bucket values the spread is taken over, per link (the centre is the
        median of the newest five).
    min_history
        A link's values are accepted as they come until it has this many in its range.
    """

    def __init__(self, factor: float = 8.0, window: int = 30, min_history: int = 10) -> None:
        if factor <= 1:
            raise ValueError(f"factor must be > 1, got {factor}")
        if window < CENTRE_VALUES or not 2 <= min_history <= window:
            raise ValueError(f"need window >= {CENTRE_VALUES}, 2 <= min_history <= window")
        self.factor = factor
        self.window = window
        self.min_history = min_history
        self._index: dict[int, int] = {}  # link id -> row
        self._recent = np.full((0, window), np.nan)  # accepted values, a ring per row
        self._next = np.zeros(0, dtype=np.int64)  # the ring's next column
        self._held = np.full(0, np.nan)  # the suspect value, NaN when none
        self._held_bucket: list[datetime | None] = []
        self._held_centre = np.full(0, np.nan)
        self._held_limit = np.full(0, np.nan)

    def _rows(self, link_ids: Iterable[int]) -> np.ndarray:
        new = [i for i in link_ids if i not in self._index]
        if new:
            for i in new:
                self._index[i] = len(self._index)
            n = len(new)
            self._recent = np.vstack([self._recent, np.full((n, self.window), np.nan)])
            self._next = np.r_[self._next, np.zeros(n, dtype=np.int64)]
            self._held = np.r_[self._held, np.full(n, np.nan)]
            self._held_centre = np.r_[self._held_centre, np.full(n, np.nan)]
            self._held_limit = np.r_[self._held_limit, np.full(n, np.nan)]
            self._held_bucket += [None] * n
        return np.asarray([self._index[i] for i in link_ids], dtype=np.int64)

    def ranges(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, robust spread, count of values) of the given rows' recent values."""
        w = self.window
        order = (self._next[rows, None] + np.arange(w)) % w
        recent = np.take_along_axis(self._recent[rows], order, axis=1)  # oldest first
        count = np.isfinite(recent).sum(axis=1)
        centre = np.zeros(len(rows))
        noise = np.zeros(len(rows))
        some, two = count > 0, count > 1
        if some.any():
            centre[some] = _median(recent[some, -CENTRE_VALUES:])
        if two.any():
            change = np.diff(recent[two], axis=1)
            mad = _median(np.abs(change - _median(change)[:, None]))
            noise[two] = MAD_TO_SIGMA * mad / np.sqrt(2)
        spread = np.maximum(noise, MIN_RELATIVE_SPREAD * np.abs(centre))
        return centre, spread, count

    def _push(self, rows: np.ndarray, values: np.ndarray) -> None:
        self._recent[rows, self._next[rows] % self.window] = values
        self._next[rows] += 1

    def step(self, bucket: datetime, means: Mapping[int, float]) -> Judgement:
        """Judge one bucket's values (link id -> mean of its accepted samples, bit/s).

        Returns what the models may learn from and the earlier buckets found to be
        excursions; links not in ``means`` keep their state (a gap decides nothing).
        """
        if not means:
            return Judgement(accepted={})
        ids = list(means)
        rows = self._rows(ids)
        v = np.fromiter(means.values(), dtype=np.float64, count=len(ids))
        centre, spread, count = self.ranges(rows)
        limit = self.factor * spread
        inside = (count < self.min_history) | (np.abs(v - centre) <= limit)
        suspect = self._held[rows]
        held = np.isfinite(suspect)
        near = np.abs(v - suspect) <= self.factor * np.maximum(
            spread, MIN_RELATIVE_SPREAD * np.abs(suspect)
        )
        reverted = held & inside
        shifted = held & ~inside & near
        replaced = held & ~inside & ~near  # the old suspect reverted, the new one waits
        hold = ~inside & ~shifted

        judged = Judgement(accepted={})
        for k in np.flatnonzero(reverted | replaced):
            r = rows[k]
            when = self._held_bucket[r]
            assert when is not None
            judged.excursions.append(
                Excursion(ids[k], when, float(self._held_centre[r]), float(self._held_limit[r]))
            )
        # A shift: the range restarts at the new level, from the suspect and this value.
        moved = rows[shifted]
        self._recent[moved] = np.nan
        self._next[moved] = 0
        self._push(moved, suspect[shifted])
        self._push(rows[inside], v[inside])
        self._push(moved, v[shifted])
        self._held[rows[held]] = np.nan
        for r in rows[held]:
            self._held_bucket[r] = None
        wait = rows[hold]
        self._held[wait] = v[hold]
        self._held_centre[wait] = centre[hold]
        self._held_limit[wait] = limit[hold]
        for r in wait:
            self._held_bucket[r] = bucket
        judged.accepted = {ids[k]: float(v[k]) for k in np.flatnonzero(~hold)}
        judged.held = [ids[k] for k in np.flatnonzero(hold)]
        return judged

    def rebuild(self, buckets: Iterable[tuple[datetime, Mapping[int, float]]]) -> None:
        """Replay stored buckets, oldest first, to restore the state after a restart
        (the verdicts were written when the buckets were first processed)."""
        for bucket, means in buckets:
            self.step(bucket, means)


def _median(a: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN; rows without one are the common case and take the fast
    path (``np.nanmedian`` over many short rows costs ten times ``np.median``)."""
    full = np.isfinite(a).all(axis=1)
    if full.all():
        return np.median(a, axis=1)
    out = np.empty(len(a))
    out[full] = np.median(a[full], axis=1)
    out[~full] = np.nanmedian(a[~full], axis=1)
    return out
