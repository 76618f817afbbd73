"""Failure scenarios, their link-load series, and the shifts they cause.

A :class:`Scenario` is a list of link failures (and optional repairs) at given
steps. :func:`simulate` routes the traffic over each state of the topology (a
failed link carries nothing in either direction from its failure step until its
repair) and measures how much every surviving directed link's load shifts at
each event.

**Shift of a link at an event at step f.** Over the window ``[f, f + w)`` (``w``
one day of steps by default, cut at the next event or the end), with ``m`` the
mean demand vector over the window, ``before = m @ R_old.T`` and
``after = m @ R_new.T`` for the routings just before and after the event::

    relative_change = (after - before) / before        (inf if before == 0 < after)

Comparing the two routings over the *same* window isolates the re-routing: a
naive before/after comparison of two different windows would mostly measure the
daily cycle. A link is *affected* when ``|relative_change| >= 0.10``; it is
``drastic`` when ``|relative_change| >= 0.50`` (:data:`DRASTIC_THRESHOLD`), else
``moderate`` (:data:`MODERATE_THRESHOLD` to 0.50). Increases and decreases both
count. Links whose load stays below 1 % of the mean directed-link load both
before and after are ignored (:data:`MIN_LOAD_RATIO`), and the failed links
themselves are reported separately (they drop to 0).

**Scenario builders.** :func:`build_scenario` (kind ``drastic``, ``moderate`` or
``mixed``) searches candidate failures at the failure step: every single-link failure, then, only if
no single one qualifies, double failures (all of them, or 300 drawn by the seed
when there are more). A candidate must leave the network connected. It
qualifies for ``drastic`` with at least one drastic link; for ``moderate`` with
at least one moderate and no drastic link; for ``mixed`` with at least one of
each. One qualifying candidate is drawn uniformly by a ``numpy`` generator
seeded with ``(seed, kind)``. The scenario's *target links* (those an evaluation should score) are
its drastic links, its moderate links, or all affected links, respectively.

Examples
--------
>>> from simulator.topology import load_topology
>>> from simulator.traffic import load_abilene
>>> topo, tr = load_topology("abilene"), load_abilene().slice(0, 1152)
>>> res = experiment(topo, tr, "drastic", seed=0)
>>> res.loads_bps.shape, res.failure_steps
((1152, 30), (576,))
>>> all(s.shift_class == "drastic" for s in res.target_shifts)
True
>>> float(res.loads_bps[576:, list(res.failed_links)].max())
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations

import numpy as np

from network.routing import Metric, Routing, route
from simulator.topology import Topology
from simulator.traffic import DAY_SECONDS, Traffic

__all__ = [
    "DRASTIC_THRESHOLD",
    "MAX_DOUBLE_CANDIDATES",
    "MIN_LOAD_RATIO",
    "MODERATE_THRESHOLD",
    "Candidate",
    "EventKind",
    "LinkEvent",
    "LinkShift",
    "Scenario",
    "ScenarioKind",
    "ShiftClass",
    "SimulationResult",
    "build_scenario",
    "classify_shift",
    "edge_loads",
    "experiment",
    "failure_candidates",
    "simulate",
]

#: ``|relative change| >= 0.5`` (load up by half or more, or down by half or more).
DRASTIC_THRESHOLD = 0.5
#: ``0.1 <= |relative change| < 0.5``; below 0.1 a link is not affected.
MODERATE_THRESHOLD = 0.1
#: Links below this fraction of the mean directed-link load, before and after, are ignored.
MIN_LOAD_RATIO = 0.01
#: At most this many double failures are examined (drawn by the seed when there are more).
MAX_DOUBLE_CANDIDATES = 300


class EventKind(StrEnum):
    """What happens to a link."""

    FAIL = "fail"
    REPAIR = "repair"


class ShiftClass(StrEnum):
    """How much an affected link's load shifted."""

    DRASTIC = "drastic"
    MODERATE = "moderate"


class ScenarioKind(StrEnum):
    """The scenarios the builders make."""

    DRASTIC = "drastic"
    MODERATE = "moderate"
    MIXED = "mixed"


def classify_shift(relative_change: float) -> ShiftClass | None:
    """Class of a relative load change, or None when below :data:`MODERATE_THRESHOLD`.

    Examples
    --------
    >>> classify_shift(0.8), classify_shift(-0.2), classify_shift(0.05)
    (<ShiftClass.DRASTIC: 'drastic'>, <ShiftClass.MODERATE: 'moderate'>, None)
    """
    magnitude = abs(relative_change)
    if magnitude >= DRASTIC_THRESHOLD:
        return ShiftClass.DRASTIC
    if magnitude >= MODERATE_THRESHOLD:
        return ShiftClass.MODERATE
    return None


