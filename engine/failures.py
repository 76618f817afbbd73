"""Known failures in the live engine: forecasts with the re-route from the first tick.

An operator's ``failure`` event (``POST /api/v1/events``) says which links are down,
until a ``repair`` event of the same link (:func:`db.topology.open_failures`, the
dashboard's rule). While links are down, the engine gives the model suite a
counterfactual shift (:meth:`forecaster.suite.ModelSuite.set_reroute`): the models
work on the loads the network would carry without the failure, and every forecast
comes back with the re-route's predicted shift added (at each horizon scaled by the
model's own forecast of the traffic), 0 on the failed links. The
shift is :func:`network.reroute.failure_shift`: the demands estimated by tomogravity
from one grid step of measured loads, routed with and without the failed links over
the topology linkcast knows (:func:`network.records.build_topology` of the stored
links; shortest paths by IGP metric, else distance, else hops, single path).

When it is applied
    Each bucket is processed with the failures in force at its end (events with
    ``ts`` before it): when the set of down links changes, the shift is computed from
    the bucket before (the last loads measured; its links count as measured down when
    their failure began at or before that bucket's start) and set before the models
    take the bucket. Between buckets, the engine looks at the events at most every
    ``failure_check_seconds`` (1 s; on each grid tick, and on the early-close polls): a failure
    or repair posted since is applied at once from the last bucket's loads, and the
    forecasts issued at the end of that bucket are re-issued with it and stored in
    place of the ones issued without it (the forecast API shows the re-routed loads
    within a second of the event, not one grid step later). A restart restores the
    shift with the checkpoint (it is part of the suite's state) and replays the
    buckets after it by the same rule.

Estimated once, scaled to the traffic while the failure lasts
    The shift of a link is the demand that moved onto it, and it follows the
    traffic (a daily cycle doubles it and halves it again): a shift estimated once
    goes stale. Re-estimating it every bucket from the loads measured during the
    failure is no cure: those loads lack the failed links, the very ones that say
    how much moved. ``bench/reroute_shift.py`` measures, on the simulator's drastic
    failures, the shift in use at issue time against the true shift at the target
    time (``h = 1..12`` steps of 5 min; median relative error on the drastically
    shifted links, first hour / hours 1 to 6): nobel-eu sine traffic, three seeds,
    once 9-10 % / 42-45 %, re-estimated 3-5 % / 4-5 %, scaled 4-6 % / 5 %; real
    Abilene traffic, once 9 % / 13 %, re-estimated 16 % / 19 % (the previous
    estimate's node totals as the prior: 15 % / 22 %, measured before a prior from
    given totals was scaled to the loads), scaled 8 % / 14 %. So the
    shift is estimated once, when the set of failed links changes (from the last
    bucket, the links measured as they were), and each bucket measured wholly under
    the failure scales it by the total load over the total the estimate predicted
    (over the links measured in both): within a point of re-estimating on the sine
    traffic, better on real traffic, and no tomogravity per bucket. That ratio is
    smoothed over the buckets (:func:`network.reroute.scale_shift`, an hour's time
    constant): the shift error above does not show that a raw ratio passes each
    bucket's noise to every shifted link's forecast, which ``linkcast evaluate``
    measured on real Abilene traffic (RMSE over the first hour after the failure
    0.720x persistence's with the raw ratio, 0.625x smoothed; 10 seeds). After
    a restart the reference of the scaling is the last bucket's loads (the shift in
    the checkpoint was scaled to them; when the checkpoint came between the event
    and the first bucket under the failure, the scale is off by the change of the
    network's total link load the re-route makes, until the next change).

Cost
    No failure open: one query on the event table per bucket, and at most one a
    second between buckets; no network model is built. A change of the failed set:
    the stored links are read (the topology and routing are rebuilt only when they
    changed) and one tomogravity runs (bench/reroute_shift.py: about 1 s on the
    demo's nobel-eu, 82 links, on one core; see the README's figures). Each bucket
    under a failure: a few numpy sums.

What is not done on a re-issue between buckets
    The alert policy runs on each bucket's forecasts, not on a re-issue: a capacity
    alert the re-route would cause waits for the next bucket (one grid step).

Cuts read off the loads
    An operator who posts nothing still gets re-routed forecasts after a cable cut:
    each bucket, :class:`CutReader` looks for links of the network model whose both
    directions fell to 0 from a busy load (:class:`network.cuts.CutDetector`) and
    stores a ``failure`` event for them (source ``engine``), and a ``repair`` event
    once they carry traffic again; from there they are failures like an operator's
    (the same query finds them, the dashboard shows them, a failure alert fires). The
    first 0 of a link is held back one bucket as a possible missed read
    (:mod:`engine.quality`), so the cut is read one bucket after it began (two after
    its start on the grid); the event is dated from the bucket after the last one the
    links carried traffic in, and the shift is estimated from that last bucket (the
    later ones already carry the re-route and lack the cut links' loads). A link an
    operator already reported gets no second event, nor does a link under a posted
    ``maintenance`` window (a planned drain); a repair read off the loads closes an
    operator's failure as well, since the link evidently carries traffic. After a
    restart the reader starts from the last bucket's loads, with the cuts it had
    stored events for (still open) down, so that their repair is read.

Why not the detector's re-route event
    The detector's ``reroute`` event (:class:`forecaster.drift.RerouteEvent`,
    raised by :mod:`engine.policy`) names the links whose level shifted together: the
    links that took traffic up as well as those that lost it, and only once the
    shift has been seen for several steps. It does not say which links failed, and
    taking the shifted links for failed ones would zero the forecasts of the links
    that carry more. It is also the engine's own inference from the same loads the
    models already learn from, so feeding it back would add nothing the models do not
    see. Only an operator's event (or a collector that posts one) is used.

Edge links
    Links labelled ``edge`` (``ingress`` or ``egress``: a router's access and
    peering interfaces, :mod:`network.records`) are not routed over; the sums of
    their loads at each router, from the same bucket as the backbone's loads, are
    tomogravity's node totals (:func:`network.demand.edge_totals`), as the paper
    measures them. ``linkcast evaluate`` measured what they buy on the real Abilene
    matrices (``--edge-links``, see the README). A router without edge links in a
    direction, or one of whose edge links has no load in the bucket, has its total
    that way fitted to the backbone's loads (all of them, without edge links), so a
    network labelled router by router, or with one silent interface, loses only those
    routers' measurements (the failure's log line says at how many routers each
    total was measured; the engine warns of edge links without a load).

Links the topology does not hold (no ``A>B`` name nor ``src``/``dst``, a bad label)
cannot be routed: a failure on one is left out (logged), and they get no shift. A
failure of an edge link is left out too (logged): no traffic is routed over it; what
it carried leaves the network, which a re-route does not model.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from db import live
from db.models import EventKind
from db.topology import in_maintenance, link_records, open_failure_sources, open_failures
from network.cuts import CutDetector
from network.demand import edge_totals
from network.records import EdgeLink, build_topology
from network.reroute import FailureShift, failure_shift, reference_loads, scale_shift
from network.routing import Routing, route

log = logging.getLogger(__name__)


class KnownFailures:
    """The failures the suite's shift is made for, the network model, and the shift.

    The topology and its routing are cached and rebuilt when the stored links change
    (compared at each estimate, one query). ``applied`` is the set of link names the
    suite's shift is made for; ``down`` its ``(n_links,)`` mask in the suite's order.
    """

    def __init__(self) -> None:
        self.applied: frozenset[str] = frozenset()
        self.down: np.ndarray | None = None
        # when each applied failure began (name -> since): after a partial repair the
        # repaired links were still down in the bucket the next estimate is made from
        self._since: dict[str, datetime] = {}
        # the smoothed ratio of the traffic to the estimate's (1 at the estimate)
        self._ratio = 1.0
        # the shift as estimated and the loads it predicted for that bucket (suite order,
        # NaN: not measured): each later bucket scales the one by its total over the other
        self._base: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self._key: str | None = None
        self._routing: Routing | None = None
        self._placed: frozenset[str] = frozenset()
        self._edges: tuple[EdgeLink, ...] = ()
        #: where the last estimate's node totals came from, in words (the log line's)
        self.prior = "fitted"
        self._ignored: frozenset[str] = frozenset()
        self.estimates = 0
        self.estimate_seconds = 0.0

    def restore(
        self, names: list[str], shift: np.ndarray | None, down: np.ndarray | None, loads: np.ndarray
    ) -> None:
        """After a restore: the checkpointed shift (``(n,)`` bit/s and mask, suite order;
        None: no failure), the names of the suite's links, and the loads of the bucket it
        was last scaled to (``(n,)``, NaN: not measured), the reference of the next."""
        if shift is None or down is None:
            self.clear()
            return
        self.applied = frozenset(n for n, d in zip(names, down.tolist(), strict=True) if d)
        self.down, self._base, self._reference = down, shift, loads
        self._ratio = 1.0  # the checkpointed shift was scaled to ``loads``

    def clear(self) -> None:
        """A repair: nothing is down."""
        self.applied = frozenset()
        self.down = self._base = self._reference = None
        self._since, self._ratio = {}, 1.0

    def network(self, conn: Connection) -> Routing | None:
        """The routing over the stored links (cached until they change); None if empty."""
        with Session(bind=conn) as session:
            records = link_records(session=session)
        key = json.dumps(records, sort_keys=True, default=str)
        if key != self._key:
            built = build_topology(records, name="linkcast")
            self._placed = frozenset(built.topology.link_names)
            self._edges = built.edges
            self._routing = route(built.topology) if built.topology.links else None
            self._key = key
            if built.unplaced or built.problems:
                log.log(
                    logging.WARNING if built.problems else logging.INFO,
                    "network model: %d links placed, %d not (no nodes: %s; %s)",
                    len(self._placed),
                    len(built.unplaced) + len(built.problems),
                    ", ".join(built.unplaced[:5]),
                    "; ".join(why for _, why in built.problems[:3]),
                )
            lacking = built.topology.links_without_metric
            if lacking and self._routing is not None:
                log.warning(
                    "network model: %d links have no IGP metric while others have one;"
                    " routing goes by %s for all until they do: %s",
                    len(lacking),
                    self._routing.metric,
                    ", ".join(lacking[:5]),
                )
        return self._routing

    def wanted(self, conn: Connection, before: datetime) -> dict[str, datetime]:
        """Open failures before ``before`` (name -> since) on links the network places,
        and the reverse of each (down since the same time): an IGP drops an adjacency
        both ways when one direction fails (IS-IS and OSPF check that each side hears
        the other), so the link back carries nothing either."""
        found = open_failures(conn, before=before)
        if not found and not self.applied:
            return {}  # the usual case: one query, no network model
        routing = self.network(conn)
        if routing is None:
            return {}
        out = {n: ts for n, ts in found.items() if n in self._placed}
        ignored = frozenset(found) - frozenset(out)
        for name, since in list(out.items()):
            for down in routing.topology.with_reverses([name]):
                out.setdefault(down, since)
        if ignored - self._ignored:
            edges = {e.name for e in self._edges}
            log.warning(
                "failure events on links the network model does not route over are left"
                " out (edge links carry no routed traffic; others cannot be placed): %s",
                ", ".join(f"{n} (edge link)" if n in edges else n for n in sorted(ignored)[:10]),
            )
        self._ignored = ignored
        return out

    def estimate(
        self,
        loads_bps: np.ndarray,
        down: dict[str, datetime],
        measured_at: datetime,
        names: list[str],
    ) -> tuple[FailureShift, np.ndarray]:
        """Estimate the shift of the failures ``down`` (name -> since) from one bucket.

        ``loads_bps``: ``(n,)`` mean load of each of the suite's links (named ``names``)
        over the bucket starting at ``measured_at``, bit/s, NaN where not measured; a
        link counts as down while measured when its failure began at or before
        ``measured_at``, and so does a link of the failures applied before that is
        repaired now (a partial repair: its repair is taken to come after the bucket
        the loads are from; after a restart these are not known and count as up).
        Returns the estimate and the shift in the suite's order (``(n,)``, bit/s);
        ``down`` and ``applied`` are updated.
        """
        routing = self._routing
        assert routing is not None
        where = {n: i for i, n in enumerate(names)}
        y = np.array(
            [loads_bps[where[n]] if n in where else np.nan for n in routing.topology.link_names]
        )
        y = np.where(np.isfinite(y), np.maximum(y, 0.0), np.nan)
        repaired = {n: since for n, since in self._since.items() if n not in down}
        measured_down = [n for n, since in {**repaired, **down}.items() if since <= measured_at]
        totals = self._edge_totals(loads_bps, where)
        t0 = time.perf_counter()
        est = failure_shift(
            routing, y, sorted(down), measured_failed=measured_down, totals_bps=totals
        )
        self.estimates += 1
        self.prior = "fitted"
        if totals is not None:
            entering, leaving = np.isfinite(totals[0]), np.isfinite(totals[1])
            self.prior = (
                f"from edge links: ingress at {entering.sum()}, egress at {leaving.sum()}"
                f" of {len(entering)} routers"
                + ("" if entering.all() and leaving.all() else "; fitted at the others")
            )
        self.estimate_seconds += time.perf_counter() - t0
        shift, mask = est.for_links(names)
        self.applied, self.down, self._base = frozenset(down), mask, shift
        self._since, self._ratio = dict(down), 1.0
        # The loads the estimate predicts for this bucket under the failure: what was
        # measured plus what moves between the routing it was measured under and the one
        # with every failure down (the whole shift for loads measured before the failure,
        # nothing for loads measured wholly under it: they carry the re-route already).
        moved = est.on_links(est.measured_shift_bps, names)
        self._reference = reference_loads(loads_bps, moved, mask)
        return est, shift

    def _edge_totals(
        self, loads_bps: np.ndarray, where: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The gravity prior's node totals from the edge links' loads of the bucket
        (:func:`network.demand.edge_totals`: NaN where not measured, fitted), or None
        (all fitted to the loads) when there are no edge links or none has a load."""
        if not self._edges or self._routing is None:
            return None
        loads = {e.name: float(loads_bps[where[e.name]]) for e in self._edges if e.name in where}
        silent = [e for e in self._edges if not np.isfinite(loads.get(e.name, np.nan))]
        if silent:
            log.warning(
                "%d edge links without a load in the bucket (%s): the totals of %s are"
                " fitted to the backbone's loads",
                len(silent),
                ", ".join(e.name for e in silent[:5]),
                ", ".join(sorted({f"{e.node} ({e.direction})" for e in silent})[:10]),
            )
        return edge_totals(self._routing.topology, self._edges, loads)

    def scaled(self, loads_bps: np.ndarray, step_seconds: float) -> np.ndarray | None:
        """The shift after a bucket measured under the failure: the estimate's, times the
        total load over the total the estimate predicted, both over the links measured
        in both and up, that ratio smoothed over the buckets since the estimate (an
        hour's time constant; :func:`network.reroute.scale_shift`, see the module doc).
        Call it once per such bucket. ``loads_bps``: ``(n,)`` bit/s, NaN where not
        measured; ``step_seconds``: the grid step. None when no failure is set."""
        if self._base is None or self._reference is None or self.down is None:
            return None
        n = len(loads_bps)
        if len(self._base) < n:  # links added since: no shift on them
            extra = n - len(self._base)
            self._base = np.r_[self._base, np.zeros(extra)]
            self._reference = np.r_[self._reference, np.full(extra, np.nan)]
            self.down = np.r_[self.down, np.zeros(extra, dtype=bool)]
        shift, self._ratio = scale_shift(
            self._base,
            self._reference,
            self.down,
            loads_bps,
            ratio=self._ratio,
            step_seconds=step_seconds,
        )
        return shift


