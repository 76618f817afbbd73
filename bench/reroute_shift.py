"""The shift a known failure adds to the forecasts: what it costs, and whether to refresh it.

Two figures for the live engine (engine/loop.py, issue 10):

1. **Cost** of one :func:`network.reroute.failure_shift` (tomogravity from one step
   of link loads, then the demands routed with and without the failure): on the demo
   network (nobel-eu, 28 nodes, 82 links) and on synthetic backbones of
   ``--links`` directed links (bench/n1_scan.py's). Wall and CPU time, one process,
   one BLAS thread, best of ``--repeat``; also with the previous estimate's node totals
   as the prior (``totals_bps``, no gravity fit).
2. **Refresh or not**: while a failure lasts, is the shift computed once (from the
   step before the failure) good enough, or should the engine recompute it every
   step from the loads measured during the failure? On the simulator (a drastic
   failure on nobel-eu sine traffic, ``--seeds``; real Abilene traffic with its
   drastic failure), for a forecast issued at step ``t`` for ``t + h``
   (``h = 1..12``, an hour of 5-minute steps), the relative error of the shift in
   use against the true shift at ``t + h`` (the true demands routed with and
   without the failure), on the drastically shifted links: median over links, issue
   times and ``h``, for issue times in the failure's first hour and in hours 1 to 6.
   Variants: ``once`` (from the last step before the failure), ``scaled`` (once,
   times the network's total measured load now over then: no tomogravity),
   ``refresh`` (from the step just measured, the failed links down) and ``warm``
   (refresh with the previous estimate's node totals as the gravity prior, chained
   from the step before the failure: what the engine does).

    python bench/reroute_shift.py [--links 100] [--seeds 0 1 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.n1_scan import backbone, demands  # noqa: E402
from network.reroute import failure_shift  # noqa: E402
from network.routing import route  # noqa: E402
from simulator.failures import experiment  # noqa: E402
from simulator.topology import load_topology  # noqa: E402
from simulator.traffic import load_abilene, sine_traffic  # noqa: E402

HORIZON = 12
VARIANTS = ("once", "scaled", "refresh", "warm")


def _best(fn, repeat: int) -> tuple[float, float]:  # noqa: ANN001
    """Best wall time and best CPU time of this process (seconds) over ``repeat`` runs:
    on a shared machine the CPU time is the fairer figure (it leaves out the waits)."""
    wall = cpu = np.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def cost(links: list[int], repeat: int) -> None:
    nobel = load_topology("nobel-eu")
    tr = sine_traffic(nobel, n_steps=4, seed=0)
    cases = [("nobel-eu (demo)", nobel.network, tr.demands_bps[2], tr.pairs)]
    for n in links:
        topo = backbone(n, 0)
        cases.append((topo.name, topo, None, None))
    print(f"cost of one failure_shift (tomogravity + two routings), best of {repeat};")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, topo, d, pairs in cases:
        t0 = time.perf_counter()
        routing = route(topo, pairs)
        routed = time.perf_counter() - t0
        x = demands(topo, routing, 0) if d is None else d
        y = routing.loads(x)
        cable = list(topo.duplex_groups()[len(topo.duplex_groups()) // 2])
        took = _best(lambda r=routing, y=y, c=cable: failure_shift(r, y, c), repeat)
        prev = failure_shift(routing, y, cable).totals_bps
        warm = _best(
            lambda r=routing, y=y, c=cable, p=prev: failure_shift(
                r, y, c, measured_failed=c, totals_bps=p
            ),
            repeat,
        )
        print(
            f"  {name}: {len(topo.nodes)} nodes, {len(topo.links)} links, "
            f"{len(routing.pairs)} OD pairs: route {routed * 1e3:.0f} ms (once, cached), "
            f"shift {took[0]:.2f} s wall, {took[1]:.2f} s CPU (first); "
            f"{warm[0]:.2f} s wall, {warm[1]:.2f} s CPU (warm start)"
        )


def _errors(network, res, tr, down, first: int, issue: range) -> dict[str, list[float]]:  # noqa: ANN001
    routing = route(network, tr.pairs)
    failed = routing.fail(down)
    true_shift = failed.loads(tr.demands_bps) - routing.loads(tr.demands_bps)  # (T, L)
    y = res.loads_bps
    targets = [s.link_index for s in res.target_shifts]
    once = failure_shift(routing, y[first - 1], down).shift_bps
    before_total = np.nansum(y[first - 1] + once)
    out: dict[str, list[float]] = {k: [] for k in VARIANTS}
    totals = failure_shift(routing, y[first - 1], down).totals_bps
    for t in issue:
        now = failure_shift(routing, y[t], down, measured_failed=down).shift_bps
        est = failure_shift(routing, y[t], down, measured_failed=down, totals_bps=totals)
        totals = est.totals_bps
        scaled = once * (np.nansum(y[t]) / before_total)
        for h in range(1, HORIZON + 1):
            if t + h >= len(y):
                continue
            truth = true_shift[t + h, targets]
            variants = (once, scaled, now, est.shift_bps)
            for name, s in zip(VARIANTS, variants, strict=True):
                out[name].extend(np.abs(s[targets] - truth) / np.abs(truth))
    return out


def refresh(seeds: list[int]) -> None:
    print(
        "relative error of the shift in use vs the true shift at t + h (h = 1..12),"
        " drastically shifted links, median"
    )
    runs = []
    nobel = load_topology("nobel-eu")
    for seed in seeds:
        tr = sine_traffic(nobel, n_steps=288 * 2, seed=seed)
        res = experiment(nobel, tr, "drastic", seed=seed, step=288)
        runs.append((f"nobel-eu sine seed {seed}", nobel, tr, res))
    abilene = load_topology("abilene")
    tr = load_abilene().slice(0, 288 * 2)
    runs.append(("abilene real", abilene, tr, experiment(abilene, tr, "drastic", step=288)))
    for name, topo, tr, res in runs:
        f = res.failure_steps[0]
        down = [res.link_names[i] for i in res.failed_links]
        first = _errors(topo.network, res, tr, down, f, range(f, f + 12))
        later = _errors(topo.network, res, tr, down, f, range(f + 12, f + 72, 6))
        cells = [f"{k} {np.median(first[k]):.1%} / {np.median(later[k]):.1%}" for k in VARIANTS]
        print(f"  {name} (first hour / hours 1-6): " + ", ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-refresh", action="store_true", help="only the cost")
    args = parser.parse_args()
    cost(args.links, args.repeat)
    if not args.skip_refresh:
        refresh(args.seeds)


if __name__ == "__main__":
    main()
