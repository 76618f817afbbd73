"""The paper's experiment offline: fail links, re-route, and score every model around it.

:func:`run_evaluation` (behind ``linkcast evaluate``) builds one
:class:`~simulator.failures.SimulationResult` per scenario, runs every model of
:class:`forecaster.suite.ModelSuite` prequentially over the link loads (at each
step the models have already forecast; then they see the actual, score, learn and
forecast again), and writes ``results.csv``, ``report.md`` and PNG plots.

Protocol (fixed before any result was seen; durations, converted to steps of the
traffic's ``step_seconds``)
    ======  ===========  ========  =========  ===================================
    run     warm-up      pre       post       series
    ======  ===========  ========  =========  ===================================
    full    6 days       1 day     1 day      8 days; failure at 7 days
    quick   18 hours     6 hours   6 hours    30 hours; failure at 24 hours
    ======  ===========  ========  =========  ===================================

    The failure (every failed link of the scenario) happens at step ``f`` = warm-up +
    pre. The *pre* window is ``[f - pre, f)``, the *post* window ``[f, f + post)``;
    a step belongs to a window by the time of the actual it is scored against, so
    forecasts issued before the failure for steps after it count as post. Nothing is
    scored during the warm-up. The series is cut at ``f + post``.

Scored links
    The scenario's ``target_links`` (drastic links for ``drastic``, moderate links
    for ``moderate``, every affected link for ``mixed``); failed links never.

Metrics (per scenario and model, pooled over the scored links and the window)
    ``rmse_pre``, ``rmse_post`` (and ``_h6``, ``_h12``, ``_1h``)
        :func:`forecaster.metrics.rmse` of the ``h``-step forecast (``h = 1`` unless
        named), each link's error divided by that link's mean actual load over the
        pre and post windows together, in per cent ("% of link mean"), so links of
        different sizes weigh alike. ``rmse_post_1h``: the first hour after the
        failure only. ``rmse_post_mbps``: the same without normalisation, Mbit/s.
    ``mape_pre``, ``mape_post``
        :func:`forecaster.metrics.mape`, ``h = 1``, per cent.
    ``ttc_steps``
        :func:`forecaster.metrics.time_to_convergence` of the per-step absolute
        percentage error (``h = 1``, averaged over the scored links), with the pre
        window as baseline, a 1-hour trailing mean, tolerance 1.5 and a hold of
        3 hours: steps after the failure until the error is back within 1.5 times
        its pre-failure level and stays there for 3 hours; empty if not within the
        post window. ``ttc_minutes`` is the same in minutes.
    ``coverage``, ``coverage_pre``
        :func:`forecaster.metrics.coverage` of the suite's 90 % interval (``h = 1``)
        in the post (pre) window.

Models
    ``liquid``, ``incremental_b72``, ``incremental_b288``, ``incremental_b1008``,
    ``persistence``, ``seasonal``, ``hybrid``: the incremental MLP re-fit every
    72, 288 and 1008 steps (6 hours, 1 day, 3.5 days at 5-minute steps; the paper's
    retraining batch sizes), each on the latest 576 steps. ``incremental_b288`` is
    the suite's main ``incremental`` model, the one the hybrid combines. A quick run
    uses a lighter liquid model (one adaptation step per tick, 12-step windows).

Speed
    The loads before the failure step are the same in every scenario (same traffic,
    same routing), so the models run over that prefix once; their state is saved
    with :meth:`ModelSuite.to_bytes` at the failure step and restored for each
    scenario's post window, which gives exactly what separate runs would.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp())
>>> csv = run_evaluation(topology="abilene", traffic="sine", scenarios=["drastic"],
...                      seed=0, out=out, quick=True, progress=False)  # doctest: +SKIP
>>> sorted(p.name for p in out.iterdir())  # doctest: +SKIP
['error_drastic.png', 'link_drastic.png', 'report.md', 'results.csv']
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from forecaster import metrics
from forecaster.suite import ModelSuite
from simulator.failures import ScenarioKind, SimulationResult, experiment
from simulator.topology import Topology, load_sndlib_xml, load_topology
from simulator.traffic import DAY_SECONDS, Traffic, load_abilene, load_traffic_csv, sine_traffic

__all__ = [
    "HORIZON",
    "MODELS",
    "RESULT_COLUMNS",
    "SCENARIOS",
    "TRAFFIC_KINDS",
    "ModelTrace",
    "Protocol",
    "ScenarioRun",
    "run_evaluation",
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
#: Incremental re-fit schedules (steps between re-fits); the middle one is the main model.
RETRAIN_BATCHES = (72, 288, 1008)
MAIN_RETRAIN = 288
#: Each re-fit uses the latest this many steps.
RETRAIN_WINDOW = 576
#: Result rows in this order (suite name ``incremental`` is reported as ``incremental_b288``).
MODELS: tuple[str, ...] = (
    "liquid",
    *(f"incremental_b{b}" for b in RETRAIN_BATCHES),
    "persistence",
    "seasonal",
    "hybrid",
)
#: Time to convergence: trailing mean, tolerance and hold (see the module doc).
TTC_WINDOW_SECONDS = 3600
TTC_TOLERANCE = 1.5
TTC_HOLD_SECONDS = 3 * 3600
#: Columns of ``results.csv``.
RESULT_COLUMNS: tuple[str, ...] = (
    "scenario",
    "model",
    "retrain_every",
    "n_links",
    "rmse_pre",
    "rmse_post",
    "rmse_post_1h",
    "rmse_post_h6",
    "rmse_post_h12",
    "rmse_post_mbps",
    "mape_pre",
    "mape_post",
    "ttc_steps",
    "ttc_minutes",
    "coverage",
    "coverage_pre",
    "n_fits",
)


@dataclass(frozen=True)
class Protocol:
    """Warm-up, pre and post windows in steps (see the module doc)."""

    step_seconds: int
    warmup_steps: int
    pre_steps: int
    post_steps: int
    quick: bool = False

    @classmethod
    def for_run(cls, step_seconds: int, quick: bool) -> Protocol:
        """The fixed protocol of a full or quick run, for this step length."""
        hours = 3600 / step_seconds
        if quick:
            warmup, pre, post = 18 * hours, 6 * hours, 6 * hours
        else:
            day = DAY_SECONDS / step_seconds
            warmup, pre, post = 6 * day, day, day
        return cls(step_seconds, round(warmup), round(pre), round(post), quick)

    @property
    def failure_step(self) -> int:
        return self.warmup_steps + self.pre_steps

    @property
    def n_steps(self) -> int:
        return self.failure_step + self.post_steps

    @property
    def season_steps(self) -> int:
        return max(2, round(DAY_SECONDS / self.step_seconds))

    def steps_of(self, seconds: float) -> int:
        return max(1, round(seconds / self.step_seconds))

    def describe(self) -> str:
        def span(steps: int) -> str:
            return _duration(steps * self.step_seconds)

        return (
            f"{'quick' if self.quick else 'full'} run, {self.step_seconds} s steps: warm-up "
            f"{span(self.warmup_steps)} ({self.warmup_steps} steps, not scored), pre window "
            f"{span(self.pre_steps)} ({self.pre_steps} steps) before the failure at step "
            f"{self.failure_step}, post window {span(self.post_steps)} ({self.post_steps} "
            f"steps) from it; {self.n_steps} steps in all"
        )


def _duration(seconds: float) -> str:
    if seconds % DAY_SECONDS == 0:
        days = int(seconds // DAY_SECONDS)
        return f"{days} day" + ("s" if days != 1 else "")
    hours = seconds / 3600
    return f"{hours:g} hours" if hours != 1 else "1 hour"


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
    """One scenario's simulation, model traces and scores."""

    name: str
    result: SimulationResult
    traces: dict[str, ModelTrace]
    n_fits: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, float | int | str | None]] = field(default_factory=list)
    seconds: float = 0.0


