"""Compact per-link buffers: a float16 history ring and a triangle of pending forecasts.

Both store values as float16 *relative to a per-link scale* (float64): float16 has
about 3 significant digits (relative error <= 4.9e-4) but a range of only 6e-5..65504,
so bit/s values (0..1e12) are divided by the scale first. When a value would exceed
3e4 times the scale, that link is rescaled (its stored values re-encoded). This keeps
the state within a few KB per link (see ``bench/engine_step.py``).
"""

from __future__ import annotations

import numpy as np

_MAX_RATIO = 3.0e4


class _HalfStore:
    """Float16 array with links on the last axis and a per-link float64 scale."""

    def __init__(self, shape: tuple[int, ...], n_links: int) -> None:
        self._data = np.full((*shape, n_links), np.nan, dtype=np.float16)
        self._scale = np.ones(n_links)

    def _encode(self, values: np.ndarray) -> np.ndarray:
        """Encode values (links on the last axis), rescaling links that would overflow."""
        mag = np.abs(values)
        if mag.ndim > 1:
            mag = np.nanmax(np.where(np.isfinite(mag), mag, 0.0), axis=tuple(range(mag.ndim - 1)))
        mag = np.where(np.isfinite(mag), mag, 0.0)
        grow = mag > _MAX_RATIO * self._scale
        if grow.any():
            new = np.where(grow, mag, self._scale)
            ratio = (self._scale / new)[grow]
            block = self._data[..., grow].astype(np.float32) * ratio.astype(np.float32)
            self._data[..., grow] = block.astype(np.float16)
            self._scale = new
        return (values / self._scale).astype(np.float16)

    def _add_links(self, n: int) -> None:
        extra = np.full((*self._data.shape[:-1], n), np.nan, dtype=np.float16)
        self._data = np.concatenate([self._data, extra], axis=-1)
        self._scale = np.concatenate([self._scale, np.ones(n)])

    @property
    def n_links(self) -> int:
        return self._data.shape[-1]

    @property
    def nbytes(self) -> int:
        return self._data.nbytes + self._scale.nbytes


class HistoryRing(_HalfStore):
    """The last ``length`` grid values of every link; NaN where missing.

    Examples
    --------
    >>> import numpy as np
    >>> ring = HistoryRing(4, n_links=2)
    >>> for v in (1e9, 2e9, 3e9):
    ...     ring.push(np.array([v, 0.0]), np.array([True, False]))
    >>> ring.lag(0)
    array([3.e+09,    nan])
    >>> ring.last(2)[:, 0]
    array([2.e+09, 3.e+09])
    """

    def __init__(self, length: int, n_links: int) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        super().__init__((length,), n_links)
        self.length = length
        self._pos = 0
        self._count = 0

    def push(self, values: np.ndarray, observed: np.ndarray) -> None:
        """Append one grid step (``values`` in bit/s, ``observed`` bool)."""
        v = np.where(observed, values, np.nan)
        self._data[self._pos] = self._encode(v)
        self._pos = (self._pos + 1) % self.length
        self._count += 1

    def lag(self, k: int) -> np.ndarray:
        """Values ``k`` steps before the newest (0 = newest); NaN if unknown."""
        if k >= min(self.length, self._count):
            return np.full(self.n_links, np.nan)
        return self._data[(self._pos - 1 - k) % self.length].astype(np.float64) * self._scale

    def lags(self, ks: np.ndarray) -> np.ndarray:
        """Values ``ks`` steps before the newest: shape ``(len(ks), n_links)``."""
        ks = np.asarray(ks)
        out = self._data[(self._pos - 1 - ks) % self.length].astype(np.float64) * self._scale
        out[ks >= min(self.length, self._count)] = np.nan
        return out

    def gather(self, lags: np.ndarray, links: np.ndarray) -> np.ndarray:
        """Values ``lags[i, j]`` steps before the newest, of link ``links[j]``.

        ``lags`` is ``(R, B)`` (or broadcasts to it), ``links`` ``(B,)``; returns float64
        ``(R, B)``, NaN where unknown (a lag beyond what is kept or pushed, or < 0).
        Reads only those entries: the cost does not grow with the number of links.

        Examples
        --------
        >>> import numpy as np
        >>> ring = HistoryRing(4, n_links=2)
        >>> for v in (1.0, 2.0, 3.0):
        ...     ring.push(np.array([v, 10 * v]), np.array([True, True]))
        >>> ring.gather(np.array([[0, 0], [2, 3]]), np.array([1, 0]))
        array([[30.,  3.],
               [10., nan]])
        """
        links = np.asarray(links)
        lags = np.broadcast_to(np.asarray(lags), np.broadcast_shapes(np.shape(lags), links.shape))
        idx = (self._pos - 1 - lags) % self.length
        out = self._data[idx, links[None, :]].astype(np.float64) * self._scale[links]
        out[(lags >= min(self.length, self._count)) | (lags < 0)] = np.nan
        return out

    def last(self, k: int) -> np.ndarray:
        """The newest ``k`` steps, oldest first: shape ``(k, n_links)``, NaN if unknown."""
        if k > self.length:
            raise ValueError(f"k={k} exceeds the ring length {self.length}")
        idx = (self._pos - k + np.arange(k)) % self.length
        out = self._data[idx].astype(np.float64) * self._scale
        known = min(self._count, self.length)
        if known < k:
            out[: k - known] = np.nan
        return out

    @property
    def count(self) -> int:
        """Steps pushed so far."""
        return self._count

    def add_links(self, n: int) -> None:
        self._add_links(n)


