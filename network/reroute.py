"""Re-route prediction: the loads surviving links will carry once failed links are down.

Given the demands of the OD pairs (measured, or estimated from link loads by
:func:`network.demand.tomogravity`) and a set of failed links, the routing
protocol will send every pair that crossed a failed link over its next shortest
path; :func:`reroute` routes the demands that way and gives each link's new
load, and the demand that has no path left. :func:`n1_scan` does it for every
single failure of a network (every cable, both directions at once, by default)
and reports, for each, the worst link utilisation and where.

Both re-route only the pairs whose path crossed a failed link (see
:meth:`network.routing.Routing.fail`): the other pairs keep their paths, so an
N-1 scan costs a few shortest-path trees per failure, not a full routing.

Examples
--------
>>> from network.routing import route
>>> from network.topology import Link, Topology
>>> tri = Topology(("a", "b", "c"), tuple(
...     Link(s, d, capacity_bps=1e9) for s, d in ["ab", "ba", "bc", "cb", "ca", "ac"]))
>>> r = route(tri, metric="hops")
>>> demands = [1e8] * len(r.pairs)  # 100 Mbit/s between every two nodes
>>> out = reroute(r, demands, ["a>b", "b>a"])
>>> float(out.loads_bps[tri.link_index("a>c")]), float(out.loads_bps[tri.link_index("a>b")])
(200000000.0, 0.0)
>>> scan = n1_scan(r, demands)
>>> [round(float(u), 2) for u in scan.worst_utilization]
[0.2, 0.2, 0.2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse

from network.demand import tomogravity
from network.paths import columns, ecmp_loads
from network.routing import Routing

__all__ = [
    "FailureShift",
    "N1Scan",
    "Reroute",
    "SHIFT_SMOOTHING_SECONDS",
    "failure_shift",
    "n1_scan",
    "reference_loads",
    "reroute",
    "scale_shift",
    "worst_first",
]


#: Time constant of the ratio by which a failure's shift follows the traffic, seconds
#: (:func:`scale_shift`): the hour the daily cycle is resolved in, not 5-minute noise.
SHIFT_SMOOTHING_SECONDS = 3600.0


@dataclass(frozen=True)
class Reroute:
    """Loads before and after a failure.

    Attributes
    ----------
    routing : Routing
        The routing with the failed links down.
    before_bps, loads_bps : numpy.ndarray
        ``(L,)`` or ``(T, L)`` load of each link in bit/s under the routing given
        and after the failure (0 on failed links).
    unroutable_bps : numpy.ndarray
        ``()`` or ``(T,)`` demand left without a path after the failure, bit/s.
    """

    routing: Routing
    before_bps: np.ndarray
    loads_bps: np.ndarray
    unroutable_bps: np.ndarray

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the links that are down."""
        names = self.routing.topology.link_names
        return tuple(names[i] for i in sorted(self.routing.failed))


def reroute(
    routing: Routing, demands_bps: np.ndarray | Sequence[float], failed: Iterable[int | str]
) -> Reroute:
    """Route the demands around the failed links and predict every link's load.

    Parameters
    ----------
    routing : Routing
        The routing in force (possibly with links already down).
    demands_bps : array_like
        ``(P,)`` or ``(T, P)`` demand of each of the routing's pairs, bit/s.
    failed : iterable of int or str
        Links that go down (indices or names; give both directions of a cut cable).

    Returns
    -------
    Reroute

    Raises
    ------
    ValueError
        If a link is unknown or the demands do not match the routing's pairs.
    """
    d = np.asarray(demands_bps, dtype=float)
    after = routing.fail(failed)
    return Reroute(after, routing.loads(d), after.loads(d), after.unroutable_bps(d))


def worst_first(worst_utilisation: np.ndarray, unroutable_bps: np.ndarray) -> np.ndarray:
    """Indices of ``U`` failures, worst first: those that leave demand without a path
    before any that do not, the most demand stranded first; then the highest worst
    utilisation (a failure whose surviving links have no known capacity, NaN, last);
    ties in the order given.

    A cut that isolates a site strands its traffic, and the links left carry less, so
    ranking by utilisation alone would put the failure that cuts a site off last.

    Parameters
    ----------
    worst_utilisation : numpy.ndarray
        ``(U,)`` each failure's highest utilisation of a surviving link (1.0 = full).
    unroutable_bps : numpy.ndarray
        ``(U,)`` the demand each failure leaves without a path, bit/s.

    Examples
    --------
    >>> worst_first(np.array([0.9, 0.3, np.nan, 1.2]), np.array([0.0, 9e8, 0.0, 0.0])).tolist()
    [1, 3, 0, 2]
    """
    util = np.where(np.isnan(worst_utilisation), -np.inf, worst_utilisation)
    stranded = np.asarray(unroutable_bps, dtype=float)
    # lexsort: the last key is the first sorted on; negated for descending, stable
    return np.lexsort((-util, -stranded))