@dataclass(frozen=True)
class LinkEvent:
    """A link going down or coming back at a step.

    Parameters
    ----------
    step : int
        Index of the first step in the new state.
    link : tuple of (str, str)
        The link's end nodes, in either order (both directions go down).
    kind : EventKind
    """

    step: int
    link: tuple[str, str]
    kind: EventKind = EventKind.FAIL

    def __post_init__(self) -> None:
        object.__setattr__(self, "link", (str(self.link[0]), str(self.link[1])))
        object.__setattr__(self, "kind", EventKind(self.kind))
        if self.step < 0:
            raise ValueError(f"event step must be >= 0, got {self.step}")


@dataclass(frozen=True)
class Scenario:
    """Link failures and repairs at given steps.

    Parameters
    ----------
    events : tuple of LinkEvent
        Sorted by step on creation.
    name : str
        A label (``drastic``, ``moderate``, ``mixed`` for built ones).
    target : ShiftClass or None
        Which affected links an evaluation should score: those of this class,
        or all affected links when None.
    """

    events: tuple[LinkEvent, ...] = ()
    name: str = "custom"
    target: ShiftClass | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(sorted(self.events, key=lambda e: e.step)))

    @property
    def failure_steps(self) -> tuple[int, ...]:
        """Steps at which at least one link fails."""
        return tuple(sorted({e.step for e in self.events if e.kind == EventKind.FAIL}))

    def states(self, topology: Topology, n_steps: int) -> list[tuple[int, int, frozenset[int]]]:
        """Constant stretches ``(start, stop, failed undirected link indices)``.

        Raises
        ------
        ValueError
            If an event names a missing link, lies beyond ``n_steps``, fails a
            link that is already down or repairs one that is up.
        """
        failed: set[int] = set()
        changes: list[tuple[int, frozenset[int]]] = [(0, frozenset())]
        for event in self.events:
            if event.step >= n_steps:
                raise ValueError(f"event at step {event.step} is beyond the {n_steps} steps")
            i = topology.link_index(event.link)
            name = f"{event.link[0]}>{event.link[1]}"
            if event.kind == EventKind.FAIL:
                if i in failed:
                    raise ValueError(f"link {name} fails at step {event.step} but is already down")
                failed.add(i)
            else:
                if i not in failed:
                    raise ValueError(f"link {name} is repaired at step {event.step} but is up")
                failed.discard(i)
            if changes[-1][0] == event.step:
                changes[-1] = (event.step, frozenset(failed))
            else:
                changes.append((event.step, frozenset(failed)))
        bounds = [c[0] for c in changes[1:]] + [n_steps]
        return [(start, stop, f) for (start, f), stop in zip(changes, bounds, strict=True)]


@dataclass(frozen=True)
class LinkShift:
    """The load shift of one surviving directed link at one event step.

    ``before_bps`` and ``after_bps`` are mean loads over the same window under
    the routing before and after the event; ``relative_change`` is
    ``after / before - 1`` (inf when before is 0).
    """

    link_index: int
    link: str
    step: int
    before_bps: float
    after_bps: float
    relative_change: float
    shift_class: ShiftClass


