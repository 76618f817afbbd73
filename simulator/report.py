"""What :func:`simulator.evaluate.run_evaluation` says: statistics over seeds, ``report.md``, plots.

Statistics (:func:`summarize`, :func:`win_counts`)
    Every seed is an independent repetition, so a metric's seeds are a sample: the
    report gives their mean and a 95 % Student t interval over the seeds
    (``mean +- t(0.975, n - 1) * sd / sqrt(n)``, ``scipy.stats.t``; none for one
    seed). The **skill against persistence** is ``1 - RMSE_model / RMSE_persistence``
    computed per seed on the same scenario, window and horizon (paired), then
    aggregated like any other metric. **Win counts**: in how many seeds liquid is
    strictly better (lower) than each other model on ``rmse_post`` and
    ``ttc_steps``, a time to convergence that is missing (no convergence within the
    post window) counting as worse than any.

Plots are drawn on :class:`matplotlib.figure.Figure` objects (Agg canvas, no pyplot
state), so writing a report never opens a window or touches a global backend.

Examples
--------
>>> frame = pd.DataFrame({
...     "seed": [0, 0, 1, 1], "scenario": "drastic",
...     "model": ["liquid", "persistence"] * 2,
...     "rmse_post": [4.0, 5.0, 6.0, 5.0]})
>>> with_skill(frame)["skill_post"].round(2).tolist()
[0.2, 0.0, -0.2, 0.0]
>>> win_counts(frame, metrics=("rmse_post",))[["opponent", "wins", "n_seeds"]].values.tolist()
[['persistence', 1, 2]]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from forecaster.metrics import TTC_HOLD_STEPS, TTC_SLACK, TTC_TOLERANCE, TTC_WINDOW_STEPS
from simulator.evaluate import (
    HORIZON,
    LEVEL,
    SCORED_HORIZONS,
    SMOOTH_SECONDS,
    format_seeds,
    metric_column,
)
from simulator.topology import Topology

if TYPE_CHECKING:
    from simulator.evaluate import Protocol, ScenarioDigest, SeedOutcome

__all__ = [
    "SUMMARY_COLUMNS",
    "SUMMARY_METRICS",
    "plot_error_around_failure",
    "plot_example_link",
    "summarize",
    "t_interval",
    "win_counts",
    "with_skill",
    "write_report",
]

#: Models drawn in the example-link plot (all of them clutter it).
EXAMPLE_MODELS = ("liquid", "incremental_b288", "persistence", "hybrid", "reroute")
#: The model the skill is measured against.
REFERENCE = "persistence"
#: Confidence of the intervals over seeds.
CONFIDENCE = 0.95
#: Columns of ``summary.csv``.
SUMMARY_COLUMNS = ("scenario", "model", "metric", "horizon", "mean", "ci_low", "ci_high", "n_seeds")


#: Metrics of ``summary.csv``: metric -> horizon -> column of the results (plus skill).
SUMMARY_METRICS: dict[str, dict[int, str]] = {
    **{
        m: {h: metric_column(m, h) for h in SCORED_HORIZONS}
        for m in (
            "rmse_pre",
            "rmse_post",
            "rmse_settled",
            "skill_pre",
            "skill_post",
            "skill_settled",
        )
    },
    "rmse_post_1h": {1: "rmse_post_1h"},
    "skill_post_1h": {1: "skill_post_1h"},
    "ttc_steps": {1: "ttc_steps"},
    "ttc_minutes": {1: "ttc_minutes"},
    "coverage_pre": {1: "coverage_pre"},
    "coverage": {1: "coverage"},
}
#: Metrics of the win counts (lower is better).
WIN_METRICS = ("rmse_post", "ttc_steps")

_STYLE = {
    "liquid": ("tab:blue", "-"),
    "incremental_b72": ("tab:orange", "--"),
    "incremental_b288": ("tab:orange", "-"),
    "incremental_b1008": ("tab:orange", ":"),
    "persistence": ("tab:gray", "-"),
    "seasonal": ("tab:green", "-"),
    "hybrid": ("tab:red", "-"),
    "reroute": ("tab:purple", "-"),
    "reroute_persistence": ("tab:purple", ":"),
    "detected": ("tab:brown", "-"),
}


# -- statistics -------------------------------------------------------------------------


def _floats(values: Iterable[object]) -> np.ndarray:
    """Numbers as float64; missing or non-numeric ones (None, NA) as NaN."""
    series = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    return series.to_numpy(dtype=float, na_value=np.nan)


def t_interval(
    values: Iterable[object], confidence: float = CONFIDENCE
) -> tuple[float, float, float, int]:
    """Mean, Student t interval and count of the finite ``values`` (missing ones dropped).

    Examples
    --------
    >>> [round(v, 4) for v in t_interval([1.0, 2.0, 3.0, 4.0])]
    [2.5, 0.4457, 4.5543, 4]
    >>> t_interval([7.0, None])
    (7.0, nan, nan, 1)
    """
    x = _floats(values)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def with_skill(frame: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """``frame`` plus ``skill_pre``/``skill_post`` (and ``_h6``, ``_h12``) columns.

    ``skill = 1 - rmse / rmse of reference``, the reference taken from the same seed
    and scenario (paired); NaN where the reference has no finite positive RMSE.
    """
    rmse = [
        c
        for m in ("rmse_pre", "rmse_post", "rmse_settled", "rmse_post_1h")
        for c in SUMMARY_METRICS[m].values()
    ]
    rmse = [c for c in rmse if c in frame.columns]
    keys = ["seed", "scenario"]
    ref = frame.loc[frame["model"] == reference, keys + rmse].drop_duplicates(keys)
    merged = frame.merge(ref, on=keys, how="left", suffixes=("", "_ref"), validate="many_to_one")
    out = frame.copy()
    for col in rmse:
        base, value = _floats(merged[f"{col}_ref"]), _floats(merged[col])
        with np.errstate(divide="ignore", invalid="ignore"):
            skill = np.where(base > 0, 1.0 - value / base, np.nan)
        out[col.replace("rmse_", "skill_", 1)] = skill
    return out


def summarize(frame: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per scenario, model, metric and horizon: mean, t interval and seeds over the seeds.

    ``frame`` is ``results.csv`` (one row per seed, scenario and model); the skill is
    added with :func:`with_skill`. Rows keep the order of scenarios and models in
    ``frame``; columns are :data:`SUMMARY_COLUMNS`. ``n_seeds`` counts the seeds with
    a value (a time to convergence is missing where the model did not converge).
    """
    frame = with_skill(frame)
    rows = []
    for (scenario, model), group in frame.groupby(["scenario", "model"], sort=False):
        for metric, columns in SUMMARY_METRICS.items():
            for h, col in columns.items():
                if col not in group.columns:
                    continue
                mean, low, high, n = t_interval(group[col], confidence)
                rows.append((scenario, model, metric, h, mean, low, high, n))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def win_counts(
    frame: pd.DataFrame,
    model: str = "liquid",
    opponents: Sequence[str] | None = None,
    metrics: Sequence[str] = WIN_METRICS,
) -> pd.DataFrame:
    """In how many seeds ``model`` is strictly better (lower) than each opponent.

    Per scenario, opponent and metric, over the seeds where both have a row: ``wins``,
    ``ties``, ``losses`` and ``n_seeds``. A missing value (a time to convergence
    beyond the post window) is worse than any value; two missing ones tie. Opponents
    default to the incremental variants and persistence.
    """
    if opponents is None:
        names = list(dict.fromkeys(frame["model"]))
        opponents = [m for m in names if m.startswith("incremental") or m == REFERENCE]
    rows = []
    for scenario, group in frame.groupby("scenario", sort=False):
        seeds_of = {m: set(g["seed"]) for m, g in group.groupby("model", sort=False)}
        if model not in seeds_of:
            continue
        for opponent in opponents:
            if opponent == model or opponent not in seeds_of:
                continue
            seeds = sorted(seeds_of[model] & seeds_of[opponent])
            for metric in metrics:
                table = group.pivot(index="seed", columns="model", values=metric)
                a, b = (_floats(table.loc[seeds, m]) for m in (model, opponent))
                a, b = np.where(np.isnan(a), np.inf, a), np.where(np.isnan(b), np.inf, b)
                wins, ties = int((a < b).sum()), int((a == b).sum())
                rows.append(
                    (
                        scenario,
                        model,
                        opponent,
                        metric,
                        wins,
                        ties,
                        len(seeds) - wins - ties,
                        len(seeds),
                    )
                )
    columns = ["scenario", "model", "opponent", "metric", "wins", "ties", "losses", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


# -- plots ------------------------------------------------------------------------------


def _traffic_span(outcomes: Sequence[SeedOutcome]) -> str:
    """The traffic's first to last step, over every seed's window."""
    first = min(o.first_ts for o in outcomes)
    last = max(o.last_ts for o in outcomes)
    return f"{_utc(first)} to {_utc(last)}"


def _same_or_own_window(outcomes: Sequence[SeedOutcome]) -> str:
    """How the seeds share measured traffic: one window for all, or one each."""
    starts = sorted({o.first_ts for o in outcomes})
    if len(outcomes) == 1:
        return f"; its window of the traffic starts {_utc(starts[0])}"
    if len(starts) == 1:
        return "; the traffic is the same for every seed"
    return (
        f"; each seed takes a window of the traffic, whole days apart: {len(starts)} different"
        f" starts over {len(outcomes)} seeds, {_utc(starts[0])} to {_utc(starts[-1])};"
        " windows overlap and seeds beyond the number of starts repeat a window, so the"
        " seeds are not fully independent repetitions of the traffic"
    )


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def plot_error_around_failure(
    digests: Sequence[ScenarioDigest], models: Sequence[str], protocol: Protocol, path: Path
) -> None:
    """Mean normalised |error| over the scored links around the failure, per model.

    Two panels (1-step and 12-step forecasts), the failure at t = 0, each curve a
    trailing mean over :data:`~simulator.evaluate.SMOOTH_SECONDS`, averaged over the
    seeds of ``digests`` (one scenario).
    """
    name = digests[0].name
    x = (np.arange(-protocol.pre_steps, protocol.post_steps)) * protocol.step_seconds / 3600
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, (k, h) in zip(axes, [(0, 1), (1, SCORED_HORIZONS[-1])], strict=True):
        for model in models:
            curves = [d.error_curves[model][:, k] for d in digests if model in d.error_curves]
            if not curves:
                continue
            stacked = np.vstack(curves)
            ok = np.isfinite(stacked).any(axis=0)
            curve = np.full(stacked.shape[1], np.nan)
            curve[ok] = np.nanmean(stacked[:, ok], axis=0)
            color, ls = _STYLE.get(model, (None, "-"))
            ax.plot(x, curve, label=model, color=color, linestyle=ls, linewidth=1.2)
        ax.axvline(0, color="black", linewidth=1, linestyle="--")
        ax.set_ylabel(f"|error|, % of link mean load\n({h}-step forecast)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3, which="both")
    axes[0].legend(ncol=4, fontsize=8, loc="upper left")
    seeds = [d.seed for d in digests]
    over = f"mean over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    axes[0].set_title(
        f"{name}: error around the failure (t = 0) on the scored links, {over}, "
        f"{SMOOTH_SECONDS // 60}-min trailing mean"
    )
    axes[1].set_xlabel("hours from the failure")
    fig.savefig(path, dpi=110)


def plot_example_link(d: ScenarioDigest, protocol: Protocol, path: Path) -> None:
    """One scored link's actual load and 1-step forecasts (one seed), the failure marked."""
    n = d.example_actual.shape[0]
    x = (d.example_start + np.arange(n)) * protocol.step_seconds / 3600
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, d.example_actual / 1e6, color="black", linewidth=1.6, label="actual")
    for model in EXAMPLE_MODELS:
        if model not in d.example_forecasts:
            continue
        color, ls = _STYLE.get(model, (None, "-"))
        ax.plot(
            x,
            d.example_forecasts[model] / 1e6,
            label=model,
            color=color,
            linestyle=ls,
            linewidth=1.0,
        )
    ax.axvline(0, color="crimson", linewidth=1.2, linestyle="--", label=f"failure ({d.failed})")
    ax.set_title(
        f"{d.name}, seed {d.seed}: {d.example_link} (load {d.example_change:+.0%} after the "
        "failure), 1-step forecasts"
    )
    ax.set_xlabel("hours from the failure")
    ax.set_ylabel("load, Mbit/s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.savefig(path, dpi=110)


# -- report.md --------------------------------------------------------------------------


def _num(v: float, digits: int = 3) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:.0f}"