@dataclass(frozen=True)
class N1Scan:
    """Every single failure of a network and what it does to the others' loads.

    Attributes
    ----------
    units : tuple of tuple of int
        The links of each failure (``U`` of them).
    link_names : tuple of str
    loads_bps : numpy.ndarray
        ``(U, L)`` load of each link after each failure, bit/s (0 on failed links).
    utilization : numpy.ndarray
        ``(U, L)`` load / capacity (0 to 1 when it fits), NaN where the
        capacity is unknown or the link is down.
    worst_link : numpy.ndarray
        ``(U,)`` index of the most utilised surviving link, -1 if no capacity is known.
    worst_utilization : numpy.ndarray
        ``(U,)`` its utilisation (NaN when -1).
    unroutable_bps : numpy.ndarray
        ``(U,)`` demand left without a path, bit/s.
    """

    units: tuple[tuple[int, ...], ...]
    link_names: tuple[str, ...]
    loads_bps: np.ndarray
    utilization: np.ndarray
    worst_link: np.ndarray
    worst_utilization: np.ndarray
    unroutable_bps: np.ndarray

    def summary(self, top: int | None = None) -> list[dict[str, Any]]:
        """One dict per failure, worst first (:func:`worst_first`): ``failed``,
        ``worst_link``, ``worst_utilization``, ``unroutable_bps``."""
        order = worst_first(self.worst_utilization, self.unroutable_bps)[:top]
        names = self.link_names
        worst = self.worst_utilization
        return [
            {
                "failed": [names[i] for i in self.units[k]],
                "worst_link": None if self.worst_link[k] < 0 else names[self.worst_link[k]],
                "worst_utilization": None if np.isnan(worst[k]) else float(worst[k]),
                "unroutable_bps": float(self.unroutable_bps[k]),
            }
            for k in order
        ]


