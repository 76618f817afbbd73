"""What-if over a forecast horizon: the loads every link will carry if some links fail.

Planning tools answer "what if this link fails" from a plan file (Cisco Crosswork
Planning's failure analysis after its demand deduction; Juniper NorthStar Planner's
failure simulation). Here the loads are the forecasts of every link over the next
``T`` steps, and the answer is three steps:

1. :func:`estimate_demands`: the origin-destination (OD) demands of every horizon
   step whose routing reproduces the forecast loads (network tomography). The
   step with the largest total load (the reference) is estimated by tomogravity
   (Zhang, Roughan, Duffield and Greenberg, ACM SIGMETRICS 2003;
   :func:`network.demand.tomogravity`); every other step ``t`` takes that
   estimate ``x0`` as its prior and moves it, by the paper's weighted
   least-squares step in closed form, just enough to reproduce its loads::

       x_t = x0 + D R^T (R D R^T)^+ (y_t - R x0),    D = diag(x0),

   clipped at 0 (``R`` the routing matrix of the measured links, ``D`` the
   chi-square weights of the paper: large demands move more than small ones).
   One tomogravity and one ``L x L`` pseudo-inverse serve every step, so the
   horizon costs little more than a step; the relative error of the estimate in
   reproducing the loads is reported (:attr:`Demands.fit_error`). Given an
   earlier estimate as ``prior_bps`` (the last set of forecasts'), no tomogravity
   runs at all: the demands are tracked from one set of forecasts to the next.
2. :func:`what_if`: those demands routed with the failed links down. A link's
   predicted load is its forecast plus the change the re-route makes,
   ``y + (R' - R) x``, so a link no moved demand crosses keeps its forecast
   exactly (the estimate's fit error is not passed on as a change), and the
   demand left without a path is reported, per step and per pair.
3. :func:`horizon_scan`: :func:`what_if` for every single failure (each cable:
   a link with its reverse, :meth:`network.topology.Topology.duplex_groups`),
   with the worst utilisation each causes within the horizon, where and when.

A link with no forecast, and a link that is down while the forecast is made,
measures nothing: its row is left out of the estimation, and its baseline is
the load the estimated demands put on it.

Examples
--------
>>> from network.routing import route
>>> from network.topology import Link, Topology
>>> tri = Topology(("a", "b", "c"), tuple(
...     Link(s, d, capacity_bps=1e9) for s, d in ["ab", "ba", "bc", "cb", "ca", "ac"]))
>>> r = route(tri, metric="hops")
>>> y = r.loads(np.array([[1e8] * 6, [2e8] * 6]))  # (T, L): 100 then 200 Mbit/s a pair
>>> est = estimate_demands(r, y)
>>> out = what_if(r, est.demands_bps, y, ["a>b"])
>>> [round(float(v) / 1e6) for v in out.loads_bps[:, tri.link_index("a>c")]]
[200, 400]
>>> scan = horizon_scan(r, est.demands_bps, y)
>>> [round(float(u), 2) for u in scan.worst_utilisation]
[0.4, 0.4, 0.4]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from network.demand import tomogravity
from network.paths import columns
from network.reroute import worst_first
from network.routing import Routing

__all__ = ["Demands", "HorizonScan", "WhatIf", "estimate_demands", "horizon_scan", "what_if"]

#: Demands are floored at this fraction of their mean in the weights ``D``, so that a
#: pair estimated at 0 in the reference step can still take traffic at another step.
_WEIGHT_FLOOR = 1e-3
#: A step whose loads are met within this relative error is not solved again ...
_MISFIT = 1e-3
#: ... else at most this many more times, the pairs clipped at 0 held there.
_ROUNDS = 5


@dataclass(frozen=True)
class Demands:
    """OD demands estimated over a horizon.

    Attributes
    ----------
    demands_bps : numpy.ndarray
        ``(T, P)`` demand of each of the routing's pairs at each step, bit/s, >= 0;
        0 for pairs without a path under the routing (no link sees them).
    routed_bps : numpy.ndarray
        ``(T, L)`` the load those demands put on each link, bit/s.
    measured : numpy.ndarray
        ``(L,)`` bool: the links whose loads the estimate was fitted to.
    fit_error : float
        ``||R x - y|| / ||y||`` over the measured links and all steps (Frobenius
        norms): how far the demands are from reproducing the loads; 0 when exact.
    reference_step : int
        The step estimated by tomogravity (the largest total load); -1 when every
        step started from a given prior.
    """

    demands_bps: np.ndarray
    routed_bps: np.ndarray
    measured: np.ndarray
    fit_error: float
    reference_step: int


def _loads_2d(routing: Routing, loads_bps: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    y = np.asarray(loads_bps, dtype=float)
    n_links = len(routing.topology.links)
    if y.ndim != 2 or y.shape[1] != n_links or y.shape[0] == 0:
        raise ValueError(f"loads_bps has shape {y.shape}; expected (T, {n_links}), T >= 1")
    if np.isinf(y).any() or (y < 0).any():
        raise ValueError("loads_bps must be >= 0 and finite (NaN: no forecast)")
    return y


def estimate_demands(
    routing: Routing,
    loads_bps: np.ndarray | Sequence[Sequence[float]],
    *,
    prior_bps: np.ndarray | None = None,
    totals_bps: tuple[np.ndarray, np.ndarray] | None = None,
) -> Demands:
    """The OD demands of every step that reproduce the link loads (see the module).

    Parameters
    ----------
    routing : Routing
        The routing in force (links already down are down in it).
    loads_bps : array_like
        ``(T, L)`` forecast load of each link at each step, bit/s, >= 0; a link
        with NaN at any step, or down in ``routing``, is not used to fit.
    prior_bps : numpy.ndarray, optional
        ``(P,)`` demands to start every step from instead of a tomogravity estimate
        of the reference step: an earlier estimate of the same network (tracking
        the demands from one set of forecasts to the next, as a temporal prior
        does in Soule et al., "Traffic matrix tracking using Kalman filters",
        SIGMETRICS PER 2005). Check :attr:`Demands.fit_error` and estimate afresh
        when it grows.
    totals_bps : (numpy.ndarray, numpy.ndarray), optional
        ``(out, in)``, ``(T, N)`` each, bit/s: the traffic entering and leaving the
        network at each node at each step (edge links,
        :func:`network.demand.edge_totals`, NaN where not measured): the node totals
        of the reference step's tomogravity (:func:`network.demand.tomogravity`:
        fitted to its loads where NaN, the prior from them scaled to the loads);
        fitted when not given. Unused with ``prior_bps``.

    Returns
    -------
    Demands

    Raises
    ------
    ValueError
        If ``loads_bps`` is not ``(T, L)`` or holds a negative or infinite value, or
        ``prior_bps`` is not ``(P,)`` finite and >= 0, or ``totals_bps`` not ``(T, N)``.
    """
    y = _loads_2d(routing, loads_bps)
    if totals_bps is not None:
        shape = (len(y), len(routing.topology.nodes))
        if any(np.shape(t) != shape for t in totals_bps):
            raise ValueError(f"totals_bps must be two arrays of shape {shape}")
    measured = np.isfinite(y).all(axis=0) & routing.alive
    ym = np.where(measured, y, 0.0)  # a row of zeros and a load of 0 constrain nothing
    keep = sparse.diags_array(measured.astype(float))
    fitted = replace(routing, matrix=sparse.csr_array(keep @ routing.matrix))
    ref = int(np.argmax(ym.sum(axis=1)))
    if prior_bps is not None:
        x0 = np.asarray(prior_bps, dtype=float)
        if x0.shape != (len(routing.pairs),) or not np.isfinite(x0).all() or (x0 < 0).any():
            raise ValueError(f"prior_bps must be ({len(routing.pairs)},), finite and >= 0")
        ref = -1
    elif ym[ref].any():
        out, inn = (None, None) if totals_bps is None else (t[ref] for t in totals_bps)
        x0 = tomogravity(fitted, ym[ref], out_bps=out, in_bps=inn).demands_bps
    else:  # no load measured at all (or no link): no demand seen
        x0 = np.zeros(len(routing.pairs))
    x0 = np.where(routing.routable, x0, 0.0)  # unseen by any link: nothing to say of them
    rows = np.flatnonzero(measured)
    R = sparse.csr_array(routing.matrix[rows])
    weight = np.maximum(x0, _WEIGHT_FLOOR * max(float(x0.mean()) if x0.size else 0.0, 1e-300))
    weight[~routing.routable] = 0.0
    RD = R @ sparse.diags_array(weight)
    gap = ym[:, rows] - (R @ x0)[None, :]  # (T, Lm)
    x = np.repeat(x0[None, :], len(y), axis=0)
    if len(rows):
        # (Lm, T); directions the loads barely fix (rcond) are not followed
        z = np.linalg.pinv((RD @ R.T).toarray(), rcond=1e-10, hermitian=True) @ gap.T
        x = np.maximum(x + (RD.T @ z).T, 0.0)
        for t in range(len(x)):
            x[t] = _reclip(R, weight, x[t], ym[t, rows])
    if ref >= 0:
        x[ref] = x0
    x[:, ~routing.routable] = 0.0
    routed = routing.loads(x)
    norm = float(np.linalg.norm(ym[:, rows]))
    err = float(np.linalg.norm(routed[:, rows] - ym[:, rows]) / norm) if norm > 0 else 0.0
    return Demands(x, routed, measured, err, ref)


def _reclip(R: sparse.csr_array, weight: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where clipping at 0 left the loads unmet, the same step again with the clipped
    pairs held at 0 (their weight 0), up to :data:`_ROUNDS` times (the paper's
    iterate-and-clip for non-negativity)."""
    norm = float(np.linalg.norm(y))
    w = weight.copy()
    for _ in range(_ROUNDS):
        gap = y - R @ x
        if float(np.linalg.norm(gap)) <= _MISFIT * norm:
            break
        w[x <= 0] = 0.0
        RD = R @ sparse.diags_array(w)
        z = np.linalg.pinv((RD @ R.T).toarray(), rcond=1e-10, hermitian=True) @ gap
        x = np.maximum(x + RD.T @ z, 0.0)
    return x


