"""Pure data shaping for the dashboard: API rows in, pandas frames out (no Streamlit, no HTTP).

Examples
--------
>>> util = utilisation(8e8, 1e9)
>>> round(util, 2)
0.8
>>> utilisation(5.0, None) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

Row = Mapping[str, Any]

TIME_COLUMNS = (
    "ts",
    "end_ts",
    "issued_at",
    "onset",
    "created_at",
    "updated_at",
    "firing_at",
    "resolved_at",
    "last_retrain",
)


def frame(rows: Iterable[Row], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """API rows as a frame, timestamps parsed to UTC.

    >>> df = frame([{"ts": "2026-01-01T00:00:00Z", "value_bps": 1.0}])
    >>> str(df.ts.dtype)
    'datetime64[..., UTC]'
    >>> list(frame([], ["ts", "value_bps"]).columns)
    ['ts', 'value_bps']
    """
    df = pd.DataFrame(list(rows))
    if df.empty:
        df = pd.DataFrame(columns=list(columns or []))
    for col in TIME_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


def utilisation(value_bps: float | None, capacity_bps: float | None) -> float | None:
    """Load over capacity (0 to 1, more when over); None when either is unknown."""
    if value_bps is None or not capacity_bps or not math.isfinite(value_bps):
        return None
    return value_bps / capacity_bps


def node_positions(links: Sequence[Row], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Node coordinates: ``labels.src_pos`` / ``labels.dst_pos`` ([lon, lat]) where links
    carry them, otherwise a seeded Kamada-Kawai layout of the link graph.

    >>> pos = node_positions([{"src": "A", "dst": "B", "labels": {"src_pos": [1, 2],
    ...                        "dst_pos": [3, 4]}}])
    >>> pos
    {'A': (1.0, 2.0), 'B': (3.0, 4.0)}
    >>> sorted(node_positions([{"src": "A", "dst": "B", "labels": {}}]))
    ['A', 'B']
    """
    import networkx as nx

    pos: dict[str, tuple[float, float]] = {}
    graph = nx.Graph()
    for link in links:
        src, dst = link.get("src"), link.get("dst")
        if not src or not dst:
            continue
        graph.add_edge(src, dst)
        labels = link.get("labels") or {}
        for node, key in ((src, "src_pos"), (dst, "dst_pos")):
            p = labels.get(key)
            if isinstance(p, list | tuple) and len(p) == 2:
                pos[node] = (float(p[0]), float(p[1]))
    if graph.number_of_nodes() and any(n not in pos for n in graph.nodes):
        if len(graph) <= 2:
            layout = nx.spring_layout(graph, seed=seed)
        else:
            layout = nx.kamada_kawai_layout(graph)
        for node, (x, y) in layout.items():
            pos.setdefault(str(node), (float(x), float(y)))
    return pos


def network_segments(
    links: Sequence[Row],
    positions: Mapping[str, tuple[float, float]],
    now_bps: Mapping[str, float],
    peak_bps: Mapping[str, float],
) -> pd.DataFrame:
    """One row per directed link: the half of its edge nearest its source (so A>B and
    B>A both show), with current and forecast-peak utilisation.

    >>> seg = network_segments(
    ...     [{"name": "A>B", "src": "A", "dst": "B", "capacity_bps": 10.0}],
    ...     {"A": (0.0, 0.0), "B": (2.0, 0.0)}, {"A>B": 5.0}, {"A>B": 9.0})
    >>> seg[["link", "x", "x2", "utilisation_now", "utilisation_peak"]].to_dict("records")
    [{'link': 'A>B', 'x': 0.0, 'x2': 1.0, 'utilisation_now': 0.5, 'utilisation_peak': 0.9}]
    """
    rows = []
    for link in links:
        src, dst, name = link.get("src"), link.get("dst"), link["name"]
        if src not in positions or dst not in positions:
            continue
        (x, y), (x2, y2) = positions[src], positions[dst]
        cap = link.get("capacity_bps")
        now, peak = now_bps.get(name), peak_bps.get(name)
        rows.append(
            {
                "link": name,
                "x": x,
                "y": y,
                "x2": (x + x2) / 2,
                "y2": (y + y2) / 2,
                "capacity_bps": cap,
                "load_now_bps": now,
                "peak_forecast_bps": peak,
                "utilisation_now": utilisation(now, cap),
                "utilisation_peak": utilisation(peak, cap),
            }
        )
    return pd.DataFrame(rows)


