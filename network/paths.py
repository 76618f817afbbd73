"""Shortest paths of many origin-destination pairs at once, as routing-matrix entries.

The engine behind :func:`network.routing.route`: distances come from
``scipy.sparse.csgraph.dijkstra`` (compiled, all sources in one call), and the
paths are read off the distances with numpy, so that routing a network of a
thousand links, or re-routing it around every single failure, takes seconds.

Weights are positive integers held in float64, so path lengths are exact sums
and equal-cost ties compare exactly. A link ``e = (u, v)`` is *tight* for source
``s`` when ``dist(s, u) + w(e) == dist(s, v)``: it lies on some shortest path from
``s``. Parallel links are alternatives at the same cost when their weights tie.

* Single path: walking back from the destination, each node takes its tight
  in-link whose source comes first in node order (then the lowest link index).
  A failure that leaves a pair's path intact leaves that path unchanged, so a
  re-route need only recompute the pairs whose path crossed a failed link.
* ECMP, path-based: a pair's demand is split equally over all its shortest
  paths, so link ``(u, v)`` carries ``sigma(s, u) * sigma(v, t) / sigma(s, t)`` of
  it, ``sigma`` counting shortest paths (Brandes, J. Math. Sociol. 25, 2001, for
  the counting). Routers that split per hop give other fractions when paths
  share a prefix. :func:`ecmp_loads` gives the same split's link loads
  alone, by dependency accumulation from the origins, for the N-1 scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

__all__ = ["Graph", "columns", "ecmp_loads"]

_CHUNK = 1 << 21  # pair x link cells per ECMP batch (16 MiB of float64)


@dataclass(frozen=True)
class Graph:
    """Directed links as arrays: ``src``, ``dst`` (node indices), ``weight`` (> 0, integral).

    Parameters
    ----------
    n_nodes : int
    src, dst : numpy.ndarray
        ``(E,)`` int node indices of each link.
    weight : numpy.ndarray
        ``(E,)`` float64 positive integral weights.
    """

    n_nodes: int
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    @cached_property
    def by_head(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Links ordered by head node, then tail node, then index; group starts; heads."""
        order = np.lexsort((np.arange(len(self.src)), self.src, self.dst))
        heads = self.dst[order]
        starts = np.flatnonzero(np.r_[True, heads[1:] != heads[:-1]]) if len(heads) else heads
        return order, starts, heads[starts]

    def csgraph(self, alive: np.ndarray, *, reverse: bool = False) -> sparse.csr_array:
        """``(n, n)`` adjacency of the alive links, parallel links at their least weight."""
        e = np.flatnonzero(alive)
        u, v, w = self.src[e], self.dst[e], self.weight[e]
        if reverse:
            u, v = v, u
        order = np.lexsort((w, v, u))
        u, v, w = u[order], v[order], w[order]
        first = np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])] if len(u) else u.astype(bool)
        n = self.n_nodes
        return sparse.csr_array((w[first], (u[first], v[first])), shape=(n, n))


def _distances(g: Graph, alive: np.ndarray, roots: np.ndarray, reverse: bool) -> np.ndarray:
    if len(roots) == 0:
        return np.zeros((0, g.n_nodes))
    return np.atleast_2d(dijkstra(g.csgraph(alive, reverse=reverse), indices=roots))


def _tight(
    g: Graph, alive: np.ndarray, dist: np.ndarray, reverse: bool, links: np.ndarray | None = None
) -> np.ndarray:
    """``(k, E)`` links on some shortest path from each root (towards it when reverse).

    ``links`` picks and orders the columns (all links by default; ``alive`` matches it).
    """
    tail, head = (g.dst, g.src) if reverse else (g.src, g.dst)
    w = g.weight
    if links is not None:
        tail, head, w = tail[links], head[links], w[links]
    d_tail = dist[:, tail]
    return alive & np.isfinite(d_tail) & (d_tail + w == dist[:, head])


