"""Routing: the routing matrix of shortest paths, with or without failed links.

The routing matrix ``R`` has one row per directed link and one column per
origin-destination (OD) pair: ``R[l, p]`` is the fraction of pair ``p``'s demand
that crosses link ``l``. Link loads are ``R @ d`` for a demand vector ``d``
(bit/s per pair), the classic linear model of network tomography (Vardi, JASA
91, 1996). ``R`` is a ``scipy.sparse.csr_array``; a pair whose destination cannot
be reached (after failures) is *unroutable*: its column is empty and its demand
is reported, never silently lost.

Paths are shortest by a metric:

* ``igp``: each link's IGP metric (every link must have one);
* ``distance``: great-circle length of the link in whole metres (every node
  must have coordinates), so that equal sums compare exactly;
* ``hops``: one per link;
* ``auto`` (default): ``igp`` when every link has a metric, else ``distance``
  when every node has coordinates, else ``hops``.

The paths themselves come from :mod:`network.paths` (see its ties rule and the
ECMP split). :meth:`Routing.fail` re-routes only the pairs whose paths crossed a
newly failed link; every other column stays as it was.

Examples
--------
>>> from network.topology import Link, Topology
>>> ring = Topology(("a", "b", "c", "d"), tuple(
...     Link(s, d) for s, d in ["ab", "ba", "bc", "cb", "cd", "dc", "da", "ad"]))
>>> r = route(ring, [("a", "c")], ecmp=True)
>>> {ring.link_names[i]: float(f) for i, f in enumerate(r.matrix.toarray()[:, 0]) if f}
{'a>b': 0.5, 'b>c': 0.5, 'd>c': 0.5, 'a>d': 0.5}
>>> cut = r.fail(["a>b"])
>>> {ring.link_names[i]: float(f) for i, f in enumerate(cut.matrix.toarray()[:, 0]) if f}
{'d>c': 1.0, 'a>d': 1.0}
>>> float(cut.loads([8e9])[ring.link_index("a>d")])
8000000000.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import sparse

from network.paths import Graph, columns
from network.topology import Topology

__all__ = ["METRICS", "Metric", "Routing", "UsedMetric", "link_weights", "route"]

Metric = Literal["auto", "igp", "distance", "hops"]
#: The metrics ``auto`` resolves to.
UsedMetric = Literal["igp", "distance", "hops"]
METRICS: tuple[str, ...] = ("auto", "igp", "distance", "hops")


def link_weights(topology: Topology, metric: Metric = "auto") -> tuple[np.ndarray, UsedMetric]:
    """``(L,)`` integral weight of each link and the metric actually used.

    Raises
    ------
    ValueError
        If the metric is unknown, or ``igp`` (``distance``) is asked while some
        link lacks a metric (some node lacks coordinates); the message names them.

    Examples
    --------
    >>> from network.topology import Link, Topology
    >>> t = Topology(("a", "b"), (Link("a", "b", metric=7), Link("b", "a", metric=7)))
    >>> w, used = link_weights(t)
    >>> w.tolist(), used
    ([7.0, 7.0], 'igp')
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if metric == "auto":
        metric = "distance" if topology.has_coordinates else "hops"
        metric = "igp" if topology.has_metrics else metric
    if metric == "igp":
        lacking = [lk.name for lk in topology.links if lk.metric is None]
        if lacking:
            raise ValueError(f"metric 'igp': links without a metric: {lacking[:5]}")
        return np.array([lk.metric for lk in topology.links], dtype=float), "igp"
    if metric == "distance":
        # Whole metres, at least 1: integer sums make equal-cost ties exact.
        metres = np.maximum(1.0, np.round(topology.link_lengths_km() * 1000.0))
        return metres.astype(float), "distance"
    return np.ones(len(topology.links)), "hops"


def _pairs(
    topology: Topology, given: Sequence[tuple[str, str]] | None
) -> tuple[tuple[tuple[str, str], ...], np.ndarray, np.ndarray]:
    pairs = topology.pairs if given is None else tuple((str(s), str(d)) for s, d in given)
    index = {n: i for i, n in enumerate(topology.nodes)}
    unknown = sorted({x for p in pairs for x in p if x not in index})
    if unknown:
        raise ValueError(f"pairs name nodes unknown to the topology: {unknown[:5]}")
    origin = np.array([index[s] for s, _ in pairs], dtype=np.int64)
    dest = np.array([index[d] for _, d in pairs], dtype=np.int64)
    return pairs, origin, dest


def _link_set(topology: Topology, links: Iterable[int | str]) -> frozenset[int]:
    return frozenset(topology.link_index(x) for x in links)


def _alive(topology: Topology, failed: frozenset[int]) -> np.ndarray:
    up = np.ones(len(topology.links), dtype=bool)
    up[np.fromiter(failed, dtype=np.int64, count=len(failed))] = False
    return up


