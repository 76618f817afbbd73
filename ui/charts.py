"""Altair chart builders (Altair ships with Streamlit): frames in, charts out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import altair as alt
import pandas as pd

from ui import transforms

MODEL_COLOURS = {
    "liquid": "#1f77b4",
    "incremental": "#ff7f0e",
    "persistence": "#7f7f7f",
    "seasonal": "#9467bd",
    "hybrid": "#2ca02c",
}
BAND_COLOURS = {"failure": "#d62728", "maintenance": "#8c564b", "reroute": "#e377c2"}
#: Utilisation colours run past 100 % (an overloaded link is darker than a full one);
#: beyond 150 % the colour holds.
UTIL_SCALE = alt.Scale(
    domain=[0, 0.5, 0.8, 1.0, 1.5],
    range=["#2ca02c", "#bcbd22", "#ff7f0e", "#d62728", "#4a0010"],
    clamp=True,
)
#: Links that are not reporting a load are drawn dashed, never in a utilisation colour.
STATUS_COLOURS = {"down": "#111111", "stale": "#8c8c8c", "no data": "#c7c7c7"}
#: On the What if maps: links failed in the scenario are drawn as a down link is.
WHATIF_STATUS_COLOURS = {"failed": "#111111", "down": "#111111", "no forecast": "#c7c7c7"}
ALERT_SHAPES = {"failure": "triangle-down", "drift": "diamond", "capacity": "square"}
X_SHAPE = "M-1,-1L1,1M-1,1L1,-1"  # an x, for quarantined samples (Vega has only a +)


def _model_scale(models: list[str]) -> alt.Scale:
    return alt.Scale(domain=models, range=[MODEL_COLOURS.get(m, "#17becf") for m in models])


def time_axis(start: datetime, end: datetime, title: str = "time (UTC)") -> alt.Axis:
    """A 24-hour UTC time axis: ``HH:MM`` (``HH:MM:SS`` when the range is under 15
    minutes), with the date on the first label and wherever the day changes."""
    short = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() < 900
    clock = "%H:%M:%S" if short else "%H:%M"
    new_day = "(datum.index == 0 || (utchours(datum.value) == 0 && utcminutes(datum.value) == 0))"
    return alt.Axis(
        title=title,
        labelExpr=f"utcFormat(datum.value, {new_day} ? '%d %b {clock}' : '{clock}')",
        labelOverlap=True,
    )


#: The loads a map's tooltip names (column, title): the Overview's.
NETWORK_TOOLTIP = (("load_now", "load now"), ("peak_forecast", "forecast peak"))


def network(
    segments: pd.DataFrame,
    nodes: pd.DataFrame,
    labels: pd.DataFrame,
    field: str,
    title: str,
    *,
    loads: tuple[tuple[str, str], ...] = NETWORK_TOOLTIP,
    status_title: str = "not reporting",
    status_colours: Mapping[str, str] = STATUS_COLOURS,
) -> alt.LayerChart:
    """Links as half-edges coloured by utilisation ``field``; links that are down, stale or
    without data drawn dashed in ``status_colours`` (their legend titled ``status_title``); nodes
    with labels that do not overlap (``labels`` from :func:`ui.transforms.label_offsets`).
    The tooltip names the link, its status, utilisation, the ``loads`` (text columns
    with units, and their titles) and capacity."""
    geo = alt.Scale(zero=False)
    axis = None
    seg = segments.copy()
    seg["utilisation"] = seg[field].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.0f} %")
    tooltip = [
        alt.Tooltip("link:N"),
        alt.Tooltip("status:N"),
        alt.Tooltip("utilisation:N", title="utilisation"),
        *(alt.Tooltip(f"{col}:N", title=name) for col, name in loads),
        alt.Tooltip("capacity:N", title="capacity"),
    ]
    position = {
        "x": alt.X("x:Q", scale=geo, axis=axis),
        "y": alt.Y("y:Q", scale=geo, axis=axis),
        "x2": "x2:Q",
        "y2": "y2:Q",
    }
    up = seg[seg["status"] == "up"]
    layers: list[alt.Chart] = [
        alt.Chart(up)
        .mark_rule(strokeWidth=5, strokeCap="round")
        .encode(
            **position,
            color=alt.Color(
                f"{field}:Q", scale=UTIL_SCALE, title="utilisation", legend=alt.Legend(format="%")
            ),
            tooltip=tooltip,
        )
    ]
    silent = seg[seg["status"] != "up"]
    if not silent.empty:
        layers.append(
            alt.Chart(silent)
            .mark_rule(strokeWidth=4, strokeDash=[4, 3])
            .encode(
                **position,
                color=alt.Color(
                    "status:N",
                    scale=alt.Scale(
                        domain=list(status_colours), range=list(status_colours.values())
                    ),
                    title=status_title,
                ),
                tooltip=tooltip,
            )
        )
    points = (
        alt.Chart(nodes)
        .mark_circle(size=70, color="#333")
        .encode(
            x=alt.X("x:Q", scale=geo, axis=axis),
            y=alt.Y("y:Q", scale=geo, axis=axis),
            tooltip=[alt.Tooltip("node:N")],
        )
    )
    texts = [
        alt.Chart(labels[labels["place"] == place])
        .mark_text(fontSize=10, color="#333", dx=dx, dy=dy, align=align)
        .encode(
            x=alt.X("x:Q", scale=geo, axis=axis),
            y=alt.Y("y:Q", scale=geo, axis=axis),
            text="node:N",
        )
        for place, dx, dy, align in transforms.LABEL_PLACES
        if (labels["place"] == place).any()
    ]
    return (
        alt.layer(*layers, points, *texts)
        .resolve_scale(color="independent")
        .properties(title=title, height=380)
    )


def link_chart(
    samples: pd.DataFrame,
    forecasts: pd.DataFrame,
    bands: pd.DataFrame,
    markers: pd.DataFrame,
    capacity_bps: float | None,
    now: datetime,
    start: datetime,
    end: datetime,
) -> alt.LayerChart:
    """Actual load, forecasts with intervals, event bands, alert markers of every kind,
    capacity, now. Loads are drawn in the one SI unit that fits them (bit/s to Tbit/s),
    named on the axis; time in 24-hour UTC. Quarantined samples (``quality`` not ``ok``)
    are left out of the actual line and drawn as grey crosses at their value, or at the
    top of the chart when above it (a 1e14 wrap must not flatten the real load)."""
    quarantined = samples.iloc[0:0]
    if "quality" in samples.columns:
        bad = samples["quality"] != "ok"
        samples, quarantined = samples[~bad], samples[bad]
    values = [capacity_bps]
    if not samples.empty:
        values += samples["value_bps"].astype(float).tolist()
    if not forecasts.empty:
        values += forecasts["upper"].astype(float).tolist()
    top = max((float(v) for v in values if v is not None), default=0.0)
    if not quarantined.empty:
        drawn = quarantined["value_bps"].astype(float)
        if top > 0:
            drawn = drawn.clip(upper=top)
        else:
            values += drawn.tolist()
        quarantined = quarantined.assign(drawn_at=drawn)
    unit, scale = transforms.bps_unit(values)
    quarantined = transforms.in_unit(quarantined, ["value_bps", "drawn_at"], scale)
    samples = transforms.in_unit(samples, ["value_bps"], scale)
    forecasts = transforms.in_unit(forecasts, ["value", "lower", "upper"], scale)
    load_title = f"load ({unit})"
    number = ",.3~f"
    x_scale = alt.Scale(
        type="utc", domain=[pd.Timestamp(start).isoformat(), pd.Timestamp(end).isoformat()]
    )
    x = alt.X("ts:T", axis=time_axis(start, end), scale=x_scale)
    when = {"format": "%d %b %H:%M:%S", "formatType": "utc"}
    models = sorted(forecasts["model"].unique().tolist()) if not forecasts.empty else []
    colour = alt.Color("model:N", scale=_model_scale(models), title="model")
    layers: list[alt.Chart] = []
    if not bands.empty:
        layers.append(
            alt.Chart(bands)
            .mark_rect(opacity=0.15)
            .encode(
                x=alt.X("start:T", scale=x_scale, axis=time_axis(start, end)),
                x2="end:T",
                color=alt.Color(
                    "kind:N",
                    scale=alt.Scale(domain=list(BAND_COLOURS), range=list(BAND_COLOURS.values())),
                    title="event",
                ),
                tooltip=[
                    "kind:N",
                    "note:N",
                    "links:N",
                    alt.Tooltip("start:T", title="from (UTC)", **when),
                    alt.Tooltip("end:T", title="until (UTC)", **when),
                ],
            )
        )
    if not forecasts.empty:
        base = alt.Chart(forecasts).encode(x=x, color=colour)
        layers.append(
            base.mark_area(opacity=0.12).encode(
                y="lower:Q",
                y2="upper:Q",
                color=alt.Color("model:N", scale=_model_scale(models), legend=None),
            )
        )
        layers.append(
            base.mark_line(strokeDash=[5, 3], strokeWidth=1.5).encode(
                y=alt.Y("value:Q", title=load_title, axis=alt.Axis(format=number)),
                tooltip=[
                    "model:N",
                    alt.Tooltip("ts:T", title="for (UTC)", **when),
                    alt.Tooltip("issued_at:T", title="issued (UTC)", **when),
                    alt.Tooltip("step:Q", title="step"),
                    alt.Tooltip("value:Q", title=f"forecast ({unit})", format=number),
                    alt.Tooltip("lower:Q", title=f"lower ({unit})", format=number),
                    alt.Tooltip("upper:Q", title=f"upper ({unit})", format=number),
                ],
            )
        )
    if not samples.empty:
        layers.append(
            alt.Chart(samples.assign(series="actual"))
            .mark_line(color="black", strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y("value_bps:Q", title=load_title, axis=alt.Axis(format=number)),
                tooltip=[
                    alt.Tooltip("ts:T", title="time (UTC)", **when),
                    alt.Tooltip("value_bps:Q", title=f"actual ({unit})", format=number),
                ],
            )
        )
    if not quarantined.empty:
        layers.append(
            alt.Chart(quarantined)
            .mark_point(shape=X_SHAPE, color="#888", size=50, filled=False, strokeWidth=1.5)
            .encode(
                x=x,
                y=alt.Y("drawn_at:Q", title=load_title),
                tooltip=[
                    alt.Tooltip("ts:T", title="time (UTC)", **when),
                    alt.Tooltip("value_bps:Q", title=f"quarantined ({unit})", format=number),
                    alt.Tooltip("quality:N", title="why"),
                ],
            )
        )
    if capacity_bps:
        layers.append(
            alt.Chart(pd.DataFrame({"capacity": [capacity_bps / scale]}))
            .mark_rule(color="#d62728", strokeDash=[2, 2])
            .encode(
                y=alt.Y("capacity:Q", title=load_title),
                tooltip=[alt.Tooltip("capacity:Q", title=f"capacity ({unit})", format=number)],
            )
        )
    if not markers.empty:
        layers.append(
            alt.Chart(markers)
            .mark_point(size=140, filled=True)
            .encode(
                x=alt.X("onset:T", scale=x_scale, axis=time_axis(start, end)),
                y=alt.value(8),
                shape=alt.Shape(
                    "kind:N",
                    scale=alt.Scale(domain=list(ALERT_SHAPES), range=list(ALERT_SHAPES.values())),
                    title="alert",
                ),
                color=alt.value("#d62728"),
                tooltip=[
                    "kind:N",
                    "state:N",
                    alt.Tooltip("onset:T", title="onset (UTC)", **when),
                    "magnitude:N",
                    "message:N",
                ],
            )
        )
    layers.append(
        alt.Chart(pd.DataFrame({"ts": [pd.Timestamp(now)]}))
        .mark_rule(color="#555", strokeDash=[1, 3])
        .encode(
            x=alt.X("ts:T", scale=x_scale, axis=time_axis(start, end)),
            tooltip=[alt.Tooltip("ts:T", title="now (UTC)", **when)],
        )
    )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=420)


def whatif_utilisation(
    df: pd.DataFrame, threshold_percent: float, start: datetime, end: datetime
) -> alt.LayerChart:
    """Utilisation in % of capacity over the horizon (``df`` from
    :func:`ui.transforms.utilisation_lines`): solid with the failure, dotted without it
    (the page's caption says so), one colour a link, the overload threshold as a red
    rule; time in 24-hour UTC."""
    x_scale = alt.Scale(
        type="utc", domain=[pd.Timestamp(start).isoformat(), pd.Timestamp(end).isoformat()]
    )
    lines = (
        alt.Chart(df)
        .mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("ts:T", axis=time_axis(start, end), scale=x_scale),
            y=alt.Y("percent:Q", title="utilisation (% of capacity)"),
            color=alt.Color("link:N", title="link", scale=alt.Scale(scheme="category10")),
            strokeDash=alt.StrokeDash(
                "case:N",
                scale=alt.Scale(domain=["with the failure", "without"], range=[[1, 0], [2, 3]]),
                legend=None,  # its dash symbols drew blank in Streamlit: the caption says it
            ),
            tooltip=[
                "link:N",
                "case:N",
                alt.Tooltip("at:N", title="at (UTC)"),
                alt.Tooltip("percent:Q", title="utilisation (%)", format=".0f"),
            ],
        )
    )
    limit = (
        alt.Chart(pd.DataFrame({"percent": [threshold_percent]}))
        .mark_rule(color="#d62728", strokeDash=[2, 2])
        .encode(
            y="percent:Q",
            tooltip=[alt.Tooltip("percent:Q", title="overload threshold (%)", format=".0f")],
        )
    )
    return alt.LayerChart(layer=[lines, limit], height=320)


def aligned_errors(df: pd.DataFrame, title: str) -> alt.LayerChart:
    """Each model's one-step error in % of the current load against minutes since the
    event (t = 0): the curve time to convergence is measured on."""
    models = sorted(df["model"].unique().tolist())
    df = df.assign(mae=df["mae_bps"].astype(float).map(transforms.human_bps))
    lines = (
        alt.Chart(df)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("minutes:Q", title="minutes since the event"),
            y=alt.Y("ape_percent:Q", title="|error|, % of the current load"),
            color=alt.Color("model:N", scale=_model_scale(models)),
            tooltip=[
                "model:N",
                alt.Tooltip("offset_steps:Q", title="steps since the event"),
                alt.Tooltip("ape_percent:Q", title="error (% of load)", format=".1f"),
                alt.Tooltip("mae:N", title="|error|"),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"minutes": [0]})).mark_rule(color="#d62728").encode(x="minutes:Q")
    )
    return alt.layer(zero, lines).properties(title=title, height=340)


def model_errors(board: pd.DataFrame) -> alt.Chart:
    """Recent one-step MAE per model, as bars, in the SI unit that fits them."""
    models = board["model"].tolist()
    unit, scale = transforms.bps_unit(board["mae_bps"].astype(float).tolist())
    shown = transforms.in_unit(board.dropna(subset=["mae_bps"]), ["mae_bps"], scale)
    return (
        alt.Chart(shown)
        .mark_bar()
        .encode(
            x=alt.X("mae_bps:Q", title=f"one-step MAE, last hour ({unit})"),
            y=alt.Y("model:N", sort=models, title=None),
            color=alt.Color("model:N", scale=_model_scale(models), legend=None),
            tooltip=[
                "model:N",
                alt.Tooltip("mae_bps:Q", title=f"MAE ({unit})", format=",.3~f"),
                alt.Tooltip("scored:Q", title="errors scored"),
            ],
        )
        .properties(height=200)
    )