@dataclass(frozen=True)
class WhatIf:
    """Every link's load over the horizon with some links failed.

    Attributes
    ----------
    routing : Routing
        The routing with the failed links (and those already down) down.
    baseline_bps : numpy.ndarray
        ``(T, L)`` load as forecast, bit/s.
    loads_bps : numpy.ndarray
        ``(T, L)`` load with the links failed, bit/s, >= 0 (0 on links down).
    unroutable_bps : numpy.ndarray
        ``(T,)`` demand that had a path and has none with the links failed, bit/s.
    unroutable_pairs : tuple of (str, str, float)
        Those pairs, ``(origin, destination, peak demand over the horizon in bit/s)``,
        largest first; pairs with no demand left out.
    """

    routing: Routing
    baseline_bps: np.ndarray
    loads_bps: np.ndarray
    unroutable_bps: np.ndarray
    unroutable_pairs: tuple[tuple[str, str, float], ...]

    def utilisation(self, capacities_bps: np.ndarray | None = None) -> np.ndarray:
        """``(T, L)`` load / capacity (1.0 = full); NaN where the capacity is
        unknown or the link is down."""
        cap = self.routing.topology.capacities_bps if capacities_bps is None else capacities_bps
        return _utilisation(self.loads_bps, np.asarray(cap, float), self.routing.alive)