def _pred_links(g: Graph, alive: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """``(k, n)`` the chosen in-link of each node on the path from each root (-1: none)."""
    pred = np.full((dist.shape[0], g.n_nodes), -1, dtype=np.int64)
    order, starts, heads = g.by_head
    if len(order) == 0:
        return pred
    tight = _tight(g, alive[order], dist, reverse=False, links=order)
    pos = np.where(tight, np.arange(len(order)), len(order))
    first = np.minimum.reduceat(pos, starts, axis=1)
    pred[:, heads] = np.where(first < len(order), order[np.minimum(first, len(order) - 1)], -1)
    return pred


def _path_counts(g: Graph, alive: np.ndarray, dist: np.ndarray, roots: np.ndarray, reverse: bool):
    """``(k, n)`` number of shortest paths from each root (to it when reverse)."""
    tight = _tight(g, alive, dist, reverse).astype(float)
    tail, head = (g.dst, g.src) if reverse else (g.src, g.dst)
    into = sparse.csr_array(
        (np.ones(len(head)), (np.arange(len(head)), head)), shape=(len(head), g.n_nodes)
    )
    base = np.zeros_like(dist)
    base[np.arange(len(roots)), roots] = 1.0
    sigma = base
    for _ in range(g.n_nodes + 1):  # converges after the longest shortest path's hop count
        new = base + (into.T @ (sigma[:, tail] * tight).T).T
        if np.array_equal(new, sigma):
            break
        sigma = new
    return sigma


def columns(
    g: Graph, alive: np.ndarray, origin: np.ndarray, dest: np.ndarray, *, ecmp: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Routing-matrix entries of the pairs ``origin[j] -> dest[j]`` over the alive links.

    Parameters
    ----------
    g : Graph
    alive : numpy.ndarray
        ``(E,)`` bool, False for failed links.
    origin, dest : numpy.ndarray
        ``(P,)`` node indices of each pair; a pair with ``origin == dest`` enters no link.
    ecmp : bool
        Split over all shortest paths (path-based) instead of taking one.

    Returns
    -------
    rows, cols, fractions : numpy.ndarray
        Link index, pair position ``j`` and the fraction of the pair's demand on it.
    routable : numpy.ndarray
        ``(P,)`` bool, False where the destination cannot be reached.
    """
    origin, dest = np.asarray(origin, dtype=np.int64), np.asarray(dest, dtype=np.int64)
    roots, row = np.unique(origin, return_inverse=True)
    dist = _distances(g, alive, roots, reverse=False)
    total = dist[row, dest] if len(origin) else np.zeros(0)
    routable = np.isfinite(total)
    moving = routable & (origin != dest)
    if ecmp:
        return (*_ecmp(g, alive, dist, roots, row, dest, moving, total), routable)
    pred = _pred_links(g, alive, dist)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    idx = np.flatnonzero(moving)
    cur = dest[idx].copy()
    for _ in range(g.n_nodes):
        if len(idx) == 0:
            break
        link = pred[row[idx], cur]
        rows.append(link)
        cols.append(idx)
        cur = g.src[link]
        more = cur != origin[idx]
        idx, cur = idx[more], cur[more]
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return r, c, np.ones(len(r)), routable


def _ecmp(g, alive, dist, roots, row, dest, moving, total):
    sigma = _path_counts(g, alive, dist, roots, reverse=False)
    sinks, back_row = np.unique(dest, return_inverse=True)
    back = _distances(g, alive, sinks, reverse=True)  # back[q, v]: from v to sinks[q]
    sigma_back = _path_counts(g, alive, back, sinks, reverse=True)
    links = np.flatnonzero(alive)
    u, v, w = g.src[links], g.dst[links], g.weight[links]
    idx = np.flatnonzero(moving)
    step = max(1, _CHUNK // max(1, len(links)))
    rows, cols, vals = [], [], []
    for k in range(0, len(idx), step):
        j = idx[k : k + step]
        r, q = row[j][:, None], back_row[j][:, None]
        on = dist[r, u] + w + back[q, v] == total[j][:, None]
        pj, le = np.nonzero(on)
        frac = sigma[row[j][pj], u[le]] * sigma_back[back_row[j][pj], v[le]]
        rows.append(links[le])
        cols.append(j[pj])
        vals.append(frac / sigma[row[j][pj], dest[j][pj]])
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def ecmp_loads(
    g: Graph, alive: np.ndarray, origin: np.ndarray, dest: np.ndarray, demands: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Link loads of the demands ``origin[j] -> dest[j]`` split over all shortest paths.

    The loads :func:`columns` with ``ecmp=True`` gives (``bincount(rows,
    vals * demands[cols])``) without the routing-matrix entries or the trees
    towards each destination: per origin ``s``, Brandes' dependency accumulation
    (J. Math. Sociol. 25, 2001) on the shortest-path DAG of ``s``. With ``sigma(v)``
    the number of shortest paths from ``s`` to ``v`` and
    ``G(v) = d(s, v) / sigma(v) + sum over tight (v, w) of G(w)``, the tight link
    ``(u, v)`` carries ``sigma(u) * G(v)`` of the demands from ``s``: the same
    path-based split (equal up to round-off). All origins at once, as one
    block-diagonal sparse system iterated to its fixed point (as many rounds as
    the deepest shortest path has hops).

    Parameters
    ----------
    g : Graph
    alive : numpy.ndarray
        ``(E,)`` bool, False for failed links.
    origin, dest : numpy.ndarray
        ``(P,)`` node indices of each pair; a local pair (``origin == dest``)
        enters no link.
    demands : numpy.ndarray
        ``(P,)`` demand of each pair (any unit; the loads are in the same).

    Returns
    -------
    loads : numpy.ndarray
        ``(E,)`` load of each link (0 on failed links).
    routable : numpy.ndarray
        ``(P,)`` bool, False where the destination cannot be reached (that
        demand is in no load).
    """
    origin, dest = np.asarray(origin, dtype=np.int64), np.asarray(dest, dtype=np.int64)
    demands = np.asarray(demands, dtype=float)
    n, n_links = g.n_nodes, len(g.src)
    roots, row = np.unique(origin, return_inverse=True)
    dist = _distances(g, alive, roots, reverse=False)
    routable = np.isfinite(dist[row, dest]) if len(origin) else np.zeros(0, dtype=bool)
    moving = routable & (origin != dest) & (demands != 0)
    if not moving.any():
        return np.zeros(n_links), routable
    k = len(roots)
    ri, le = np.nonzero(_tight(g, alive, dist, reverse=False))
    tail, head = ri * n + g.src[le], ri * n + g.dst[le]
    # into[v, u]: the tight links of each root's DAG, nodes numbered root * n + node.
    into = sparse.csr_array((np.ones(len(le)), (head, tail)), shape=(k * n, k * n))
    sink = np.zeros(k * n)
    np.add.at(sink, row[moving] * n + dest[moving], demands[moving])
    # Only the ancestors of the destinations carry any of it: solve on those alone.
    hops = dijkstra(into, indices=np.flatnonzero(sink), min_only=True, unweighted=True)
    keep = np.flatnonzero(np.isfinite(hops))
    at = np.full(k * n, -1, dtype=np.int64)
    at[keep] = np.arange(len(keep))
    sub = sparse.csr_array(into[keep][:, keep])
    base = np.zeros(len(keep))
    start = at[np.arange(k) * n + roots]
    base[start[start >= 0]] = 1.0  # an origin with demand is an ancestor of its destinations
    sigma = _fixed_point(sub, base)  # shortest paths from the root, > 0 on ancestors
    acc = _fixed_point(sparse.csr_array(sub.T), sink[keep] / sigma)
    on = at[head] >= 0  # a link into an ancestor comes from one
    weights = sigma[at[tail[on]]] * acc[at[head[on]]]
    return np.bincount(le[on], weights=weights, minlength=n_links), routable


def _fixed_point(step: sparse.csr_array, base: np.ndarray) -> np.ndarray:
    """``x = base + step @ x`` for a nilpotent ``step`` (a DAG): iterated until it holds."""
    x = base
    for _ in range(step.shape[0] + 1):  # at most the longest path's hop count, plus one
        new = base + step @ x
        if np.array_equal(new, x):
            break
        x = new
    return x
