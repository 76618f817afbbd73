"""How well demands estimated from link loads predict a failure's re-routed loads.

The live service sees link loads only. To predict where a failure's traffic
will go it estimates the origin-destination demands from them
(:func:`network.demand.tomogravity`) and routes those around the failed links
(:func:`network.reroute.reroute`). The simulator knows the true demands, so
:func:`score_estimation` measures both steps against the truth of one
:class:`~simulator.failures.SimulationResult`:

``demand_error``
    ``||x_hat - x|| / ||x||`` (Euclidean, pooled over the sampled steps): the
    relative error of the estimated demands, the figure of the tomography papers.
``load_error``
    Mean over the scenario's target links (its drastically shifted links for a
    ``drastic`` scenario) and the sampled steps of ``|y_hat - y| / y``, where
    ``y`` is the simulator's load after the failure and ``y_hat`` the estimate
    of the same step, made from the loads the links would carry without the
    failure, routed around the failed links. This isolates the estimation. Steps
    where a link's true load is 0 (a link the failure empties) are left out.
``prior_load_error``
    The same with the gravity prior alone (what the least-squares step buys).
``ahead_load_error``
    The operational figure: demands estimated once from the last step before
    the failure, re-routed, against the actual loads of the first hour after it
    (the demands move meanwhile).

Steps are sampled evenly over the shift window of the scenario (one day from
the failure, cut at the end of the traffic).

Examples
--------
>>> from simulator.failures import experiment
>>> from simulator.topology import load_topology
>>> from simulator.traffic import sine_traffic
>>> topo = load_topology("abilene")
>>> tr = sine_traffic(topo, n_steps=600, seed=0)
>>> score = score_estimation(topo, tr, experiment(topo, tr, "drastic", seed=0), samples=4)
>>> score.n_steps, score.n_links > 0, 0 <= score.load_error < 1
(4, True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from network.demand import tomogravity
from network.routing import route
from simulator.failures import SimulationResult, edge_loads
from simulator.topology import Topology
from simulator.traffic import DAY_SECONDS, Traffic

__all__ = [
    "ESTIMATION_COLUMNS",
    "EstimationScore",
    "estimation_rows",
    "report_section",
    "score_estimation",
]

Totals = Literal["fitted", "measured"]
#: Columns of ``estimation.csv`` (``linkcast evaluate``): one row per seed, scenario and totals.
ESTIMATION_COLUMNS = (
    "seed",
    "scenario",
    "totals",
    "n_links",
    "n_steps",
    "demand_error",
    "load_error",
    "prior_load_error",
    "ahead_load_error",
)


@dataclass(frozen=True)
class EstimationScore:
    """Errors of demand estimation and of the re-routed loads it predicts (ratios, 0.1 = 10 %).

    See the module docstring for each figure.
    """

    demand_error: float
    load_error: float
    prior_load_error: float
    ahead_load_error: float
    n_links: int
    n_steps: int


def _relative(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean of ``|pred - true| / true`` where ``true > 0`` (NaN if nowhere)."""
    pred, true = np.broadcast_arrays(pred, true)
    seen = true > 0
    return float(np.mean(np.abs(pred[seen] - true[seen]) / true[seen])) if seen.any() else math.nan