def _utilisation(loads: np.ndarray, cap: np.ndarray, alive: np.ndarray) -> np.ndarray:
    ok = np.isfinite(cap) & (cap > 0) & alive
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, loads / np.where(ok, cap, 1.0), np.nan)


def _baseline(demands: np.ndarray, routing: Routing, loads: np.ndarray) -> np.ndarray:
    """The forecast where there is one, else the estimate's routed load."""
    routed = routing.loads(demands)
    return np.where(np.isfinite(loads).all(axis=0), loads, routed)


def _change(before: Routing, after: Routing, demands: np.ndarray) -> np.ndarray:
    """``(T, L)`` ``(R' - R) x``: exactly 0 on a link no moved demand crosses."""
    return np.asarray((after.matrix - before.matrix) @ demands.T).T


def what_if(
    routing: Routing,
    demands_bps: np.ndarray,
    loads_bps: np.ndarray | Sequence[Sequence[float]],
    failed: Iterable[int | str],
) -> WhatIf:
    """Route the demands with ``failed`` down and predict every link's load.

    Parameters
    ----------
    routing : Routing
        The routing in force (as given to :func:`estimate_demands`).
    demands_bps : numpy.ndarray
        ``(T, P)`` demands of the routing's pairs, bit/s (:attr:`Demands.demands_bps`).
    loads_bps : array_like
        ``(T, L)`` forecast loads, bit/s (NaN: no forecast; the demands' routed
        load is the baseline there).
    failed : iterable of int or str
        Links that go down (indices or names; both directions for a cable).

    Returns
    -------
    WhatIf
        Loads are ``baseline + (R' - R) x``, floored at 0, and 0 on links down.

    Raises
    ------
    ValueError
        If a link is unknown, or the shapes do not match the routing.
    """
    y = _loads_2d(routing, loads_bps)
    x = np.asarray(demands_bps, dtype=float)
    if x.shape != (y.shape[0], len(routing.pairs)):
        raise ValueError(
            f"demands_bps has shape {x.shape}; expected {(y.shape[0], len(routing.pairs))}"
        )
    after = routing.fail(failed)
    base = _baseline(x, routing, y)
    loads = np.maximum(base + _change(routing, after, x), 0.0)
    loads[:, ~after.alive] = 0.0
    lost = np.flatnonzero(routing.routable & ~after.routable)
    peak = x[:, lost].max(axis=0) if len(lost) else np.zeros(0)
    pairs = tuple(
        (*routing.pairs[p], float(v))
        for p, v in sorted(zip(lost.tolist(), peak.tolist(), strict=True), key=lambda e: -e[1])
        if v > 0
    )
    return WhatIf(after, base, loads, x[:, lost].sum(axis=1), pairs)