class CutReader:
    """Cable cuts and repairs read off each bucket's loads, stored as events.

    See "Cuts read off the loads" in the module doc. The detector follows the network
    model of :class:`KnownFailures` (rebuilt, keeping what it knew of each link by
    name, when the suite's links change). ``cuts`` and ``repairs`` count the events
    it stored.
    """

    def __init__(self) -> None:
        self._detector: CutDetector | None = None
        self._names: tuple[str, ...] = ()
        self._at = np.zeros(0, dtype=np.int64)  # topology link -> suite index (-1: none)
        self.cuts = 0
        self.repairs = 0

    def _follow(self, failures: KnownFailures, conn: Connection, names: list[str]) -> None:
        """Follow the network model when the suite's links change (or while there is
        none yet: links placed later, once their nodes are known)."""
        if tuple(names) == self._names and self._detector is not None:
            return
        self._names = tuple(names)
        routing = failures.network(conn)
        if routing is None:
            self._detector = None
            return
        topo = routing.topology
        old = self._detector
        new = CutDetector(topo)
        if old is not None:  # keep what was known of each link still there
            new.carry_over(old)
        where = {n: i for i, n in enumerate(names)}
        self._detector = new
        self._at = np.array([where.get(n, -1) for n in topo.link_names], dtype=np.int64)

    def _in_topology_order(self, loads_bps: np.ndarray) -> np.ndarray:
        """``(n,)`` loads in the suite's order as ``(L,)`` in the detector's topology
        order, NaN on a link the suite does not have."""
        return np.where(self._at >= 0, loads_bps[np.maximum(self._at, 0)], np.nan)

    def restore(
        self,
        conn: Connection,
        failures: KnownFailures,
        names: list[str],
        loads_bps: np.ndarray,
        earlier_bps: np.ndarray,
        before: datetime,
        step: timedelta,
    ) -> None:
        """After a restart: start from the last bucket's loads (``(n,)`` bit/s, suite
        order, NaN: not measured; the bucket ending at ``before``, ``step`` long; and
        ``earlier_bps``, the bucket before it) with the cuts it read before (failures
        open before ``before`` whose event it stored) down, so that their repair is
        read; a link whose first 0 was held back there starts from the bucket before."""
        self._names = ()
        self._follow(failures, conn, names)
        det = self._detector
        if det is None:
            return
        opened = open_failure_sources(conn, before=before)
        mine = sorted(n for n, source in opened.items() if source == "engine")
        down = np.isin(np.asarray(det.topology.link_names), mine)
        last, earlier = self._in_topology_order(loads_bps), self._in_topology_order(earlier_bps)
        det.prime(last, down, before - step, earlier, before - 2 * step)

    def read(
        self,
        conn: Connection,
        failures: KnownFailures,
        names: list[str],
        loads_bps: np.ndarray,
        bucket: datetime,
        step: timedelta,
    ) -> None:
        """Read the bucket starting at ``bucket`` (``loads_bps``: ``(n,)`` bit/s in the
        suite's order, named ``names``, NaN where not measured; ``step``: the grid step)
        and store the events it calls for, in ``conn``'s transaction. A cut is dated
        from the bucket after the last one its links carried traffic in."""
        self._follow(failures, conn, names)
        det = self._detector
        if det is None:
            return
        y = self._in_topology_order(loads_bps)
        y = np.where(np.isfinite(y), np.maximum(y, 0.0), np.nan)
        cut, repaired = det.update(y, at=bucket)
        if not cut and not repaired:
            return
        reported = open_failures(conn, before=bucket + step)
        # a link drained in a posted maintenance window is expected to empty: no failure
        planned = in_maintenance(conn, at=bucket) if cut else set()
        # a link reported down takes its reverse down too (KnownFailures.wanted): that
        # reverse at 0 is no cut of its own, whose event would outlive the report's repair
        held = set(det.topology.with_reverses(reported))
        with Session(bind=conn) as session:
            new = sorted(cut - held - planned)
            det.forget(cut & planned)  # read again once the window is over
            if new:
                # the cut began in the bucket after the last one its links carried in
                # (its first 0 held back there by engine.quality, or not reported)
                last = [det.carried_at(n) for n in new]
                known = [t for t in last if isinstance(t, datetime)]
                since = min(max(known) + step, bucket) if known else bucket
                live.add_event(
                    session,
                    kind=EventKind.FAILURE,
                    links=new,
                    ts=since,
                    source="engine",
                    note="fell to 0 bit/s from a busy load (both directions): read as a cut",
                )
                self.cuts += 1
                log.warning("cut read off the loads: %s down since %s", ", ".join(new), since)
            back = sorted(repaired & reported.keys())
            if back:
                live.add_event(
                    session,
                    kind=EventKind.REPAIR,
                    links=back,
                    ts=bucket,
                    source="engine",
                    note="carries traffic again: read as repaired",
                )
                self.repairs += 1
                log.warning("repair read off the loads: %s up since %s", ", ".join(back), bucket)
            session.flush()