@dataclass(frozen=True)
class SimulationResult:
    """Everything an offline evaluation needs.

    Attributes
    ----------
    timestamps : numpy.ndarray
        ``(T,)`` int64 UTC epoch seconds.
    loads_bps : numpy.ndarray
        ``(T, L)`` load of each directed link in bit/s.
    link_names : tuple of str
        ``L`` directed link names ``SRC>DST``.
    step_seconds : int
    capacities_bps : numpy.ndarray
        ``(L,)`` capacity per directed link, NaN where unknown.
    dropped_bps : numpy.ndarray
        ``(T,)`` demand that could not be routed (disconnected pairs).
    scenario : Scenario
    failure_steps : tuple of int
        Steps at which links fail.
    failed_links : tuple of int
        Directed link indices that are down at some point (not in the shifts).
    shifts : tuple of LinkShift
        Every affected surviving link at every event, strongest first per event.
    """

    timestamps: np.ndarray
    loads_bps: np.ndarray
    link_names: tuple[str, ...]
    step_seconds: int
    capacities_bps: np.ndarray
    dropped_bps: np.ndarray
    scenario: Scenario
    failure_steps: tuple[int, ...]
    failed_links: tuple[int, ...]
    shifts: tuple[LinkShift, ...] = field(default=())

    @property
    def failure_shifts(self) -> tuple[LinkShift, ...]:
        """Shifts at failure steps (not repairs)."""
        return tuple(s for s in self.shifts if s.step in self.failure_steps)

    @property
    def affected_links(self) -> dict[int, ShiftClass]:
        """Directed link index -> strongest class over the failure events."""
        out: dict[int, ShiftClass] = {}
        for s in self.failure_shifts:
            if out.get(s.link_index) != ShiftClass.DRASTIC:
                out[s.link_index] = s.shift_class
        return dict(sorted(out.items()))

    @property
    def target_shifts(self) -> tuple[LinkShift, ...]:
        """Failure shifts of the scenario's target class (all when it has none)."""
        target = self.scenario.target
        return tuple(s for s in self.failure_shifts if target is None or s.shift_class == target)

    @property
    def target_links(self) -> tuple[int, ...]:
        """Directed link indices an evaluation should score (sorted, unique)."""
        return tuple(sorted({s.link_index for s in self.target_shifts}))


def _window(step: int, stop: int, step_seconds: int, window_steps: int | None) -> slice:
    w = window_steps if window_steps is not None else max(1, round(DAY_SECONDS / step_seconds))
    return slice(step, min(stop, step + max(1, w)))


def _shifts_between(
    mean_demand: np.ndarray,
    old: Routing,
    new: Routing,
    down: frozenset[int],
    step: int,
    link_names: tuple[str, ...],
    floor_bps: float,
) -> list[LinkShift]:
    before = old.loads(mean_demand)
    after = new.loads(mean_demand)
    out: list[LinkShift] = []
    for li in range(len(link_names)):
        if li // 2 in down or max(before[li], after[li]) < floor_bps:
            continue
        if before[li] <= 0:
            rel = float("inf") if after[li] > 0 else 0.0
        else:
            rel = float(after[li] / before[li] - 1)
        cls = classify_shift(rel)
        if cls is not None:
            out.append(
                LinkShift(li, link_names[li], step, float(before[li]), float(after[li]), rel, cls)
            )
    out.sort(key=lambda s: -abs(s.relative_change))
    return out


def _floor(mean_demand: np.ndarray, base: Routing) -> float:
    return MIN_LOAD_RATIO * float(base.loads(mean_demand).mean())


