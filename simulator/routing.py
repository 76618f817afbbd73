"""Shortest-path routing and per-direction link loads.

Routes are shortest paths by geographic length (great-circle length of each
link, in whole metres so that equal sums compare exactly) when every node has
coordinates, else by hop count. Without ECMP each demand follows one path,
chosen deterministically (at each node walking back from the destination, the
predecessor that comes first in the topology's node order). With ECMP a demand
is split equally over all its equal-cost shortest paths (path-based split, as
in the paper's setting; routers that split per hop give different fractions
when paths share a prefix).

The result is a routing matrix ``R`` of shape ``(n_directed_links, n_pairs)``:
``R[l, p]`` is the fraction of pair ``p``'s demand that crosses directed link
``l``. Loads of every step at once are ``demands @ R.T``. Pairs whose source and
destination are disconnected (after failures) are *unroutable*: their demand is
reported by :func:`dropped_bps`, never silently lost.

Examples
--------
>>> from simulator.topology import load_topology
>>> from simulator.traffic import load_abilene
>>> topo, tr = load_topology("abilene"), load_abilene()
>>> routing = route(topo, tr.pairs)
>>> routing.matrix.shape, bool(routing.routable.all())
((30, 132), True)
>>> loads = link_loads(tr.demands_bps, routing)
>>> loads.shape
(4032, 30)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulator.topology import Topology

__all__ = ["Metric", "Routing", "dropped_bps", "link_loads", "route"]

Metric = Literal["auto", "distance", "hops"]
_METRICS = ("auto", "distance", "hops")
_MAX_ECMP_PATHS = 64


@dataclass(frozen=True)
class Routing:
    """A routing of a set of pairs over one state of a topology.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n_directed_links, n_pairs)`` fraction of each pair on each directed link.
    routable : numpy.ndarray
        ``(n_pairs,)`` bool, False where source and destination are disconnected.
    failed : frozenset of int
        Undirected link indices that were down.
    metric : str
        ``"distance"`` or ``"hops"``, the metric actually used.
    """

    matrix: np.ndarray
    routable: np.ndarray
    failed: frozenset[int]
    metric: str


def _weights(topology: Topology, metric: Metric) -> tuple[list[int], str]:
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(_METRICS)}")
    if metric == "auto":
        metric = "distance" if topology.has_coordinates else "hops"
    if metric == "distance":
        # Whole metres, at least 1: integer sums make equal-cost ties exact.
        lengths = topology.link_lengths_km()
        return [max(1, round(km * 1000)) for km in lengths], "distance"
    return [1] * len(topology.links), "hops"


def _dijkstra(
    source: int, adj: list[list[tuple[int, int, int]]], n: int
) -> tuple[list[float], list[list[tuple[int, int]]]]:
    """Distances and all shortest-path predecessors ``(node, directed link)``."""
    inf = float("inf")
    dist: list[float] = [inf] * n
    preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    dist[source] = 0
    heap = [(0, source)]
    done = [False] * n
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for v, w, dl in adj[u]:
            nd = d + w
            if nd < dist[v]:
                dist[v] = nd
                preds[v] = [(u, dl)]
                heapq.heappush(heap, (nd, v))
            elif nd == dist[v] and not done[v]:
                preds[v].append((u, dl))
    for p in preds:
        p.sort()
    return dist, preds


def _all_paths(target: int, source: int, preds: list[list[tuple[int, int]]]) -> list[list[int]]:
    """Every shortest path from source to target as lists of directed link indices."""
    paths: list[list[int]] = []
    stack: list[tuple[int, list[int]]] = [(target, [])]
    while stack and len(paths) < _MAX_ECMP_PATHS:
        node, links = stack.pop()
        if node == source:
            paths.append(links)
            continue
        for u, dl in reversed(preds[node]):
            stack.append((u, [*links, dl]))
    return paths


def route(
    topology: Topology,
    pairs: Sequence[tuple[str, str]],
    *,
    failed: Iterable[int] = (),
    ecmp: bool = False,
    metric: Metric = "auto",
) -> Routing:
    """Route every pair over the topology with some links down.

    Parameters
    ----------
    topology : Topology
    pairs : sequence of (str, str)
        Origin-destination pairs (the columns of the demands).
    failed : iterable of int
        Undirected link indices that are down (both directions).
    ecmp : bool
        Split each demand equally over all equal-cost shortest paths (at most
        64 per pair) instead of taking one.
    metric : {"auto", "distance", "hops"}
        ``auto`` uses distance when every node has coordinates, else hops.

    Returns
    -------
    Routing

    Raises
    ------
    ValueError
        If a pair names an unknown node, a failed index is out of range, the
        metric is unknown, or ``distance`` is asked without coordinates.

    Examples
    --------
    >>> from simulator.topology import Link, Topology
    >>> square = Topology("sq", ("a", "b", "c", "d"),
    ...                   (Link("a", "b"), Link("b", "c"), Link("c", "d"), Link("d", "a")))
    >>> r = route(square, [("a", "c")], ecmp=True)
    >>> [(square.link_names[i], float(f)) for i, f in enumerate(r.matrix[:, 0]) if f]
    [('a>b', 0.5), ('b>c', 0.5), ('d>c', 0.5), ('a>d', 0.5)]
    """
    index = {n: i for i, n in enumerate(topology.nodes)}
    unknown = sorted({x for p in pairs for x in p if x not in index})
    if unknown:
        raise ValueError(f"pairs name nodes unknown to topology {topology.name!r}: {unknown[:5]}")
    failed_set = frozenset(int(f) for f in failed)
    bad = [f for f in failed_set if not 0 <= f < len(topology.links)]
    if bad:
        raise ValueError(f"failed link indices {bad} out of range 0..{len(topology.links) - 1}")
    weights, used = _weights(topology, metric)
    n = len(topology.nodes)
    adj: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    for i, lk in enumerate(topology.links):
        if i in failed_set:
            continue
        a, b = index[lk.source], index[lk.target]
        adj[a].append((b, weights[i], 2 * i))
        adj[b].append((a, weights[i], 2 * i + 1))

    matrix = np.zeros((2 * len(topology.links), len(pairs)))
    routable = np.ones(len(pairs), dtype=bool)
    by_source: dict[int, list[tuple[int, int]]] = {}
    for p, (src, dst) in enumerate(pairs):
        by_source.setdefault(index[src], []).append((p, index[dst]))
    for s, targets in by_source.items():
        dist, preds = _dijkstra(s, adj, n)
        for p, d in targets:
            if d == s:
                continue  # local traffic: enters no link
            if dist[d] == float("inf"):
                routable[p] = False
                continue
            if ecmp:
                paths = _all_paths(d, s, preds)
                share = 1.0 / len(paths)
                for path in paths:
                    matrix[path, p] += share
            else:
                node = d
                while node != s:
                    node, dl = preds[node][0]
                    matrix[dl, p] = 1.0
    return Routing(matrix, routable, failed_set, used)


def link_loads(demands_bps: np.ndarray, routing: Routing) -> np.ndarray:
    """Load of every directed link in bit/s: ``demands @ R.T``.

    Parameters
    ----------
    demands_bps : numpy.ndarray
        ``(T, n_pairs)`` or ``(n_pairs,)``.
    routing : Routing

    Returns
    -------
    numpy.ndarray
        ``(T, n_directed_links)`` (or ``(n_directed_links,)``).
    """
    return np.asarray(demands_bps, dtype=float) @ routing.matrix.T


def dropped_bps(demands_bps: np.ndarray, routing: Routing) -> np.ndarray:
    """Demand that cannot be routed (disconnected pairs), bit/s per step."""
    return np.asarray(demands_bps, dtype=float)[..., ~routing.routable].sum(axis=-1)
