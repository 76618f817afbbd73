"""The paper's experiment offline: fail links, re-route, and score every model around it.

:func:`run_evaluation` (behind ``linkcast evaluate``) runs one independent repetition
per seed: it builds one :class:`~simulator.failures.SimulationResult` per scenario,
runs every model of :class:`forecaster.suite.ModelSuite` prequentially over the link
loads (at each step the models have already forecast; then they see the actual,
score, learn and forecast again), and scores them. It writes ``results.csv`` (one row
per seed, scenario and model), ``summary.csv`` and ``report.md`` (means and 95 %
intervals over the seeds, see :mod:`simulator.report`) and PNG plots; and
``estimation.csv``, how well the demands estimated from the link loads predict each
failure's re-routed loads (:mod:`simulator.estimation`; medians in the report).

Seeds
    A seed drives everything random in a repetition: the synthetic traffic's noise,
    which links fail, and the models' initialisation. Measured traffic (a file, the
    shipped Abilene weeks) has no noise to draw; where it is longer than the protocol,
    each seed takes its own window of it instead, whole days apart
    (:meth:`Protocol.window_start`: on Abilene's 14 days the 8 of the protocol start 0
    to 6 days in, seed mod 7), so that the seeds do not all meet the same hours of
    traffic after the failure. Seeds run in parallel worker processes (``workers``; the
    ``forkserver`` start method where there is one, else ``spawn``: torch and
    ``fork`` do not mix), each with torch on one thread. A seed that fails is reported
    and the others' results are kept; a scenario that a seed cannot produce (no
    failure gives it) is skipped for that seed and named in the report.

Protocol (fixed before any result was seen; durations, converted to steps of the
traffic's ``step_seconds``; a season is one day of steps)
    ======  ===========  ========  =========  ===================================
    run     warm-up      pre       post       series
    ======  ===========  ========  =========  ===================================
    full    6 days       1 day     1 day      8 days; failure at 7 days
    quick   18 hours     6 hours   6 hours    30 hours; failure at 24 hours
    ======  ===========  ========  =========  ===================================

    A traffic file shorter than 8 days but covering at least :data:`MIN_SEASONS`
    seasons still gets the full protocol, sized to it: pre and post windows of equal
    length, ``min(1 day, (T - 1 season) / 2)``, and the rest (at least one season, at
    most 6 days) as warm-up; below that, :meth:`Protocol.fit` says what the minimum
    is. ``quick`` is a smoke test: short, no promise of quality.

    The failure (every failed link of the scenario) happens at step ``f`` = warm-up +
    pre. The *pre* window is ``[f - pre, f)``, the *post* window ``[f, f + post)``;
    a step belongs to a window by the time of the actual it is scored against, so
    forecasts issued before the failure for steps after it count as post. Nothing is
    scored during the warm-up. The series is cut at ``f + post``.

Scored links
    The scenario's ``target_links`` (drastic links for ``drastic``, moderate links
    for ``moderate``, every affected link for ``mixed``); failed links never.

Metrics (per seed, scenario and model, pooled over the scored links and the window)
    ``rmse_pre``, ``rmse_post`` (and ``_h6``, ``_h12``; ``rmse_post_1h``)
        :func:`forecaster.metrics.rmse` of the ``h``-step forecast (``h = 1`` unless
        named), each link's error divided by that link's mean actual load over the
        pre and post windows together, in per cent ("% of link mean"), so links of
        different sizes weigh alike. ``rmse_post_1h``: the first hour after the
        failure only. ``rmse_post_mbps``: the same without normalisation, Mbit/s.
    ``mape_pre``, ``mape_post``
        :func:`forecaster.metrics.mape`, ``h = 1``, per cent.
    ``rmse_settled`` (and ``_h6``, ``_h12``)
        The post window without its first ``h`` steps, whose ``h``-step forecasts
        were issued before the failure and cannot know it: what a model does once
        it has seen the failure. On a drastic shift the one jump step makes most of
        every model's ``rmse_post`` at ``h = 1``.
    ``ttc_steps``
        :func:`forecaster.metrics.time_to_convergence` (the definition shared with
        the API and the dashboard, see :func:`forecaster.metrics.convergence`) of
        :func:`forecaster.metrics.step_ape` of the 1-step forecast over the scored
        links, with the pre window as baseline; empty if not converged within the
        post window. ``ttc_minutes`` is the same in minutes.
    ``coverage``, ``coverage_pre``
        :func:`forecaster.metrics.coverage` of the suite's 90 % interval (``h = 1``)
        in the post (pre) window.

Models
    Every model of the suite (:func:`_make_suite`), listed in :data:`MODELS` order:
    ``liquid``, ``incremental_b72``, ``incremental_b288``, ``incremental_b1008``,
    ``persistence``, ``seasonal``, ``hybrid``: the incremental MLP re-fit every
    72, 288 and 1008 steps (6 hours, 1 day, 3.5 days at 5-minute steps; the paper's
    retraining batch sizes), each on the latest 576 steps. ``incremental_b288`` is
    the suite's main ``incremental`` model, the one the hybrid combines. When the
    warm-up is shorter than the largest of these (a short traffic file, a quick run),
    batches and window are scaled down together so that they fit in it
    (:attr:`Protocol.retrain_scale`; the names keep the paper's sizes,
    ``retrain_every`` in ``results.csv`` holds the steps used). A quick run uses a
    lighter liquid model (one adaptation step per tick, 12-step windows). A reference
    model from another library is one entry of :data:`REFERENCE_MODELS`; it is listed
    where the suite puts it (before persistence). ``reroute`` and
    ``reroute_persistence`` come last (see "Known failure").

Known failure (issue 10)
    ``reroute`` and ``reroute_persistence`` are the hybrid and the persistence of a
    copy of the suite that is told of the failure at its instant, t = 0: between grid
    step ``f - 1`` and ``f``, before ``f`` is measured (:class:`KnownFailure`). Up to
    then the copy *is* the main suite (its state at ``f``, so only the post window
    costs extra). At the failure :func:`network.reroute.failure_shift` estimates the
    demands from the loads of ``f - 1`` (tomogravity) and routes them with and without
    the failed links; the difference is set as the copy's counterfactual shift
    (:meth:`forecaster.suite.ModelSuite.set_reroute`) and its forecasts of ``f - 1``
    are re-issued with it, so its 1-step forecast of ``f`` already knows the failure.
    Its other h-step forecasts that mature after ``f`` were issued before and are
    scored as issued. While the links are down the copy follows the live engine's rule
    (:mod:`engine.failures`): the shift is estimated once per change of the failed
    links, scaled to the total load of each step measured under the failure, that
    ratio smoothed over an hour (:func:`network.reroute.scale_shift`), and the forecasts
    issued after that step are re-issued with it; at each horizon the suite scales it
    again by the model's own forecast of the traffic
    (:meth:`forecaster.suite.ModelSuite.set_reroute`).
    The shift is the moved demands' load, which follows the daily cycle, so one
    estimated before the failure and held drifts through the day; re-estimating it
    hourly from the loads measured under the failure (the rule until commit
    cccc765) lacks the failed links, the very ones that say how much moved, and each
    re-estimate was a step change in what the copy's models see.

Edge links
    By default (``edge_links``) the simulated network's routers report their edge
    links, as a real network's access and peering interfaces are polled: the
    tomogravity behind every shift (``reroute`` and ``detected``) takes the traffic
    entering and leaving at each node in the step it estimates from
    (:func:`simulator.failures.edge_loads`: the true demands, what those links would
    measure; the built-in traffic has no local pairs) as its gravity prior's totals, as the live
    engine does with links labelled ``edge`` (:mod:`engine.failures`). Without them
    (``--no-edge-links``) the node totals are fitted to the backbone's loads. The
    blind models do not see the edge links (their forecasts are not scored: no
    failure shifts them).

Cut read off the loads
    ``detected`` is the hybrid of a third copy, told of nothing: it reads the failure
    off the loads as the live engine does (:class:`network.cuts.CutDetector`: both
    directions of a link that carried traffic fall to 0 in one step), so it knows the
    failure only once step ``f`` is measured. The shift is then estimated from ``f -
    1`` and set before the models take ``f`` (their forecasts of ``f`` stand as
    issued, blind), and followed as for ``reroute``. It is what an operator who posts
    nothing gets. The live engine holds a first 0 back for a bucket (a missed read,
    :mod:`engine.quality`), so there the cut shows one grid step later than here; its
    shift comes, as here, from the last bucket the cut links carried traffic in.

Speed
    The loads before the failure step are the same in every scenario of a seed (same
    traffic, same routing), so the models run over that prefix once per seed; their
    state is saved with :meth:`ModelSuite.to_bytes` at the failure step and restored
    for each scenario's post window, which gives exactly what separate runs would.
    A worker sends back only result rows and the small arrays the plots need.

Examples
--------
>>> parse_seeds("0,3,5-7")
[0, 3, 5, 6, 7]
>>> p = Protocol.fit(900, available_steps=322)  # 3.35 days of 15-minute steps
>>> (p.warmup_steps, p.pre_steps, p.post_steps)
(130, 96, 96)
>>> import tempfile
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp())
>>> ev = run_evaluation(topology="abilene", traffic="sine", scenarios=["drastic"],
...                     seeds=[0, 1], out=out, quick=True, progress=False)  # doctest: +SKIP
>>> sorted(p.name for p in out.iterdir())  # doctest: +SKIP
['error_drastic.png', 'estimation.csv', 'link_drastic.png', 'report.md', 'results.csv',
 'summary.csv']
"""

