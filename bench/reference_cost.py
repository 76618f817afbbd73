"""Cost of the statsforecast MSTL reference beside persistence and incremental, one core.

Runs each model prequentially over the same link loads (nobel-eu, 82 links, sine
traffic at 5-minute steps, the drastic scenario's failure on the last day: what one
``linkcast evaluate`` scenario feeds its models), with the evaluation's schedule
(re-fit every 288 steps on the latest 576), and prints for each: ms per step (refits
included), the refits' share, the ratio to persistence and to incremental, and an
estimate per seed (``--seed-steps``: the shared prefix plus three post windows,
2,016 + 3 x 288 = 2,880 steps). Times are the process's CPU time (one thread for
torch and BLAS), so other load on a shared machine does not inflate them; the wall
time is printed beside. Also the 1- and 12-step RMSE in the day before and
the day after the failure, and the skill against persistence (same loads).

    python bench/reference_cost.py [--steps 2304] [--links 82] [--topology nobel-eu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from forecaster.base import Forecaster
from forecaster.baselines import PersistenceForecaster
from forecaster.incremental import IncrementalForecaster
from forecaster.reference import MSTLForecaster
from simulator.failures import experiment
from simulator.topology import load_topology
from simulator.traffic import sine_traffic

H = 12
SEASON = 288
RETRAIN_EVERY = 288
RETRAIN_WINDOW = 576


def _loads(topology: str, steps: int, links: int, seed: int) -> np.ndarray:
    topo = load_topology(topology)
    tr = sine_traffic(topo, n_steps=steps, seed=seed)
    res = experiment(topo, tr, "drastic", seed=seed, step=steps - SEASON)
    loads = res.loads_bps
    reps = -(-links // loads.shape[1])
    return np.tile(loads, (1, reps))[:, :links]


def _run(model: Forecaster, loads: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """CPU seconds in all and in the steps that re-fit, wall seconds, forecasts (T, n, H)."""
    out = np.empty((*loads.shape, H))
    cpu = fit = 0.0
    wall = time.perf_counter()
    for t, y in enumerate(loads):
        fits = getattr(model, "n_fits", 0)
        start = time.process_time()
        model.observe(y)
        out[t] = model.forecast()
        sec = time.process_time() - start
        cpu += sec
        if getattr(model, "n_fits", 0) != fits:
            fit += sec
    return cpu, fit, time.perf_counter() - wall, out


def _rmse(loads: np.ndarray, fc: np.ndarray, h: int, window: slice) -> float:
    """RMSE of the h-step forecasts of the steps in ``window``, % of each link's mean."""
    t = np.arange(loads.shape[0])[window]
    t = t[t >= h]
    scale = loads[t].mean(axis=0)
    live = scale > 0  # failed links carry nothing: not scored
    err = (loads[t][:, live] - fc[t - h][:, live, h - 1]) / scale[live]
    return float(100 * np.sqrt(np.mean(err**2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="nobel-eu")
    parser.add_argument("--steps", type=int, default=2304, help="steps run (8 days)")
    parser.add_argument("--links", type=int, default=82)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-steps", type=int, default=2880, help="steps in one seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loads = _loads(args.topology, args.steps, args.links, args.seed)
    n = loads.shape[1]
    models: dict[str, Forecaster] = {
        "persistence": PersistenceForecaster(n, H),
        "incremental": IncrementalForecaster(
            n, H, retrain_every=RETRAIN_EVERY, retrain_window=RETRAIN_WINDOW, seed=args.seed
        ),
        "mstl": MSTLForecaster(
            n, H, season_steps=SEASON, retrain_every=RETRAIN_EVERY, retrain_window=RETRAIN_WINDOW
        ),
    }
    print(f"{args.topology}: {n} links, {args.steps} steps of 300 s, one thread, CPU time")
    cost, fcs = {}, {}
    with threadpool_limits(1):
        for name, model in models.items():
            total, fit, wall, fcs[name] = _run(model, loads)
            cost[name] = total
            fits = getattr(model, "n_fits", 0)
            print(
                f"  {name:12s} {1e3 * total / args.steps:8.3f} ms/step"
                f"  ({fits} re-fits: {fit:6.2f} s; between: "
                f"{1e3 * (total - fit) / args.steps:7.3f} ms/step; wall {wall:6.1f} s)"
            )
    per_step = {k: v / args.steps for k, v in cost.items()}
    print(
        f"mstl / persistence: {per_step['mstl'] / per_step['persistence']:.0f}x, "
        f"mstl / incremental: {per_step['mstl'] / per_step['incremental']:.2f}x"
    )
    for k in ("incremental", "mstl"):
        print(f"{k}: ~{per_step[k] * args.seed_steps:.0f} s per seed ({args.seed_steps} steps)")
    fail = args.steps - SEASON
    print(f"RMSE (% of link mean) in the day before the failure at step {fail} (pre) and")
    print("the day from it (post), and skill against persistence (1 - RMSE / RMSE_persistence):")
    for label, window in (("pre", slice(fail - SEASON, fail)), ("post", slice(fail, None))):
        for h in (1, H):
            base = _rmse(loads, fcs["persistence"], h, window)
            cells = []
            for k, fc in fcs.items():
                e = _rmse(loads, fc, h, window)
                cells.append(f"{k} {e:5.2f} ({1 - e / base:+.2f})")
            row = "  ".join(cells)
            print(f"  {label:4s} h={h:2d}: {row}")


if __name__ == "__main__":
    main()