def score_estimation(
    topology: Topology,
    traffic: Traffic,
    result: SimulationResult,
    *,
    samples: int = 24,
    totals: Totals = "fitted",
    ecmp: bool = False,
    coverage: float = 1.0,
    local_share: float = 0.0,
    draw: int = 0,
) -> EstimationScore:
    """Score tomogravity on the first failure of a simulation.

    Parameters
    ----------
    topology, traffic
        What ``result`` was simulated from.
    result : SimulationResult
        With at least one failure and one target link.
    samples : int
        Steps scored over the shift window.
    totals : {"fitted", "measured"}
        The gravity prior's per-node totals: fitted to the link loads (the live
        service without edge links), or the true ones, what edge links measure
        (the setting of Zhang et al., SIGMETRICS 2003; the live service with links
        labelled ``edge``).
    ecmp : bool
        As the simulation was routed.
    coverage : float
        With ``measured``: the share of the nodes whose edge links are measured
        (drawn with ``draw``; at least one); the others' totals are fitted
        (:func:`network.demand.tomogravity` with NaN there), as when an operator
        has labelled the edge links of some routers only.
    local_share : float
        With ``measured``: traffic between two customers of the same node, which
        edge links count (once in, once out) and no backbone link carries: each
        node's ingress and egress both grow by the same amount, a share of the mean
        of its two non-local totals drawn uniformly from ``[0, 2 * local_share]``
        (``local_share`` on average).
    draw : int
        Seed of those draws (numpy's PCG64).

    Returns
    -------
    EstimationScore

    Raises
    ------
    ValueError
        If the result has no failure, no target link, or ``totals`` is unknown.
    """
    if totals not in ("fitted", "measured"):
        raise ValueError(f"unknown totals {totals!r}; valid: fitted, measured")
    if not 0 < coverage <= 1 or local_share < 0:
        raise ValueError("coverage must be in (0, 1] and local_share >= 0")
    if not result.failure_steps or not result.target_links:
        raise ValueError("the simulation has no failure with target links to score")
    f = result.failure_steps[0]
    states = result.scenario.states(topology, traffic.n_steps)
    down_before = next(failed for start, stop, failed in states if start <= f - 1 < stop)
    down_after = next(failed for start, stop, failed in states if start <= f < stop)
    intact = route(topology.network, traffic.pairs, ecmp=ecmp)
    before = intact.fail(topology.directed(down_before))
    after = intact.fail(topology.directed(down_after))
    targets = list(result.target_links)
    window = max(1, round(DAY_SECONDS / traffic.step_seconds))
    stop = min(traffic.n_steps, f + window)
    steps = np.unique(np.linspace(f, stop - 1, num=max(1, samples)).round().astype(int))
    x = traffic.demands_bps[steps]
    y = before.loads(x)  # the loads had the links not failed: what is estimated from
    n = len(topology.nodes)
    rng = np.random.default_rng(draw)
    extra = rng.uniform(0.0, 2.0 * local_share, size=n)
    unmeasured = np.ones(n, dtype=bool)
    unmeasured[rng.permutation(n)[: max(1, round(coverage * n))]] = False

    ingress, egress = edge_loads(topology, traffic)  # (T, N) each, every link up

    def edge_links(at: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """What the edge links measure at step(s) ``at``: ``(N,)`` or ``(len(at), N)``."""
        local = extra * (ingress[at] + egress[at]) / 2
        o, i = ingress[at] + local, egress[at] + local
        o[..., unmeasured], i[..., unmeasured] = np.nan, np.nan
        return o, i

    if totals == "measured":
        out, inn = edge_links(steps)
        est = tomogravity(before, y, out_bps=out, in_bps=inn)
    else:
        est = tomogravity(before, y)
    truth = result.loads_bps[steps][:, targets]
    hour = slice(f, min(stop, f + max(1, round(3600 / traffic.step_seconds))))
    last = result.loads_bps[f - 1]
    if totals == "measured":
        o, i = edge_links(f - 1)
        ahead = tomogravity(before, last, out_bps=o, in_bps=i).demands_bps
    else:
        ahead = tomogravity(before, last).demands_bps
    ahead_pred = after.loads(ahead)[targets]
    return EstimationScore(
        demand_error=float(np.linalg.norm(est.demands_bps - x) / np.linalg.norm(x)),
        load_error=_relative(after.loads(est.demands_bps)[:, targets], truth),
        prior_load_error=_relative(after.loads(est.prior_bps)[:, targets], truth),
        ahead_load_error=_relative(ahead_pred[None, :], result.loads_bps[hour][:, targets]),
        n_links=len(targets),
        n_steps=len(steps),
    )


def estimation_rows(
    topology: Topology,
    traffic: Traffic,
    results: Mapping[str, SimulationResult],
    *,
    seed: int,
    samples: int = 24,
) -> list[dict[str, Any]]:
    """One :data:`ESTIMATION_COLUMNS` row per scenario and totals (fitted, measured)."""
    rows: list[dict[str, Any]] = []
    for name, result in results.items():
        for totals in ("fitted", "measured"):
            score = score_estimation(topology, traffic, result, samples=samples, totals=totals)
            rows.append({"seed": seed, "scenario": name, "totals": totals, **asdict(score)})
    return rows


def report_section(frame: pd.DataFrame) -> str:
    """The report's markdown section: medians over the seeds of ``estimation.csv``'s rows."""
    lines = [
        "## Demand estimation (tomogravity)",
        "",
        "Origin-destination demands estimated from the link loads "
        "(`network.demand.tomogravity`), routed around the failure, against the simulator's "
        "truth on the scenario's scored links (`simulator/estimation.py`): relative error of "
        "the demands, of the re-routed loads (same step; the gravity prior alone; estimated "
        "once before the failure, over its first hour). *fitted*: per-node totals fitted to "
        "the backbone's link loads (the live service without edge links); *measured*: the "
        "true totals, what edge links measure (the live service with links labelled `edge`). "
        "Medians over the seeds, per cent; `estimation.csv` has each seed.",
        "",
        "| scenario | totals | seeds | demands | re-routed loads | prior alone | 1 h ahead |",
        "|---|---|---|---|---|---|---|",
    ]
    for (scenario, totals), group in frame.groupby(["scenario", "totals"], sort=False):
        med = group[["demand_error", "load_error", "prior_load_error", "ahead_load_error"]]
        m = 100 * med.median()
        lines.append(
            f"| {scenario} | {totals} | {len(group)} | {m.demand_error:.1f} | "
            f"{m.load_error:.1f} | {m.prior_load_error:.1f} | {m.ahead_load_error:.1f} |"
        )
    return "\n".join(lines) + "\n"