from __future__ import annotations

import inspect
import logging
import math
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.context import BaseContext
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from forecaster import metrics
from forecaster.base import Forecaster
from forecaster.incremental import IncrementalForecaster
from forecaster.suite import ModelSuite
from network.cuts import CutDetector
from network.reroute import failure_shift, reference_loads, scale_shift
from network.routing import Routing, route
from simulator.estimation import ESTIMATION_COLUMNS, estimation_rows, report_section
from simulator.failures import ScenarioKind, SimulationResult, edge_loads, experiment
from simulator.topology import Topology, load_sndlib_xml, load_topology
from simulator.traffic import DAY_SECONDS, Traffic, load_abilene, load_traffic_csv, sine_traffic

__all__ = [
    "HORIZON",
    "MIN_SEASONS",
    "MODELS",
    "REFERENCE_MODELS",
    "RESULT_COLUMNS",
    "SCENARIOS",
    "TRAFFIC_KINDS",
    "Evaluation",
    "EvaluationFailed",
    "ModelTrace",
    "Protocol",
    "ScenarioDigest",
    "ScenarioRun",
    "SeedOutcome",
    "SeedTask",
    "format_seeds",
    "metric_column",
    "parse_seeds",
    "result_models",
    "run_evaluation",
    "run_seed",
    "score",
]

log = logging.getLogger(__name__)

#: Scenario names, as ``linkcast evaluate --scenario`` takes them.
SCENARIOS: tuple[str, ...] = tuple(k.value for k in ScenarioKind)
#: Built-in traffic kinds (``--traffic``).
TRAFFIC_KINDS: tuple[str, ...] = ("sine", "abilene")
#: Steps forecast ahead by every model.
HORIZON = 12
#: Horizons scored (1 is the headline; the others get ``_h{h}`` columns).
SCORED_HORIZONS = (1, 6, 12)
#: Interval coverage target of the suite.
LEVEL = 0.9
#: Steps at which demand estimation is scored per scenario (full and quick runs).
ESTIMATION_SAMPLES, ESTIMATION_SAMPLES_QUICK = 12, 4
#: Incremental re-fit schedules (steps between re-fits); the middle one is the main model.
RETRAIN_BATCHES = (72, 288, 1008)
MAIN_RETRAIN = 288
#: Each re-fit uses the latest this many steps.
RETRAIN_WINDOW = 576
#: The re-route-aware copy's models that are reported: result name -> the copy's model
#: (see "Known failure" in the module doc).
REROUTE_MODELS: dict[str, str] = {"reroute": "hybrid", "reroute_persistence": "persistence"}
#: The copy that reads the failure off the loads, as the live engine does (see "Cut read
#: off the loads" in the module doc): result name -> the copy's model.
DETECTED_MODELS: dict[str, str] = {"detected": "hybrid"}


#: Reference models from other libraries, scored beside linkcast's (not combined by the
#: hybrid): result name -> factory called as ``factory(n_links, horizon, protocol=p)``,
#: a module-level function (the suite's state is pickled). Adding one is one line here.
def _mstl(n_links: int, horizon: int, protocol: Protocol) -> Forecaster:
    """statsforecast's MSTL with an AutoETS trend, re-fitted like ``incremental``."""
    from forecaster.reference import MSTLForecaster

    return MSTLForecaster(
        n_links,
        horizon,
        season_steps=protocol.season_steps,
        retrain_every=protocol.retrain_every(MAIN_RETRAIN),
        retrain_window=protocol.retrain_window,
    )


REFERENCE_MODELS: dict[str, Callable[..., Forecaster]] = {"mstl": _mstl}
#: Result rows in this order: the suite's (see :func:`_make_suite` and
#: :func:`result_models`); the suite's ``incremental`` is reported as ``incremental_b288``.
MODELS: tuple[str, ...] = (
    "liquid",
    *(f"incremental_b{b}" for b in RETRAIN_BATCHES),
    *REFERENCE_MODELS,
    "persistence",
    "seasonal",
    "hybrid",
    *REROUTE_MODELS,
    *DETECTED_MODELS,
)
#: Time to convergence: trailing mean, tolerance and hold (see the module doc).
#: Full protocol: warm-up, then pre and post windows, in days.
FULL_WARMUP_DAYS, FULL_WINDOW_DAYS = 6, 1
#: Quick protocol: warm-up, pre and post windows, in hours.
QUICK_HOURS = (18, 6, 6)
#: Shortest traffic for the full protocol, in seasons (days): one season of warm-up,
#: then pre and post windows of at least 0.75 season each.
MIN_SEASONS = 2.5
#: Trailing mean applied to the error-around-failure curves of the report.
SMOOTH_SECONDS = 1800
#: Columns of ``results.csv``.
RESULT_COLUMNS: tuple[str, ...] = (
    "seed",
    "scenario",
    "model",
    "retrain_every",
    "n_links",
    "rmse_pre",
    "rmse_pre_h6",
    "rmse_pre_h12",
    "rmse_post",
    "rmse_post_1h",
    "rmse_post_h6",
    "rmse_post_h12",
    "rmse_settled",
    "rmse_settled_h6",
    "rmse_settled_h12",
    "rmse_post_mbps",
    "mape_pre",
    "mape_post",
    "ttc_steps",
    "ttc_minutes",
    "coverage",
    "coverage_pre",
    "n_fits",
)