def _cell(stat: pd.Series | None, scale: float = 1.0) -> str:
    """``mean [low, high]`` (``mean`` alone for one seed; ``n/a`` when there is none)."""
    if stat is None or stat["n_seeds"] == 0:
        return "n/a"
    mean, low, high = (float(stat[c]) * scale for c in ("mean", "ci_low", "ci_high"))
    if not math.isfinite(low):
        return _num(mean)
    return f"{_num(mean)} [{_num(low)}, {_num(high)}]"


def _ratio_cell(skill: pd.Series | None) -> str:
    """A skill's statistics as the ratio ``1 - skill`` (RMSE / RMSE of the reference)."""
    if skill is None or skill["n_seeds"] == 0:
        return "n/a"
    ratio = skill.copy()
    ratio["mean"], ratio["ci_low"], ratio["ci_high"] = (
        1 - skill["mean"],
        1 - skill["ci_high"],
        1 - skill["ci_low"],
    )
    return _cell(ratio)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _scenario_tables(
    scenario: str,
    summary: pd.DataFrame,
    wins: pd.DataFrame,
    models: Sequence[str],
    n_seeds: int,
    step_seconds: int,
) -> list[str]:
    s = summary[summary["scenario"] == scenario].set_index(["model", "metric", "horizon"])

    def stat(model: str, metric: str, h: int = 1) -> pd.Series | None:
        key = (model, metric, h)
        return s.loc[key] if key in s.index else None

    present = [m for m in models if (m, "rmse_post", 1) in s.index]
    windows = [(w, h) for w in ("pre", "post", "settled") for h in SCORED_HORIZONS]
    head = ["model", *(f"{w}, h={h}" for w, h in windows)]
    over = f"mean [95 % interval] over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    lines = [
        f"**RMSE, % of the link mean load** ({over}; h = steps ahead, "
        f"{step_seconds // 60 if step_seconds % 60 == 0 else step_seconds / 60:g} min each)",
        "",
        *_md_table(
            head, ([m, *(_cell(stat(m, f"rmse_{w}", h)) for w, h in windows)] for m in present)
        ),
        "",
        f"**Skill against persistence, %** (1 - RMSE / RMSE of persistence, paired per seed; "
        f"> 0: better than persistence; {over})",
        "",
        *_md_table(
            head,
            (
                [m, *(_cell(stat(m, f"skill_{w}", h), 100) for w, h in windows)]
                if m != REFERENCE
                else [m, *("(reference)" for _ in windows)]
                for m in present
            ),
        ),
        "",
        f"**Time to convergence and 90 % intervals** ({over}; ttc in steps of {step_seconds} s "
        "and in minutes, over the seeds that converged within the post window; coverage: % "
        "of actuals inside the interval, 1-step)",
        "",
    ]
    rows = []
    for m in present:
        ttc = stat(m, "ttc_steps")
        converged = 0 if ttc is None else int(ttc["n_seeds"])
        rows.append(
            [
                m,
                _cell(ttc),
                _cell(stat(m, "ttc_minutes")),
                f"{converged} of {n_seeds}",
                _cell(stat(m, "coverage_pre"), 100),
                _cell(stat(m, "coverage"), 100),
            ]
        )
    lines += _md_table(
        ["model", "ttc, steps", "ttc, minutes", "converged", "coverage pre, %", "coverage post, %"],
        rows,
    )
    lines += [
        "",
        f"**First hour after the failure** ({over}; 1-step forecasts; RMSE in % of the link "
        "mean load, and its ratio to persistence's, paired per seed: < 1 is better)",
        "",
        *_md_table(
            ["model", "rmse_post_1h", "ratio to persistence"],
            (
                [m, _cell(stat(m, "rmse_post_1h")), _ratio_cell(stat(m, "skill_post_1h"))]
                for m in present
            ),
        ),
    ]
    w = wins[wins["scenario"] == scenario]
    if not w.empty:
        lines += [
            "",
            "**Wins of liquid**: seeds in which liquid is strictly better (lower) than the "
            "other model, of the seeds both ran (rmse_post at h=1; ttc, a missing one "
            "counting as worse)",
            "",
        ]
        table = []
        for opponent, g in w.groupby("opponent", sort=False):
            by = g.set_index("metric")
            table.append(
                [
                    opponent,
                    *(
                        f"{by.loc[m, 'wins']} of {by.loc[m, 'n_seeds']}" if m in by.index else "n/a"
                        for m in WIN_METRICS
                    ),
                ]
            )
        lines += _md_table(["liquid against", "rmse_post", "ttc"], table)
    return lines


