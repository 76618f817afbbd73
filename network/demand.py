"""Demand estimation from link loads (network tomography): tomogravity.

The link loads ``y`` (bit/s, one per directed link) are the routed demands,
``y = R x``, with ``x`` the demand of each origin-destination (OD) pair and ``R``
the routing matrix (:mod:`network.routing`). There are far fewer links than
pairs, so ``y`` alone does not fix ``x``. Tomogravity (Zhang, Roughan, Duffield
and Greenberg, "Fast accurate computation of large-scale IP traffic matrices
from link loads", ACM SIGMETRICS 2003) takes a gravity model as the prior,
``g[s, t]`` proportional to ``out[s] * in[t]``, where ``out[s]`` is the traffic
entering the network at ``s`` and ``in[t]`` the traffic leaving it at ``t``
(:func:`gravity`), and picks the demands nearest to the prior that reproduce the
link loads::

    minimise   sum_p (x_p - g_p)**2 / g_p   subject to   R x = y,  x >= 0.

The weights ``1 / g_p`` (the chi-square distance, a quadratic approximation of
the Kullback-Leibler distance of Zhang, Roughan, Lund and Donoho, SIGCOMM 2003)
let large demands move more than small ones. The constraint is applied as a
heavy least-squares penalty so that inconsistent loads (noise, a missed sample)
still give an answer, and non-negativity is a bound, met exactly rather than by
the paper's clip-and-iterate: the problem is solved on ``(L, L)`` systems (the
Woodbury identity) with an active set of the demands held at 0, checked by the
Karush-Kuhn-Tucker conditions, so the answer is the unique minimum
``scipy.optimize.nnls`` would find, at a fraction of its cost; should that not
settle, ``nnls`` itself (``scipy.optimize.lsq_linear`` on a sparse system for more
than 1,000 pairs) solves it.

The paper measures ``out`` and ``in`` on edge (access) links: where linkcast
knows them (links labelled ``edge``, :mod:`network.records`), :func:`edge_totals`
sums their loads per node. When only core links are measured, :func:`fit_gravity`
fits them to the link loads instead: the gravity model ``x[s, t] = a[s] * b[t]``
that best reproduces ``y`` (a few rounds of alternating non-negative least
squares, ``scipy.optimize.nnls``, then a bounded Gauss-Newton solve,
``scipy.optimize.least_squares``).

Examples
--------
>>> import numpy as np
>>> from network.routing import route
>>> from network.topology import Link, Topology
>>> line = Topology(("a", "b", "c"), tuple(
...     Link(s, d) for s, d in ["ab", "ba", "bc", "cb"]))
>>> r = route(line)
>>> truth = np.array([1e9, 2e9, 1e9, 1e9, 2e9, 1e9])  # a>b a>c b>a b>c c>a c>b
>>> est = tomogravity(r, r.loads(truth))
>>> bool(np.allclose(r.loads(est.demands_bps), r.loads(truth), rtol=1e-4))
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse
from scipy.optimize import least_squares, lsq_linear, nnls

from network.records import EdgeLink
from network.routing import Routing
from network.topology import Topology

__all__ = ["DemandEstimate", "edge_totals", "fit_gravity", "gravity", "tomogravity"]

log = logging.getLogger(__name__)

#: Weight of the link-load equations against the prior (on loads scaled to ~1).
CONSTRAINT_WEIGHT = 1e3
#: Prior demands are floored at this fraction of their mean in the weights.
_PRIOR_FLOOR = 1e-3
#: Up to this many links the refinement solves dense ``(L, L)`` systems (32 MB at 2,000).
_DENSE_LINKS = 2_000
#: Up to this many pairs the refinement's fallback is a dense NNLS, beyond a sparse lsq_linear.
_DENSE_PAIRS = 1000
#: At most this many rounds of proportional fitting in :func:`gravity`.
_IPF_ITERATIONS = 1000
#: Rounds of alternating NNLS that start :func:`fit_gravity`'s trust-region solve.
_ALS_START = 10
#: Tolerances (ftol, xtol, gtol) of that solve, on loads scaled to at most 1.
_FIT_TOL = 1e-12
#: The solve goes in rounds of this many evaluations, and stops after a round that
#: lowered the residual's norm by less than :data:`_FIT_GAIN` of the loads' norm. Where
#: the best gravity fit lies at infinity (a node that only sends, another that only
#: receives: factors grow without bound while their products settle), the tolerances
#: above are never met and the solve ran to its cap, each round a little better (0.4 s
#: on 4 nodes; seconds of a live engine's tick at a repair). Tomogravity's refinement
#: fits the loads from this prior anyway.
_FIT_ROUND = 25
_FIT_GAIN = 1e-3
#: Rounds of the refinement's active set on (L, L) systems before falling back to NNLS.
_KKT_ROUNDS = 50


@dataclass(frozen=True)
class DemandEstimate:
    """Estimated demands and the prior they started from.

    Attributes
    ----------
    demands_bps : numpy.ndarray
        ``(P,)`` or ``(T, P)`` estimated demand of each OD pair, bit/s, >= 0.
    prior_bps : numpy.ndarray
        The gravity prior, same shape.
    residual : numpy.ndarray
        ``()`` or ``(T,)`` ``||R x - y|| / ||y||``: how far the estimate is from
        reproducing the loads (near 0 unless the loads are inconsistent).
    """

    demands_bps: np.ndarray
    prior_bps: np.ndarray
    residual: np.ndarray


def gravity(routing: Routing, out_bps: np.ndarray, in_bps: np.ndarray) -> np.ndarray:
    """The gravity prior of each of the routing's pairs.

    ``x[s, t] = a[s] * b[t]`` for ``s != t``, with ``a`` and ``b`` scaled so that
    each origin's demands sum to its ``out`` and each destination's to its ``in``
    (iterative proportional fitting, or Sinkhorn scaling; with local traffic left
    out, the paper's ``out[s] * in[t] / total`` would not keep these totals).

    Parameters
    ----------
    routing : Routing
        Gives the pairs; local pairs (origin = destination) get 0.
    out_bps, in_bps : numpy.ndarray
        ``(N,)`` traffic entering (leaving) the network at each node, bit/s,
        in node order; ``in_bps`` is scaled to the sum of ``out_bps``.

    Returns
    -------
    numpy.ndarray
        ``(P,)`` prior demand of each pair, bit/s.

    Raises
    ------
    ValueError
        On a shape other than ``(N,)``, negative or non-finite totals.

    Examples
    --------
    >>> from network.routing import route
    >>> from network.topology import Topology
    >>> r = route(Topology.from_links([{"name": "a>b"}, {"name": "b>a"}, {"name": "b>c"}]))
    >>> r.pairs
    (('a', 'b'), ('a', 'c'), ('b', 'a'), ('b', 'c'), ('c', 'a'), ('c', 'b'))
    >>> gravity(r, np.array([3.0, 0.0, 0.0]), np.array([0.0, 1.0, 2.0])).round(6).tolist()
    [1.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    """
    out = np.asarray(out_bps, dtype=float)
    inn = np.asarray(in_bps, dtype=float)
    n = len(routing.topology.nodes)
    if out.shape != (n,) or inn.shape != (n,):
        raise ValueError(f"out_bps and in_bps must have shape ({n},), one per node")
    if not (np.isfinite(out).all() and np.isfinite(inn).all()) or min(out.min(), inn.min()) < 0:
        raise ValueError("out_bps and in_bps must be finite and >= 0")
    moving = routing.origin != routing.dest
    s, t = routing.origin[moving], routing.dest[moving]
    prior = np.zeros(len(routing.pairs))
    if out.sum() == 0 or inn.sum() == 0 or len(s) == 0:
        return prior
    inn = inn * (out.sum() / inn.sum())
    a, b = np.ones(n), np.ones(n)
    for _ in range(_IPF_ITERATIONS):
        reach = np.bincount(s, weights=b[t], minlength=n)
        a = np.divide(out, reach, out=np.zeros(n), where=reach > 0)
        reached = np.bincount(t, weights=a[s], minlength=n)
        b = np.divide(inn, reached, out=np.zeros(n), where=reached > 0)
        rows = np.bincount(s, weights=a[s] * b[t], minlength=n)
        if np.abs(rows - out).max() <= 1e-12 * out.sum():
            break
    prior[moving] = a[s] * b[t]
    return prior


def edge_totals(
    topology: Topology, edges: Sequence[EdgeLink], loads_bps: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The traffic entering and leaving the network at each node, from edge links.

    The sums of the loads of each node's ``ingress`` and of its ``egress`` edge
    links: the ``out`` and ``in`` of the gravity prior as the tomogravity paper
    measures them (Zhang et al., SIGMETRICS 2003). A node's total in a direction is
    NaN, not measured, when it has no edge link that way or when one of them has no
    finite load >= 0 in ``loads_bps`` (a partial sum would make the node look smaller
    than it is): :func:`tomogravity` fits those to the link loads. So a network whose
    edge links are labelled router by router is helped from the first one, and a
    silent interface costs its router's measurement only. A direction whose measured
    totals are 0 at every node is not measured either: it holds no prior to take.

    Parameters
    ----------
    topology : Topology
        Gives the nodes and their order.
    edges : sequence of EdgeLink
        Each at a node of ``topology`` (:attr:`network.records.TopologyBuild.edges`).
    loads_bps : mapping of str to float
        Load of each edge link over one step, bit/s.

    Returns
    -------
    (out_bps, in_bps) or None
        ``(N,)`` each, bit/s, NaN where not measured; None when nothing is measured.

    Raises
    ------
    ValueError
        An edge link at a node the topology does not have.

    Examples
    --------
    >>> from network.records import build_topology
    >>> built = build_topology([
    ...     {"name": "a>b"}, {"name": "b>a"}, {"name": "b>c"}, {"name": "c>b"},
    ...     {"name": "x>a", "labels": {"edge": "ingress"}},
    ...     {"name": "b>y", "labels": {"edge": "egress"}},
    ...     {"name": "z>b", "labels": {"edge": "ingress"}},
    ... ])
    >>> out, inn = edge_totals(built.topology, built.edges, {"x>a": 3e9, "b>y": 2e9})
    >>> out.tolist(), inn.tolist()
    ([3000000000.0, nan, nan], [nan, 2000000000.0, nan])
    >>> edge_totals(built.topology, built.edges, {}) is None
    True
    """
    where = {n: i for i, n in enumerate(topology.nodes)}
    out, inn = np.zeros(len(where)), np.zeros(len(where))
    seen_out, seen_in = np.zeros(len(where), bool), np.zeros(len(where), bool)
    for e in edges:
        if e.node not in where:
            raise ValueError(f"edge link {e.name!r} is at {e.node!r}, not a node of the topology")
        value = loads_bps.get(e.name)
        ok = value is not None and bool(np.isfinite(value)) and value >= 0
        i = where[e.node]
        total, seen = (out, seen_out) if e.direction == "ingress" else (inn, seen_in)
        seen[i] = True
        total[i] += float(value) if ok else math.nan  # type: ignore[arg-type]
    out[~seen_out] = math.nan
    inn[~seen_in] = math.nan
    for total in (out, inn):  # 0 everywhere (a collector writing 0 for lost interfaces)
        if np.nansum(total) <= 0:
            total[:] = math.nan
    if np.isnan(out).all() and np.isnan(inn).all():
        return None
    return out, inn


def _by_node(routing: Routing, weights: np.ndarray, node: np.ndarray) -> sparse.csr_array:
    n_pairs, n_nodes = len(routing.pairs), len(routing.topology.nodes)
    return sparse.csr_array((weights, (np.arange(n_pairs), node)), shape=(n_pairs, n_nodes))


def fit_gravity(
    routing: Routing, link_loads_bps: np.ndarray, *, iterations: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a gravity model ``x[s, t] = a[s] * b[t]`` to one step of link loads.

    The ``a >= 0`` and ``b >= 0`` that minimise ``||R x - y||``: a few rounds of
    alternating non-negative least squares (``scipy.optimize.nnls``, each factor
    with the other fixed) for a start, then a bounded trust-region Gauss-Newton
    solve of the whole bilinear problem (``scipy.optimize.least_squares``,
    ``method="trf"``, with its exact Jacobian) to convergence, or until a round of
    :data:`_FIT_ROUND` evaluations improves the residual by less than
    :data:`_FIT_GAIN` of the loads (a best fit at infinity, which the solve would
    only approach). Alternating least squares alone reaches the same fit but
    converges linearly, in hundreds of rounds; this takes tens of Jacobian
    evaluations.

    Parameters
    ----------
    routing : Routing
    link_loads_bps : numpy.ndarray
        ``(L,)`` load of each link, bit/s.
    iterations : int
        At most this many evaluations of the residual in the trust-region solve
        (at least 1); a solve stopped by it is logged, and its point returned.

    Returns
    -------
    out_bps, in_bps : numpy.ndarray
        ``(N,)`` each, for :func:`gravity`: the fitted model's traffic entering
        and leaving at each node, bit/s.

    Raises
    ------
    ValueError
        ``iterations`` below 1.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    y = np.asarray(link_loads_bps, dtype=float)
    scale = float(np.abs(y).max()) if y.size else 0.0
    n = len(routing.topology.nodes)
    if scale == 0.0:
        return np.zeros(n), np.zeros(n)
    y = y / scale
    moving = (routing.origin != routing.dest) & routing.routable
    s, t = routing.origin, routing.dest
    R = routing.matrix

    def by_origin(b: np.ndarray) -> np.ndarray:  # (L, N): d(R x) / d a
        return (R @ _by_node(routing, b[t] * moving, s)).toarray()

    def by_dest(a: np.ndarray) -> np.ndarray:  # (L, N): d(R x) / d b
        return (R @ _by_node(routing, a[s] * moving, t)).toarray()

    a, b = np.ones(n), np.full(n, 1.0 / n)
    for _ in range(_ALS_START):
        a = nnls(by_origin(b), y)[0]
        b = nnls(by_dest(a), y)[0]
        total = b.sum()
        if total <= 0:
            break
        a, b = a * total, b / total
    else:

        def residual(z: np.ndarray) -> np.ndarray:
            out: np.ndarray = R @ (z[:n][s] * z[n:][t] * moving) - y
            return out

        z, used, size = np.r_[a, b], 0, float(np.linalg.norm(y))
        error = np.linalg.norm(residual(z)) / size
        while used < iterations:
            fit = least_squares(
                residual,
                z,
                jac=lambda z: np.hstack([by_origin(z[n:]), by_dest(z[:n])]),
                bounds=(0.0, np.inf),
                method="trf",
                tr_solver="exact",
                ftol=_FIT_TOL,
                xtol=_FIT_TOL,
                gtol=_FIT_TOL,
                max_nfev=min(_FIT_ROUND, iterations - used),
            )
            z, used, before = fit.x, used + fit.nfev, error
            error = np.linalg.norm(fit.fun) / size
            if fit.status != 0 or before - error < _FIT_GAIN:  # converged, or no gain
                break
        else:  # the fit is usable, not converged
            log.warning("gravity fit stopped after %d evaluations, not converged", used)
        a, b = z[:n], z[n:]
    pairs = a[s] * b[t] * moving
    out = np.bincount(s, weights=pairs, minlength=n) * scale
    inn = np.bincount(t, weights=pairs, minlength=n) * scale
    return out, inn


def _refine_by_links(
    R: sparse.csr_array, y: np.ndarray, g: np.ndarray, w: np.ndarray
) -> np.ndarray | None:
    """The refinement's exact solution from ``(L, L)`` systems, or None if not found.

    Minimises ``c**2 ||R z - y||**2 + ||w (z - g)||**2`` over ``z >= 0`` (``c`` =
    :data:`CONSTRAINT_WEIGHT`). With the pairs of a set ``Z`` held at 0, the others'
    minimiser is ``g + D R' (R D R' + I / c**2)^-1 (y - R g)`` over the free pairs
    (``D = 1 / w**2``; the Woodbury identity: one ``(L, L)`` solve instead of an
    ``(L + P, P)`` least-squares problem). ``Z`` starts empty; free pairs that come
    out negative join it, and pairs of ``Z`` whose gradient is negative (they would
    rise from 0) leave it, until the Karush-Kuhn-Tucker conditions hold: then it is
    the problem's unique minimum (the objective is strictly convex), the one NNLS
    finds. In most steps no pair, or a few, end at 0 and this takes one to a few
    rounds; after :data:`_KKT_ROUNDS`, on a free set seen before (the exchange would
    cycle), or on a network of more than :data:`_DENSE_LINKS` links (the ``(L, L)``
    system is dense), the caller falls back to NNLS.
    """
    if R.shape[0] > _DENSE_LINKS:
        return None
    c2 = CONSTRAINT_WEIGHT**2
    d = 1.0 / w**2
    free = np.ones(len(g), dtype=bool)
    seen: set[bytes] = set()
    eye = np.eye(R.shape[0]) / c2
    for _ in range(_KKT_ROUNDS):
        key = np.packbits(free).tobytes()
        if key in seen:
            return None
        seen.add(key)
        Rf = R[:, np.flatnonzero(free)]
        m = (Rf @ sparse.diags_array(d[free]) @ Rf.T).toarray() + eye
        try:
            lam = linalg.solve(m, y - Rf @ g[free], assume_a="pos")
        except (linalg.LinAlgError, ValueError):
            return None
        z = np.zeros(len(g))
        z[free] = g[free] + d[free] * (Rf.T @ lam)
        if not np.isfinite(z).all():
            return None
        negative = free & (z < 0)
        if negative.any():
            free &= ~negative
            continue
        grad = c2 * (R.T @ (R @ z - y)) + w**2 * (z - g)  # half the gradient
        # 0 on the free pairs but for round-off: ten times that is the tolerance.
        tol = 10.0 * float(np.abs(grad[free]).max(initial=0.0)) + 1e-12
        rising = ~free & (grad < -tol)
        if not rising.any():
            return z
        free |= rising
    return None


def _refine(routing: Routing, y: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, float]:
    """The demands nearest the prior (chi-square) with ``R x = y`` (penalty) and ``x >= 0``."""
    x = prior.copy()
    cols = np.flatnonzero(routing.routable & (routing.origin != routing.dest))
    norm = float(np.linalg.norm(y))
    if norm == 0.0 or len(cols) == 0:
        return np.where(np.isin(np.arange(len(x)), cols), 0.0, x), 0.0
    scale = float(np.abs(y).max())
    g = prior[cols] / scale
    w = 1.0 / np.sqrt(np.maximum(g, _PRIOR_FLOOR * max(g.mean(), 1e-12)))
    R = routing.matrix[:, cols] if len(cols) < len(x) else routing.matrix
    A = sparse.vstack([CONSTRAINT_WEIGHT * R, sparse.diags_array(w)], format="csr")
    b = np.r_[CONSTRAINT_WEIGHT * y / scale, g * w]
    sol = _refine_by_links(R, y / scale, g, w)
    if sol is None and len(cols) <= _DENSE_PAIRS:  # Lawson-Hanson active set: exact
        sol = nnls(A.toarray(), b, maxiter=50 * len(cols))[0]
    elif sol is None:
        sol = lsq_linear(A, b, bounds=(0.0, np.inf), method="trf", lsmr_tol=1e-10).x
    x[cols] = sol * scale
    return x, float(np.linalg.norm(R @ x[cols] - y) / norm)


def _scaled_to_loads(routing: Routing, y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``prior`` times ``c >= 0`` minimising ``||c R prior - y||`` (unchanged if ``R prior``
    is 0 or ``c`` would be 0: no load to scale it to)."""
    routed = routing.matrix @ prior
    norm = float(routed @ routed)
    c = float(routed @ y) / norm if norm > 0 else 0.0
    return prior * c if c > 0 else prior


def tomogravity(
    routing: Routing,
    link_loads_bps: np.ndarray,
    *,
    out_bps: np.ndarray | None = None,
    in_bps: np.ndarray | None = None,
) -> DemandEstimate:
    """Estimate the OD demands that reproduce measured link loads (tomogravity).

    Parameters
    ----------
    routing : Routing
        The routing the loads were measured under.
    link_loads_bps : numpy.ndarray
        ``(L,)`` or ``(T, L)`` measured load of each link, bit/s (finite, >= 0).
    out_bps, in_bps : numpy.ndarray, optional
        ``(N,)`` or ``(T, N)`` traffic entering and leaving the network at each
        node (edge-link measurements, as in the paper, :func:`edge_totals`), NaN
        where not measured; fitted to the link loads by :func:`fit_gravity` when
        not given, where NaN, and in a direction whose measured totals are all 0 (a
        collector that writes 0 when it loses its interfaces: a prior of 0 would hold
        every demand at 0). A prior made from measured totals is scaled by
        the one factor that best fits its routed loads to the link loads (least
        squares): edge links also count the traffic between two customers of the
        same router, which no backbone link carries and the gravity prior of the
        other pairs would otherwise take on.

    Returns
    -------
    DemandEstimate
        Local and unroutable pairs, which no link load sees, keep their prior.

    Raises
    ------
    ValueError
        On a shape that does not match the routing, negative or non-finite
        loads, negative or infinite totals, or only one of ``out_bps`` and
        ``in_bps``.
    """
    y = np.asarray(link_loads_bps, dtype=float)
    n_links = len(routing.topology.links)
    if y.shape[-1:] != (n_links,) or y.ndim > 2:
        raise ValueError(
            f"link_loads_bps has shape {y.shape}; expected ({n_links},) or (T, {n_links})"
        )
    if not np.isfinite(y).all() or (y < 0).any():
        raise ValueError("link_loads_bps must be finite and >= 0")
    if (out_bps is None) != (in_bps is None):
        raise ValueError("give both out_bps and in_bps, or neither")
    steps = np.atleast_2d(y)
    per_node = (len(steps), len(routing.topology.nodes))
    outs = None if out_bps is None else np.broadcast_to(out_bps, per_node)
    ins = None if in_bps is None else np.broadcast_to(in_bps, per_node)
    est, prior, resid = [], [], []
    for k, yk in enumerate(steps):
        if outs is None or ins is None:
            o, i = fit_gravity(routing, yk)
        else:
            o, i = np.array(outs[k], dtype=float), np.array(ins[k], dtype=float)
            for total in (o, i):  # nothing measured enters (leaves) anywhere: say nothing
                if np.nansum(total) <= 0:
                    total[:] = np.nan
            if np.isnan(o).any() or np.isnan(i).any():
                fo, fi = fit_gravity(routing, yk)
                o, i = np.where(np.isnan(o), fo, o), np.where(np.isnan(i), fi, i)
        g = gravity(routing, o, i)
        if outs is not None:
            g = _scaled_to_loads(routing, yk, g)
        x, r = _refine(routing, yk, g)
        est.append(x)
        prior.append(g)
        resid.append(r)
    shape = slice(None) if y.ndim == 2 else 0
    return DemandEstimate(np.array(est)[shape], np.array(prior)[shape], np.array(resid)[shape])