class PendingForecasts(_HalfStore):
    """Issued forecasts that have not matured yet, packed as a triangle.

    A forecast issued at ``t0`` for step ``h`` matures at ``t0 + h``. Only the
    ``H (H + 1) / 2`` entries still in the future are kept: blocks by age ``a``
    (``0 .. H-1``) hold steps ``a+1 .. H``. Each :meth:`roll` returns the entries that
    mature now (one per horizon step) and prepends the new forecast.

    Examples
    --------
    >>> import numpy as np
    >>> p = PendingForecasts(horizon=3, n_links=1)
    >>> for t in range(4):
    ...     matured = p.roll(np.array([[10.0 * t + 1, 10.0 * t + 2, 10.0 * t + 3]]))
    >>> matured  # at t=3: issued at t=2 step 1, t=1 step 2, t=0 step 3
    array([[21., 12.,  3.]])
    """

    def __init__(self, horizon: int, n_links: int) -> None:
        rows = horizon * (horizon + 1) // 2
        super().__init__((rows,), n_links)
        self.horizon = horizon
        sizes = horizon - np.arange(horizon)
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        keep = np.ones(rows, dtype=bool)
        keep[self._starts] = False
        self._keep = np.flatnonzero(keep)

    def matured(self) -> np.ndarray:
        """Forecasts for the current step, issued ``h`` steps ago: ``(n_links, H)``."""
        return (self._data[self._starts].astype(np.float64) * self._scale).T

    def latest(self) -> np.ndarray:
        """The newest forecast stored (the last :meth:`roll`'s ``new``): ``(n_links, H)``.

        Column ``h-1`` is for ``h`` steps after the step it was issued at (NaN before any).
        """
        return (self._data[: self.horizon].astype(np.float64) * self._scale).T

    def roll(self, new: np.ndarray) -> np.ndarray:
        """Return :meth:`matured`, drop those entries and store ``new`` ``(n_links, H)``."""
        out = self.matured()
        enc = self._encode(np.asarray(new, dtype=np.float64).T)
        self._data = np.concatenate([enc, self._data[self._keep]], axis=0)
        return out

    def add_links(self, n: int) -> None:
        self._add_links(n)