def n1_scan(
    routing: Routing,
    demands_bps: np.ndarray | Sequence[float],
    *,
    units: Iterable[Iterable[int | str]] | None = None,
    capacities_bps: np.ndarray | Sequence[float] | None = None,
) -> N1Scan:
    """For every single failure, each surviving link's load and the worst utilisation.

    Parameters
    ----------
    routing : Routing
        The routing in force.
    demands_bps : array_like
        ``(P,)`` demand of each pair, bit/s (one step: the current, or a peak).
    units : iterable of iterable of int or str, optional
        The failures to try, each a set of links going down together; every
        cable (each link with its reverse, :meth:`Topology.duplex_groups`) by default.
    capacities_bps : array_like, optional
        ``(L,)`` capacities to judge utilisation by (NaN: unknown); the
        topology's by default.

    Returns
    -------
    N1Scan

    Notes
    -----
    Only the pairs whose path crosses the failed links are re-routed: one
    shortest-path tree per source of such a pair; the load of the others is
    the routing's, less what the moved pairs carried. Under ECMP the moved
    demand's loads come from :func:`network.paths.ecmp_loads` (no matrix
    entries, no trees towards the destinations): a 1,000-link backbone's 500
    cables take a few seconds (``bench/n1_scan.py``).
    """
    topo = routing.topology
    d = np.asarray(demands_bps, dtype=float)
    if d.shape != (len(routing.pairs),):
        raise ValueError(f"demands_bps has shape {d.shape}; expected ({len(routing.pairs)},)")
    groups = topo.duplex_groups() if units is None else units
    unit_list = tuple(tuple(sorted({topo.link_index(x) for x in u})) for u in groups)
    cap = topo.capacities_bps if capacities_bps is None else np.asarray(capacities_bps, float)
    if cap.shape != (len(topo.links),):
        raise ValueError(f"capacities_bps has shape {cap.shape}; expected ({len(topo.links)},)")
    n_links = len(topo.links)
    base = routing.loads(d)
    base_unroutable = float(routing.unroutable_bps(d))
    by_pair = routing.matrix.tocsc()
    loads = np.empty((len(unit_list), n_links))
    unroutable = np.empty(len(unit_list))
    up = routing.alive
    for k, unit in enumerate(unit_list):
        alive = up.copy()
        alive[list(unit)] = False
        hit = routing.affected(set(unit) - routing.failed)
        moved = d[hit]
        origin, dest = routing.origin[hit], routing.dest[hit]
        if routing.ecmp:  # the loads alone, without the moved pairs' matrix entries
            new, ok = ecmp_loads(routing.graph, alive, origin, dest, moved)
        else:
            rows, cols, vals, ok = columns(routing.graph, alive, origin, dest, ecmp=False)
            new = np.bincount(rows, weights=vals * moved[cols], minlength=n_links)
        row = base - by_pair[:, hit] @ moved + new
        row[~alive] = 0.0
        loads[k] = np.maximum(row, 0.0)  # round-off of the subtraction, never a real deficit
        unroutable[k] = base_unroutable + float(moved[~ok].sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(np.isfinite(cap) & (cap > 0), loads / cap, np.nan)
    for k, unit in enumerate(unit_list):
        util[k, list(unit)] = np.nan
    util[:, list(routing.failed)] = np.nan
    known = ~np.isnan(util).all(axis=1)
    worst = np.full(len(unit_list), -1, dtype=np.int64)
    worst[known] = np.nanargmax(util[known], axis=1)
    worst_util = np.where(known, util[np.arange(len(unit_list)), np.maximum(worst, 0)], np.nan)
    return N1Scan(unit_list, topo.link_names, loads, util, worst, worst_util, unroutable)


@dataclass(frozen=True)
class FailureShift:
    """What a failure does to every link's load, from one step of measured loads.

    Attributes
    ----------
    link_names : tuple of str
        The topology's links, in the order of the arrays.
    shift_bps : numpy.ndarray
        ``(L,)`` bit/s: the load each link carries with the failed links down minus
        its load with every link up, both from the same estimated demands (on a
        failed link, minus its whole load).
    down : numpy.ndarray
        ``(L,)`` bool, True for the failed links.
    unroutable_bps : float
        Estimated demand that had a path with every link up and has none with the
        failed links down, bit/s (it leaves the network: counted in no link's load).
    fit_error : float
        ``||R x - y|| / ||y||`` over the measured links: how far the estimated
        demands ``x`` are from reproducing the measured loads ``y`` (tomogravity's
        residual; 0 for consistent loads).
    demands_bps : numpy.ndarray
        ``(P,)`` the estimated demand of each of the routing's pairs, bit/s.
    totals_bps : tuple of numpy.ndarray
        ``(out, in)``, ``(N,)`` each: the estimated traffic entering and leaving the
        network at each node, bit/s (the next step's gravity prior, see
        :func:`failure_shift`'s ``totals_bps``).
    measured_shift_bps : numpy.ndarray
        ``(L,)`` bit/s: the same demands' load with the failed links down minus their
        load under the routing the loads were measured with (``measured_failed``
        down). Equal to ``shift_bps`` for loads measured before the failure; 0 where
        the measured routing had already moved the traffic. The measured loads plus
        this are what the estimate predicts the same step would have carried with
        every failed link down: the reference of :func:`scale_shift`.
    """

    link_names: tuple[str, ...]
    shift_bps: np.ndarray
    down: np.ndarray
    unroutable_bps: float
    fit_error: float
    demands_bps: np.ndarray
    totals_bps: tuple[np.ndarray, np.ndarray]
    measured_shift_bps: np.ndarray

    def for_links(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``shift_bps`` and ``down`` in the order of ``names``: ``(n,)`` each.

        A name the topology does not hold (a link that could not be placed) gets a
        shift of 0 and is not down: nothing is known of the traffic it carries.
        """
        return self.on_links(self.shift_bps, names), self.on_links(self.down, names)

    @cached_property
    def _index(self) -> dict[str, int]:
        """Link name -> its position in ``link_names`` (built once per estimate)."""
        return {n: i for i, n in enumerate(self.link_names)}

    def on_links(self, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``values``, ``(L,)`` in the topology's link order, in the order of ``names``:
        ``(n,)``, 0 (False) for a name the topology does not hold."""
        index = self._index
        at = np.array([index.get(n, -1) for n in names], dtype=np.int64)
        known = at >= 0
        out = np.zeros(len(at), dtype=np.asarray(values).dtype)
        out[known] = values[at[known]]
        return out


def failure_shift(
    routing: Routing,
    loads_bps: np.ndarray | Sequence[float],
    failed: Iterable[int | str],
    *,
    measured_failed: Iterable[int | str] = (),
    totals_bps: tuple[np.ndarray, np.ndarray] | None = None,
) -> FailureShift:
    """Predict how a failure shifts every link's load, from one step of link loads.

    The origin-destination demands are estimated from the measured loads by
    tomogravity (Zhang, Roughan, Duffield and Greenberg, "Fast accurate computation
    of large-scale IP traffic matrices from link loads", ACM SIGMETRICS 2003;
    :func:`network.demand.tomogravity`) under the routing the loads were measured
    with, then routed twice: with every link up, and with ``failed`` down (the
    pairs that crossed them move to their next shortest paths, as in
    :func:`reroute`). The shift is the difference of the two, so the part of the
    measured loads the estimate does not reproduce (its fit error) is not counted
    as shift: added to a forecast of the loads with every link up, it gives the
    forecast with the failure.

    Parameters
    ----------
    routing : Routing
        The network with every link up (links already down in it stay down in both
        routings).
    loads_bps : array_like
        ``(L,)`` measured load of each of the topology's links over one step, bit/s,
        >= 0; NaN where the link has no measurement.
    failed : iterable of int or str
        The links that are (or go) down, by index or name; give both directions of
        a cut cable.
    measured_failed : iterable of int or str
        The links that were down when ``loads_bps`` was measured (none by default:
        loads from before the failure; ``failed`` for loads measured during it).
    totals_bps : (numpy.ndarray, numpy.ndarray), optional
        ``(out, in)``, ``(N,)`` each, bit/s: the node totals of the gravity prior,
        NaN where not known: the edge links' (:func:`network.demand.edge_totals`),
        or a previous estimate's :attr:`FailureShift.totals_bps` for a caller that
        re-estimates every step (a warm start: the loads still decide the demands,
        the prior only fills what they leave open). By default, and where NaN, they
        are fitted to the loads (:func:`network.demand.fit_gravity`, most of the
        cost); a prior from given totals is scaled to the loads
        (:func:`network.demand.tomogravity`).

    Returns
    -------
    FailureShift

    Raises
    ------
    ValueError
        If a link is unknown, ``loads_bps`` is not ``(L,)``, or a measured load is
        negative or infinite.

    Notes
    -----
    A link with no measurement (NaN), and a link that was down while measured
    (whatever it reported), constrains nothing: its row of the routing matrix is
    left out of the estimation, so the demands come from the other links and the
    gravity prior. It still gets a shift, from the estimated demands that cross it.

    Examples
    --------
    >>> from network.routing import route
    >>> from network.topology import Link, Topology
    >>> tri = Topology(("a", "b", "c"), tuple(
    ...     Link(s, d) for s, d in ["ab", "ba", "bc", "cb", "ca", "ac"]))
    >>> r = route(tri, metric="hops")
    >>> y = r.loads([1e8] * len(r.pairs))  # 100 Mbit/s between every two nodes
    >>> out = failure_shift(r, y, ["a>b"])
    >>> {n: round(float(s) / 1e6) for n, s in zip(out.link_names, out.shift_bps) if s}
    {'a>b': -100, 'c>b': 100, 'a>c': 100}
    >>> float(out.unroutable_bps), bool(out.fit_error < 1e-6)
    (0.0, True)
    """
    topo = routing.topology
    n_links = len(topo.links)
    y = np.asarray(loads_bps, dtype=float)
    if y.shape != (n_links,):
        raise ValueError(f"loads_bps has shape {y.shape}; expected ({n_links},), one per link")
    if np.isinf(y).any() or (y < 0).any():
        raise ValueError("loads_bps must be >= 0 and finite (NaN: not measured)")
    measured_down = list(measured_failed)
    measured = before = routing.fail(measured_down)
    unused = np.isnan(y) | ~before.alive
    if unused.any():
        # A row of zeros and a load of 0: the equation 0 = 0 constrains nothing.
        keep = sparse.diags_array((~unused).astype(float))
        before = replace(before, matrix=sparse.csr_array(keep @ before.matrix))
    out_bps, in_bps = (None, None) if totals_bps is None else totals_bps
    estimate = tomogravity(before, np.where(unused, 0.0, y), out_bps=out_bps, in_bps=in_bps)
    x = estimate.demands_bps
    after = routing.fail(failed)
    down = ~after.alive
    with_failure = after.loads(x)
    shift = with_failure - routing.loads(x)
    measured_shift = shift if not measured_down else with_failure - measured.loads(x)
    lost = routing.routable & ~after.routable
    n = len(topo.nodes)
    moving = routing.origin != routing.dest
    totals = (
        np.bincount(routing.origin, weights=x * moving, minlength=n),
        np.bincount(routing.dest, weights=x * moving, minlength=n),
    )
    return FailureShift(
        topo.link_names,
        shift,
        down,
        float(x[lost].sum()),
        float(estimate.residual),
        x,
        totals,
        measured_shift,
    )


def reference_loads(
    loads_bps: np.ndarray, measured_shift_bps: np.ndarray, down: np.ndarray
) -> np.ndarray:
    """The loads an estimate predicts, with the failure, for the step it was made from:
    ``(n,)`` bit/s, that step's ``loads_bps`` plus :attr:`FailureShift.measured_shift_bps`,
    at least 0, 0 on the ``down`` links, NaN where not measured. The reference of
    :func:`scale_shift`; all three in one link order."""
    return np.where(down, 0.0, np.maximum(loads_bps + measured_shift_bps, 0.0))


def scale_shift(
    shift_bps: np.ndarray,
    reference_bps: np.ndarray,
    down: np.ndarray,
    loads_bps: np.ndarray,
    *,
    ratio: float = 1.0,
    step_seconds: float = SHIFT_SMOOTHING_SECONDS,
) -> tuple[np.ndarray, float]:
    """A failure's shift, estimated once, scaled to the traffic of a later step.

    The shift of a link is the demand that moved onto it, and it follows the
    traffic through the day; re-estimating it from loads measured under the failure
    is worse, since those lack the failed links, the very ones that said how much
    moved (``bench/reroute_shift.py`` measures both). So the shift as estimated is
    scaled by the traffic's total load over the total the estimate predicted for the
    step it was made from, both over the links measured in both and up. That ratio
    follows the daily cycle, not each step's measurement noise: it is smoothed
    exponentially with a time constant of :data:`SHIFT_SMOOTHING_SECONDS`. Taken
    raw, a 5-minute burst on one link moved the shift of every other shifted link
    with it: on the real Abilene traffic the forecasts told of the failure had 0.720x
    persistence's RMSE over the first hour, against 0.625x smoothed (``linkcast
    evaluate``, 10 seeds, drastic failures).

    Parameters
    ----------
    shift_bps : numpy.ndarray
        ``(n,)`` bit/s, the shift as estimated (:attr:`FailureShift.shift_bps`).
    reference_bps : numpy.ndarray
        ``(n,)`` bit/s, the loads the estimate predicts, with the failure, for the
        step it was estimated from: that step's loads plus
        :attr:`FailureShift.measured_shift_bps`, 0 on the failed links; NaN where
        not measured.
    down : numpy.ndarray
        ``(n,)`` bool, the failed links (left out of both totals).
    loads_bps : numpy.ndarray
        ``(n,)`` bit/s, the step measured under the failure; NaN where not measured.
    ratio : float
        The smoothed ratio after the previous step (1 at the estimate).
    step_seconds : float
        The grid step; with the default, the ratio is the step's own, unsmoothed.

    Returns
    -------
    shift_bps, ratio : numpy.ndarray, float
        ``(n,)`` bit/s, the shift scaled by the new smoothed ratio; and that ratio,
        for the next step. A reference total of 0 leaves the ratio as it was.

    Examples
    --------
    >>> shift, ratio = scale_shift(np.array([10.0, -10.0]), np.array([100.0, 50.0]),
    ...                            np.array([False, False]), np.array([75.0, 0.0]))
    >>> shift.tolist(), ratio
    ([5.0, -5.0], 0.5)
    >>> scale_shift(np.array([10.0]), np.array([100.0]), np.array([False]),
    ...             np.array([50.0]), step_seconds=SHIFT_SMOOTHING_SECONDS / 4)[1]
    0.875
    """
    both = np.isfinite(loads_bps) & np.isfinite(reference_bps) & ~down
    then = float(reference_bps[both].sum())
    if then > 0:
        raw = float(loads_bps[both].sum()) / then
        ratio += min(1.0, step_seconds / SHIFT_SMOOTHING_SECONDS) * (raw - ratio)
    return shift_bps * ratio, ratio