def _definitions(protocol: Protocol) -> str:
    return f"""\
- **Seeds**: each seed is an independent repetition; it draws the synthetic traffic's
  noise, which links fail, and the models' initial weights. Measured traffic (a file,
  Abilene) has no noise: where it is longer than the protocol, seed `s` takes the
  window starting `s mod (k + 1)` whole days in (`k` days to spare), else all seeds
  share it. A value's interval is the 95 % Student t interval of the mean over
  the seeds that have it (`scipy.stats.t`); `summary.csv` holds every one.
- **Prequential**: at every step each model has already forecast the next {HORIZON} steps;
  then it sees the actual load of every link, is scored, learns, and forecasts again.
  Every model sees the same series of all directed links (failed links read 0 after
  the failure).
- **Windows**: {protocol.describe()}. A forecast is scored in the window of the
  actual it is compared with.
- **Scored links**: the scenario's target links (drastic ones for `drastic`,
  moderate ones for `moderate`, every affected link for `mixed`), never the failed
  links. A link is affected when its mean load over the day after the failure,
  re-routed, differs by at least 10 % from what the old routing would carry of the
  same demand (drastic from 50 %); see `simulator/failures.py`.
- **rmse_pre / rmse_post** (h = 6, 12: 6- and 12-step forecasts; `rmse_post_1h` in
  results.csv: first hour after the failure): `forecaster.metrics.rmse` with each
  link's error divided by its mean actual load over the pre and post windows together,
  in **% of the link mean load**, pooled over the scored links. `rmse_post_mbps` in
  results.csv: the same without the normalisation, in Mbit/s.
- **skill**: `1 - rmse / rmse of persistence`, same seed, scenario, window and horizon
  (paired), then averaged over seeds; in `summary.csv` as a fraction, here in %.
- **mape_pre / mape_post** (results.csv): `forecaster.metrics.mape` of the 1-step forecast, %.
- **ttc**: time to convergence, `forecaster.metrics.convergence` (one definition for
  this report, `GET /api/v1/events/{{id}}/errors` and the dashboard): the per-step
  absolute error of the 1-step forecast in % of the *current* load (so a level that
  changes is not error), averaged over the scored links; the first step after the
  failure from which the mean over the next {TTC_WINDOW_STEPS} steps is within
  {TTC_TOLERANCE}x the pre-window level (+{TTC_SLACK:.0%} of load) and stays there for
  {TTC_HOLD_STEPS} steps; in steps of {protocol.step_seconds} s and in minutes.
- **settled** (rmse_settled, skill_settled): the post window without its first h steps,
  whose h-step forecasts were issued before the failure and cannot know it. On a drastic
  shift that one jump makes most of every model's post RMSE at h = 1.
  A seed in which a model does not converge within the post window has no ttc for it
  (`converged` counts the others).
- **coverage**: share of actuals inside the suite's {LEVEL:.0%} conformal interval
  (1-step) in the pre and in the post window.
- **Models**: `liquid` (CfC, adapted online every step), `incremental_bN` (MLP
  re-fit on a schedule named after the paper's batch size N; {protocol.describe_retrain()};
  `incremental_b288` is the suite's main `incremental`), `persistence`, `seasonal`
  (same time yesterday), `hybrid` (weights from recent errors of liquid,
  incremental_b288, persistence and seasonal); any other model is the suite's.
- **Known failure** (`reroute`, `reroute_persistence`): a copy of the whole suite, taken
  just before the failure, is told of it at its instant (between the last step before
  it and the first after, before that step is measured): `network.reroute.failure_shift`
  estimates the demands from the last loads by tomogravity and routes them with and
  without the failed links; the difference is the shift. The copy's models forecast the
  loads the network would carry without the failure and add the shift back
  (`ModelSuite.set_reroute`), from the forecasts re-issued at the failure instant on.
  As in the live engine, the shift is estimated once per change of the failed links and
  scaled to each step measured under the failure by its total load
  (`network.reroute.scale_shift`), and at each horizon by the model's own forecast of
  the traffic (its total there over its total one step ahead). `reroute` is the copy's hybrid,
  `reroute_persistence` its persistence (the last load, less the shift it was seen
  with, plus the current shift). Before the failure they equal `hybrid` and `persistence`.
- **Cut read off the loads** (`detected`): the hybrid of another such copy, told of
  nothing: it reads the failure off the loads as the live engine does
  (`network.cuts.CutDetector`: both directions of a busy link fall to 0 in one step),
  once the first step after the failure is measured, and from then on runs as
  `reroute` does; its forecasts of that first step stand as issued, blind.
  `n_fits` in results.csv: re-fits of an incremental model by the end of the run.
"""