@dataclass(frozen=True, eq=False)
class Routing:
    """A routing of OD pairs over a topology with some links down.

    Attributes
    ----------
    topology : Topology
    pairs : tuple of (str, str)
        The OD pairs, one per column.
    matrix : scipy.sparse.csr_array
        ``(L, P)`` fraction of each pair's demand on each link.
    routable : numpy.ndarray
        ``(P,)`` bool, False where the destination cannot be reached.
    failed : frozenset of int
        Indices of the links that are down.
    metric : str
        The metric used: ``igp``, ``distance`` or ``hops``.
    ecmp : bool
    weights : numpy.ndarray
        ``(L,)`` the link weights of that metric.
    """

    topology: Topology
    pairs: tuple[tuple[str, str], ...]
    matrix: sparse.csr_array
    routable: np.ndarray
    failed: frozenset[int]
    metric: str
    ecmp: bool
    weights: np.ndarray
    origin: np.ndarray = field(repr=False)
    dest: np.ndarray = field(repr=False)
    graph: Graph = field(repr=False)

    @property
    def alive(self) -> np.ndarray:
        """``(L,)`` bool, False for failed links."""
        return _alive(self.topology, self.failed)

    def loads(self, demands_bps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Load of every link in bit/s: ``R @ d``.

        Parameters
        ----------
        demands_bps : array_like
            ``(P,)`` or ``(T, P)`` demand of each pair, bit/s.

        Returns
        -------
        numpy.ndarray
            ``(L,)`` or ``(T, L)``.
        """
        d = np.asarray(demands_bps, dtype=float)
        if d.shape[-1] != len(self.pairs):
            raise ValueError(f"demands have {d.shape[-1]} pairs; the routing has {len(self.pairs)}")
        return (self.matrix @ d.T).T

    def unroutable_bps(self, demands_bps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Demand of the unroutable pairs, bit/s: ``(T,)`` or a scalar array."""
        d = np.asarray(demands_bps, dtype=float)
        return d[..., ~self.routable].sum(axis=-1)

    def path(self, pair: int | tuple[str, str]) -> dict[str, float]:
        """Link name -> fraction of one pair's demand (empty if local or unroutable)."""
        p = self.pairs.index(tuple(pair)) if isinstance(pair, tuple) else int(pair)
        col = self.matrix[:, [p]].tocoo()
        names = self.topology.link_names
        return {names[i]: float(f) for i, f in sorted(zip(col.row, col.data, strict=True))}

    def affected(self, links: Iterable[int | str]) -> np.ndarray:
        """Indices of the pairs with some demand on any of ``links`` (sorted)."""
        rows = sorted(_link_set(self.topology, links))
        return np.unique(self.matrix[rows].indices) if rows else np.zeros(0, dtype=np.int64)

    def fail(self, links: Iterable[int | str]) -> Routing:
        """The routing with ``links`` also down, re-routing only the pairs that crossed them.

        Equal to :func:`route` with the union of the failed links (the paths of
        the other pairs survive a failure unchanged, see :mod:`network.paths`).

        Parameters
        ----------
        links : iterable of int or str
            Link indices or names.
        """
        new = _link_set(self.topology, links) - self.failed
        failed = self.failed | new
        hit = self.affected(new)
        keep = self.matrix.tocoo()
        mask = ~np.isin(keep.col, hit)
        alive = _alive(self.topology, failed)
        rows, cols, vals, ok = columns(
            self.graph, alive, self.origin[hit], self.dest[hit], ecmp=self.ecmp
        )
        matrix = sparse.csr_array(
            (
                np.r_[keep.data[mask], vals],
                (np.r_[keep.row[mask], rows], np.r_[keep.col[mask], hit[cols]]),
            ),
            shape=self.matrix.shape,
        )
        routable = self.routable.copy()
        routable[hit] = ok
        return replace(self, matrix=matrix, routable=routable, failed=failed)


def route(
    topology: Topology,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    failed: Iterable[int | str] = (),
    ecmp: bool = False,
    metric: Metric = "auto",
) -> Routing:
    """Route OD pairs over shortest paths, with some links down.

    Parameters
    ----------
    topology : Topology
    pairs : sequence of (str, str), optional
        OD pairs (the columns); every ordered pair of distinct nodes by default.
        A pair with origin equal to destination is local and enters no link.
    failed : iterable of int or str
        Links that are down, by index or name (a cut cable is both directions:
        see :meth:`Topology.duplex_groups`).
    ecmp : bool
        Split each demand equally over all its shortest paths instead of one
        (path-based: routers that split equally per next hop give other fractions
        where paths share a prefix, see :mod:`network.paths`). Off by default, and
        in the API and the engine: they route each demand over one shortest path.
    metric : {"auto", "igp", "distance", "hops"}

    Returns
    -------
    Routing

    Raises
    ------
    ValueError
        If a pair names an unknown node, a failed link is unknown, or the metric
        is unknown or cannot be used (see :func:`link_weights`).

    Examples
    --------
    >>> from network.topology import Topology
    >>> t = Topology.from_links([{"name": n} for n in ("a>b", "b>c", "a>c")])
    >>> r = route(t, metric="hops")
    >>> r.matrix.shape, r.routable.tolist()
    ((3, 6), [True, True, False, True, False, False])
    >>> r.path(("a", "c"))
    {'a>c': 1.0}
    """
    pairs, origin, dest = _pairs(topology, pairs)
    weights, used = link_weights(topology, metric)
    down = _link_set(topology, failed)
    index = {n: i for i, n in enumerate(topology.nodes)}
    graph = Graph(
        len(index),
        np.array([index[lk.src] for lk in topology.links], dtype=np.int64),
        np.array([index[lk.dst] for lk in topology.links], dtype=np.int64),
        weights,
    )
    rows, cols, vals, ok = columns(graph, _alive(topology, down), origin, dest, ecmp=bool(ecmp))
    matrix = sparse.csr_array((vals, (rows, cols)), shape=(len(topology.links), len(pairs)))
    return Routing(
        topology, pairs, matrix, ok, down, used, bool(ecmp), weights, origin, dest, graph
    )
