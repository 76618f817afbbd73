"""``report.md`` and the PNG plots of :func:`simulator.evaluate.run_evaluation`.

Plots are drawn on :class:`matplotlib.figure.Figure` objects (Agg canvas, no pyplot
state), so writing a report never opens a window or touches a global backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecaster import metrics
from simulator.topology import Topology
from simulator.traffic import Traffic

if TYPE_CHECKING:
    from simulator.evaluate import Protocol, ScenarioRun

__all__ = ["plot_error_around_failure", "plot_example_link", "write_report"]

#: Models drawn in the example-link plot (all of them clutter it).
EXAMPLE_MODELS = ("liquid", "incremental_b288", "persistence", "hybrid")
#: Trailing mean applied to the error-around-failure curves.
SMOOTH_SECONDS = 1800

_STYLE = {
    "liquid": ("tab:blue", "-"),
    "incremental_b72": ("tab:orange", "--"),
    "incremental_b288": ("tab:orange", "-"),
    "incremental_b1008": ("tab:orange", ":"),
    "persistence": ("tab:gray", "-"),
    "seasonal": ("tab:green", "-"),
    "hybrid": ("tab:red", "-"),
}


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def _hours(protocol: Protocol, start: int, stop: int) -> np.ndarray:
    f = protocol.failure_step
    return (np.arange(start, stop) - f) * protocol.step_seconds / 3600


def plot_error_around_failure(run: ScenarioRun, protocol: Protocol, path: Path) -> None:
    """Mean normalised |error| over the scored links around the failure, per model.

    Two panels (1-step and 12-step forecasts), the failure at t = 0, each curve a
    trailing mean over :data:`SMOOTH_SECONDS`.
    """
    from simulator.evaluate import MODELS, SCORED_HORIZONS, normalised_error_series

    f = protocol.failure_step
    start, stop = f - protocol.pre_steps, f + protocol.post_steps
    x = _hours(protocol, start, stop)
    smooth = max(1, round(SMOOTH_SECONDS / protocol.step_seconds))
    links = list(run.result.target_links)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, (k, h) in zip(
        axes, [(0, 1), (len(SCORED_HORIZONS) - 1, SCORED_HORIZONS[-1])], strict=True
    ):
        for model in MODELS:
            err = normalised_error_series(run, model, links, protocol, k)
            curve = metrics.rolling_mean(err, smooth)[start:stop]
            color, ls = _STYLE.get(model, (None, "-"))
            ax.plot(x, curve, label=model, color=color, linestyle=ls, linewidth=1.2)
        ax.axvline(0, color="black", linewidth=1, linestyle="--")
        ax.set_ylabel(f"|error|, % of link mean\n({h}-step forecast)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3, which="both")
    axes[0].legend(ncol=4, fontsize=8, loc="upper left")
    axes[0].set_title(
        f"{run.name}: error around the failure (t = 0), mean over {len(links)} scored "
        f"link(s), {SMOOTH_SECONDS // 60}-min trailing mean"
    )
    axes[1].set_xlabel("hours from the failure")
    fig.savefig(path, dpi=110)


def example_link(run: ScenarioRun) -> int:
    """The scored link with the largest relative shift at the failure."""
    shifts = [s for s in run.result.target_shifts]
    return max(shifts, key=lambda s: abs(s.relative_change)).link_index


def plot_example_link(run: ScenarioRun, protocol: Protocol, path: Path) -> None:
    """One scored link's actual load and 1-step forecasts, the failure marked."""
    res = run.result
    link = example_link(run)
    f = protocol.failure_step
    before = min(protocol.pre_steps, round(6 * 3600 / protocol.step_seconds))
    after = min(protocol.post_steps, round(12 * 3600 / protocol.step_seconds))
    start, stop = f - before, f + after
    x = _hours(protocol, start, stop)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, res.loads_bps[start:stop, link] / 1e6, color="black", linewidth=1.6, label="actual")
    for model in EXAMPLE_MODELS:
        color, ls = _STYLE.get(model, (None, "-"))
        ax.plot(
            x,
            run.traces[model].forecast1[start:stop, link] / 1e6,
            label=model,
            color=color,
            linestyle=ls,
            linewidth=1.0,
        )
    failed = ", ".join(f"{e.link[0]}-{e.link[1]}" for e in res.scenario.events)
    ax.axvline(0, color="crimson", linewidth=1.2, linestyle="--", label=f"failure ({failed})")
    shift = next(s for s in res.target_shifts if s.link_index == link)
    ax.set_title(
        f"{run.name}: {res.link_names[link]} (load {shift.relative_change:+.0%} after the "
        "failure), 1-step forecasts"
    )
    ax.set_xlabel("hours from the failure")
    ax.set_ylabel("load, Mbit/s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.savefig(path, dpi=110)


def _fmt(v: object, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:.0f}"
    return str(v)


def _table(frame: pd.DataFrame, columns: Iterable[str]) -> str:
    columns = list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


_TABLE_COLUMNS = (
    "model",
    "rmse_pre",
    "rmse_post",
    "rmse_post_1h",
    "rmse_post_h6",
    "rmse_post_h12",
    "mape_post",
    "ttc_steps",
    "coverage",
    "n_fits",
)


def _definitions(protocol: Protocol) -> str:
    from simulator.evaluate import (
        LEVEL,
        RETRAIN_WINDOW,
        TTC_HOLD_SECONDS,
        TTC_TOLERANCE,
        TTC_WINDOW_SECONDS,
    )

    return f"""\
- **Prequential**: at every step each model has already forecast the next {12} steps;
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
- **rmse_pre / rmse_post** (`_h6`, `_h12`: 6- and 12-step forecasts; `_1h`: first
  hour after the failure): `forecaster.metrics.rmse` with each link's error divided
  by its mean actual load over the pre and post windows together, in **% of the link
  mean**, pooled over the scored links. `rmse_post_mbps`: the same without the
  normalisation, in Mbit/s.
- **mape_pre / mape_post**: `forecaster.metrics.mape` of the 1-step forecast, %.
- **ttc_steps**: `forecaster.metrics.time_to_convergence` on the per-step absolute
  percentage error of the 1-step forecast averaged over the scored links, baseline
  = the pre window, trailing mean {TTC_WINDOW_SECONDS // 60} min, tolerance
  {TTC_TOLERANCE}, hold {TTC_HOLD_SECONDS // 3600} h: the steps after the failure until
  the error is back within {TTC_TOLERANCE}x its pre-failure level and stays there for
  {TTC_HOLD_SECONDS // 3600} h. `n/a` = not within the post window.
- **coverage**: share of actuals inside the suite's {LEVEL:.0%} conformal interval
  (1-step) in the post window (`coverage_pre`: pre window, in results.csv).
- **Models**: `liquid` (CfC, adapted online every step), `incremental_bN` (MLP
  re-fit every N steps on the latest {RETRAIN_WINDOW} steps; `incremental_b288` is the
  suite's main `incremental`), `persistence`, `seasonal` (same time yesterday),
  `hybrid` (weights from recent errors of liquid, incremental_b288, persistence and
  seasonal). `n_fits`: re-fits of an incremental model by the end of the run.
"""


def write_report(
    out: Path,
    *,
    frame: pd.DataFrame,
    runs: dict[str, ScenarioRun],
    protocol: Protocol,
    topology: Topology,
    traffic: Traffic,
    traffic_label: str,
    seed: int,
    wall_seconds: float,
    skipped: dict[str, str] | None = None,
) -> Path:
    """Write ``out/report.md`` and the two plots per scenario; return the report's path."""
    f = protocol.failure_step
    first = next(iter(runs.values())).result
    lines = [
        f"# linkcast evaluate: {topology.name}, {traffic_label} traffic",
        "",
        "## Settings",
        "",
        f"- topology: `{topology.name}`, {len(topology.nodes)} nodes, {len(topology.links)} "
        f"links ({len(topology.link_names)} directed)",
        f"- traffic: {traffic_label}, {len(traffic.pairs)} pairs, "
        f"{_utc(traffic.timestamps[0])} to {_utc(traffic.timestamps[-1])}, "
        f"{traffic.step_seconds} s steps ({traffic.n_steps} steps used)",
        f"- seed: {seed} (traffic, choice of failures, models)",
        f"- scenarios: {', '.join(runs)}",
        *(f"- scenario `{k}` skipped: {v}" for k, v in (skipped or {}).items()),
        f"- protocol: {protocol.describe()}; failure at {_utc(first.timestamps[f])}",
        f"- horizon 12 steps; scored at 1, 6 and 12 steps; wall time {wall_seconds:.0f} s "
        "(torch on one thread)",
        "",
        "## Results",
        "",
        "RMSE in % of each scored link's mean load; MAPE in %; ttc in steps of "
        f"{protocol.step_seconds} s; coverage of the 90 % interval. All columns are in "
        "`results.csv`.",
        "",
    ]
    for name in runs:
        lines += [f"### {name}", "", _table(frame[frame["scenario"] == name], _TABLE_COLUMNS), ""]
    for name, run in runs.items():
        res = run.result
        failed = ", ".join(f"{e.link[0]}-{e.link[1]}" for e in res.scenario.events)
        scored = set(res.target_links)
        lines += [
            f"## Scenario `{name}`",
            "",
            f"Failure of {failed} at step {f} ({_utc(res.timestamps[f])}); "
            f"{len(res.affected_links)} surviving directed links affected, "
            f"{len(scored)} scored. Models ran {run.seconds:.0f} s for this scenario.",
            "",
            "| link | before, Mbit/s | after, Mbit/s | change | class | scored |",
            "|---|---|---|---|---|---|",
        ]
        for s in res.failure_shifts:
            lines.append(
                f"| {s.link} | {s.before_bps / 1e6:.1f} | {s.after_bps / 1e6:.1f} | "
                f"{s.relative_change:+.0%} | {s.shift_class.value} | "
                f"{'yes' if s.link_index in scored else 'no'} |"
            )
        err_png, link_png = f"error_{name}.png", f"link_{name}.png"
        plot_error_around_failure(run, protocol, out / err_png)
        plot_example_link(run, protocol, out / link_png)
        lines += [
            "",
            f"![error around the failure]({err_png})",
            "",
            f"![example link]({link_png})",
            "",
        ]
    lines += ["## Definitions", "", _definitions(protocol)]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