def write_report(
    out: Path,
    *,
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    wins: pd.DataFrame,
    outcomes: Sequence[SeedOutcome],
    models: Sequence[str],
    protocol: Protocol,
    topology: Topology,
    traffic_label: str,
    seeded_traffic: bool,
    seeds: Sequence[int],
    failed: dict[int, str],
    wall_seconds: float,
    workers: int,
    edge_links: bool = True,
) -> Path:
    """Write ``out/report.md`` and two plots per scenario; return the report's path.

    ``outcomes`` are the seeds that produced results (in seed order); ``failed`` maps
    a seed that failed to its error; ``seeded_traffic``: each seed drew its traffic.
    """
    ran = [o.seed for o in outcomes]
    scenarios = list(dict.fromkeys(frame["scenario"]))
    first = outcomes[0]
    skipped: dict[str, list[tuple[int, str]]] = {}
    for o in outcomes:
        for name, why in o.skipped.items():
            skipped.setdefault(name, []).append((o.seed, why))
    lines = [
        f"# linkcast evaluate: {topology.name}, {traffic_label} traffic",
        "",
        "## Settings",
        "",
        f"- topology: `{topology.name}`, {len(topology.nodes)} nodes, {len(topology.links)} "
        f"links ({len(topology.link_names)} directed)",
        f"- traffic: {traffic_label}, {first.n_pairs} pairs, {_traffic_span(outcomes)}, "
        f"{protocol.step_seconds} s steps ({protocol.n_steps} steps per seed)",
        f"- seeds: {format_seeds(ran)} ({len(ran)} with results; each draws "
        + ("the traffic noise, " if seeded_traffic else "")
        + "the failures and the models' initialisation"
        + ("" if seeded_traffic else _same_or_own_window(outcomes))
        + ")",
        *(
            [f"- **failed seeds: {format_seeds(list(failed))}** (see the end of this report)"]
            if failed
            else []
        ),
        f"- scenarios: {', '.join(scenarios)}",
        *(
            f"- scenario `{name}` skipped for seed{'s' if len(v) > 1 else ''} "
            f"{format_seeds([seed for seed, _ in v])} (seed {v[0][0]}: {v[0][1]})"
            for name, v in skipped.items()
        ),
        f"- protocol: {protocol.describe()}",
        "- edge links: "
        + (
            "measured (the re-route's tomogravity takes each node's traffic in and out from them)"
            if edge_links
            else "not measured (`--no-edge-links`: the re-route's tomogravity fits each"
            " node's traffic in and out to the backbone's loads)"
        ),
        f"- {protocol.describe_retrain()}",
        f"- horizon {HORIZON} steps; scored at {', '.join(map(str, SCORED_HORIZONS))} steps; "
        f"wall time {wall_seconds:.0f} s "
        + (f"in {workers} worker processes" if workers > 1 else "in one process")
        + " (torch on one thread each)",
        "",
        "## Results",
        "",
        "Per scenario: mean over the seeds and its 95 % interval. Every seed's values are in "
        "`results.csv`; every mean and interval in `summary.csv`.",
        "",
    ]
    for name in scenarios:
        n = int(frame.loc[frame["scenario"] == name, "seed"].nunique())
        lines += [
            f"### {name}",
            "",
            *_scenario_tables(name, summary, wins, models, n, protocol.step_seconds),
            "",
        ]
    for name in scenarios:
        digests = [o.digests[name] for o in outcomes if name in o.digests]
        lines += [
            f"## Scenario `{name}`",
            "",
            f"Failures at step {protocol.failure_step}, per seed (affected: surviving "
            "directed links whose load shifts; scored: the scenario's target links):",
            "",
            *_md_table(
                [
                    "seed",
                    "failed links",
                    "failure at",
                    "affected",
                    "scored",
                    "largest shift",
                    "models ran, s",
                ],
                (
                    [
                        str(d.seed),
                        d.failed,
                        _utc(d.failure_ts),
                        str(d.n_affected),
                        str(d.n_scored),
                        f"{d.largest_shift:+.0%}",
                        f"{d.seconds:.0f}",
                    ]
                    for d in digests
                ),
            ),
        ]
        err_png, link_png = f"error_{name}.png", f"link_{name}.png"
        plot_error_around_failure(digests, models, protocol, out / err_png)
        plot_example_link(digests[0], protocol, out / link_png)
        lines += [
            "",
            f"![error around the failure]({err_png})",
            "",
            f"![example link, seed {digests[0].seed}]({link_png})",
            "",
        ]
    if failed:
        lines += [
            "## Failed seeds",
            "",
            "These seeds stopped with an error and are in no table above:",
            "",
            *(f"- seed {seed}: `{error}`" for seed, error in failed.items()),
            "",
        ]
    lines += ["## Definitions", "", _definitions(protocol)]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