def nodes_frame(positions: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"node": n, "x": p[0], "y": p[1]} for n, p in positions.items()],
        columns=["node", "x", "y"],
    )


def recent_loads(latest: Sequence[Row], since: datetime) -> dict[str, Row]:
    """Links whose newest sample is at or after ``since``, by name.

    >>> from datetime import UTC, datetime
    >>> rows = [{"name": "A>B", "ts": "2026-01-01T00:10:00Z", "value_bps": 1.0},
    ...         {"name": "C>D", "ts": "2026-01-01T00:00:00Z", "value_bps": 2.0},
    ...         {"name": "E>F", "ts": None, "value_bps": None}]
    >>> list(recent_loads(rows, datetime(2026, 1, 1, 0, 5, tzinfo=UTC)))
    ['A>B']
    """
    return {
        r["name"]: r
        for r in latest
        if r["ts"] is not None and datetime.fromisoformat(r["ts"]) >= since
    }


def forecast_lines(step_rows: Sequence[Row], latest_rows: Sequence[Row]) -> pd.DataFrame:
    """The forecasts to draw: ``step_rows`` (one horizon step, issued over the range)
    and, after their last target time, the newest issue of each model (the future).

    >>> past = [{"issued_at": "2026-01-01T00:00:00Z", "model": "m", "step": 1,
    ...          "ts": "2026-01-01T00:00:00Z", "value": 1, "lower": 0, "upper": 2}]
    >>> new = [dict(past[0], issued_at="2026-01-01T00:01:00Z", ts=t, step=s)
    ...        for s, t in ((1, "2026-01-01T00:01:00Z"), (2, "2026-01-01T00:02:00Z"))]
    >>> [str(t.time()) for t in forecast_lines(past, new).ts]
    ['00:00:00', '00:01:00', '00:02:00']
    """
    cols = ["issued_at", "model", "step", "ts", "value", "lower", "upper"]
    past, future = frame(step_rows, cols), frame(latest_rows, cols)
    if not past.empty and not future.empty:
        last = past.groupby("model")["ts"].max()
        cut = future["model"].map(last)
        future = future[cut.isna() | (future["ts"] > cut)]
    parts = [df for df in (past, future) if not df.empty]
    if not parts:
        return frame([], cols)
    return pd.concat(parts, ignore_index=True).sort_values(["model", "ts"], ignore_index=True)


def event_bands(events: Sequence[Row], link: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Shaded bands for one link: failures until the repair of the same link (or the end
    of the range), maintenance windows as given; detector re-routes as short bands.

    >>> from datetime import UTC
    >>> ev = [{"kind": "failure", "links": ["A>B"], "ts": "2026-01-01T01:00:00Z",
    ...        "end_ts": None, "note": ""},
    ...       {"kind": "repair", "links": ["A>B"], "ts": "2026-01-01T02:00:00Z",
    ...        "end_ts": None, "note": ""}]
    >>> b = event_bands(ev, "A>B", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2,
    ...                 tzinfo=UTC))
    >>> b[["kind", "start", "end"]].astype(str).values.tolist()
    [['failure', '2026-01-01 01:00:00+00:00', '2026-01-01 02:00:00+00:00']]
    """
    cols = ["kind", "start", "end", "note", "links"]
    df = frame(events, ["kind", "links", "ts", "end_ts", "note"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    mine = df[df["links"].map(lambda ls: link in ls)].sort_values("ts")
    t_start, t_end = pd.Timestamp(start), pd.Timestamp(end)
    repairs = mine[mine["kind"] == "repair"]["ts"].tolist()
    rows = []
    for ev in mine.itertuples():
        if ev.kind == "failure":
            after = [t for t in repairs if t > ev.ts]
            until = after[0] if after else t_end
        elif ev.kind == "maintenance":
            until = ev.end_ts if pd.notna(ev.end_ts) else ev.ts
        elif ev.kind == "reroute":
            until = ev.ts
        else:
            continue
        if until < t_start or ev.ts > t_end:
            continue
        rows.append(
            {
                "kind": ev.kind,
                "start": max(ev.ts, t_start),
                "end": min(until, t_end),
                "note": ev.note or ev.kind,
                "links": ", ".join(ev.links),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def drift_markers(alerts: Sequence[Row], link: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Drift and failure alerts naming ``link`` with their onset in the range."""
    cols = ["onset", "kind", "state", "message", "magnitude"]
    df = frame(alerts, cols)
    if df.empty:
        return pd.DataFrame(columns=cols)
    keep = df["kind"].isin(["drift", "failure"]) & df["links"].map(lambda ls: link in ls)
    keep &= (df["onset"] >= pd.Timestamp(start)) & (df["onset"] <= pd.Timestamp(end))
    return df.loc[keep, cols].reset_index(drop=True)


