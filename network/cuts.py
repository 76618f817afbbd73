"""Link cuts read off the link loads: which links went down, and when they came back.

A cut cable takes both of its directions to 0 bit/s from one measurement to the next
(an interface that is down counts nothing). Traffic does not do that by itself: a
backbone link's load follows the daily cycle, it does not lose 99 % of itself within
a grid step, and the other direction of the same cable with it. So a link is read as
cut when, in one step,

- it carried at least :data:`MIN_CARRIED_RATIO` of the mean link load the step
  before (an idle link says nothing when it reads 0),
- it now reads at most :data:`CUT_RATIO` of what it carried then,
- and so does its reverse, where the topology has one (a cable fails both ways; one
  direction at 0 is more often a counter or a collector). A reverse that was busy and
  is not measured in that step defers the reading to the next step (the live engine
  holds a first 0 back for a step, and the two directions need not be held alike); a
  reverse never measured, or idle, says nothing,

unless more than half of the links that carried traffic read as cut at once (that is
the collector or the network's edge, not a set of cables), or a link is read as
repaired in the same step (traffic moving back onto a repaired link empties the
links that carried it meanwhile: a backup path going quiet is not a cut). A link
read as cut is read as repaired once it carries more than :data:`CUT_RATIO` of what
it carried before the cut. A link not measured in a step (NaN) keeps its state.

Reading cuts off the loads is what an operator's eye does on a load chart; routers
say it first (an IGP adjacency going down, an SNMP ``linkDown`` trap, ``ifOperStatus``).
What it reads is a link that stopped carrying traffic both ways, whatever the cause:
a link drained for maintenance (its IGP metric raised) reads as cut too, which for
the forecasts it is (the traffic left it). A failure that does not empty a link (a
partial failure, a lost member of a bundle) shows only as the operator's ``failure``
event. A collector that writes 0 for a whole router's links when it loses it (rather
than nothing) reads as cuts of those links; one that writes nothing does not. A link
that flaps reads as a cut and a repair each time (no hold-down).

Examples
--------
>>> from network.topology import Link, Topology
>>> tri = Topology(("a", "b", "c"), tuple(
...     Link(s, d) for s, d in ["ab", "ba", "bc", "cb", "ca", "ac"]))
>>> cuts = CutDetector(tri)
>>> def read(loads):  # (cut, repaired), sorted
...     return tuple(sorted(x) for x in cuts.update(np.array(loads)))
>>> read([5.0, 4.0, 6.0, 6.0, 5.0, 5.0])
([], [])
>>> read([0.0, 0.0, 11.0, 10.0, 5.0, 5.0])  # a-b cut both ways
(['a>b', 'b>a'], [])
>>> read([0.0, 0.0, 12.0, 10.0, 5.0, 5.0])  # still down
([], [])
>>> read([5.0, 4.0, 6.0, 6.0, 5.0, 5.0])  # back
([], ['a>b', 'b>a'])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from network.topology import Topology

__all__ = ["CUT_RATIO", "MIN_CARRIED_RATIO", "CutDetector"]

#: A link reads as cut at or below this fraction of the load it carried the step before.
CUT_RATIO = 0.01
#: ... provided that load was at least this fraction of the mean link load then.
MIN_CARRIED_RATIO = 0.01


class CutDetector:
    """Cuts and repairs of a topology's links, one step of link loads at a time.

    Parameters
    ----------
    topology : Topology
        The links, in the order of the loads, and which link is which one's reverse.

    Attributes
    ----------
    topology : Topology
        As given.
    down : numpy.ndarray
        ``(L,)`` bool, the links read as cut now.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        n = len(topology.links)
        self._reverse = np.array(
            [-1 if r is None else r for r in (topology.reverse(i) for i in range(n))],
            dtype=np.int64,
        )
        self.down = np.zeros(n, dtype=bool)
        # the last load each link carried while up (NaN: none yet), bit/s, and the
        # ``at`` of the step it was carried in (None: not given)
        self._carried = np.full(n, np.nan)
        self._carried_at: list[object] = [None] * n

    def prime(
        self,
        loads_bps: np.ndarray,
        down: np.ndarray,
        at: object = None,
        earlier_bps: np.ndarray | None = None,
        earlier_at: object = None,
    ) -> None:
        """Start from a known state (a restart): ``loads_bps`` ``(L,)`` bit/s, the last
        step's loads (NaN: not measured), at ``at``, and ``down`` ``(L,)`` bool, the
        links read as cut before. A link primed down is read as repaired at its first
        load above 0 (what it carried before its cut is not known). With
        ``earlier_bps``, the step before (at ``earlier_at``): a link that fell to a cut's
        level in the last step starts from what it carried then, so that the cut it may
        be is still read."""
        y = np.asarray(loads_bps, dtype=float)
        self.down = np.asarray(down, dtype=bool).copy()
        up = np.isfinite(y) & ~self.down
        self._carried = np.where(up, y, np.nan)
        self._carried_at = [at if c else None for c in up]
        if earlier_bps is not None:
            e = np.asarray(earlier_bps, dtype=float)
            fell = ~self.down & np.isfinite(e) & (e > 0) & ~(y > CUT_RATIO * e)
            for i in np.flatnonzero(fell):
                self._carried[i], self._carried_at[i] = e[i], earlier_at

    def forget(self, names: Iterable[str]) -> None:
        """Read ``names`` as up again without a repair (a cut the caller will not act on,
        such as a drain in a maintenance window): they are read again at each step
        while their load stays at a cut's level against what they carried."""
        for name in names:
            self.down[self.topology.link_index(name)] = False

    def carry_over(self, other: CutDetector) -> None:
        """Take what ``other`` (another topology's detector) knew of the links both have,
        by name: the load each carried and whether it is down. For a network model
        rebuilt as links come and go."""
        index = {n: i for i, n in enumerate(other.topology.link_names)}
        for i, name in enumerate(self.topology.link_names):
            j = index.get(name)
            if j is not None:
                self._carried[i], self.down[i] = other._carried[j], other.down[j]
                self._carried_at[i] = other._carried_at[j]

    def carried_at(self, link: str) -> object:
        """The ``at`` of the last step ``link`` carried traffic in while up (see
        :meth:`update`), or None."""
        return self._carried_at[self.topology.link_index(link)]

    def update(
        self, loads_bps: np.ndarray, at: object = None
    ) -> tuple[frozenset[str], frozenset[str]]:
        """Take one step of loads; return the links read as cut in it and as repaired.

        Parameters
        ----------
        loads_bps : numpy.ndarray
            ``(L,)`` mean load of each link over the step, bit/s, in the topology's
            order; NaN where not measured.
        at : object, optional
            The step's time (any value; :meth:`carried_at` gives it back), so that a
            cut read after a step not measured can be dated from where it began.

        Returns
        -------
        cut, repaired : frozenset of str
            Link names newly read as cut, and newly read as carrying traffic again.

        Raises
        ------
        ValueError
            If ``loads_bps`` is not ``(L,)`` or holds a negative or infinite load.
        """
        y = np.asarray(loads_bps, dtype=float)
        n = len(self.down)
        if y.shape != (n,):
            raise ValueError(f"loads_bps has shape {y.shape}; expected ({n},), one per link")
        if np.isinf(y).any() or (y < 0).any():
            raise ValueError("loads_bps must be >= 0 and finite (NaN: not measured)")
        measured = np.isfinite(y)
        carried = self._carried
        up_before = np.isfinite(carried) & ~self.down
        mean = float(carried[up_before].mean()) if up_before.any() else 0.0
        busy = up_before & (carried >= MIN_CARRIED_RATIO * mean) & (carried > 0)
        low = measured & busy & (y <= CUT_RATIO * np.where(busy, carried, 0.0))
        back = self._reverse
        has_back = back >= 0
        back_i = np.where(has_back, back, 0)
        # the reverse dropped too, is already down, or says nothing (none, never
        # measured, idle); a busy reverse not measured now defers to the next step
        silent = ~measured[back_i] & ~busy[back_i]
        back_ok = ~has_back | low[back_i] | self.down[back_i] | silent
        cut = low & back_ok
        repaired = self.down & measured & (y > CUT_RATIO * np.nan_to_num(carried))
        if cut.sum() * 2 > busy.sum() or repaired.any():
            # most of the network at once: the collector, not cables; or traffic moving
            # back onto a repaired link, emptying the path it took meanwhile
            cut[:] = False
        self.down = (self.down | cut) & ~repaired
        # a link at 0 not read as cut (deferred, one way) keeps the load it carried
        keep = measured & ~self.down & ~low
        self._carried = np.where(keep, y, carried)
        for i in np.flatnonzero(keep):
            self._carried_at[i] = at
        names = self.topology.link_names
        return (
            frozenset(names[i] for i in np.flatnonzero(cut)),
            frozenset(names[i] for i in np.flatnonzero(repaired)),
        )
