"""Counters to rates, correct across API workers and restarts.

A collector's octet counter (``ifHCOutOctets``, ``node_network_transmit_bytes_total``)
becomes a load in bit/s from two readings: ``bit/s = 8 x delta / elapsed`` (RFC 2863
counter semantics; the factor is the unit's bits, 8 for octets). The last reading of
every series lives in the ``counter_state`` table, locked for the length of the
request's transaction, so that two API workers, or a worker after a restart, always
take the delta from the reading before, and a request that is refused leaves it as
it was (a retry computes the same rates again).

A counter that goes down either wrapped (it passed ``2**counter_bits - 1``) or was
reset (a device or exporter restart). A wrap is taken only when the rate it implies
is plausible: at most the link's line rate (``capacity x (1 + margin)``) or, with no
capacity known, :data:`NO_CAPACITY_CEILING_BPS`. Anything else is a reset: the
reading becomes the new base and gives no sample, never a spike. So does a rise
faster than that same ceiling (``implausible``: a counter replaced, a bad read), and a
reading after a gap longer than ``max_gap`` seconds (the average over an outage is
not a load at one time). A reading not newer than the stored one (a retry, or a
worker that lost a race) changes nothing, nor does one more than
:data:`FUTURE_SKEW_SECONDS` ahead of this server's clock (``future``). A series is
its name and every label: two that one rule maps to the same link keep their own
readings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from db.live import array_literal, text_array_literal

NO_CAPACITY_CEILING_BPS = 1e12  # 1 Tbit/s: above any single interface sold today
# A counter reading further ahead of this server's clock gives nothing and is not kept:
# kept, it would make every true reading until then look stale.
FUTURE_SKEW_SECONDS = 60.0

_PLACEHOLD = """
INSERT INTO counter_state (series, link)
SELECT m, l FROM unnest(%s::text[], %s::text[]) AS k(m, l) ORDER BY m, l
ON CONFLICT DO NOTHING
"""
_LOCK = """
SELECT c.series, c.link, c.value, c.ts FROM counter_state c
JOIN unnest(%s::text[], %s::text[]) AS k(series, link) USING (series, link)
ORDER BY c.series, c.link
FOR UPDATE OF c
"""
_SAVE = """
UPDATE counter_state c SET value = u.value::numeric, ts = u.ts
FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[]) AS u(series, link, value, ts)
WHERE c.series = u.series AND c.link = u.link
"""

Reading = tuple[str, str, float, float | int, float, int]  # series, link, ts, value, scale, bits


class CounterStateMissing(Exception):
    """A ``counter_state`` row this process took for stored is missing: roll back and
    call :func:`counter_rates` again with ``trust_known=False``."""


class _KnownRows:
    """The (series, link) pairs this process has seen a ``counter_state`` row for, so
    that a push of known series skips the placeholder insert (a third of the counter
    statements' time). Only a hint: when the lock finds fewer rows,
    :func:`counter_rates` raises :class:`CounterStateMissing` and the push is done
    again, placing first. Shared by the threads of a process; past
    :data:`KNOWN_ROWS_MAX` pairs the oldest half is forgotten (a forgotten series is
    placed again at its next push, and remembered again).
    """

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], None] = {}  # an ordered set: oldest first
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._pairs

    def forget(self, keys: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            for key in keys:
                self._pairs.pop(key, None)

    def add_all(self, keys: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            self._pairs.update(dict.fromkeys(keys))
            if len(self._pairs) > KNOWN_ROWS_MAX:
                keep = list(self._pairs)[len(self._pairs) - KNOWN_ROWS_MAX // 2 :]
                self._pairs = dict.fromkeys(keep)


KNOWN_ROWS_MAX = 100_000  # series a process remembers a row of: some 50 MB of keys at most
_KNOWN_ROWS = _KnownRows()


@dataclass
class Rates:
    """What a request's counter readings gave.

    ``rows``: (link, ts seconds, bit/s) to store. ``events``: how many readings were a
    ``baseline`` (first of a series), ``wrap``, ``reset``, ``implausible``, ``gap``
    (after more than ``max_gap``), ``stale`` (not newer than the stored reading) or
    ``future`` (ahead of the clock).
    """

    rows: list[tuple[str, float, float]] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1


def _number(v: Decimal | float | int) -> float | int:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def rate(
    prev: tuple[float | int, float] | None,
    value: float | int,
    ts: float,
    *,
    scale: float,
    bits: int,
    ceiling: float,
    max_gap: float,
) -> tuple[float | None, str | None]:
    """The bit/s between ``prev`` (value, ts) and (``value``, ``ts``), and the event.

    Returns (bit/s or None, event or None): None with ``baseline``, ``reset``, ``gap``,
    ``stale`` or ``implausible`` (a rise faster than ``ceiling``); a rate with ``wrap``
    or with no event.

    >>> rate((100, 0.0), 850, 30.0, scale=8, bits=64, ceiling=1e12, max_gap=900)
    (200.0, None)
    >>> rate((2**64 - 100, 0.0), 900, 10.0, scale=8, bits=64, ceiling=1e12, max_gap=900)
    (800.0, 'wrap')
    >>> rate((5 * 10**12, 0.0), 1000, 10.0, scale=8, bits=64, ceiling=1e12, max_gap=900)
    (None, 'reset')
    >>> rate((0, 0.0), 2**64 - 1, 1.0, scale=8, bits=64, ceiling=1e12, max_gap=900)
    (None, 'implausible')
    """
    if prev is None:
        return None, "baseline"
    before, then = prev
    elapsed = ts - then
    if elapsed <= 0:
        return None, "stale"
    if elapsed > max_gap:
        return None, "gap"
    delta = value - before
    if delta >= 0:
        bps = scale * delta / elapsed
        # more than the line could carry: not traffic (a counter replaced by another
        # of the same series, a collector's bad read); the reading is the new base
        return (bps, None) if bps <= ceiling else (None, "implausible")
    modulus = 2**bits
    if before < modulus:
        wrapped = scale * (value + modulus - before) / elapsed
        if wrapped <= ceiling:
            return wrapped, "wrap"
    return None, "reset"


def counter_rates(
    cur: psycopg.Cursor,
    readings: Sequence[Reading],
    ceilings: Mapping[str, float],
    *,
    max_gap: float,
    trust_known: bool = True,
) -> Rates:
    """Rates of ``readings`` (series, link, ts s, value, bits per unit, counter bits)
    against the stored last readings, which are updated; inside the caller's
    transaction. ``ceilings``: link -> the highest plausible bit/s (line rate).

    Rows are placed (inserted if missing) before any is locked, so that a push never
    waits on another's new row while holding locks. With ``trust_known`` the series
    this process has seen a row of are not placed again; if one of their rows is
    missing (deleted, or its placing rolled back), :class:`CounterStateMissing` is raised
    with rows locked: the caller rolls back and calls again with ``trust_known``
    False, which places every series.
    """
    out = Rates()
    if not readings:
        return out
    keys = sorted({(r[0], r[1]) for r in readings})
    every = _key_arrays(keys)
    new = [k for k in keys if k not in _KNOWN_ROWS] if trust_known else keys
    if new:  # a row for each series not known to have one, so that all can be locked
        cur.execute(_PLACEHOLD, _key_arrays(new) if trust_known else every)
    cur.execute(_LOCK, every)
    locked = cur.fetchall()
    if trust_known and len(locked) < len(keys):
        _KNOWN_ROWS.forget(keys)
        raise CounterStateMissing(f"{len(keys) - len(locked)} counter_state row(s) missing")
    _KNOWN_ROWS.add_all(keys)
    state: dict[tuple[str, str], tuple[float | int, float] | None] = {
        (m, lk): (None if v is None else (_number(v), t)) for m, lk, v, t in locked
    }
    skew_limit = time.time() + FUTURE_SKEW_SECONDS
    for series, link, ts, value, scale, bits in sorted(readings, key=lambda r: r[2]):
        if ts > skew_limit:  # a clock ahead would hold the series' base in the future
            out.count("future")
            continue
        key = (series, link)
        bps, event = rate(
            state.get(key),
            value,
            ts,
            scale=scale,
            bits=bits,
            ceiling=ceilings.get(link, NO_CAPACITY_CEILING_BPS),
            max_gap=max_gap,
        )
        if event is not None:
            out.count(event)
        if event == "stale":
            continue
        state[key] = (value, ts)
        if bps is not None:
            out.rows.append((link, ts, bps))
    saved, now = [], []  # the series with a reading, and their reading now
    for key in keys:
        if (reading := state.get(key)) is not None:
            saved.append(key)
            now.append(reading)
    values = array_literal([v[0] for v in now])  # numbers (ints exact): nothing to quote
    stamps = array_literal([float(v[1]) for v in now])
    key_arrays = every if len(saved) == len(keys) else _key_arrays(saved)
    cur.execute(_SAVE, (*key_arrays, values, stamps))
    return out


def _key_arrays(keys: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(series, link) pairs as two ``text[]`` literals (:func:`db.live.text_array_literal`)."""
    return text_array_literal([k[0] for k in keys]), text_array_literal([k[1] for k in keys])