def _suite_name(model: str) -> str:
    return "incremental" if model == f"incremental_b{MAIN_RETRAIN}" else model


def _retrain_every(model: str) -> int | None:
    return int(model.removeprefix("incremental_b")) if model.startswith("incremental_b") else None


def _make_suite(n_links: int, protocol: Protocol, seed: int) -> ModelSuite:
    variants: dict[str, int | None] = {
        f"incremental_b{b}": b for b in RETRAIN_BATCHES if b != MAIN_RETRAIN
    }
    liquid = {"adapt_steps": 1, "window": 12} if protocol.quick else {}
    return ModelSuite(
        n_links,
        horizon=HORIZON,
        level=LEVEL,
        seed=seed,
        season_steps=protocol.season_steps,
        retrain_every=MAIN_RETRAIN,
        retrain_window=RETRAIN_WINDOW,
        incremental_variants=variants,
        liquid_kwargs=liquid,
    )


def _run_steps(
    suite: ModelSuite,
    loads: np.ndarray,
    start: int,
    stop: int,
    traces: dict[str, ModelTrace],
    bar: tqdm,
) -> None:
    """Step the suite over ``loads[start:stop]``, recording into ``traces``."""
    cols = [h - 1 for h in SCORED_HORIZONS]
    n = loads.shape[0]
    for t in range(start, stop):
        out = suite.step(loads[t])
        for model in MODELS:
            name, tr = _suite_name(model), traces[model]
            tr.residual[t] = out.residuals[name][:, cols]
            if t + 1 < n:
                tr.forecast1[t + 1] = out.forecasts[name][:, 0]
                tr.lower1[t + 1] = out.lower[name][:, 0]
                tr.upper1[t + 1] = out.upper[name][:, 0]
        bar.update(1)


