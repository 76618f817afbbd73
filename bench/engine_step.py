"""One engine tick of the forecasting core, timed on the CPU.

A tick is ``ModelSuite.step``: score the earlier forecasts, every model observes
(liquid adapts), hybrid weights, intervals, drift detectors, new H=12 forecasts.
Prints ms per tick, us per link and the model state's bytes per link
(``len(suite.to_bytes()) / n``). Targets: 10,000 links <= 1 s per tick; <= 4 KB/link.

    python bench/engine_step.py [--quick] [--threads N] [--links N ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from forecaster import ModelSuite


def _loads(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    base = 1e9 * (1.0 + np.arange(n) % 7)
    day = 1.0 + 0.3 * np.sin(2 * np.pi * t / 1440 + np.arange(n) % 11)
    return base * day * (1.0 + 0.02 * rng.standard_normal(n))


def bench(n: int, warmup: int, ticks: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    suite = ModelSuite(n, horizon=12, seed=0, retrain_every=None)
    for t in range(warmup):
        suite.step(_loads(n, t, rng))
    suite.retrain()  # the scheduled job, run once so the incremental MLP is live
    times = []
    for t in range(warmup, warmup + ticks):
        y = _loads(n, t, rng)
        y[rng.random(n) < 0.01] = np.nan  # a few missing samples
        start = time.perf_counter()
        suite.step(y)
        times.append(time.perf_counter() - start)
    # state at steady state: fill the shared history ring with a full season first
    # (only the ring, which is what grows; the models keep their state)
    for t in range(suite.season_steps):
        y = _loads(n, t, rng)
        suite._history.push(y, np.ones(n, dtype=bool))
    return float(np.median(times)), len(suite.to_bytes()) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 links only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--links", type=int, nargs="+", help="link counts to time (default 1,000 10,000 100,000)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    sizes = tuple(args.links) if args.links else sizes
    warmup, ticks = (40, 5) if args.quick else (60, 10)
    print(f"torch threads: {torch.get_num_threads()}; ticks timed: {ticks} (median)")
    print(f"{'links':>8} {'ms/tick':>10} {'us/link':>9} {'state B/link':>13}")
    for n in sizes:
        sec, per_link = bench(n, warmup, ticks)
        print(f"{n:>8,} {sec * 1e3:>10.1f} {sec * 1e6 / n:>9.1f} {per_link:>13.0f}")


if __name__ == "__main__":
    main()
