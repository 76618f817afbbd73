"""How far simple smoothing rules get past the last value on the real Abilene loads.

A reference for issue 9's Abilene targets (hybrid skill >= 5 % at 1 step, >= 10 % at
12): the shipped Abilene matrices of 2004 (5-minute steps) routed on the Abilene
topology with no failure, and each link's load forecast 1 and 12 steps ahead by rules
a forecaster would try first: moving means of the last k steps, simple exponential
smoothing (the flat forecast of a local-level model), a mix of the last value and a
moving mean, the value a day ago, and the last value plus the change a day ago. Skill
is ``1 - RMSE / RMSE of the last value`` on the same steps, each link's errors divided
by its mean load: the median over links, and pooled over all links (their normalised
squared errors together), as ``linkcast evaluate`` pools its scored links.

The best rule of each column is chosen here after the fact, on the very data it is
scored on: an optimistic figure for what these rules give, not a model anyone could
have picked in advance.

    python bench/abilene_smoothing.py [--days 14]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.network import SimulatedNetwork  # noqa: E402
from simulator.topology import load_topology  # noqa: E402
from simulator.traffic import load_abilene  # noqa: E402

DAY = 288  # 5-minute steps
HORIZONS = (1, 12)

#: A rule: (loads (T, L), issue steps (n,), h) -> forecasts (n, L) of steps + h.
Rule = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def last_value(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
    return y[t]


def moving_mean(k: int) -> Rule:
    def rule(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
        csum = np.vstack([np.zeros(y.shape[1]), np.cumsum(y, axis=0)])
        return (csum[t + 1] - csum[t + 1 - k]) / k

    return rule


def smoothed(alpha: float) -> Rule:
    """Simple exponential smoothing: level = alpha * y + (1 - alpha) * level."""

    def rule(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
        level = np.empty_like(y)
        level[0] = y[0]
        for s in range(1, len(y)):
            level[s] = alpha * y[s] + (1 - alpha) * level[s - 1]
        return level[t]

    return rule


def mixed(weight: float, k: int) -> Rule:
    mean = moving_mean(k)
    return lambda y, t, h: weight * y[t] + (1 - weight) * mean(y, t, h)


def day_ago(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
    return y[t + h - DAY]


def last_plus_day_change(y: np.ndarray, t: np.ndarray, h: int) -> np.ndarray:
    return y[t] + y[t + h - DAY] - y[t - DAY]


RULES: dict[str, Rule] = {
    "moving mean, 3 steps": moving_mean(3),
    "moving mean, 6 steps": moving_mean(6),
    "moving mean, 12 steps": moving_mean(12),
    "moving mean, 24 steps": moving_mean(24),
    **{f"exponential smoothing, alpha {a}": smoothed(a) for a in (0.1, 0.2, 0.3, 0.5, 0.7)},
    **{f"{w:.0%} last value + moving mean, 12 steps": mixed(w, 12) for w in (0.25, 0.5, 0.75)},
    "value a day ago": day_ago,
    "last value + the change a day ago": last_plus_day_change,
}


def skills(y: np.ndarray, rule: Rule, h: int) -> tuple[float, float]:
    """(median over links, pooled) skill of ``rule`` against the last value at ``h``,
    scored from the second day on (a day ago exists for every rule)."""
    t = np.arange(DAY, len(y) - h)
    scale = y.mean(axis=0)
    err = (rule(y, t, h) - y[t + h]) / scale
    ref = (last_value(y, t, h) - y[t + h]) / scale
    per_link = 1 - np.sqrt((err**2).mean(axis=0) / (ref**2).mean(axis=0))
    pooled = 1 - np.sqrt((err**2).mean() / (ref**2).mean())
    return float(np.median(per_link)), float(pooled)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--days", type=int, default=14, help="days of the shipped 14 to use")
    args = parser.parse_args(argv)
    if not 3 <= args.days <= 14:
        parser.error("--days must be 3 to 14 (one day of history, then at least two scored)")
    topology = load_topology("abilene")
    traffic = load_abilene(topology=topology).slice(0, args.days * DAY)
    loads = SimulatedNetwork(topology, traffic).loads()
    y = loads[:, loads.mean(axis=0) > 0]
    print(
        f"Abilene 2004, {args.days} days of 5-minute steps, {y.shape[1]} links with traffic; "
        f"skill against the last value, %, scored from day 2 (median over links / pooled)"
    )
    print("| rule | " + " | ".join(f"{h} step{'s' * (h > 1)} ahead" for h in HORIZONS) + " |")
    print("|---|" + "---|" * len(HORIZONS))
    table = {name: [skills(y, rule, h) for h in HORIZONS] for name, rule in RULES.items()}
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(f"{m:+.1%} / {p:+.1%}" for m, p in cells) + " |")
    for k, h in enumerate(HORIZONS):
        best = max(table, key=lambda name, k=k: table[name][k][0])
        m, p = table[best][k]
        print(f"best at {h} step(s), chosen after the fact: {best}: {m:+.1%} / {p:+.1%}")


if __name__ == "__main__":
    main()