def _n_fits(suite: ModelSuite) -> dict[str, int]:
    models = suite.models
    return {
        m: int(getattr(models[_suite_name(m)], "n_fits", 0)) for m in MODELS if "incremental" in m
    }


def run_models(
    results: dict[str, SimulationResult],
    protocol: Protocol,
    seed: int,
    progress: bool = True,
) -> dict[str, ScenarioRun]:
    """Run every model over every scenario's loads (the shared prefix once when possible)."""
    names = list(results)
    first = results[names[0]]
    n_steps, n_links = first.loads_bps.shape
    f = protocol.failure_step
    shared = all(
        r.loads_bps.shape == first.loads_bps.shape
        and np.array_equal(r.loads_bps[:f], first.loads_bps[:f])
        for r in results.values()
    )
    total = (f + len(names) * (n_steps - f)) if shared else len(names) * n_steps
    runs: dict[str, ScenarioRun] = {}
    with tqdm(
        total=total,
        desc="evaluate",
        unit="step",
        disable=not progress,
        mininterval=1.0,
        dynamic_ncols=True,
    ) as bar:
        if shared:
            bar.set_postfix_str(f"shared prefix ({f} steps)")
            t0 = time.perf_counter()
            suite = _make_suite(n_links, protocol, seed)
            prefix = {m: ModelTrace.empty(n_steps, n_links) for m in MODELS}
            _run_steps(suite, first.loads_bps, 0, f, prefix, bar)
            state = suite.to_bytes()
            prefix_seconds = time.perf_counter() - t0
        for name in names:
            res = results[name]
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            if shared:
                suite = ModelSuite.from_bytes(state)
                traces = {m: tr.copy() for m, tr in prefix.items()}
                _run_steps(suite, res.loads_bps, f, n_steps, traces, bar)
            else:
                suite = _make_suite(n_links, protocol, seed)
                traces = {m: ModelTrace.empty(n_steps, n_links) for m in MODELS}
                _run_steps(suite, res.loads_bps, 0, n_steps, traces, bar)
            seconds = time.perf_counter() - t0 + (prefix_seconds / len(names) if shared else 0)
            runs[name] = ScenarioRun(name, res, traces, _n_fits(suite), seconds=seconds)
    return runs


