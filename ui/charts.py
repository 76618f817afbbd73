"""Altair chart builders (Altair ships with Streamlit): frames in, charts out."""

from __future__ import annotations

from datetime import datetime

import altair as alt
import pandas as pd

MODEL_COLOURS = {
    "liquid": "#1f77b4",
    "incremental": "#ff7f0e",
    "persistence": "#7f7f7f",
    "seasonal": "#9467bd",
    "hybrid": "#2ca02c",
}
BAND_COLOURS = {"failure": "#d62728", "maintenance": "#8c564b", "reroute": "#e377c2"}
UTIL_SCALE = alt.Scale(
    domain=[0, 0.5, 0.8, 1.0], range=["#2ca02c", "#bcbd22", "#ff7f0e", "#d62728"]
)


def _model_scale(models: list[str]) -> alt.Scale:
    return alt.Scale(domain=models, range=[MODEL_COLOURS.get(m, "#17becf") for m in models])


def network(segments: pd.DataFrame, nodes: pd.DataFrame, field: str, title: str) -> alt.Chart:
    """Links as half-edges coloured by utilisation ``field``, nodes labelled."""
    geo = alt.Scale(zero=False)
    axis = None
    seg = segments.copy()
    seg["percent"] = seg[field].map(lambda v: None if pd.isna(v) else round(100 * v, 1))
    edges = (
        alt.Chart(seg)
        .mark_rule(strokeWidth=5, strokeCap="round")
        .encode(
            x=alt.X("x:Q", scale=geo, axis=axis),
            y=alt.Y("y:Q", scale=geo, axis=axis),
            x2="x2:Q",
            y2="y2:Q",
            color=alt.Color(
                f"{field}:Q", scale=UTIL_SCALE, title="utilisation", legend=alt.Legend(format="%")
            ),
            tooltip=[
                alt.Tooltip("link:N"),
                alt.Tooltip("percent:Q", title="utilisation %"),
                alt.Tooltip("load_now_bps:Q", title="now (bit/s)", format=".3s"),
                alt.Tooltip("peak_forecast_bps:Q", title="forecast peak (bit/s)", format=".3s"),
                alt.Tooltip("capacity_bps:Q", title="capacity (bit/s)", format=".3s"),
            ],
        )
    )
    points = (
        alt.Chart(nodes)
        .mark_circle(size=80, color="#333")
        .encode(x=alt.X("x:Q", scale=geo, axis=axis), y=alt.Y("y:Q", scale=geo, axis=axis))
    )
    labels = points.mark_text(dy=-10, fontSize=11, color="#333").encode(text="node:N")
    return (edges + points + labels).properties(title=title, height=380)


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
    """Actual load, forecasts with intervals, event bands, alert markers, capacity, now."""
    x_scale = alt.Scale(domain=[pd.Timestamp(start).isoformat(), pd.Timestamp(end).isoformat()])
    x = alt.X("ts:T", title="time (UTC)", scale=x_scale)
    models = sorted(forecasts["model"].unique().tolist()) if not forecasts.empty else []
    colour = alt.Color("model:N", scale=_model_scale(models), title="model")
    layers: list[alt.Chart] = []
    if not bands.empty:
        layers.append(
            alt.Chart(bands)
            .mark_rect(opacity=0.15)
            .encode(
                x=alt.X("start:T", scale=x_scale),
                x2="end:T",
                color=alt.Color(
                    "kind:N",
                    scale=alt.Scale(domain=list(BAND_COLOURS), range=list(BAND_COLOURS.values())),
                    title="event",
                ),
                tooltip=["kind:N", "note:N", "links:N", "start:T", "end:T"],
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
                y=alt.Y("value:Q", title="load (bit/s)", axis=alt.Axis(format="~s")),
                tooltip=[
                    "model:N",
                    "ts:T",
                    "issued_at:T",
                    "step:Q",
                    alt.Tooltip("value:Q", format=".3s"),
                    alt.Tooltip("lower:Q", format=".3s"),
                    alt.Tooltip("upper:Q", format=".3s"),
                ],
            )
        )
    if not samples.empty:
        layers.append(
            alt.Chart(samples.assign(series="actual"))
            .mark_line(color="black", strokeWidth=2)
            .encode(
                x=x,
                y=alt.Y("value_bps:Q", title="load (bit/s)", axis=alt.Axis(format="~s")),
                tooltip=["ts:T", alt.Tooltip("value_bps:Q", title="actual", format=".3s")],
            )
        )
    if capacity_bps:
        layers.append(
            alt.Chart(pd.DataFrame({"capacity_bps": [capacity_bps], "label": ["capacity"]}))
            .mark_rule(color="#d62728", strokeDash=[2, 2])
            .encode(y="capacity_bps:Q", tooltip=[alt.Tooltip("capacity_bps:Q", format=".3s")])
        )
    if not markers.empty:
        layers.append(
            alt.Chart(markers)
            .mark_point(shape="triangle-down", size=160, filled=True, color="#d62728")
            .encode(
                x=alt.X("onset:T", scale=x_scale),
                y=alt.value(8),
                tooltip=["kind:N", "state:N", "onset:T", "message:N"],
            )
        )
    layers.append(
        alt.Chart(pd.DataFrame({"ts": [pd.Timestamp(now)]}))
        .mark_rule(color="#555", strokeDash=[1, 3])
        .encode(x=alt.X("ts:T", scale=x_scale), tooltip=[alt.Tooltip("ts:T", title="now")])
    )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=420)


def aligned_errors(df: pd.DataFrame, title: str) -> alt.LayerChart:
    """Each model's one-step error in % of the current load against minutes since the
    event (t = 0): the curve time to convergence is measured on."""
    models = sorted(df["model"].unique().tolist())
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
                alt.Tooltip("mae_bps:Q", title="|error| (bit/s)", format=".3s"),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"minutes": [0]})).mark_rule(color="#d62728").encode(x="minutes:Q")
    )
    return alt.layer(zero, lines).properties(title=title, height=340)


def model_errors(board: pd.DataFrame) -> alt.Chart:
    """Recent one-step MAE per model, as bars."""
    models = board["model"].tolist()
    return (
        alt.Chart(board.dropna(subset=["mae_bps"]))
        .mark_bar()
        .encode(
            x=alt.X(
                "mae_bps:Q", title="one-step MAE, last hour (bit/s)", axis=alt.Axis(format="~s")
            ),
            y=alt.Y("model:N", sort=models, title=None),
            color=alt.Color("model:N", scale=_model_scale(models), legend=None),
            tooltip=["model:N", alt.Tooltip("mae_bps:Q", format=".3s"), "scored:Q"],
        )
        .properties(height=200)
    )