@dataclass(frozen=True)
class HorizonScan:
    """Each single failure and the worst it does within the horizon.

    Attributes
    ----------
    units : tuple of tuple of int
        The links of each failure (``U`` of them).
    worst_utilisation : numpy.ndarray
        ``(U,)`` the highest utilisation of a surviving link at any step (1.0 = full),
        NaN when no surviving link has a known capacity.
    worst_link : numpy.ndarray
        ``(U,)`` index of that link, -1 when NaN.
    worst_step : numpy.ndarray
        ``(U,)`` the step (0-based) it peaks at, -1 when NaN.
    peak_utilisation : numpy.ndarray
        ``(U, L)`` each link's highest utilisation over the horizon, NaN where down
        or of unknown capacity.
    unroutable_bps : numpy.ndarray
        ``(U,)`` the most demand left without a path at any step, bit/s.
    """

    units: tuple[tuple[int, ...], ...]
    worst_utilisation: np.ndarray
    worst_link: np.ndarray
    worst_step: np.ndarray
    peak_utilisation: np.ndarray
    unroutable_bps: np.ndarray

    def ranking(self) -> np.ndarray:
        """Indices of the failures, worst first: :func:`network.reroute.worst_first`."""
        return worst_first(self.worst_utilisation, self.unroutable_bps)


def horizon_scan(
    routing: Routing,
    demands_bps: np.ndarray,
    loads_bps: np.ndarray | Sequence[Sequence[float]],
    *,
    units: Iterable[Iterable[int | str]] | None = None,
    capacities_bps: np.ndarray | Sequence[float] | None = None,
) -> HorizonScan:
    """:func:`what_if` of every single failure, its worst utilisation over the horizon.

    Parameters
    ----------
    routing, demands_bps, loads_bps
        As for :func:`what_if`.
    units : iterable of iterable of int or str, optional
        The failures to try; every cable (link and reverse) not already down by default.
    capacities_bps : array_like, optional
        ``(L,)`` capacities (NaN: unknown); the topology's by default.

    Returns
    -------
    HorizonScan

    Notes
    -----
    Each failure re-routes only the pairs whose path crossed it (as
    :meth:`network.routing.Routing.fail` and :func:`network.reroute.n1_scan` do:
    one shortest-path tree per origin of such a pair), and the change of every
    step's loads is one sparse product over those pairs.
    """
    topo = routing.topology
    y = _loads_2d(routing, loads_bps)
    x = np.asarray(demands_bps, dtype=float)
    if x.shape != (y.shape[0], len(routing.pairs)):
        raise ValueError(
            f"demands_bps has shape {x.shape}; expected {(y.shape[0], len(routing.pairs))}"
        )
    groups: list[tuple[int | str, ...]] = (
        [u for u in topo.duplex_groups() if not set(u) <= routing.failed]
        if units is None
        else [tuple(u) for u in units]
    )
    unit_list = tuple(tuple(sorted({topo.link_index(i) for i in u})) for u in groups)
    cap = topo.capacities_bps if capacities_bps is None else np.asarray(capacities_bps, float)
    if cap.shape != (len(topo.links),):
        raise ValueError(f"capacities_bps has shape {cap.shape}; expected ({len(topo.links)},)")
    base = _baseline(x, routing, y)
    n_units, n_links = len(unit_list), len(topo.links)
    peak = np.full((n_units, n_links), np.nan)
    worst = np.full(n_units, np.nan)
    worst_link = np.full(n_units, -1, dtype=np.int64)
    worst_step = np.full(n_units, -1, dtype=np.int64)
    unroutable = np.zeros(n_units)
    by_pair = routing.matrix.tocsc()
    for k, unit in enumerate(unit_list):
        # As Routing.fail, without building the whole matrix: only the pairs that
        # crossed the unit move, from their old columns to their new paths.
        alive = routing.alive
        alive[list(unit)] = False
        hit = routing.affected(set(unit) - routing.failed)
        rows, cols, vals, ok = columns(
            routing.graph, alive, routing.origin[hit], routing.dest[hit], ecmp=routing.ecmp
        )
        moved = x[:, hit]
        new = sparse.csr_array((vals, (rows, cols)), shape=(n_links, len(hit))) @ moved.T
        loads = np.maximum(base + (new - by_pair[:, hit] @ moved.T).T, 0.0)
        util = _utilisation(loads, cap, alive)
        unroutable[k] = float(moved[:, ~ok].sum(axis=1).max()) if (~ok).any() else 0.0
        if np.isnan(util).all():
            continue
        peak[k] = np.nanmax(np.where(np.isnan(util), -np.inf, util), axis=0)
        peak[k][np.isneginf(peak[k])] = np.nan
        t, link = np.unravel_index(int(np.nanargmax(util)), util.shape)
        worst[k], worst_link[k], worst_step[k] = util[t, link], link, t
    return HorizonScan(unit_list, worst, worst_link, worst_step, peak, unroutable)
