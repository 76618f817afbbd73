"""A push decoder's per-series cache, bounded by bytes rather than by entries.

The push paths keep what they made of a series (its labels dict, its rule and link)
so that the next request of the series finds it instead of decoding it again. A
:class:`SeriesCache` is a ``dict`` (lookups are dict's own ``get``, at C speed) whose
entries are added by :meth:`SeriesCache.put` with a size in bytes: approximately the
length of the series' label bytes (the Python objects behind an entry take a small
multiple of it). Past ``cap`` bytes, the oldest entries are dropped until half the cap
is left (insertion order: a series that stopped being sent goes first), instead of
clearing everything at once; an entry larger than half the cap is never kept.

Shared by the threads of a process (decoders run in the threadpool): ``put`` and
``clear`` take a lock; a concurrent ``get`` sees the entry or not, either being fine.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

# Each decoder cache and each SeriesMap memo: at most this many bytes of series labels
# (about 160,000 series of 100 bytes of labels each).
CAP_BYTES = 16 * 2**20


class SeriesCache(dict):
    """A dict of series, its entries' sizes summed in :attr:`nbytes`, at most ``cap``.

    >>> c = SeriesCache(cap=100)
    >>> for k in range(12):
    ...     c.put(k, str(k), 10)
    >>> sorted(c), c.nbytes  # past 100 bytes the oldest went, down to 50, then 2 more
    ([5, 6, 7, 8, 9, 10, 11], 70)
    >>> c.put("huge", "x", 60)  # larger than half the cap: not kept
    >>> "huge" in c
    False
    """

    def __init__(self, cap: int = CAP_BYTES) -> None:
        super().__init__()
        self.cap = cap
        self.nbytes = 0
        self._sizes: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` for ``key`` (``nbytes``: the size of the series' label bytes)."""
        if nbytes > self.cap // 2:
            return
        with self._lock:
            old = self._sizes.pop(key, None)
            if old is not None:  # replaced: it becomes the newest
                self.nbytes -= old
                dict.pop(self, key, None)
            if self.nbytes + nbytes > self.cap:
                self._evict(self.cap // 2)
            self[key] = value
            self._sizes[key] = nbytes
            self.nbytes += nbytes

    def _evict(self, target: int) -> None:
        """Drop the oldest entries until at most ``target`` bytes are left (lock held)."""
        excess, freed, drop = self.nbytes - target, 0, []
        for key, n in self._sizes.items():
            if freed >= excess:
                break
            drop.append(key)
            freed += n
        for key in drop:
            del self._sizes[key]
            dict.pop(self, key, None)
        self.nbytes -= freed

    def clear(self) -> None:
        with self._lock:
            dict.clear(self)
            self._sizes.clear()
            self.nbytes = 0