Row = dict[str, float | int | str | None]


def _min_retrain_window() -> int:
    """The shortest window an incremental model can be fit on (its lags plus the horizon)."""
    n_lags = inspect.signature(IncrementalForecaster).parameters["n_lags"].default
    return int(n_lags) + HORIZON


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"4"``, ``"0-9"`` or a list such as ``"0,3,5-7"`` (in the order given).

    Examples
    --------
    >>> parse_seeds("0-3")
    [0, 1, 2, 3]
    >>> parse_seeds("5, 1-2, 5")
    [5, 1, 2]
    """
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(
                f"bad seeds {text!r}: {part.strip()!r} is not a seed (N >= 0) or a range "
                "(A-B); e.g. 0-9 or 0,3,5-7"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad seeds {text!r}: range {lo}-{hi} is empty")
        seeds += range(lo, hi + 1)
    return list(dict.fromkeys(seeds))


def format_seeds(seeds: Sequence[int]) -> str:
    """Seeds as ranges: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``.

    Examples
    --------
    >>> format_seeds([0, 1, 2, 3, 5, 7, 8])
    '0-3, 5, 7-8'
    """
    parts: list[tuple[int, int]] = []
    for s in sorted(set(seeds)):
        if parts and s == parts[-1][1] + 1:
            parts[-1] = (parts[-1][0], s)
        else:
            parts.append((s, s))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def _duration(seconds: float) -> str:
    if seconds % DAY_SECONDS == 0:
        days = int(seconds // DAY_SECONDS)
        return f"{days} day" + ("s" if days != 1 else "")
    hours = seconds / 3600
    if hours >= 48:
        return f"{seconds / DAY_SECONDS:.3g} days"
    return f"{hours:g} hours" if hours != 1 else "1 hour"


@dataclass(frozen=True)
class Protocol:
    """Warm-up, pre and post windows in steps (see the module doc).

    ``available_steps`` is what the traffic offered (``None``: generated to fit).
    """

    step_seconds: int
    warmup_steps: int
    pre_steps: int
    post_steps: int
    quick: bool = False
    available_steps: int | None = None

    @classmethod
    def for_run(cls, step_seconds: int, quick: bool) -> Protocol:
        """The standard protocol of a full or quick run, for this step length."""
        hours = 3600 / step_seconds
        if quick:
            warmup, pre, post = (h * hours for h in QUICK_HOURS)
        else:
            day = DAY_SECONDS / step_seconds
            warmup, pre, post = FULL_WARMUP_DAYS * day, FULL_WINDOW_DAYS * day, day
        return cls(step_seconds, round(warmup), round(pre), round(post), quick)

    @classmethod
    def minimum_steps(cls, step_seconds: int) -> int:
        """The shortest traffic a full run accepts: :data:`MIN_SEASONS` seasons."""
        return math.ceil(MIN_SEASONS * cls.for_run(step_seconds, False).season_steps)

    @classmethod
    def fit(cls, step_seconds: int, available_steps: int, quick: bool = False) -> Protocol:
        """The protocol for traffic of ``available_steps`` steps (see the module doc).

        Raises
        ------
        ValueError
            If the traffic is too short; the message gives the minimum in steps and
            as a duration, and what the traffic has.

        Examples
        --------
        >>> Protocol.fit(300, 4032).n_steps  # 14 days: the standard 8
        2304
        >>> Protocol.fit(300, 1000).warmup_steps, Protocol.fit(300, 1000).pre_steps
        (424, 288)
        >>> Protocol.fit(900, 200)
        Traceback (most recent call last):
        ...
        ValueError: the traffic has 200 steps of 900 s (2.08 days); the evaluation needs at
        least 240 steps (2.5 days: ...
        """
        standard = cls.for_run(step_seconds, quick)
        if available_steps >= standard.n_steps:
            return replace(standard, available_steps=available_steps)
        has = (
            f"the traffic has {available_steps} steps of {step_seconds} s "
            f"({_duration(available_steps * step_seconds)})"
        )
        if quick:
            raise ValueError(
                f"{has}; a quick run needs {standard.n_steps} steps "
                f"({_duration(standard.n_steps * step_seconds)})"
            )
        season = standard.season_steps
        minimum = cls.minimum_steps(step_seconds)
        if available_steps < minimum:
            raise ValueError(
                f"{has}; the evaluation needs at least {minimum} steps "
                f"({_duration(minimum * step_seconds)}: {MIN_SEASONS:g} seasons of 1 day, a "
                "warm-up of one season, then equal windows before and after the failure); "
                f"the standard protocol uses {standard.n_steps} steps "
                f"({_duration(standard.n_steps * step_seconds)})"
            )
        window = min(standard.pre_steps, (available_steps - season) // 2)
        warmup = min(standard.warmup_steps, available_steps - 2 * window)
        return cls(step_seconds, warmup, window, window, False, available_steps)

    @property
    def failure_step(self) -> int:
        return self.warmup_steps + self.pre_steps

    @property
    def n_steps(self) -> int:
        return self.failure_step + self.post_steps

    @property
    def season_steps(self) -> int:
        return max(2, round(DAY_SECONDS / self.step_seconds))

    @property
    def shortened(self) -> bool:
        """Whether the traffic was too short for the standard windows."""
        return self.n_steps < Protocol.for_run(self.step_seconds, self.quick).n_steps

    @property
    def retrain_scale(self) -> float:
        """Factor on the incremental re-fit batches and window so that they fit the warm-up."""
        return min(1.0, self.warmup_steps / max(RETRAIN_WINDOW, *RETRAIN_BATCHES))

    def retrain_every(self, batch: int) -> int:
        """Steps between re-fits of the variant with the paper's batch ``batch``."""
        return max(1, round(batch * self.retrain_scale))

    @property
    def retrain_window(self) -> int:
        """Steps each incremental re-fit uses."""
        return max(_min_retrain_window(), round(RETRAIN_WINDOW * self.retrain_scale))

    def steps_of(self, seconds: float) -> int:
        return max(1, round(seconds / self.step_seconds))

    def window_start(self, seed: int) -> int:
        """The first step of measured traffic that ``seed`` uses: ``seed mod (k + 1)``
        whole seasons in, where ``k`` seasons are left over once the protocol's
        ``n_steps`` are taken (0 when the traffic has no season to spare, or was
        generated to fit). Whole seasons keep the time of day of the failure.

        >>> p = Protocol.fit(300, 4032)  # 14 days, the protocol takes 8: 7 windows
        >>> [p.window_start(s) // p.season_steps for s in (0, 1, 6, 7, 9)]
        [0, 1, 6, 0, 2]
        >>> Protocol.fit(300, 2400).window_start(3)  # under a season to spare
        0
        """
        spare = ((self.available_steps or self.n_steps) - self.n_steps) // self.season_steps
        return (seed % (spare + 1)) * self.season_steps

    def describe(self) -> str:
        """The windows in words (steps and durations), with why they were sized so."""

        def span(steps: int) -> str:
            return _duration(steps * self.step_seconds)

        kind = "quick run (a smoke test, no promise of quality)" if self.quick else "full run"
        sized = ""
        if self.shortened:
            standard = Protocol.for_run(self.step_seconds, self.quick)
            sized = (
                f", sized to the traffic ({self.available_steps} steps, "
                f"{span(self.available_steps or 0)}; the standard {FULL_WARMUP_DAYS} days + "
                f"{FULL_WINDOW_DAYS} + {FULL_WINDOW_DAYS} needs {standard.n_steps} steps)"
            )
        return (
            f"{kind}{sized}, {self.step_seconds} s steps: warm-up "
            f"{span(self.warmup_steps)} ({self.warmup_steps} steps, not scored), pre window "
            f"{span(self.pre_steps)} ({self.pre_steps} steps) before the failure at step "
            f"{self.failure_step}, post window {span(self.post_steps)} ({self.post_steps} "
            f"steps) from it; {self.n_steps} steps in all"
        )

    def describe_retrain(self) -> str:
        """The incremental re-fit schedules in words (and whether they were scaled)."""
        every = ", ".join(
            f"`incremental_b{b}` every {self.retrain_every(b)}" for b in RETRAIN_BATCHES
        )
        text = f"incremental re-fits: {every} steps, each on the latest {self.retrain_window} steps"
        if self.retrain_scale < 1:
            text += (
                f" (the paper's batches {', '.join(map(str, RETRAIN_BATCHES))} and window "
                f"{RETRAIN_WINDOW} scaled by {self.retrain_scale:.3g} to fit the "
                f"{self.warmup_steps}-step warm-up)"
            )
        if self.retrain_window > self.warmup_steps:
            text += (
                f"; the window cannot be shorter than {_min_retrain_window()} steps, "
                "more than this warm-up"
            )
        return text


@dataclass
class ModelTrace:
    """What one model did at every step run (all links).

    ``residual[t, :, k]`` is ``y[t] - forecast issued at t - h`` for the ``k``-th of
    :data:`SCORED_HORIZONS`; ``forecast1``, ``lower1`` and ``upper1`` at ``t`` are the
    1-step forecast and interval for step ``t`` (issued at ``t - 1``). NaN where unknown.
    """

    residual: np.ndarray
    forecast1: np.ndarray
    lower1: np.ndarray
    upper1: np.ndarray

    @classmethod
    def empty(cls, n_steps: int, n_links: int) -> ModelTrace:
        def nan(*shape: int) -> np.ndarray:
            return np.full(shape, np.nan, dtype=np.float64)

        k = len(SCORED_HORIZONS)
        return cls(
            nan(n_steps, n_links, k),
            nan(n_steps, n_links),
            nan(n_steps, n_links),
            nan(n_steps, n_links),
        )

    def copy(self) -> ModelTrace:
        return ModelTrace(
            self.residual.copy(), self.forecast1.copy(), self.lower1.copy(), self.upper1.copy()
        )


@dataclass
class ScenarioRun:
    """One scenario's simulation, model traces and scores (one seed)."""

    name: str
    result: SimulationResult
    traces: dict[str, ModelTrace]
    models: tuple[str, ...] = MODELS
    retrain_every: dict[str, int | None] = field(default_factory=dict)
    n_fits: dict[str, int] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0


def _suite_name(model: str) -> str:
    return "incremental" if model == f"incremental_b{MAIN_RETRAIN}" else model


def _result_name(suite_name: str) -> str:
    return f"incremental_b{MAIN_RETRAIN}" if suite_name == "incremental" else suite_name


def result_models(suite_names: Sequence[str]) -> tuple[str, ...]:
    """The suite's models under their result names, in the suite's order.

    The incremental family is listed together by re-fit batch, where the suite has
    its main ``incremental`` model.

    Examples
    --------
    >>> result_models(("liquid", "incremental", "incremental_b72", "incremental_b1008",
    ...                "mstl", "persistence", "seasonal", "hybrid"))
    ('liquid', 'incremental_b72', 'incremental_b288', 'incremental_b1008', 'mstl',
     'persistence', 'seasonal', 'hybrid')
    """
    names = [_result_name(n) for n in suite_names]
    family = sorted(
        (n for n in names if re.fullmatch(r"incremental_b\d+", n)),
        key=lambda n: int(n.removeprefix("incremental_b")),
    )
    out: list[str] = []
    for n in names:
        if n == _result_name("incremental"):
            out += family
        elif n not in family:
            out.append(n)
    return tuple(out)


def _make_suite(n_links: int, protocol: Protocol, seed: int) -> ModelSuite:
    """The suite every evaluation runs: the one place that configures it."""
    variants: dict[str, int | None] = {
        f"incremental_b{b}": protocol.retrain_every(b) for b in RETRAIN_BATCHES if b != MAIN_RETRAIN
    }
    liquid = {"adapt_steps": 1, "window": 12} if protocol.quick else {}
    references: dict[str, Callable[[int, int], Forecaster]] = {
        k: partial(f, protocol=protocol) for k, f in REFERENCE_MODELS.items()
    }
    return ModelSuite(
        n_links,
        horizon=HORIZON,
        level=LEVEL,
        seed=seed,
        season_steps=protocol.season_steps,
        retrain_every=protocol.retrain_every(MAIN_RETRAIN),
        retrain_window=protocol.retrain_window,
        incremental_variants=variants,
        liquid_kwargs=liquid,
        reference_models=references or None,
    )


Tick = Callable[[int], None]


def _run_steps(
    suite: ModelSuite,
    loads: np.ndarray,
    start: int,
    stop: int,
    traces: dict[str, ModelTrace],
    tick: Tick,
    names: dict[str, str] | None = None,
    known: KnownFailure | None = None,
) -> None:
    """Step the suite over ``loads[start:stop]``, recording into ``traces``.

    ``names`` maps each trace to the suite's model (default: the result names); with
    ``known``, the suite is told of the failure as it happens (see :class:`KnownFailure`).
    """
    cols = [h - 1 for h in SCORED_HORIZONS]
    n = loads.shape[0]
    names = names or {m: _suite_name(m) for m in traces}

    def record(t: int, forecasts: dict, lower: dict, upper: dict) -> None:
        if t < n:
            for model, tr in traces.items():
                tr.forecast1[t] = forecasts[names[model]][:, 0]
                tr.lower1[t] = lower[names[model]][:, 0]
                tr.upper1[t] = upper[names[model]][:, 0]

    for t in range(start, stop):
        if known is not None and known.update(suite, loads, t):
            record(t, *suite.issue())  # re-issued at the failure (or repair) instant
        out = suite.step(loads[t])
        for model, tr in traces.items():
            tr.residual[t] = out.residuals[names[model]][:, cols]
        record(t + 1, out.forecasts, out.lower, out.upper)
        tick(1)


@dataclass
class KnownFailure:
    """Tells a suite of a scenario's failures as they happen (the failure known at t = 0).

    The live engine's rule (:mod:`engine.failures`), step by step. Before grid step
    ``t`` is measured the failed links of step ``t`` are known. When they differ from
    step ``t - 1``'s (a failure, or a repair), the shift is estimated by
    :func:`network.reroute.failure_shift` from the loads of ``t - 1`` (measured with
    ``t - 1``'s links down) and set on the suite, which re-issues its latest forecasts
    with it; nothing down clears it. While the same links stay down, the shift is
    scaled to the total load of each step measured under the failure, that ratio
    smoothed over the steps (:func:`network.reroute.scale_shift`), and the forecasts
    issued after it are re-issued with the scaled shift, as the engine stores them: the
    shift follows the demands through the day with one tomogravity per change of the
    failed links.

    Parameters
    ----------
    routing
        The simulation's routing with every link up.
    down_at
        ``(T, L)`` bool: the links down at each step (the scenario's states).
    step_seconds
        The grid step.
    reissue
        Whether the links down at ``t`` are known before ``t`` is measured (an
        operator's event: the forecasts of ``t - 1`` are re-issued with the shift) or
        only from ``t``'s loads (:meth:`detected`: those forecasts stand as issued).
    """

    routing: Routing
    down_at: np.ndarray
    step_seconds: float
    reissue: bool = True
    #: ``(out, in)``, ``(T, N)`` each, bit/s: the traffic entering and leaving at each
    #: node at each step (the edge links' loads); None: fitted to the link loads
    totals_at: tuple[np.ndarray, np.ndarray] | None = None
    estimates: int = 0
    rescaled: int = 0
    ratio: float = 1.0  # the smoothed ratio of the traffic to the estimate's
    # the shift as estimated, the loads it predicts for the step it was made from, down
    _scale: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(
        cls, result: SimulationResult, topology: Topology, pairs: Any, totals: Totals = None
    ) -> KnownFailure:
        """The failures as the scenario makes them, known at their instant; ``totals``:
        :func:`simulator.failures.edge_loads` of the traffic through the scenario
        (its edge links measured) or None."""
        n_steps = result.loads_bps.shape[0]
        down = np.zeros((n_steps, len(result.link_names)), dtype=bool)
        for start, stop, failed in result.scenario.states(topology, n_steps):
            down[start:stop, sorted(topology.directed(failed))] = True
        return cls(route(topology.network, pairs), down, result.step_seconds, totals_at=totals)

    @classmethod
    def detected(
        cls, result: SimulationResult, topology: Topology, pairs: Any, totals: Totals = None
    ) -> KnownFailure:
        """The failures as :class:`network.cuts.CutDetector` reads them off the loads,
        each step's from that step's loads (so known only once it is measured)."""
        cuts = CutDetector(topology.network)
        down = np.zeros(result.loads_bps.shape, dtype=bool)
        for t, y in enumerate(result.loads_bps):
            cuts.update(y)
            down[t] = cuts.down
        routing = route(topology.network, pairs)
        return cls(routing, down, result.step_seconds, reissue=False, totals_at=totals)

    def update(self, suite: ModelSuite, loads: np.ndarray, t: int) -> bool:
        """Before step ``t``: tell ``suite`` what is known; whether it re-issued its forecasts."""
        if t == 0:
            return False
        now = self.down_at[t]
        if not np.array_equal(now, self.down_at[t - 1]):
            if not now.any():
                self._scale = None
                suite.set_reroute(None, None, reissue=self.reissue)
                return self.reissue
            fs = failure_shift(
                self.routing,
                loads[t - 1],
                np.flatnonzero(now).tolist(),
                measured_failed=np.flatnonzero(self.down_at[t - 1]).tolist(),
                totals_bps=None
                if self.totals_at is None
                else (self.totals_at[0][t - 1], self.totals_at[1][t - 1]),
            )
            self.estimates += 1
            self.ratio = 1.0
            reference = reference_loads(loads[t - 1], fs.measured_shift_bps, fs.down)
            self._scale = (fs.shift_bps, reference, fs.down)
            suite.set_reroute(fs.shift_bps, fs.down, reissue=self.reissue)
            return self.reissue
        if self._scale is None or not now.any():
            return False
        shift, reference, down = self._scale
        self.rescaled += 1
        scaled, self.ratio = scale_shift(
            shift, reference, down, loads[t - 1], ratio=self.ratio, step_seconds=self.step_seconds
        )
        suite.set_reroute(scaled, down)
        return True


Totals = tuple[np.ndarray, np.ndarray] | None


def _fits(suite: ModelSuite, models: Sequence[str]) -> tuple[dict[str, int | None], dict[str, int]]:
    every: dict[str, int | None] = {}
    n_fits: dict[str, int] = {}
    for m in models:
        model = suite.models[_suite_name(m)]
        if isinstance(model, IncrementalForecaster):
            every[m], n_fits[m] = model.retrain_every, model.n_fits
    return every, n_fits


def run_models(
    results: dict[str, SimulationResult],
    protocol: Protocol,
    seed: int,
    tick: Tick | None = None,
    known: dict[str, KnownFailure] | None = None,
    detected: dict[str, KnownFailure] | None = None,
) -> dict[str, ScenarioRun]:
    """Run every model over every scenario's loads (the shared prefix once when possible).

    ``tick(n)`` is called as steps are done (progress). With ``known`` (scenario ->
    :class:`KnownFailure`), a copy of the suite taken just before the failure is told
    of it and run to the end beside the main suite; its :data:`REROUTE_MODELS` are
    reported. Likewise ``detected`` (:meth:`KnownFailure.detected`), another copy, its
    :data:`DETECTED_MODELS`.
    """
    tick = tick or (lambda n: None)
    known = known or {}
    detected = detected or {}
    names = list(results)
    first = results[names[0]]
    n_steps, n_links = first.loads_bps.shape
    f = protocol.failure_step
    shared = all(
        r.loads_bps.shape == first.loads_bps.shape
        and np.array_equal(r.loads_bps[:f], first.loads_bps[:f])
        for r in results.values()
    )
    runs: dict[str, ScenarioRun] = {}
    if shared:
        t0 = time.perf_counter()
        suite = _make_suite(n_links, protocol, seed)
        models = result_models(suite.model_names)
        prefix = {m: ModelTrace.empty(n_steps, n_links) for m in models}
        _run_steps(suite, first.loads_bps, 0, f, prefix, tick)
        state = suite.to_bytes()
        prefix_seconds = time.perf_counter() - t0
    for name in names:
        res = results[name]
        t0 = time.perf_counter()
        if shared:
            suite = ModelSuite.from_bytes(state)
            traces = {m: tr.copy() for m, tr in prefix.items()}
        else:
            suite = _make_suite(n_links, protocol, seed)
            models = result_models(suite.model_names)
            traces = {m: ModelTrace.empty(n_steps, n_links) for m in models}
            _run_steps(suite, res.loads_bps, 0, f, traces, tick)
        # everything up to the failure is the same for the copies: only the rest costs
        at_failure = state if shared else suite.to_bytes()
        _run_steps(suite, res.loads_bps, f, n_steps, traces, tick)
        scenario_models = models
        copies = ((REROUTE_MODELS, known), (DETECTED_MODELS, detected))
        for reported, told in ((m, k[name]) for m, k in copies if name in k):
            aware = ModelSuite.from_bytes(at_failure)
            # what the copy does not report and its hybrid does not combine need not run
            combined = aware.models["hybrid"].combine  # type: ignore[attr-defined]
            aware.drop_models(tuple(k for k in aware.models if k not in combined and k != "hybrid"))
            extra = {m: traces[_result_name(k)].copy() for m, k in reported.items()}
            _run_steps(aware, res.loads_bps, f, n_steps, extra, tick, reported, told)
            traces.update(extra)
            scenario_models = (*scenario_models, *reported)
        seconds = time.perf_counter() - t0 + (prefix_seconds / len(names) if shared else 0)
        every, n_fits = _fits(suite, models)
        runs[name] = ScenarioRun(name, res, traces, scenario_models, every, n_fits, seconds=seconds)
    return runs


def link_scales(result: SimulationResult, protocol: Protocol) -> np.ndarray:
    """Per-link normaliser: mean actual load over the pre and post windows (>= 1 bit/s)."""
    f = protocol.failure_step
    window = result.loads_bps[f - protocol.pre_steps : f + protocol.post_steps]
    return np.maximum(window.mean(axis=0), 1.0)


def normalised_error_series(
    run: ScenarioRun, model: str, links: Sequence[int], protocol: Protocol, k: int = 0
) -> np.ndarray:
    """Per-step mean ``|error| / link scale`` (per cent) over ``links``, ``k``-th horizon."""
    scale = link_scales(run.result, protocol)[list(links)]
    err = 100.0 * np.abs(run.traces[model].residual[:, links, k]) / scale
    out = np.full(err.shape[0], np.nan)
    ok = np.isfinite(err).any(axis=1)
    out[ok] = np.nanmean(err[ok], axis=1)
    return out


def _or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def metric_column(name: str, h: int) -> str:
    """The results column of metric ``name`` at horizon ``h`` (``rmse_post``, ``rmse_post_h6``).

    Examples
    --------
    >>> metric_column("rmse_settled", 1), metric_column("rmse_settled", 12)
    ('rmse_settled', 'rmse_settled_h12')
    """
    return name if h == 1 else f"{name}_h{h}"


def score(run: ScenarioRun, protocol: Protocol, seed: int = 0) -> list[Row]:
    """The result rows of one scenario, one per model (see the module doc)."""
    res = run.result
    links = list(res.target_links)
    f, pre, post = protocol.failure_step, protocol.pre_steps, protocol.post_steps
    pre_w, post_w = slice(f - pre, f), slice(f, f + post)
    first_hour = slice(f, f + min(post, protocol.steps_of(3600)))
    scale = link_scales(res, protocol)[links]
    y = res.loads_bps[:, links]
    rows: list[Row] = []
    for model in run.models:
        tr = run.traces[model]
        r = tr.residual[:, links, :]
        fc = {h: y - r[:, :, k] for k, h in enumerate(SCORED_HORIZONS)}

        def nrmse(w: slice, h: int = 1, fc: dict[int, np.ndarray] = fc) -> float:
            return 100.0 * metrics.rmse(y[w] / scale, fc[h][w] / scale)

        # the one definition of time to convergence (forecaster.metrics.convergence)
        ttc = metrics.time_to_convergence(
            metrics.step_ape(y[: f + post], fc[1][: f + post]), f, baseline_steps=pre
        )
        row: Row = {
            "seed": seed,
            "scenario": run.name,
            "model": model,
            "retrain_every": run.retrain_every.get(model),
            "n_links": len(links),
            "rmse_pre": nrmse(pre_w),
            **{f"rmse_pre_h{h}": nrmse(pre_w, h) for h in SCORED_HORIZONS if h != 1},
            "rmse_post": nrmse(post_w),
            "rmse_post_1h": nrmse(first_hour),
            **{f"rmse_post_h{h}": nrmse(post_w, h) for h in SCORED_HORIZONS if h != 1},
            **{
                metric_column("rmse_settled", h): nrmse(slice(f + h, f + post), h)
                for h in SCORED_HORIZONS
            },
            "rmse_post_mbps": metrics.rmse(y[post_w], fc[1][post_w]) / 1e6,
            "mape_pre": metrics.mape(y[pre_w], fc[1][pre_w]),
            "mape_post": metrics.mape(y[post_w], fc[1][post_w]),
            "ttc_steps": ttc,
            "ttc_minutes": None if ttc is None else ttc * protocol.step_seconds / 60,
            "coverage": metrics.coverage(
                y[post_w], tr.lower1[post_w][:, links], tr.upper1[post_w][:, links]
            ),
            "coverage_pre": metrics.coverage(
                y[pre_w], tr.lower1[pre_w][:, links], tr.upper1[pre_w][:, links]
            ),
            "n_fits": run.n_fits.get(model),
        }
        rows.append({k: (_or_none(v) if isinstance(v, float) else v) for k, v in row.items()})
    return rows


# -- what a seed sends back ------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioDigest:
    """What the report needs of one scenario of one seed (small, no traces).

    ``error_curves[model]`` is ``(pre + post, 2)``: the mean normalised |error| over
    the scored links (per cent, :data:`SMOOTH_SECONDS` trailing mean) of the 1-step
    and the 12-step forecast, from the start of the pre window. ``example_*`` is the
    scored link with the largest shift: its actual load and every model's 1-step
    forecast (bit/s), from 6 hours before to 12 hours after the failure (at most
    the windows), ``example_start`` steps from the failure.
    """

    name: str
    seed: int
    failed: str
    failure_ts: int
    n_affected: int
    n_scored: int
    largest_shift: float
    seconds: float
    error_curves: dict[str, np.ndarray]
    example_link: str
    example_change: float
    example_start: int
    example_actual: np.ndarray
    example_forecasts: dict[str, np.ndarray]


def digest(run: ScenarioRun, protocol: Protocol, seed: int) -> ScenarioDigest:
    """Reduce one scenario run to what the report draws and states."""
    res = run.result
    f = protocol.failure_step
    links = list(res.target_links)
    start, stop = f - protocol.pre_steps, f + protocol.post_steps
    smooth = max(1, round(SMOOTH_SECONDS / protocol.step_seconds))
    last = len(SCORED_HORIZONS) - 1
    curves = {
        m: np.stack(
            [
                metrics.rolling_mean(normalised_error_series(run, m, links, protocol, k), smooth)[
                    start:stop
                ]
                for k in (0, last)
            ],
            axis=1,
        )
        for m in run.models
    }
    shift = max(res.target_shifts, key=lambda s: abs(s.relative_change))
    before = min(protocol.pre_steps, round(6 * 3600 / protocol.step_seconds))
    after = min(protocol.post_steps, round(12 * 3600 / protocol.step_seconds))
    ex = slice(f - before, f + after)
    link = shift.link_index
    return ScenarioDigest(
        name=run.name,
        seed=seed,
        failed=", ".join(f"{e.link[0]}-{e.link[1]}" for e in res.scenario.events),
        failure_ts=int(res.timestamps[f]),
        n_affected=len(res.affected_links),
        n_scored=len(links),
        largest_shift=float(shift.relative_change),
        seconds=run.seconds,
        error_curves=curves,
        example_link=res.link_names[link],
        example_change=float(shift.relative_change),
        example_start=-before,
        example_actual=res.loads_bps[ex, link].copy(),
        example_forecasts={m: run.traces[m].forecast1[ex, link].copy() for m in run.models},
    )


@dataclass(frozen=True)
class SeedTask:
    """One repetition: the seed and everything it needs (a worker's whole input).

    ``traffic`` is a traffic file's, whole (each seed takes its window of it); ``None``
    draws sine traffic from the seed.
    """

    seed: int
    topology: Topology
    traffic: Traffic | None
    scenarios: tuple[str, ...]
    protocol: Protocol
    reroute: bool = True
    edge_links: bool = True

    def traffic_for_seed(self) -> Traffic:
        """The file's traffic, the protocol's ``n_steps`` of it from
        :meth:`Protocol.window_start`; or sine traffic drawn from the seed."""
        p = self.protocol
        if self.traffic is not None:
            start = p.window_start(self.seed)
            if start + p.n_steps > self.traffic.n_steps:
                raise ValueError(
                    f"the protocol takes {p.n_steps} steps from step {start}; the traffic "
                    f"has {self.traffic.n_steps} (a protocol made for other traffic?)"
                )
            return self.traffic.slice(start, start + p.n_steps)
        return sine_traffic(
            self.topology, n_steps=p.n_steps, step_seconds=p.step_seconds, seed=self.seed
        )

    @property
    def expected_steps(self) -> int:
        """Model steps this seed takes when every scenario runs (progress)."""
        p = self.protocol
        copies = 3 if self.reroute else 1  # the re-route-aware copies run the post window too
        return p.failure_step + copies * len(self.scenarios) * p.post_steps


@dataclass
class SeedOutcome:
    """What one seed sends back: result rows, what was skipped, and the digests."""

    seed: int
    rows: list[Row]
    skipped: dict[str, str]
    digests: dict[str, ScenarioDigest]
    models: tuple[str, ...]
    n_pairs: int
    first_ts: int
    last_ts: int
    seconds: float
    estimation: list[dict[str, Any]] = field(default_factory=list)


def build_scenarios(
    topology: Topology, traffic: Traffic, scenarios: Sequence[str], seed: int, protocol: Protocol
) -> tuple[dict[str, SimulationResult], dict[str, str]]:
    """Each scenario's simulation, and why a scenario that cannot be produced was skipped."""
    results: dict[str, SimulationResult] = {}
    skipped: dict[str, str] = {}
    for name in scenarios:
        try:
            res = experiment(topology, traffic, name, seed=seed, step=protocol.failure_step)
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        if not res.target_links:
            skipped[name] = "the failure affects no link that could be scored"
            continue
        results[name] = res
    return results, skipped


def run_seed(task: SeedTask, tick: Tick | None = None) -> SeedOutcome:
    """Run one seed: traffic, scenarios, models, scores and digests (torch on one thread)."""
    started = time.perf_counter()
    p = task.protocol
    tr = task.traffic_for_seed()
    results, skipped = build_scenarios(task.topology, tr, task.scenarios, task.seed, p)
    span = (len(tr.pairs), int(tr.timestamps[0]), int(tr.timestamps[-1]))
    if not results:
        return SeedOutcome(task.seed, [], skipped, {}, (), *span, time.perf_counter() - started)
    samples = ESTIMATION_SAMPLES_QUICK if p.quick else ESTIMATION_SAMPLES
    estimation = estimation_rows(task.topology, tr, results, seed=task.seed, samples=samples)
    known = detected = None
    if task.reroute:
        topo, pairs = task.topology, tr.pairs
        totals = {
            k: edge_loads(topo, tr, r.scenario) if task.edge_links else None
            for k, r in results.items()
        }
        known = {k: KnownFailure.of(r, topo, pairs, totals[k]) for k, r in results.items()}
        detected = {k: KnownFailure.detected(r, topo, pairs, totals[k]) for k, r in results.items()}
    threads = torch.get_num_threads()
    try:
        # Small batched models: one thread is faster and leaves the other cores free.
        torch.set_num_threads(1)
        runs = run_models(results, p, task.seed, tick=tick, known=known, detected=detected)
    finally:
        torch.set_num_threads(threads)
    rows = [row for run in runs.values() for row in score(run, p, task.seed)]
    digests = {name: digest(run, p, task.seed) for name, run in runs.items()}
    models = next(iter(runs.values())).models
    return SeedOutcome(
        task.seed, rows, skipped, digests, models, *span, time.perf_counter() - started, estimation
    )


# -- worker processes -------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue
    torch.set_num_threads(1)


def _run_seed_in_worker(task: SeedTask) -> SeedOutcome:
    queue = _progress_queue
    pending = 0
    last = time.monotonic()

    def tick(n: int) -> None:
        nonlocal pending, last
        pending += n
        now = time.monotonic()
        if queue is not None and now - last >= 0.5:
            queue.put((task.seed, pending))
            pending, last = 0, now

    outcome = run_seed(task, tick)
    if queue is not None and pending:
        queue.put((task.seed, pending))
    return outcome


#: Imported once by the fork server, so that workers start with them: this module (torch,
#: pandas, the forecaster) and what torch.optim imports on first use (several seconds).
_PRELOAD = ["simulator.evaluate", "torch._dynamo"]


def _mp_context() -> BaseContext:
    """``forkserver`` (workers fork from a server that imported :data:`_PRELOAD`) or ``spawn``."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _cpu_count() -> int:
    """CPUs this process may use (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class _Progress:
    """One bar over the model steps of every seed, and a line per finished seed."""

    def __init__(self, tasks: Sequence[SeedTask], enabled: bool) -> None:
        self.expected = {t.seed: t.expected_steps for t in tasks}
        self.done = dict.fromkeys(self.expected, 0)
        self.finished: set[int] = set()
        self.enabled = enabled
        self.bar = tqdm(
            total=sum(self.expected.values()),
            desc=f"evaluate {len(tasks)} seed" + ("s" if len(tasks) != 1 else ""),
            unit="step",
            disable=not enabled,
            mininterval=1.0,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def advance(self, seed: int, n: int) -> None:
        if seed in self.finished:
            return
        self.done[seed] += n
        over = self.done[seed] - self.expected[seed]
        if over > 0:  # more steps than planned (no shared prefix): grow the total
            self.expected[seed] += over
            self.bar.total += over
        self.bar.update(n)

    def finish(self, seed: int, line: str) -> None:
        rest = self.expected[seed] - self.done[seed]
        if rest > 0:  # skipped scenarios, or a failure: the bar still ends at 100 %
            self.bar.update(rest)
        self.finished.add(seed)
        self.bar.set_postfix_str(f"{len(self.finished)}/{len(self.expected)} seeds done")
        if self.enabled:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _done_line(outcome: SeedOutcome) -> str:
    ran = ", ".join(outcome.digests) or "no scenario"
    line = f"seed {outcome.seed} done in {outcome.seconds:.0f} s: {ran}"
    if outcome.skipped:
        line += f" (skipped: {', '.join(outcome.skipped)})"
    return line


def _run_seeds(
    tasks: Sequence[SeedTask], workers: int, progress: bool
) -> tuple[dict[int, SeedOutcome], dict[int, str]]:
    """Run every seed (in worker processes when more than one seed and worker)."""
    outcomes: dict[int, SeedOutcome] = {}
    failed: dict[int, str] = {}
    bar = _Progress(tasks, progress)

    def failure(seed: int, exc: BaseException) -> None:
        failed[seed] = _error_text(exc)
        cause = exc.__cause__  # a worker's traceback, as text
        detail = str(cause) if cause is not None else "".join(traceback.format_exception(exc))
        log.debug("seed %d failed:\n%s", seed, detail)
        bar.finish(seed, f"seed {seed} FAILED: {failed[seed]}\n{detail.rstrip()}")

    try:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                try:
                    outcome = run_seed(task, partial(bar.advance, task.seed))
                except Exception as exc:
                    failure(task.seed, exc)
                    continue
                outcomes[task.seed] = outcome
                bar.finish(task.seed, _done_line(outcome))
            return outcomes, failed
        ctx = _mp_context()
        queue = ctx.Queue()

        def drain() -> None:
            while True:
                try:
                    seed, n = queue.get_nowait()
                except Empty:
                    return
                bar.advance(seed, n)

        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(queue,),
        )
        try:
            futures: dict[Future[SeedOutcome], int] = {
                pool.submit(_run_seed_in_worker, task): task.seed for task in tasks
            }
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for fut in sorted(finished, key=futures.__getitem__):
                    seed = futures[fut]
                    error = fut.exception()
                    if error is not None:
                        failure(seed, error)
                    else:
                        outcomes[seed] = fut.result()
                        bar.finish(seed, _done_line(outcomes[seed]))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        queue.close()
        return outcomes, dict(sorted(failed.items()))
    finally:
        bar.close()


# -- inputs ---------------------------------------------------------------------------


def _load_topology(topology: str | None, topology_file: Path | None) -> Topology:
    if topology and topology_file:
        raise ValueError("give a topology name or a topology file, not both")
    if topology_file is not None:
        path = Path(topology_file)
        if not path.is_file():
            raise ValueError(f"topology file {path} does not exist")
        return load_sndlib_xml(path)
    return load_topology(topology or "nobel-eu")


def _load_traffic(
    topo: Topology, traffic: str, traffic_file: Path | None
) -> tuple[Traffic | None, str]:
    """A file's or abilene's traffic, or ``None`` for sine (drawn per seed); and a label."""
    if traffic_file is not None:
        path = Path(traffic_file)
        if not path.is_file():
            raise ValueError(f"traffic file {path} does not exist")
        return load_traffic_csv(path, topology=topo), f"file {path.name}"
    if traffic == "sine":
        return None, "sine (synthetic, drawn per seed)"
    if traffic == "abilene":
        return load_abilene(topology=topo), "abilene (real, 2004, shipped)"
    raise ValueError(
        f"unknown traffic {traffic!r}; valid: {', '.join(TRAFFIC_KINDS)}, or a traffic file"
    )


@dataclass(frozen=True)
class Evaluation:
    """What :func:`run_evaluation` wrote, and which seeds ran, were skipped or failed."""

    results_csv: Path
    summary_csv: Path
    report_md: Path
    seeds: tuple[int, ...]
    failed: dict[int, str]
    skipped: dict[int, dict[str, str]]

    @property
    def ok(self) -> bool:
        """Whether every seed ran."""
        return not self.failed


class EvaluationFailed(RuntimeError):
    """Every seed failed (nothing to report); the message names each error."""


def run_evaluation(
    *,
    topology: str | None = "nobel-eu",
    topology_file: Path | None = None,
    traffic: str = "sine",
    traffic_file: Path | None = None,
    scenarios: Sequence[str] = SCENARIOS,
    seeds: Sequence[int] = (0,),
    out: Path,
    quick: bool = False,
    workers: int | None = None,
    progress: bool = True,
    edge_links: bool = True,
) -> Evaluation:
    """Run the experiment over ``seeds``; write results, summary, report and plots in ``out``.

    Parameters
    ----------
    topology, topology_file
        A built-in topology name or an SNDlib XML file (not both).
    traffic, traffic_file
        ``sine`` or ``abilene``, or a gzipped CSV (which wins over ``traffic``).
    scenarios
        Some of :data:`SCENARIOS`.
    seeds
        One independent repetition per seed (traffic noise, failures, models).
    out
        Output folder (created).
    quick
        A small smoke-test run (see the module doc).
    workers
        Worker processes (default: the number of CPUs; at most one per seed).
    progress
        Show a progress bar and a line per finished seed on stderr.
    edge_links
        Whether the routers' edge links are measured: the re-route's tomogravity
        takes its node totals from them, else fits them (see "Edge links" above).

    Returns
    -------
    Evaluation
        The paths written and the seeds that ran, were skipped or failed.

    Raises
    ------
    ValueError
        For an unknown topology, traffic or scenario, no seed, a traffic file that
        does not fit the topology or is too short, or scenarios no failure can produce
        for any seed.
    EvaluationFailed
        If every seed failed.
    """
    from simulator.report import summarize, win_counts, write_report  # matplotlib, scipy

    scenarios = list(dict.fromkeys(scenarios))
    if not scenarios:
        raise ValueError(f"no scenario given; valid: {', '.join(SCENARIOS)}")
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise ValueError(f"unknown scenario {bad[0]!r}; valid: {', '.join(SCENARIOS)}")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more integers >= 0, got {seeds}")
    topo = _load_topology(topology, topology_file)
    tr, traffic_label = _load_traffic(topo, traffic, traffic_file)
    if tr is None:  # sine: generated to the standard length, 5-minute steps
        protocol = Protocol.for_run(300, quick)
    else:
        tr.check_nodes(topo)
        protocol = Protocol.fit(tr.step_seconds, tr.n_steps, quick)
    log.info("evaluate %s with %s traffic: %s", topo.name, traffic_label, protocol.describe())

    workers = max(1, workers or _cpu_count())
    tasks = [
        SeedTask(s, topo, tr, tuple(scenarios), protocol, edge_links=edge_links) for s in seeds
    ]
    started = time.perf_counter()
    outcomes, failed = _run_seeds(tasks, workers, progress)
    wall = time.perf_counter() - started

    ran = [outcomes[s] for s in seeds if s in outcomes and outcomes[s].rows]
    skipped = {s: o.skipped for s, o in outcomes.items() if o.skipped}
    if not ran:
        if failed:
            raise EvaluationFailed(
                "every seed failed: " + "; ".join(f"seed {s}: {e}" for s, e in failed.items())
            )
        first = outcomes[seeds[0]].skipped
        raise ValueError("; ".join(f"{k}: {v}" for k, v in first.items()))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = tuple(dict.fromkeys(m for o in ran for m in o.models))
    frame = pd.DataFrame([row for o in ran for row in o.rows], columns=list(RESULT_COLUMNS))
    frame = frame.astype({"retrain_every": "Int64", "ttc_steps": "Int64", "n_fits": "Int64"})
    csv_path = out / "results.csv"
    frame.to_csv(csv_path, index=False, float_format="%.4g")
    summary = summarize(frame)
    summary_path = out / "summary.csv"
    summary.to_csv(summary_path, index=False, float_format="%.4g")
    report = write_report(
        out,
        frame=frame,
        summary=summary,
        wins=win_counts(frame),
        outcomes=ran,
        models=models,
        protocol=protocol,
        topology=topo,
        traffic_label=traffic_label,
        seeded_traffic=tr is None,
        seeds=seeds,
        failed=failed,
        wall_seconds=wall,
        workers=min(workers, len(seeds)) if len(seeds) > 1 else 1,
        edge_links=edge_links,
    )
    estimation = pd.DataFrame(
        [row for o in ran for row in o.estimation], columns=list(ESTIMATION_COLUMNS)
    )
    estimation.to_csv(out / "estimation.csv", index=False, float_format="%.4g")
    with report.open("a") as fh:
        fh.write("\n" + report_section(estimation))
    return Evaluation(csv_path, summary_path, report, tuple(o.seed for o in ran), failed, skipped)