def edge_loads(
    topology: Topology, traffic: Traffic, scenario: Scenario | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """What each node's edge (access) links carry at each step, ``(T, N)`` each, bit/s,
    in the topology's node order: ``ingress``, the traffic entering the network there
    (every demand from the node, routable or not), and ``egress``, the traffic leaving it
    (the demands to the node that have a path under the scenario's state at that step:
    one without a path never arrives). Single-path routing decides what has a path,
    which ECMP does not change."""
    traffic.check_nodes(topology)
    nodes = {n: i for i, n in enumerate(topology.nodes)}
    one_hot = np.eye(len(nodes))
    by_origin = one_hot[[nodes[a] for a, _ in traffic.pairs]]  # (P, N)
    by_dest = one_hot[[nodes[b] for _, b in traffic.pairs]]
    x = traffic.demands_bps
    ingress, egress = x @ by_origin, np.zeros((len(x), len(nodes)))
    intact = route(topology.network, traffic.pairs)
    for start, stop, failed in (scenario or Scenario()).states(topology, traffic.n_steps):
        routable = intact.fail(topology.directed(failed)).routable if failed else intact.routable
        egress[start:stop] = (x[start:stop] * routable) @ by_dest
    return ingress, egress


def simulate(
    topology: Topology,
    traffic: Traffic,
    scenario: Scenario | None = None,
    *,
    ecmp: bool = False,
    metric: Metric = "auto",
    window_steps: int | None = None,
) -> SimulationResult:
    """Route the traffic through the scenario's states and measure the shifts.

    Parameters
    ----------
    topology : Topology
    traffic : Traffic
        Its pairs must name nodes of the topology.
    scenario : Scenario, optional
        No failures when None.
    ecmp : bool
        Split demands over equal-cost paths (see :func:`network.routing.route`).
    metric : {"auto", "distance", "hops"}
    window_steps : int, optional
        Window of the shift measurement; one day of steps by default.

    Returns
    -------
    SimulationResult
    """
    traffic.check_nodes(topology)
    scenario = scenario or Scenario()
    n_steps = traffic.n_steps
    states = scenario.states(topology, n_steps)
    names = topology.link_names
    demands = traffic.demands_bps
    loads = np.zeros((n_steps, len(names)))
    dropped = np.zeros(n_steps)
    cache: dict[frozenset[int], Routing] = {
        frozenset(): route(topology.network, traffic.pairs, ecmp=ecmp, metric=metric)
    }

    def routing_for(failed: frozenset[int]) -> Routing:
        if failed not in cache:
            cache[failed] = cache[frozenset()].fail(topology.directed(failed))
        return cache[failed]

    shifts: list[LinkShift] = []
    ever_down: set[int] = set()
    previous: Routing | None = None
    for start, stop, failed in states:
        routing = routing_for(failed)
        loads[start:stop] = routing.loads(demands[start:stop])
        dropped[start:stop] = demands[start:stop][:, ~routing.routable].sum(axis=1)
        ever_down |= failed
        if previous is not None and start < stop:
            window = _window(start, stop, traffic.step_seconds, window_steps)
            mean_demand = demands[window].mean(axis=0)
            floor = _floor(mean_demand, routing_for(frozenset()))
            shifts += _shifts_between(mean_demand, previous, routing, failed, start, names, floor)
        previous = routing
    failed_links = tuple(sorted(d for i in ever_down for d in (2 * i, 2 * i + 1)))
    return SimulationResult(
        timestamps=traffic.timestamps.copy(),
        loads_bps=loads,
        link_names=names,
        step_seconds=traffic.step_seconds,
        capacities_bps=topology.capacities_bps,
        dropped_bps=dropped,
        scenario=scenario,
        failure_steps=scenario.failure_steps,
        failed_links=failed_links,
        shifts=tuple(shifts),
    )


@dataclass(frozen=True)
class Candidate:
    """A candidate failure and the shifts it would cause at the failure step.

    ``links`` are undirected link indices; ``max_shift`` is the largest
    ``|relative change|`` of a surviving link (inf for a link that was empty).
    """

    links: tuple[int, ...]
    connected: bool
    n_drastic: int
    n_moderate: int
    max_shift: float

    def qualifies(self, kind: ScenarioKind) -> bool:
        """Whether this failure gives the shifts that ``kind`` promises."""
        if not self.connected:
            return False
        if kind == ScenarioKind.DRASTIC:
            return self.n_drastic >= 1
        if kind == ScenarioKind.MODERATE:
            return self.n_moderate >= 1 and self.n_drastic == 0
        return self.n_drastic >= 1 and self.n_moderate >= 1


def failure_candidates(
    topology: Topology,
    traffic: Traffic,
    *,
    step: int,
    size: int = 1,
    ecmp: bool = False,
    metric: Metric = "auto",
    window_steps: int | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Candidate]:
    """Every failure of ``size`` links (or ``limit`` of them drawn by ``seed``), assessed.

    Parameters
    ----------
    topology, traffic
    step : int
        The failure step; shifts are measured over the window after it.
    size : int
        Links failing together (1 or 2 in the builders).
    ecmp, metric, window_steps
        As in :func:`simulate`.
    limit : int, optional
        Examine at most this many combinations, drawn uniformly by ``seed``.
    seed : int

    Returns
    -------
    list of Candidate
        In the order of the link combinations.
    """
    traffic.check_nodes(topology)
    if not 0 <= step < traffic.n_steps:
        raise ValueError(f"failure step {step} outside 0..{traffic.n_steps - 1}")
    combos = list(combinations(range(len(topology.links)), size))
    if limit is not None and len(combos) > limit:
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(len(combos), size=limit, replace=False))
        combos = [combos[i] for i in picked]
    window = _window(step, traffic.n_steps, traffic.step_seconds, window_steps)
    mean_demand = traffic.demands_bps[window].mean(axis=0)
    base = route(topology.network, traffic.pairs, ecmp=ecmp, metric=metric)
    floor = _floor(mean_demand, base)
    names = topology.link_names
    out: list[Candidate] = []
    for combo in combos:
        failed = frozenset(combo)
        routing = base.fail(topology.directed(failed))  # only the pairs that crossed them
        shifts = _shifts_between(mean_demand, base, routing, failed, step, names, floor)
        n_drastic = sum(s.shift_class == ShiftClass.DRASTIC for s in shifts)
        out.append(
            Candidate(
                links=tuple(combo),
                connected=bool(routing.routable.all() or _only_local(traffic, routing)),
                n_drastic=n_drastic,
                n_moderate=len(shifts) - n_drastic,
                max_shift=max((abs(s.relative_change) for s in shifts), default=0.0),
            )
        )
    return out