def link_scales(result: SimulationResult, protocol: Protocol) -> np.ndarray:
    """Per-link normaliser: mean actual load over the pre and post windows (>= 1 bit/s)."""
    f = protocol.failure_step
    window = result.loads_bps[f - protocol.pre_steps : f + protocol.post_steps]
    return np.maximum(window.mean(axis=0), 1.0)


def ape_series(run: ScenarioRun, model: str, links: Sequence[int]) -> np.ndarray:
    """Per-step absolute percentage error of the 1-step forecast, averaged over ``links``."""
    y = run.result.loads_bps[:, links]
    r = run.traces[model].residual[:, links, 0]
    ape = 100.0 * np.abs(r) / np.maximum(np.abs(y), 1.0)
    out = np.full(y.shape[0], np.nan)
    ok = np.isfinite(ape).any(axis=1)
    out[ok] = np.nanmean(ape[ok], axis=1)
    return out


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


def score(run: ScenarioRun, protocol: Protocol) -> list[dict[str, float | int | str | None]]:
    """The result rows of one scenario, one per model (see the module doc)."""
    res = run.result
    links = list(res.target_links)
    f, pre, post = protocol.failure_step, protocol.pre_steps, protocol.post_steps
    pre_w, post_w = slice(f - pre, f), slice(f, f + post)
    first_hour = slice(f, f + min(post, protocol.steps_of(3600)))
    scale = link_scales(res, protocol)[links]
    y = res.loads_bps[:, links]
    ttc_window = protocol.steps_of(TTC_WINDOW_SECONDS)
    ttc_hold = protocol.steps_of(TTC_HOLD_SECONDS)
    rows: list[dict[str, float | int | str | None]] = []
    for model in MODELS:
        tr = run.traces[model]
        r = tr.residual[:, links, :]
        fc = {h: y - r[:, :, k] for k, h in enumerate(SCORED_HORIZONS)}

        def nrmse(w: slice, h: int = 1, fc: dict[int, np.ndarray] = fc) -> float:
            return 100.0 * metrics.rmse(y[w] / scale, fc[h][w] / scale)

        ttc = metrics.time_to_convergence(
            ape_series(run, model, links)[: f + post],
            f,
            tolerance=TTC_TOLERANCE,
            window=ttc_window,
            baseline_steps=pre,
            hold=ttc_hold,
        )
        row: dict[str, float | int | str | None] = {
            "scenario": run.name,
            "model": model,
            "retrain_every": _retrain_every(model),
            "n_links": len(links),
            "rmse_pre": nrmse(pre_w),
            "rmse_post": nrmse(post_w),
            "rmse_post_1h": nrmse(first_hour),
            **{f"rmse_post_h{h}": nrmse(post_w, h) for h in SCORED_HORIZONS if h != 1},
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
    topo: Topology, traffic: str, traffic_file: Path | None, protocol_steps: int, seed: int
) -> tuple[Traffic, str]:
    if traffic_file is not None:
        path = Path(traffic_file)
        if not path.is_file():
            raise ValueError(f"traffic file {path} does not exist")
        return load_traffic_csv(path, topology=topo), f"file {path.name}"
    if traffic == "sine":
        return sine_traffic(topo, n_steps=protocol_steps, seed=seed), "sine (synthetic)"
    if traffic == "abilene":
        return load_abilene(topology=topo), "abilene (real, 2004, shipped)"
    raise ValueError(
        f"unknown traffic {traffic!r}; valid: {', '.join(TRAFFIC_KINDS)}, or a traffic file"
    )


