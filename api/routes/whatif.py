"""What-if and N-1 risk over the forecast horizon (issue 10).

Both read the newest forecast of every link (one model), the topology of the
registered links (``GET /topology``) and the links down now (a failure event with
no repair yet), estimate the origin-destination demands of every horizon step by
tomogravity under the routing in force, and route them with links failed
(:mod:`network.whatif`). The estimate of one set of forecasts is kept (a few sets
per process), so the dashboard's what-if and risk calls within a tick share it, and
the next set's estimate starts from it (tracked, see ``_estimate``): tomogravity runs
for a network this process has not seen, and now and then to re-anchor.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.orm import Session

from api.deps import ReaderDep, SessionDep
from api.errors import AUTH, responses
from api.routes.topology import WITHOUT_METRIC, TopologyProblemPublic
from api.schemas import ErrorPublic, Text
from db.topology import link_records
from db.whatif import Issue, latest_issue, links_down, newest_samples
from network.demand import edge_totals
from network.records import TopologyBuild, build_topology
from network.routing import Routing, route
from network.topology import Topology
from network.whatif import Demands, estimate_demands, horizon_scan, what_if

router = APIRouter(tags=["what-if"])

#: At most this many links failed in one what-if.
MAX_FAILED = 16
#: Demand estimates kept per process (one per set of forecasts, topology and links down).
CACHE_SIZE = 4
#: Tracked estimates (see _estimate) are made afresh after this many issues ...
REFIT_ISSUES = 60
#: ... or when their relative fit error passes this plus twice that of a fresh one.
REFIT_ERROR = 0.01
#: An edge link with no sample in this many steps before the forecasts' issue is silent:
#: its forecast does not count as its router's total (fitted instead).
EDGE_SILENT_STEPS = 2

NO_FORECASTS = 409
NO_FORECASTS_DESCRIPTION = (
    "No forecast of the model stored yet: the engine issues them once links report"
)
#: The highest overload threshold taken, as a fraction of capacity: 10 times the line
#: rate. A larger one is a percentage sent for a fraction (90 for 0.9).
MAX_THRESHOLD = 10.0
INPUT_422 = (
    "A parameter is invalid (`loc` names it), `threshold` is above"
    f" {MAX_THRESHOLD:g} (a percentage sent for a fraction), a link in `fail` is unknown,"
    " or it is not placed in the topology (no `src`/`dst` and no `A>B` name, or a label"
    " that cannot be read): the message names it and what to set"
)

ModelQuery = Annotated[
    Literal["liquid", "incremental", "persistence", "seasonal", "hybrid"],
    Query(description="whose forecasts to use"),
]
ThresholdQuery = Annotated[
    float,
    Query(
        gt=0,
        allow_inf_nan=False,
        description="utilisation (load / capacity, 1.0 = full, not a percentage) above"
        f" which a link counts as overloaded; at most {MAX_THRESHOLD:g}",
        # stated in the document, checked by _fraction for its message (a percentage?)
        json_schema_extra={"maximum": MAX_THRESHOLD},
    ),
]


def _fraction(threshold: float) -> float:
    """``threshold`` if it is a fraction of capacity; a 422 saying so if it reads as a
    percentage."""
    if threshold > MAX_THRESHOLD:
        raise HTTPException(
            422,
            f"threshold {threshold:g} is above {MAX_THRESHOLD:g}: it is a fraction of"
            f" capacity (1.0 = full), not a percentage; for {threshold:g} % send"
            f" {threshold / 100:g}",
        )
    return threshold


FailName = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
DemandPrior = Literal["tracked", "edge_links", "fitted"]
DEMAND_PRIOR = (
    "what the demand estimate started from: tracked (the previous forecasts' demands, see"
    " network/whatif.py), edge_links (tomogravity with node totals from links labelled"
    " edge, fitted at routers without them), fitted (tomogravity, node totals fitted to"
    " the backbone's forecast loads)"
)

PROBLEMS = (
    "links left out of the network model because a field or label of theirs could not"
    " be read (as GET /topology lists them): their forecasts are not in the estimate and"
    " no traffic is routed over them; empty when every link was read"
)

WITHOUT_CAPACITY = (
    "links with no capacity_bps: they have no utilisation, so no failure can be seen to"
    " overload them (set it with POST /links); empty when every link has one"
)


class WhatIfLinkPublic(BaseModel):
    link: str
    src: str
    dst: str
    capacity_bps: float | None = Field(description="line rate, bit/s; null when not set")
    failed: bool = Field(description="failed in this what-if (asked, or the reverse of one)")
    down: bool = Field(description="down now: a failure event and no repair yet")
    forecast: bool = Field(
        description="baseline_bps is the link's forecast; false: the link has no current"
        " forecast and its baseline is the load the estimated demands put on it"
    )
    baseline_bps: list[float] = Field(description="bit/s per horizon step: the forecast as it is")
    load_bps: list[float] = Field(
        description="bit/s per horizon step with the links failed (0 on links down)"
    )
    utilisation: list[float | None] = Field(
        description="load_bps / capacity_bps per step (1.0 = full); null when the capacity"
        " is unknown or the link is down"
    )
    peak_utilisation: float | None = Field(description="the highest of utilisation")
    overloaded: bool = Field(description="peak_utilisation above the threshold")


class UnroutablePairPublic(BaseModel):
    src: str = Field(description="origin node")
    dst: str = Field(description="destination node")
    demand_bps: float = Field(description="estimated demand, bit/s: its peak over the horizon")


class WhatIfPublic(BaseModel):
    failed: list[str] = Field(description="the links asked to fail")
    failed_links: list[str] = Field(
        description="every link failed: those asked and, with cable=true, their reverses"
    )
    already_down: list[str] = Field(
        description="links down now (a failure without repair) and the reverse of each:"
        " an IGP takes a link down both ways"
    )
    metric: Literal["igp", "distance", "hops"] = Field(description="what routing goes by")
    model: str
    threshold: float = Field(description="utilisation above which a link is overloaded")
    issued_at: datetime = Field(description="issue time of the forecasts used (RFC 3339)")
    step_seconds: int = Field(description="seconds between horizon steps")
    times: list[datetime] = Field(description="target time of each horizon step (RFC 3339)")
    links: list[WhatIfLinkPublic]
    overloaded: list[str] = Field(
        description="links with peak utilisation above the threshold, worst first"
    )
    unroutable_bps: list[float] = Field(
        description="bit/s per step: demand that has a path now and none with the links failed"
    )
    unroutable_pairs: list[UnroutablePairPublic] = Field(description="those demands, largest first")
    demand_fit_error: float = Field(
        description="relative error of the estimated demands in reproducing the forecast"
        " loads, ||R x - y|| / ||y|| over every step (0 = exact)"
    )
    demand_prior: DemandPrior = Field(description=DEMAND_PRIOR)
    problems: list[TopologyProblemPublic] = Field(description=PROBLEMS)
    without_metric: list[str] = Field(description=WITHOUT_METRIC)
    without_capacity: list[str] = Field(description=WITHOUT_CAPACITY)


class RiskScenarioPublic(BaseModel):
    failed: list[str] = Field(description="one cable: the link and its reverse where it exists")
    worst_utilisation: float | None = Field(
        description="the highest utilisation (1.0 = full) of a surviving link within the"
        " horizon; null when no surviving link has a capacity"
    )
    worst_link: str | None
    worst_time: datetime | None = Field(description="the horizon step it peaks at (RFC 3339)")
    overloaded: list[str] = Field(description="links above the threshold, worst first")
    unroutable_bps: float = Field(
        description="demand left without a path, bit/s: peak over the horizon"
    )


class RiskPublic(BaseModel):
    issued_at: datetime = Field(description="issue time of the forecasts used (RFC 3339)")
    step_seconds: int = Field(description="seconds between horizon steps")
    metric: Literal["igp", "distance", "hops"] = Field(description="what routing goes by")
    model: str
    threshold: float = Field(description="utilisation above which a link is overloaded")
    already_down: list[str] = Field(
        description="links down now and the reverse of each (an IGP takes a link down both"
        " ways), left down in every scenario"
    )
    scanned: int = Field(description="single failures tried: every cable not down now")
    demand_fit_error: float = Field(
        description="relative error of the estimated demands in reproducing the forecast loads"
    )
    demand_prior: DemandPrior = Field(description=DEMAND_PRIOR)
    problems: list[TopologyProblemPublic] = Field(description=PROBLEMS)
    without_metric: list[str] = Field(description=WITHOUT_METRIC)
    without_capacity: list[str] = Field(description=WITHOUT_CAPACITY)
    scenarios: list[RiskScenarioPublic] = Field(
        description="the worst `limit` failures, worst first: those that leave demand without"
        " a path (most unroutable_bps first), then by worst_utilisation (null last)"
    )


@dataclass(frozen=True)
class _State:
    topology: Topology
    down: list[str]
    routing: Routing
    loads: np.ndarray  # (T, L), NaN: no current forecast
    demands: Demands
    issued_at: datetime
    step_seconds: int
    # (T,) bool: whether the edge links measure some node total at each step; None: none
    edge_steps: np.ndarray | None = None
    problems: tuple[tuple[str | None, str], ...] = ()  # links left out, and why

    @property
    def prior(self) -> Literal["tracked", "edge_links", "fitted"]:
        """What the demand estimate started from (``demand_prior`` in the answers): its
        reference step's totals are the edge links' where they measure any."""
        ref = self.demands.reference_step
        if ref < 0:
            return "tracked"
        return "edge_links" if self.edge_steps is not None and self.edge_steps[ref] else "fitted"

    @property
    def times(self) -> list[datetime]:
        step = timedelta(seconds=self.step_seconds)
        return [self.issued_at + k * step for k in range(self.loads.shape[0])]


@dataclass(frozen=True)
class _Track:
    """The newest estimate of one network (topology and routing), to start the next from."""

    demands: Demands
    issued_at: datetime
    step_seconds: int
    anchor_error: float  # fit error of the last fresh (tomogravity) estimate
    issues: int  # sets of forecasts tracked since it


_cache: OrderedDict[tuple, Demands] = OrderedDict()
_tracks: OrderedDict[tuple, _Track] = OrderedDict()
_cache_lock = threading.Lock()


def _keep(store: OrderedDict, key: tuple, value: object) -> None:
    with _cache_lock:
        store[key] = value
        store.move_to_end(key)
        while len(store) > CACHE_SIZE:
            store.popitem(last=False)


def _estimate(
    routing: Routing,
    loads: np.ndarray,
    issued_at: datetime,
    step_seconds: int,
    totals: tuple[np.ndarray, np.ndarray] | None = None,
) -> Demands:
    """:func:`estimate_demands`, kept for the same network and forecasts, and tracked from
    one issue to the next: the previous issue's demands (at the new issue's first step)
    are the prior, so that tomogravity runs only for a new network, every
    :data:`REFIT_ISSUES` issues, or when the tracked fit error grows past
    :data:`REFIT_ERROR` plus twice that of the last fresh estimate. ``totals``: the edge
    links' node totals (``(T, N)`` each, NaN: fitted), for a fresh estimate; which nodes
    they measure is part of the network, so labelling edge links (or one falling
    silent) starts a new track."""
    measured = (
        None if totals is None else tuple(np.isfinite(t).any(axis=0).tobytes() for t in totals)
    )
    net = (
        routing.topology.links,
        routing.topology.nodes,
        routing.failed,
        routing.weights.tobytes(),
        measured,
    )
    digest = hashlib.sha256(loads.tobytes())
    for t in totals or ():
        digest.update(t.tobytes())
    key = (*net, loads.shape, totals is not None, digest.hexdigest())
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        track = _tracks.get(net)
    demands = None
    if track is not None and track.issues < REFIT_ISSUES and issued_at > track.issued_at:
        shift = int((issued_at - track.issued_at).total_seconds() // max(1, track.step_seconds))
        last = track.demands.demands_bps
        tracked = estimate_demands(routing, loads, prior_bps=last[min(shift, len(last) - 1)])
        if tracked.fit_error <= REFIT_ERROR + 2 * track.anchor_error:
            demands = tracked
            new = _Track(demands, issued_at, step_seconds, track.anchor_error, track.issues + 1)
    if demands is None:
        demands = estimate_demands(routing, loads, totals_bps=totals)
        new = _Track(demands, issued_at, step_seconds, demands.fit_error, 0)
    if track is None or issued_at >= track.issued_at:
        _keep(_tracks, net, new)
    _keep(_cache, key, demands)
    return demands


def _state(session: Session, model: str, names: Sequence[str] = ()) -> _State:
    """The topology, links down, routing, forecasts and demand estimate; ``names`` (links
    to fail) are checked first, so a bad name is a 422 whether or not forecasts exist."""
    records = link_records(session=session)
    built = build_topology(records)
    _check(names, {str(r["name"]) for r in records}, built)
    issue = latest_issue(session=session, model=model)
    if issue is None:
        raise HTTPException(
            NO_FORECASTS,
            f"no forecast of model {model!r} stored yet: the engine issues forecasts once"
            " links report; try again after its first tick",
        )
    topo = built.topology
    # a link down takes its reverse down for routing (an IGP drops the adjacency both ways)
    down = topo.with_reverses(links_down(session=session, now=datetime.now(UTC)))
    in_topo = set(topo.link_names)
    routing = route(topo, failed=[n for n in down if n in in_topo])
    horizon = max((len(v) for v in issue.values_bps.values()), default=0)
    loads = np.full((max(horizon, 1), len(topo.links)), np.nan)
    for i, name in enumerate(topo.link_names):
        values = issue.values_bps.get(name)
        if values is not None:
            loads[: len(values), i] = [np.nan if v is None else v for v in values]
    loads[~np.isfinite(loads)] = np.nan
    loads = np.maximum(loads, 0.0)  # a load is never negative (NaN stays NaN)
    totals = _edge_totals(built, _reporting(session, built, issue), len(loads))
    return _State(
        topology=topo,
        down=down,
        routing=routing,
        loads=loads,
        demands=_estimate(routing, loads, issue.issued_at, issue.step_seconds, totals),
        issued_at=issue.issued_at,
        step_seconds=issue.step_seconds,
        edge_steps=None
        if totals is None
        else (np.isfinite(totals[0]) | np.isfinite(totals[1])).any(axis=1),
        problems=built.problems,
    )


def _reporting(
    session: Session, built: TopologyBuild, issue: Issue
) -> dict[str, list[float | None]]:
    """The issue's forecasts without those of edge links that have stopped reporting:
    the engine carries a silent link's last value forward, which would pass for a
    measurement. Silent: no sample within :data:`EDGE_SILENT_STEPS` steps before the
    issue (the engine's estimate, from one bucket, would miss it too)."""
    if not built.edges:
        return issue.values_bps
    newest = newest_samples(session=session, names=[e.name for e in built.edges])
    since = issue.issued_at - timedelta(seconds=EDGE_SILENT_STEPS * issue.step_seconds)
    silent = {e.name for e in built.edges if newest.get(e.name, since) <= since}
    return {n: v for n, v in issue.values_bps.items() if n not in silent}


def _edge_totals(
    built: TopologyBuild, values_bps: Mapping[str, Sequence[float | None]], steps: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(out, in)``, ``(steps, N)`` each: each router's traffic in and out at each step of
    the forecasts, from its edge links' (:func:`network.demand.edge_totals`; NaN where a
    router has none that way, or one lacks a forecast at that step: fitted to the loads);
    None when no edge link has a forecast."""
    if not built.edges:
        return None
    n = len(built.topology.nodes)
    outs, ins = np.full((steps, n), np.nan), np.full((steps, n), np.nan)
    for t in range(steps):
        at_t = {}
        for e in built.edges:
            values = values_bps.get(e.name)
            value = values[t] if values is not None and t < len(values) else None
            # a forecast a little below 0 is 0, as the backbone's are
            at_t[e.name] = np.nan if value is None else max(float(value), 0.0)
        totals = edge_totals(built.topology, built.edges, at_t)
        if totals is not None:
            outs[t], ins[t] = totals
    if np.isnan(outs).all() and np.isnan(ins).all():
        return None
    return outs, ins


def _check(names: Sequence[str], known: set[str], built: TopologyBuild) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HTTPException(422, f"unknown links: {', '.join(repr(n) for n in unknown)}")
    edges = {e.name: e for e in built.edges}
    for n in names:
        if n in edges:
            raise HTTPException(
                422,
                f"link {n!r} is an {edges[n].direction} edge link of {edges[n].node!r}"
                " (label edge), not a link of the backbone: no traffic is routed over it,"
                " so failing it moves none",
            )
    unplaced, why = built.unplaced, {k: v for k, v in built.problems if k is not None}
    for n in names:
        if n in unplaced:
            raise HTTPException(
                422,
                f"link {n!r} is not placed in the topology: its nodes are unknown; set its"
                " src and dst (POST /api/v1/links) or name it 'A>B'",
            )
        if n in why:
            raise HTTPException(
                422,
                f"link {n!r} is left out of the topology: {why[n]}; fix it with POST /api/v1/links",
            )


def _number(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


@router.get(
    "/whatif",
    response_model=WhatIfPublic,
    responses={
        **responses(*AUTH),
        NO_FORECASTS: {"model": ErrorPublic, "description": NO_FORECASTS_DESCRIPTION},
        422: {"model": ErrorPublic, "description": INPUT_422},
    },
)
def get_whatif(
    session: SessionDep,
    _: ReaderDep,
    fail: Annotated[
        list[FailName],
        Query(
            min_length=1,
            max_length=MAX_FAILED,
            description=f"a link to fail, by name; repeat for more (1 to {MAX_FAILED})",
            examples=[["ATLAng>HSTNng"]],
        ),
    ],
    model: ModelQuery = "hybrid",
    threshold: ThresholdQuery = 1.0,
    cable: Annotated[
        bool,
        Query(
            description="fail each link's reverse too: a cut cable, or any fault an IGP"
            " sees (it drops the adjacency both ways, as a posted failure does here);"
            " false: that direction only, taken out of routing while the reverse still"
            " carries"
        ),
    ] = True,
) -> WhatIfPublic:
    """Every link's load over the forecast horizon if the links in `fail` go down now.

    The newest forecasts of `model` give each link's load per horizon step; the
    origin-destination demands that reproduce them are estimated by tomogravity
    (Zhang et al., SIGMETRICS 2003) under the routing in force (links down now
    excluded), then routed with the asked links down as well. A link's predicted
    load is its forecast plus the change the re-route makes. A failure that leaves
    some demand without a path is answered 200 with that demand in `unroutable_bps`
    and `unroutable_pairs`."""
    threshold = _fraction(threshold)
    names = list(dict.fromkeys(fail))
    state = _state(session, model, names)
    topo = state.topology
    failed = {topo.link_index(n) for n in (topo.with_reverses(names) if cable else names)}
    out = what_if(state.routing, state.demands.demands_bps, state.loads, sorted(failed))
    util = out.utilisation()
    down = state.routing.failed
    links = []
    peaks: list[tuple[float, str]] = []
    for i, lk in enumerate(topo.links):
        col = util[:, i]
        peak = _number(np.nanmax(col)) if not np.isnan(col).all() else None
        over = peak is not None and peak > threshold
        if over:
            peaks.append((peak, lk.name))  # type: ignore[arg-type]
        links.append(
            WhatIfLinkPublic(
                link=lk.name,
                src=lk.src,
                dst=lk.dst,
                capacity_bps=lk.capacity_bps,
                failed=i in failed,
                down=i in down,
                forecast=bool(np.isfinite(state.loads[:, i]).all()),
                baseline_bps=out.baseline_bps[:, i].tolist(),
                load_bps=out.loads_bps[:, i].tolist(),
                utilisation=[_number(u) for u in col],
                peak_utilisation=peak,
                overloaded=over,
            )
        )
    names_out = topo.link_names
    return WhatIfPublic(
        failed=names,
        failed_links=[names_out[i] for i in sorted(failed)],
        already_down=state.down,
        metric=state.routing.metric,  # type: ignore[arg-type]
        model=model,
        threshold=threshold,
        issued_at=state.issued_at,
        step_seconds=state.step_seconds,
        times=state.times,
        links=links,
        overloaded=[n for _, n in sorted(peaks, key=lambda p: -p[0])],
        unroutable_bps=out.unroutable_bps.tolist(),
        unroutable_pairs=[
            UnroutablePairPublic(src=s, dst=d, demand_bps=v) for s, d, v in out.unroutable_pairs
        ],
        demand_fit_error=state.demands.fit_error,
        demand_prior=state.prior,
        problems=[TopologyProblemPublic(link=k, detail=d) for k, d in state.problems],
        without_metric=list(state.topology.links_without_metric),
        without_capacity=[lk.name for lk in state.topology.links if lk.capacity_bps is None],
    )


@router.get(
    "/risk",
    response_model=RiskPublic,
    responses={
        **responses(*AUTH),
        NO_FORECASTS: {"model": ErrorPublic, "description": NO_FORECASTS_DESCRIPTION},
        422: {
            "model": ErrorPublic,
            "description": "A parameter is invalid (`loc` names it), or `threshold` is above"
            f" {MAX_THRESHOLD:g}: a percentage sent for a fraction (the message says so)",
        },
    },
)
def get_risk(
    session: SessionDep,
    _: ReaderDep,
    model: ModelQuery = "hybrid",
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="scenarios returned, worst first")
    ] = 20,
    threshold: ThresholdQuery = 1.0,
) -> RiskPublic:
    """The N-1 scan over the forecast horizon: for every single cable failure (a link
    and its reverse) not down now, the worst utilisation it would cause within the
    horizon, on which link and when, ranked worst first: a failure that leaves demand
    without a path (a site cut off) before any that does not, the most stranded first,
    then by worst utilisation. Demands and re-routing as for `GET /whatif`."""
    threshold = _fraction(threshold)
    state = _state(session, model)
    topo = state.topology
    scan = horizon_scan(state.routing, state.demands.demands_bps, state.loads)
    names = topo.link_names
    times = state.times
    scenarios = []
    for k in scan.ranking()[:limit].tolist():
        peak = scan.peak_utilisation[k]
        over = [i for i in np.argsort(-np.nan_to_num(peak, nan=-np.inf)) if peak[i] > threshold]
        worst = scan.worst_link[k]
        scenarios.append(
            RiskScenarioPublic(
                failed=[names[i] for i in scan.units[k]],
                worst_utilisation=_number(scan.worst_utilisation[k]),
                worst_link=None if worst < 0 else names[worst],
                worst_time=None if worst < 0 else times[int(scan.worst_step[k])],
                overloaded=[names[i] for i in over],
                unroutable_bps=float(scan.unroutable_bps[k]),
            )
        )
    return RiskPublic(
        issued_at=state.issued_at,
        step_seconds=state.step_seconds,
        metric=state.routing.metric,  # type: ignore[arg-type]
        model=model,
        threshold=threshold,
        already_down=state.down,
        scanned=len(scan.units),
        demand_fit_error=state.demands.fit_error,
        demand_prior=state.prior,
        problems=[TopologyProblemPublic(link=k, detail=d) for k, d in state.problems],
        without_metric=list(state.topology.links_without_metric),
        without_capacity=[lk.name for lk in state.topology.links if lk.capacity_bps is None],
        scenarios=scenarios,
    )