def _only_local(traffic: Traffic, routing: Routing) -> bool:
    return all(s == d for (s, d), ok in zip(traffic.pairs, routing.routable, strict=True) if not ok)


def build_scenario(
    kind: ScenarioKind | str,
    topology: Topology,
    traffic: Traffic,
    *,
    seed: int = 0,
    step: int | None = None,
    ecmp: bool = False,
    metric: Metric = "auto",
    window_steps: int | None = None,
) -> Scenario:
    """A failure at ``step`` that gives the shifts ``kind`` promises (see module doc).

    Parameters
    ----------
    kind : {"drastic", "moderate", "mixed"}
    topology, traffic
    seed : int
        Same seed, same scenario.
    step : int, optional
        Failure step; the middle of the traffic by default.
    ecmp, metric, window_steps
        As in :func:`simulate`.

    Returns
    -------
    Scenario
        One event per failed link at ``step``; ``target`` set from ``kind``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or no single or double failure that keeps the
        network connected qualifies (the message gives the best candidates).
    """
    try:
        kind = ScenarioKind(kind)
    except ValueError as exc:
        valid = ", ".join(k.value for k in ScenarioKind)
        raise ValueError(f"unknown scenario {kind!r}; valid: {valid}") from exc
    step = traffic.n_steps // 2 if step is None else step
    # The kind joins the seed so that drastic and mixed draw independently.
    rng = np.random.default_rng([seed, list(ScenarioKind).index(kind)])
    seen: list[Candidate] = []
    for size, limit in ((1, None), (2, MAX_DOUBLE_CANDIDATES)):
        cands = failure_candidates(
            topology,
            traffic,
            step=step,
            size=size,
            ecmp=ecmp,
            metric=metric,
            window_steps=window_steps,
            limit=limit,
            seed=seed,
        )
        seen += cands
        good = [c for c in cands if c.qualifies(kind)]
        if good:
            choice = good[int(rng.integers(len(good)))]
            target = {
                ScenarioKind.DRASTIC: ShiftClass.DRASTIC,
                ScenarioKind.MODERATE: ShiftClass.MODERATE,
                ScenarioKind.MIXED: None,
            }[kind]
            events = tuple(
                LinkEvent(step, (topology.links[i].source, topology.links[i].target))
                for i in choice.links
            )
            return Scenario(events, name=kind.value, target=target)
    summary = sorted((c for c in seen if c.connected), key=lambda c: (c.n_drastic, -c.n_moderate))[
        :3
    ]
    raise ValueError(
        f"no single or double link failure on {topology.name!r} at step {step} gives a "
        f"{kind.value} scenario; fewest drastic links among connected candidates: "
        + "; ".join(
            f"links {[topology.link_names[2 * i] for i in c.links]}: {c.n_drastic} drastic, "
            f"{c.n_moderate} moderate"
            for c in summary
        )
    )


def experiment(
    topology: Topology,
    traffic: Traffic,
    scenario: ScenarioKind | str | Scenario,
    *,
    seed: int = 0,
    step: int | None = None,
    ecmp: bool = False,
    metric: Metric = "auto",
    window_steps: int | None = None,
) -> SimulationResult:
    """Build the scenario (unless given) and simulate it: the offline evaluation's input.

    Parameters
    ----------
    topology, traffic
    scenario : {"drastic", "moderate", "mixed"} or Scenario
    seed, step, ecmp, metric, window_steps
        As in :func:`build_scenario` and :func:`simulate`.

    Returns
    -------
    SimulationResult
        ``timestamps``, ``loads_bps`` (T, L), ``link_names``, ``failure_steps``,
        ``target_links`` and ``affected_links`` with their classes and shifts.
    """
    if not isinstance(scenario, Scenario):
        scenario = build_scenario(
            scenario,
            topology,
            traffic,
            seed=seed,
            step=step,
            ecmp=ecmp,
            metric=metric,
            window_steps=window_steps,
        )
    return simulate(
        topology, traffic, scenario, ecmp=ecmp, metric=metric, window_steps=window_steps
    )