def run_evaluation(
    *,
    topology: str | None = "nobel-eu",
    topology_file: Path | None = None,
    traffic: str = "sine",
    traffic_file: Path | None = None,
    scenarios: Sequence[str] = SCENARIOS,
    seed: int = 0,
    out: Path,
    quick: bool = False,
    progress: bool = True,
) -> Path:
    """Run the experiment and write ``out/results.csv``, ``out/report.md`` and plots.

    Parameters
    ----------
    topology, topology_file
        A built-in topology name or an SNDlib XML file (not both).
    traffic, traffic_file
        ``sine`` or ``abilene``, or a gzipped CSV (which wins over ``traffic``).
    scenarios
        Some of :data:`SCENARIOS`.
    seed
        Seeds the synthetic traffic, the choice of failures and the models.
    out
        Output folder (created).
    quick
        A small run (see the module doc).
    progress
        Show a progress bar on stderr.

    Returns
    -------
    Path
        ``out/results.csv``.

    Raises
    ------
    ValueError
        For an unknown topology, traffic or scenario, a traffic file that does not
        fit the topology or is too short, or a scenario no failure can produce.
    """
    from simulator.report import write_report  # matplotlib only when writing

    scenarios = list(dict.fromkeys(scenarios))
    if not scenarios:
        raise ValueError(f"no scenario given; valid: {', '.join(SCENARIOS)}")
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise ValueError(f"unknown scenario {bad[0]!r}; valid: {', '.join(SCENARIOS)}")
    topo = _load_topology(topology, topology_file)
    # The step length is known once the traffic is; sine traffic uses 300 s steps.
    sine_protocol = Protocol.for_run(300, quick)
    tr, traffic_label = _load_traffic(topo, traffic, traffic_file, sine_protocol.n_steps, seed)
    protocol = Protocol.for_run(tr.step_seconds, quick)
    if tr.n_steps < protocol.n_steps:
        raise ValueError(
            f"the traffic has {tr.n_steps} steps of {tr.step_seconds} s; a "
            f"{'quick' if quick else 'full'} run needs {protocol.n_steps} "
            f"({_duration(protocol.n_steps * tr.step_seconds)})"
            + ("" if quick else "; try --quick")
        )
    tr.check_nodes(topo)
    tr = tr.slice(0, protocol.n_steps)
    log.info("evaluate %s with %s traffic: %s", topo.name, traffic_label, protocol.describe())

    # A scenario no failure can produce here is skipped (and named in the report),
    # unless none is left.
    results: dict[str, SimulationResult] = {}
    skipped: dict[str, str] = {}
    for name in scenarios:
        try:
            res = experiment(topo, tr, name, seed=seed, step=protocol.failure_step)
        except ValueError as exc:
            skipped[name] = str(exc)
            log.warning("skipping scenario %s: %s", name, exc)
            continue
        if not res.target_links:
            skipped[name] = "the failure affects no link that could be scored"
            continue
        results[name] = res
    if not results:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in skipped.items()))

    torch_threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        # Small batched models: one thread is faster and leaves the other cores free.
        torch.set_num_threads(1)
        runs = run_models(results, protocol, seed, progress=progress)
    finally:
        torch.set_num_threads(torch_threads)
    wall = time.perf_counter() - started
    for run in runs.values():
        run.rows = score(run, protocol)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        [row for run in runs.values() for row in run.rows], columns=list(RESULT_COLUMNS)
    )
    frame = frame.astype({"retrain_every": "Int64", "ttc_steps": "Int64", "n_fits": "Int64"})
    csv_path = out / "results.csv"
    frame.to_csv(csv_path, index=False, float_format="%.4g")
    write_report(
        out,
        frame=frame,
        runs=runs,
        protocol=protocol,
        topology=topo,
        traffic=tr,
        traffic_label=traffic_label,
        seed=seed,
        wall_seconds=wall,
        skipped=skipped,
    )
    return csv_path