def leaderboard(models: Sequence[Row]) -> pd.DataFrame:
    """Models by recent one-step MAE, best first; unscored models last.

    >>> lb = leaderboard([{"name": "a", "mae_bps": 2.0, "rmse_bps": 3.0, "scored": 5},
    ...                   {"name": "b", "mae_bps": 1.0, "rmse_bps": 1.5, "scored": 5},
    ...                   {"name": "c", "mae_bps": None, "rmse_bps": None, "scored": 0}])
    >>> lb[["rank", "model"]].values.tolist()
    [[1, 'b'], [2, 'a'], [3, 'c']]
    """
    df = frame(models, ["name", "mae_bps", "rmse_bps", "scored"])
    if df.empty:
        return pd.DataFrame(columns=["rank", "model", "mae_bps", "rmse_bps", "scored"])
    df = df.sort_values("mae_bps", na_position="last", kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df = df.rename(columns={"name": "model"})
    return df[["rank", "model", "mae_bps", "rmse_bps", "scored"]]


ALIGNED_COLUMNS = ["model", "offset_steps", "ape", "rel_error", "mae_bps", "links"]


def aligned_frame(result: Row) -> pd.DataFrame:
    """One event's aligned errors (``GET /events/{id}/errors``) with minutes since t=0
    and ``ape_percent`` (the error in % of the current load).

    >>> r = {"step_seconds": 300, "data": [{"model": "m", "offset_steps": 2, "ape": 0.05,
    ...      "rel_error": 0.1, "mae_bps": 1.0, "links": 1}]}
    >>> aligned_frame(r)[["minutes", "ape_percent"]].values.tolist()
    [[10.0, 5.0]]
    """
    df = frame(result.get("data", []), ALIGNED_COLUMNS)
    if "ape" not in df.columns:  # an API from before ape: nothing to show on its scale
        df["ape"] = float("nan")
    step = float(result.get("step_seconds") or 60)
    df["minutes"] = df["offset_steps"].astype(float) * step / 60
    df["ape_percent"] = 100 * df["ape"].astype(float)
    return df


def average_aligned(results: Sequence[Row]) -> pd.DataFrame:
    """Every event's aligned error averaged per model and offset (all failures together).

    >>> r = {"step_seconds": 60, "data": [{"model": "m", "offset_steps": 0, "ape": 0.1,
    ...      "rel_error": 1.0, "mae_bps": 1.0, "links": 1}]}
    >>> r2 = {"step_seconds": 60, "data": [{"model": "m", "offset_steps": 0, "ape": 0.3,
    ...       "rel_error": 3.0, "mae_bps": 3.0, "links": 1}]}
    >>> average_aligned([r, r2])[["model", "offset_steps", "ape_percent", "events"]].values.tolist()
    [['m', 0, 20.0, 2]]
    """
    cols = ["model", "offset_steps", "ape", "ape_percent", "rel_error", "mae_bps"]
    cols += ["minutes", "events"]
    parts = [aligned_frame(r) for r in results]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=cols)
    df = pd.concat(parts, ignore_index=True)
    out = (
        df.groupby(["model", "offset_steps"], as_index=False)
        .agg(
            ape=("ape", "mean"),
            ape_percent=("ape_percent", "mean"),
            rel_error=("rel_error", "mean"),
            mae_bps=("mae_bps", "mean"),
            minutes=("minutes", "mean"),
            events=("offset_steps", "size"),
        )
        .sort_values(["model", "offset_steps"], ignore_index=True)
    )
    return out[cols]


