"""N-1 scan speed: every single cable failure of a network, re-routed, worst utilisation.

Issue 10's targets: a 100-link network within one tick's budget (under 1 s), a
1,000-link one under 10 s. A link here is a directed link, as linkcast counts
them, so a network of L links has L / 2 cables. The networks are synthetic and
backbone-like, drawn by ``--seed``: nodes scattered over Europe's longitudes and
latitudes, a minimum spanning tree by distance (connected), then the shortest
remaining node pairs as cables until there are L / 2, about 3.5 cables a node;
capacities 10, 40 or 100 Gbit/s; a gravity demand between every two nodes,
scaled so that the busiest link runs at 40 % before any failure. Routing by
distance, single path and ECMP. Prints the seconds of the routing and of the scan
(wall time, one process), and the worst failure found.

    python bench/n1_scan.py [--links 100 1000] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np

from network.reroute import n1_scan
from network.routing import route
from network.topology import Link, Topology, great_circle_km


def backbone(n_links: int, seed: int) -> Topology:
    """A connected, backbone-like network of ``n_links`` directed links (see module doc)."""
    rng = np.random.default_rng(seed)
    cables = n_links // 2
    n = max(3, round(cables / 1.75))
    names = [f"r{i}" for i in range(n)]
    pos = {m: (float(rng.uniform(-10, 30)), float(rng.uniform(35, 60))) for m in names}
    full = nx.Graph()
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            full.add_edge(a, b, weight=great_circle_km(pos[a], pos[b]))
    chosen = {frozenset(e) for e in nx.minimum_spanning_tree(full).edges()}
    for a, b, _ in sorted(full.edges(data="weight"), key=lambda e: e[2]):
        if len(chosen) >= cables:
            break
        chosen.add(frozenset((a, b)))
    links: list[Link] = []
    for a, b in sorted(tuple(sorted(c)) for c in chosen):
        cap = float(rng.choice([10e9, 40e9, 100e9]))
        links += [Link(a, b, capacity_bps=cap), Link(b, a, capacity_bps=cap)]
    return Topology(tuple(names), tuple(links), pos, f"backbone-{n_links}")


def demands(topo: Topology, routing, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    weight = rng.lognormal(0.0, 1.0, len(topo.nodes))
    d = weight[routing.origin] * weight[routing.dest] * (routing.origin != routing.dest)
    util = routing.loads(d) / topo.capacities_bps
    return d * 0.4 / util.max()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, nargs="+", default=[100, 1000], help="directed links")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scan (best is kept)")
    args = parser.parse_args()
    for n_links in args.links:
        topo = backbone(n_links, args.seed)
        print(
            f"{topo.name}: {len(topo.nodes)} nodes, {len(topo.links)} links "
            f"({len(topo.duplex_groups())} cables), {len(topo.pairs)} OD pairs"
        )
        for ecmp in (False, True):
            t0 = time.perf_counter()
            routing = route(topo, ecmp=ecmp)
            routed = time.perf_counter() - t0
            d = demands(topo, routing, args.seed)
            best = np.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                scan = n1_scan(routing, d)
                best = min(best, time.perf_counter() - t0)
            worst = scan.summary(top=1)[0]
            print(
                f"  {'ECMP' if ecmp else 'single path'}: route {routed:.2f} s, "
                f"N-1 scan of {len(scan.units)} failures {best:.2f} s "
                f"({1e3 * best / len(scan.units):.1f} ms each); worst: {worst['failed'][0]} "
                f"down puts {worst['worst_link']} at {worst['worst_utilization']:.0%} "
                f"(busiest link before: 40 %)"
            )


if __name__ == "__main__":
    main()
