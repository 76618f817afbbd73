"""Demand estimation (tomogravity) against the simulator's truth, over seeds.

For each seed, a drastic failure scenario (:func:`simulator.failures.experiment`)
and :func:`simulator.estimation.score_estimation` of it: the relative error of
the estimated demands, and of the re-routed loads they predict on the
drastically shifted links (prior alone, same step, and one hour ahead), with the
gravity prior's per-node totals fitted to the link loads (``fitted``: all the live
service has) or the true ones (``measured``: as if edge links were measured, the
setting of Zhang et al., SIGMETRICS 2003). Prints one row per seed and totals,
then the median and worst over the seeds.

Traffic: ``sine`` is the simulator's synthetic traffic on the topology (3 days,
the seed drives the noise and the failure drawn); ``abilene`` replays the real
Abilene matrices of 2004 shipped with linkcast on its topology, seed ``k`` taking
the two days from day ``k`` (seeds 0 to 12) and drawing the failure.

    python bench/demand_estimation.py [--topology nobel-eu] [--traffic sine|abilene]
        [--seeds 0-9] [--samples 24] [--totals fitted measured]
        [--coverage 1.0] [--local-share 0.0]

``--coverage`` and ``--local-share`` test the measured totals as an operator's edge
links give them: labelled at some routers only (the others' totals fitted), and
counting the traffic that enters and leaves at the same router.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simulator.estimation import score_estimation
from simulator.evaluate import parse_seeds
from simulator.failures import experiment
from simulator.topology import load_topology
from simulator.traffic import load_abilene, sine_traffic

DAY = 288  # steps of 5 minutes
FIGURES = ("demand_error", "prior_load_error", "load_error", "ahead_load_error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="nobel-eu", help="built-in topology (sine)")
    parser.add_argument("--traffic", choices=("sine", "abilene"), default="sine")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5")
    parser.add_argument("--samples", type=int, default=24, help="steps scored per seed")
    parser.add_argument(
        "--totals", nargs="+", choices=("fitted", "measured"), default=["fitted", "measured"]
    )
    parser.add_argument(
        "--coverage",
        type=float,
        default=1.0,
        help="measured: share of the routers whose edge links are labelled (others fitted)",
    )
    parser.add_argument(
        "--local-share",
        type=float,
        default=0.0,
        help="measured: traffic between customers of the same router (counted by its edge"
        " links in and out, carried by no backbone link), on average this share of the"
        " router's other traffic (drawn per router from 0 to twice it)",
    )
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    if args.traffic == "abilene":
        topo, full = load_topology("abilene"), load_abilene()
        if max(seeds) * DAY + 2 * DAY > full.n_steps:
            parser.error(f"abilene traffic has {full.n_steps // DAY} days: seeds 0 to 12")
    else:
        topo = load_topology(args.topology)
    print(
        f"{topo.name}, {args.traffic} traffic, drastic scenario, {args.samples} steps a seed;"
        f" measured: edge links at {args.coverage:.0%} of the routers, local traffic"
        f" {args.local_share:.0%} on average"
    )
    print("seed  totals    links  demand  prior  same-step  1h-ahead  seconds")
    rows: dict[str, list[list[float]]] = {t: [] for t in args.totals}
    for seed in seeds:
        if args.traffic == "abilene":
            traffic = full.slice(seed * DAY, seed * DAY + 2 * DAY)
        else:
            traffic = sine_traffic(topo, n_steps=3 * DAY, seed=seed)
        result = experiment(topo, traffic, "drastic", seed=seed)
        for totals in args.totals:
            t0 = time.perf_counter()
            s = score_estimation(
                topo,
                traffic,
                result,
                samples=args.samples,
                totals=totals,
                coverage=args.coverage,
                local_share=args.local_share,
                draw=seed,
            )
            values = [getattr(s, f) for f in FIGURES]
            rows[totals].append(values)
            print(
                f"{seed:4d}  {totals:8s}  {s.n_links:5d}  {values[0]:6.3f}  {values[1]:5.3f}"
                f"  {values[2]:9.3f}  {values[3]:8.3f}  {time.perf_counter() - t0:7.1f}"
            )
    for totals, got in rows.items():
        arr = np.array(got)
        med, worst = np.median(arr, axis=0), arr.max(axis=0)
        print(
            f"{totals}: median over {len(arr)} seeds: demand {med[0]:.3f}, re-routed loads on "
            f"the drastic links: prior {med[1]:.3f}, same step {med[2]:.3f}, 1 h ahead "
            f"{med[3]:.3f} (worst seed {worst[2]:.3f}, {worst[3]:.3f})"
        )


if __name__ == "__main__":
    main()
