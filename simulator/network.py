"""A simulated network as a collector would see it: link loads step by step.

:class:`SimulatedNetwork` ties a topology, its traffic and a failure scenario
together. A live feeder iterates over it and turns each :class:`StepLoads` into
samples for ``POST /api/v1/telemetry`` (the step's ``offset_seconds`` added to
the feeder's own start time), and each step's events into ``POST /api/v1/events``.

Examples
--------
>>> from simulator.failures import EventKind, LinkEvent, Scenario
>>> from simulator.topology import load_topology
>>> from simulator.traffic import sine_traffic
>>> topo = load_topology("abilene")
>>> scenario = Scenario((LinkEvent(5, ("WASHng", "NYCMng")),))
>>> net = SimulatedNetwork(topo, sine_traffic(topo, n_steps=10, seed=0), scenario)
>>> net.loads().shape
(10, 30)
>>> step = list(net)[5]
>>> step.step, step.offset_seconds, step.loads_bps["WASHng>NYCMng"], len(step.events)
(5, 1500, 0.0, 1)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from typing import Any

import numpy as np

from network.routing import Metric
from simulator.failures import (
    EventKind,
    LinkEvent,
    Scenario,
    SimulationResult,
    edge_loads,
    simulate,
)
from simulator.topology import Topology
from simulator.traffic import Traffic

__all__ = ["SimulatedNetwork", "StepLoads"]


@dataclass(frozen=True)
class StepLoads:
    """The loads of every directed link at one step.

    Attributes
    ----------
    step : int
        Index into the simulation (it keeps counting across loops).
    offset_seconds : int
        ``step * step_seconds``: add it to the feeder's start time.
    loads_bps : dict of str to float
        Directed link name -> load in bit/s.
    events : tuple of LinkEvent
        Failures and repairs that take effect at this step.
    """

    step: int
    offset_seconds: int
    loads_bps: dict[str, float]
    events: tuple[LinkEvent, ...]


class SimulatedNetwork:
    """A topology carrying traffic through a failure scenario.

    Parameters
    ----------
    topology : Topology
    traffic : Traffic
    scenario : Scenario, optional
        No failures when None.
    step_seconds : int, optional
        Seconds between steps as presented to a feeder (defaults to the
        traffic's step); a demo may replay 5-minute traffic every 60 s.
    ecmp : bool
    metric : {"auto", "distance", "hops"}
    edge_links : bool
        Also report each router's edge links (:meth:`edge_link_records`): the traffic
        entering the network there and leaving it, as its access interfaces measure it.

    Notes
    -----
    The arguments are stored as given; the simulation runs once, lazily, on
    the first call that needs it.
    """

    def __init__(
        self,
        topology: Topology,
        traffic: Traffic,
        scenario: Scenario | None = None,
        step_seconds: int | None = None,
        *,
        ecmp: bool = False,
        metric: Metric = "auto",
        edge_links: bool = False,
    ) -> None:
        if step_seconds is not None and step_seconds <= 0:
            raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
        self.topology = topology
        self.traffic = traffic
        self.scenario = scenario if scenario is not None else Scenario()
        self.step_seconds = int(step_seconds or traffic.step_seconds)
        self.ecmp = ecmp
        self.metric = metric
        self.edge_links = edge_links

    @cached_property
    def result(self) -> SimulationResult:
        """The full offline simulation (see :func:`simulator.failures.simulate`)."""
        return simulate(
            self.topology, self.traffic, self.scenario, ecmp=self.ecmp, metric=self.metric
        )

    @property
    def link_names(self) -> tuple[str, ...]:
        """Directed link names ``SRC>DST``."""
        return self.topology.link_names

    @property
    def n_steps(self) -> int:
        """Number of steps in one pass."""
        return self.traffic.n_steps

    def loads(self) -> np.ndarray:
        """``(T, L)`` load of each directed link in bit/s."""
        return self.result.loads_bps

    def edge_link_records(self) -> list[dict[str, Any]]:
        """Each router's two edge links as ``POST /api/v1/links`` takes them: ``NODE:in``
        (label ``edge`` ``ingress``, from ``NODE.outside`` to the node) and ``NODE:out``
        (``egress``, back), or none without ``edge_links``. Their names hold no ``>``:
        pushed without the label, they would be unplaced links, never routed over."""
        if not self.edge_links:
            return []
        records = []
        for node in self.topology.nodes:
            outside = f"{node}.outside"
            records.append(
                {"name": f"{node}:in", "src": outside, "dst": node, "labels": {"edge": "ingress"}}
            )
            records.append(
                {"name": f"{node}:out", "src": node, "dst": outside, "labels": {"edge": "egress"}}
            )
        return records

    @cached_property
    def _edge_loads(self) -> np.ndarray:
        """``(T, 2N)`` bit/s, in :meth:`edge_link_records`' order: each node's ingress
        and egress (:func:`simulator.failures.edge_loads`, through the scenario)."""
        ingress, egress = edge_loads(self.topology, self.traffic, self.scenario)
        return np.stack([ingress, egress], axis=2).reshape(len(ingress), -1)

    def events_at(self, step: int) -> tuple[LinkEvent, ...]:
        """Events that take effect at ``step`` (within one pass)."""
        return tuple(e for e in self.scenario.events if e.step == step)

    def iter_steps(self, start: int = 0, *, loop: bool = False) -> Iterator[StepLoads]:
        """Yield the loads of each step from ``start``.

        Parameters
        ----------
        start : int
            First step.
        loop : bool
            Start over after the last step, forever. The scenario replays too:
            links still down at the end come back at the start of each new pass
            (with a repair event), and ``step`` keeps counting so offsets keep
            increasing.
        """
        loads = self.loads()
        final = self.scenario.states(self.topology, self.n_steps)[-1][2]
        wrap = tuple(
            LinkEvent(
                0, (self.topology.links[i].source, self.topology.links[i].target), EventKind.REPAIR
            )
            for i in sorted(final)
        )
        names = self.link_names
        edges = [r["name"] for r in self.edge_link_records()]
        edge_loads = self._edge_loads if edges else None
        n = self.n_steps
        steps = count(start) if loop else range(start, n)
        for step in steps:
            row = loads[step % n]
            yield StepLoads(
                step=step,
                offset_seconds=step * self.step_seconds,
                loads_bps={name: float(v) for name, v in zip(names, row, strict=True)}
                | (
                    {}
                    if edge_loads is None
                    else dict(zip(edges, edge_loads[step % n].tolist(), strict=True))
                ),
                events=(wrap if step >= n and step % n == 0 else ()) + self.events_at(step % n),
            )

    def __iter__(self) -> Iterator[StepLoads]:
        return self.iter_steps()
