"""Excursions: one bucket far outside a link's recent range that reverts at once.

A counter reset that a collector's wrap correction turns into 1e14 bit/s, or a missed
read that turns into 0, shows up as one bucket far off the link's level followed by a
return to it. Learned, it sends the models, the drift detectors and the capacity
check after something that never happened. Above a link's line rate such a value is
caught at ingest (``over_line_rate``, see :mod:`db.ingest`); this module catches the
rest, with or without a capacity, from the bucket values themselves.

Per link it keeps a robust recent range over the last ``window`` accepted bucket
values: a centre ``m``, the median of the newest five of them, and a robust spread
``s`` from the median absolute deviation (MAD) of their changes from bucket to bucket,
with two floors:

    ``s = max(1.4826 * MAD(changes) / sqrt(2), 0.05 * |m|, floor)``

(1.4826 MAD estimates a normal spread, and a change between two buckets carries the
noise of both, hence the square root of 2; the 5 % floor keeps a flat series from
making every wiggle an outlier). The absolute ``floor`` is 1 Mbit/s, or 1 % of the
link's capacity where that is less. An idle link's centre is 0, and without it the
spread was 0 and each of its bursts an outlier (one-bucket bursts of 1-3 Mbit/s in a
tenth of an idle link's buckets: 1,723 of 2,079 marked). 1 Mbit/s is the scale of an
idle link's own traffic (routing protocols, management, keepalives: bursts up to
``factor`` x 1 Mbit/s, 8 Mbit/s by default, are in its range), 1 % of a 100 Mbit/s
link, and eight orders below a wrap (1e14); the 1 % of a capacity lowers it on a link
so small that 8 Mbit/s is most of its line rate. A value is *outside* when

    ``|v - m| > factor * s``

except that, on an idle link with a known capacity, a value above the centre and not
above the capacity is never outside. Idle: 0 is in its range (``|m| <= factor * s``),
so there is no missed read to catch, and the glitch left, a wrap, is above the line
rate and was quarantined at ingest; up to the line rate a burst is traffic the link
can carry. On a busy link a one-bucket spike under its capacity is judged as before:
exempting it too would learn a shift up (a failure's reroute) without its bucket of
delay, and the seeded failure of ``tests/ui`` then gave two reroute events, not one.
A drop, a missed read of 0, is judged with or without a capacity.

Why changes and not the values themselves: a window that spans a daily ramp has a MAD
of values that measures the ramp, not the noise, and a drop to 0 at a daily peak then
fell inside the range. Measured on a sinusoidal day with 2 % noise, 5 seeds, 8 phases:
the MAD of values caught 14 of 40 drops to 0 with a 96-step day and 33 of 40 with a
288-step one; the MAD of changes, with the recent centre, 40 of 40 in both, and
neither held one bucket of the clean series.

An outside value is a *suspect*: it is held back (the models see the link as missing
for that bucket) until the link's next accepted value decides:

- back inside the range: the suspect reverted at once, an **excursion**; its samples
  are marked ``excursion`` in the database and nothing ever learns from them;
- outside, near the suspect (within the same spread around it): the level **stayed**,
  a real shift (a re-route, a link that went to 0 and stays): the range restarts at the
  new level and values are accepted from there, so drift and failure alerts fire as
  they always did, one bucket later;
- outside and far from the suspect too (a 0 then a catch-up spike): the suspect was an
  excursion, and the new value is the next suspect.

A level the link keeps coming back to is not an excursion. Only accepted values enter
the range, so a one-bucket pattern that recurs (x10 every other bucket) was held for
ever. An outside value is learned instead of held when ``recur`` (4) of the link's
outliers of the last ``window`` buckets (its excursions, and values learned this way)
and of the values in its range lie near it: within ``factor`` spreads, and two
positive outliers also within a factor of 2 of each other (bursts vary in size). It
is then the link's behaviour: fed to the models and entered into the range. A 0 every
10 buckets (the issue's missed reads: 3 in any 30) stays quarantined; once every 7
buckets or more often it is learned. A wrap during a learned pattern is far from it
and still an excursion.

A bucket without accepted samples (a gap in reporting, or only quarantined samples)
decides nothing: a suspect waits for the link's next value. Until a link has
``min_history`` values in its range (a new link, or one right after a shift) its
spread means little: only a value more than ``factor`` times its centre above it (and
more than ``factor`` floors, and above a known capacity) is suspect, so a 1e14 read
second, after 4e8, is an excursion. A link's very first value has nothing to be
judged by and is accepted as it comes, a wrap too: holding it until the second would
delay every link's first forecast by a bucket, and a link that has reported once would
never get one.

Measured with ``python -m tests.engine.test_quality`` (5 seeds each; before the
absolute floor, the capacity and the patterns in brackets):

- an idle link (0 bit/s) with one-bucket bursts in a tenth of 4,000 buckets: bursts
  of 1-3 Mbit/s, 0 of 2,079 marked (1,723); of 200-600 Mbit/s on a link of 1 Gbit/s,
  11 (1,723), where a cluster of bursts had lifted the centre off 0; of 50-150 Mbit/s
  without a capacity, 1,385 (1,723), and in a quarter of the buckets 793 of 5,088
  (2,299): a burst far above an idle link's level, with no capacity to call it
  plausible, is told from a glitch only when it recurs;
- a 1e14 among those bursts: 5 of 5 marked (4), with or without a capacity;
- x10 every other bucket for 300 buckets: 20 of 750 marked (750), the first four;
- a missed read every 10 buckets: 150 of 150 marked (150);
- a drop to 0 near the daily peak: 40 of 40 marked with either day (40), and no
  bucket of the clean series held (0).

Restart. The state is not in the models' checkpoint: it is rebuilt on restore by
running the filter over the stored buckets before the checkpoint's one (:meth:`rebuild`,
fed from :func:`db.live.bucket_history`). The samples are the truth and the filter is a
deterministic function of the accepted bucket values, so the rebuilt state is the one
the engine had (up to samples that arrived after their bucket closed, which the running
engine did not see and the rebuild does, and excursions, which are not replayed: a
pattern learned before the restart is learned again from its ``ok`` buckets). The
capacities are given to :meth:`rebuild` as to :meth:`step`. Keeping it in the
checkpoint instead would change the checkpoint's format, and every existing checkpoint
would be refused (``LCF2``) for the sake of some fifty numbers a link.

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
MIN_SPREAD_BPS = 1e6  # and at least this many bit/s (an idle link's centre is 0)...
CAPACITY_SHARE = 0.01  # ...or this share of the link's capacity where that is less
PATTERN_RATIO = 2.0  # outliers within this ratio of each other are one pattern's level
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
        median of the newest five); also the span, in buckets, over which outliers
        count as a recurring pattern.
    min_history
        Until a link has this many values in its range, only a value more than
        ``factor`` times its centre above it is suspect.
    recur
        Outliers near one level within ``window`` buckets after which the next one there
        is the link's behaviour and learned.
    """

    def __init__(
        self, factor: float = 8.0, window: int = 30, min_history: int = 10, recur: int = 4
    ) -> None:
        if factor <= 1:
            raise ValueError(f"factor must be > 1, got {factor}")
        if window < CENTRE_VALUES or not 2 <= min_history <= window:
            raise ValueError(f"need window >= {CENTRE_VALUES}, 2 <= min_history <= window")
        if not 1 <= recur < window:
            raise ValueError(f"recur must be in [1, window), got {recur}")
        self.factor = factor
        self.window = window
        self.min_history = min_history
        self.recur = recur
        self._index: dict[int, int] = {}  # link id -> row
        self._recent = np.full((0, window), np.nan)  # accepted values, a ring per row
        self._next = np.zeros(0, dtype=np.int64)  # the ring's next column
        self._held = np.full(0, np.nan)  # the suspect value, NaN when none
        self._held_bucket: list[datetime | None] = []
        self._held_centre = np.full(0, np.nan)
        self._held_limit = np.full(0, np.nan)
        self._capacity = np.full(0, np.nan)  # bit/s, NaN when not known
        self._capacity_given: dict[int, float | None] = {}
        slots = 2 * recur  # room for two levels (a 0 and its catch-up) to recur
        self._out_t = np.full((0, slots), np.nan)  # recent outliers: bucket (epoch s)...
        self._out_v = np.full((0, slots), np.nan)  # ...and value, a ring per row
        self._out_next = np.zeros(0, dtype=np.int64)
        self._grid = np.inf  # seconds between buckets: the smallest step seen
        self._last_t: float | None = None

    def _rows(self, link_ids: Iterable[int]) -> np.ndarray:
        link_ids = list(link_ids)
        new = [i for i in dict.fromkeys(link_ids) if i not in self._index]
        if new:
            for i in new:
                self._index[i] = len(self._index)
            n = len(new)
            slots = self._out_t.shape[1]
            self._recent = np.vstack([self._recent, np.full((n, self.window), np.nan)])
            self._next = np.r_[self._next, np.zeros(n, dtype=np.int64)]
            self._held = np.r_[self._held, np.full(n, np.nan)]
            self._held_centre = np.r_[self._held_centre, np.full(n, np.nan)]
            self._held_limit = np.r_[self._held_limit, np.full(n, np.nan)]
            self._held_bucket += [None] * n
            self._capacity = np.r_[self._capacity, np.full(n, np.nan)]
            self._out_t = np.vstack([self._out_t, np.full((n, slots), np.nan)])
            self._out_v = np.vstack([self._out_v, np.full((n, slots), np.nan)])
            self._out_next = np.r_[self._out_next, np.zeros(n, dtype=np.int64)]
        return np.asarray([self._index[i] for i in link_ids], dtype=np.int64)

    def set_capacity(self, capacity: Mapping[int, float | None]) -> None:
        """Links' capacities in bit/s (``None`` or 0: not known); links not named keep
        theirs. On an idle link a value up to its capacity is never suspect, and the
        spread's absolute floor is at most :data:`CAPACITY_SHARE` of it."""
        if not capacity or capacity == self._capacity_given:
            return  # the engine passes every link's each bucket: mostly unchanged
        self._capacity_given = dict(capacity)
        rows = self._rows(capacity)
        c = np.asarray([float(x) if x else np.nan for x in capacity.values()])
        self._capacity[rows] = np.where(c > 0, c, np.nan)

    def _floor(self, rows: np.ndarray) -> np.ndarray:
        cap = self._capacity[rows]
        return np.where(cap > 0, np.minimum(MIN_SPREAD_BPS, CAPACITY_SHARE * cap), MIN_SPREAD_BPS)

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
        spread = np.maximum(
            np.maximum(noise, MIN_RELATIVE_SPREAD * np.abs(centre)), self._floor(rows)
        )
        return centre, spread, count

    def _push(self, rows: np.ndarray, values: np.ndarray) -> None:
        self._recent[rows, self._next[rows] % self.window] = values
        self._next[rows] += 1

    def _record(self, rows: np.ndarray, when: np.ndarray, values: np.ndarray) -> None:
        """Remember outliers (excursions, and values learned as a recurring pattern)."""
        slot = self._out_next[rows] % self._out_t.shape[1]
        self._out_t[rows, slot] = when
        self._out_v[rows, slot] = values
        self._out_next[rows] += 1

    def _recurring(
        self, rows: np.ndarray, v: np.ndarray, now: float, spread: np.ndarray
    ) -> np.ndarray:
        """Whether each (outside) value is a level the link keeps coming back to: near
        ``recur`` of its outliers of the last ``window`` buckets and of the values its
        range holds. Near: within ``factor`` spreads, or, for an outlier, both positive
        and within :data:`PATTERN_RATIO` of each other (bursts vary in size)."""
        if not len(rows):
            return np.zeros(0, dtype=bool)
        x, tol = v[:, None], self.factor * spread[:, None]
        when, seen = self._out_t[rows], self._out_v[rows]
        recent = (now - when) < self.window * self._grid  # NaN: no outlier there
        ratio = np.maximum(x, seen) <= PATTERN_RATIO * np.minimum(x, seen)
        near = (np.abs(x - seen) <= tol) | ((np.minimum(x, seen) > 0) & ratio)
        held = np.abs(x - self._recent[rows]) <= tol  # NaN: False
        return (recent & near).sum(axis=1) + held.sum(axis=1) >= self.recur

    def step(
        self,
        bucket: datetime,
        means: Mapping[int, float],
        capacity: Mapping[int, float | None] | None = None,
    ) -> Judgement:
        """Judge one bucket's values (link id -> mean of its accepted samples, bit/s).

        ``capacity`` (link id -> bit/s, optional) updates the links' capacities first, as
        :meth:`set_capacity`. Returns what the models may learn from and the earlier
        buckets found to be excursions; links not in ``means`` keep their state (a gap
        decides nothing).
        """
        if capacity:
            self.set_capacity(capacity)
        now = bucket.timestamp()
        if self._last_t is not None and now > self._last_t:
            self._grid = min(self._grid, now - self._last_t)
        self._last_t = now
        if not means:
            return Judgement(accepted={})
        ids = list(means)
        rows = self._rows(ids)
        v = np.fromiter(means.values(), dtype=np.float64, count=len(ids))
        judged = Judgement(accepted={})
        cap = self._capacity[rows]
        centre, spread, count = self.ranges(rows)
        dev = v - centre
        warm = count < self.min_history
        limit = np.where(
            warm, self.factor * np.maximum(np.abs(centre), self._floor(rows)), self.factor * spread
        )
        far = np.where(warm, dev > limit, np.abs(dev) > limit)
        idle = np.abs(centre) <= limit  # a 0 is in range (always while warming up)
        inside = (count == 0) | ~far | (idle & (dev > 0) & (v <= cap))
        suspect = self._held[rows]
        held = np.isfinite(suspect)
        near = np.abs(v - suspect) <= self.factor * np.maximum(
            spread, MIN_RELATIVE_SPREAD * np.abs(suspect)
        )
        reverted = held & inside
        shifted = held & ~inside & near
        replaced = held & ~inside & ~near  # the old suspect reverted; this one is judged
        out = ~inside & ~shifted
        recurring = np.zeros(len(ids), dtype=bool)
        recurring[out] = self._recurring(rows[out], v[out], now, spread[out])
        hold = out & ~recurring

        gone = np.flatnonzero(reverted | replaced)
        for k in gone:
            r = rows[k]
            when = self._held_bucket[r]
            assert when is not None
            judged.excursions.append(
                Excursion(ids[k], when, float(self._held_centre[r]), float(self._held_limit[r]))
            )
        when_gone = np.array([e.bucket.timestamp() for e in judged.excursions])
        self._record(rows[gone], when_gone, suspect[gone])
        self._record(rows[recurring], np.full(int(recurring.sum()), now), v[recurring])
        # A shift: the range restarts at the new level, from the suspect and this value.
        moved = rows[shifted]
        self._recent[moved] = np.nan
        self._next[moved] = 0
        self._push(moved, suspect[shifted])
        self._push(rows[inside | recurring], v[inside | recurring])
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

    def rebuild(
        self,
        buckets: Iterable[tuple[datetime, Mapping[int, float]]],
        capacity: Mapping[int, float | None] | None = None,
    ) -> None:
        """Replay stored buckets, oldest first, to restore the state after a restart
        (the verdicts were written when the buckets were first processed)."""
        if capacity:
            self.set_capacity(capacity)
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