#: ``convergence[model].status`` values of ``GET /events/{id}/errors``.
TTC_STATUSES = ("converged", "not_converged", "pending", "no_baseline")
TTC_COLUMNS = ["model", "ttc_steps", "ttc_minutes", *TTC_STATUSES, "events", "baseline_percent"]


def ttc_table(results: Sequence[Row]) -> pd.DataFrame:
    """Time to convergence per model over events: the mean ttc of those that converged
    (steps and minutes), how many events ended in each status, and the mean pre-event
    error (% of the current load). Older answers without ``convergence`` count a null
    ``ttc_steps`` as not converged.

    >>> def ev(ttc, status, base=0.02):
    ...     return {"ttc_steps": ttc, "status": status, "baseline_ape": base}
    >>> t = ttc_table([
    ...     {"step_seconds": 300, "convergence": {"a": ev(4, "converged"),
    ...                                           "b": ev(None, "pending")}},
    ...     {"step_seconds": 300, "convergence": {"a": ev(2, "converged"),
    ...                                           "b": ev(None, "not_converged", 0.04)}}])
    >>> t[["model", "ttc_steps", "ttc_minutes", "converged", "not_converged", "pending"]
    ...   ].values.tolist()
    [['a', 3.0, 15.0, 2, 0, 0], ['b', nan, nan, 0, 1, 1]]
    >>> t["baseline_percent"].round(1).tolist()
    [2.0, 3.0]
    """
    ttcs: dict[str, list[float]] = {}
    minutes: dict[str, list[float]] = {}
    bases: dict[str, list[float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        step_minutes = float(r.get("step_seconds") or 60) / 60
        per_model = r.get("convergence") or {
            m: {"ttc_steps": t, "status": "converged" if t is not None else "not_converged"}
            for m, t in (r.get("ttc_steps") or {}).items()
        }
        for model, c in per_model.items():
            status = str(c.get("status") or "not_converged")
            n = counts.setdefault(model, {})
            n[status] = n.get(status, 0) + 1
            ttcs.setdefault(model, [])
            minutes.setdefault(model, [])
            if c.get("ttc_steps") is not None:
                ttcs[model].append(float(c["ttc_steps"]))
                minutes[model].append(float(c["ttc_steps"]) * step_minutes)
            if c.get("baseline_ape") is not None:
                bases.setdefault(model, []).append(100 * float(c["baseline_ape"]))
    data = [
        {
            "model": m,
            "ttc_steps": (sum(v) / len(v)) if v else None,
            "ttc_minutes": (sum(minutes[m]) / len(v)) if v else None,
            **{s: counts[m].get(s, 0) for s in TTC_STATUSES},
            "events": sum(counts[m].values()),
            "baseline_percent": (sum(bases[m]) / len(bases[m])) if bases.get(m) else None,
        }
        for m, v in ttcs.items()
    ]
    df = pd.DataFrame(data, columns=TTC_COLUMNS)
    df[["ttc_steps", "ttc_minutes", "baseline_percent"]] = df[
        ["ttc_steps", "ttc_minutes", "baseline_percent"]
    ].astype(float)
    return df.sort_values("ttc_steps", na_position="last", kind="stable", ignore_index=True)


def alerts_table(alerts: Sequence[Row]) -> pd.DataFrame:
    cols = ["id", "state", "kind", "link", "model", "onset", "magnitude", "message"]
    df = frame(alerts, cols + ["links"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["link"] = df["link"].fillna(df["links"].map(lambda ls: ", ".join(ls)))
    return df[cols]


def human_bps(value: float | None) -> str:
    """
    >>> human_bps(1.25e9), human_bps(None)
    ('1.25 Gbit/s', '–')
    """
    if value is None or not math.isfinite(value):
        return "–"
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} bit/s"
