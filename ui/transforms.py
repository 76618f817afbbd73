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
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
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
    "starts_at",
    "ends_at",
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


def _label_position(labels: Mapping[str, Any], end: str) -> tuple[float, float] | None:
    """(lon, lat) of a link's ``end`` (``src``, ``dst``) from its labels, or None."""
    lat, lon = labels.get(f"{end}_lat"), labels.get(f"{end}_lon")
    if lat is None or lon is None:
        p = labels.get(f"{end}_pos")
        if not (isinstance(p, list | tuple) and len(p) == 2):
            return None
        lon, lat = p
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        return None
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def node_positions(links: Sequence[Row], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Node coordinates (lon, lat) where links carry them, otherwise a seeded
    Kamada-Kawai layout of the link graph. A link's labels ``src_lat``, ``src_lon``,
    ``dst_lat``, ``dst_lon`` (degrees, numbers or numeric text: the labels the network
    model reads, ``GET /topology``) place its nodes; ``src_pos`` / ``dst_pos`` ([lon,
    lat], what the demo registered before it used those) are read too.

    When some nodes have coordinates and others not (a link registered without them), the
    others are placed beside the map rather than laid out on another scale: next to the
    mean of their placed neighbours, or in a row under the map when no neighbour is
    placed. The network keeps its shape and the strays stay visible.

    >>> node_positions([{"src": "A", "dst": "B", "labels": {"src_lat": 2, "src_lon": 1,
    ...                  "dst_lat": "4", "dst_lon": "3"}}])
    {'A': (1.0, 2.0), 'B': (3.0, 4.0)}
    >>> node_positions([{"src": "A", "dst": "B", "labels": {"src_pos": [1, 2],
    ...                  "dst_pos": [3, 4]}}])
    {'A': (1.0, 2.0), 'B': (3.0, 4.0)}
    >>> sorted(node_positions([{"src": "A", "dst": "B", "labels": {}}]))
    ['A', 'B']
    >>> stray = node_positions([
    ...     {"src": "A", "dst": "B", "labels": {"src_pos": [0, 0], "dst_pos": [10, 10]}},
    ...     {"src": "X", "dst": "Y", "labels": {}}])
    >>> all(-1 <= x <= 11 and -3 <= y <= 11 for x, y in stray.values())
    True
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
        for node, end in ((src, "src"), (dst, "dst")):
            p = _label_position(labels, end)
            if p is not None:
                pos[node] = p
    missing = sorted(str(n) for n in graph.nodes if n not in pos)
    if not missing:
        return pos
    if not pos:
        if len(graph) <= 2:
            layout = nx.spring_layout(graph, seed=seed)
        else:
            layout = nx.kamada_kawai_layout(graph)
        return {str(n): (float(x), float(y)) for n, (x, y) in layout.items()}
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    orphans = []
    for node in missing:
        placed = [pos[n] for n in graph.neighbors(node) if n in pos]
        if placed:
            mx = sum(p[0] for p in placed) / len(placed)
            my = sum(p[1] for p in placed) / len(placed)
            pos[node] = (mx + 0.04 * span, my - 0.04 * span)
        else:
            orphans.append(node)
    for i, node in enumerate(orphans):  # a row under the map, spread over its width
        x = min(xs) + (i + 0.5) * (max(xs) - min(xs) or span) / len(orphans)
        pos[node] = (x, min(ys) - 0.12 * span)
    return pos


#: ``status`` of a link on every page: reporting, failed (an open failure event), silent.
LINK_STATUSES = ("up", "down", "stale", "no data")


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def open_failures(events: Sequence[Row]) -> set[str]:
    """Links named by a failure event with no later repair of that link (events in time
    order, the event id breaking ties).

    >>> open_failures([
    ...     {"id": 1, "kind": "failure", "links": ["A>B", "C>D"], "ts": "2026-01-01T01:00:00Z"},
    ...     {"id": 2, "kind": "repair", "links": ["C>D"], "ts": "2026-01-01T02:00:00Z"}])
    {'A>B'}
    >>> open_failures([  # a fraction of a second later is later
    ...     {"id": 1, "kind": "repair", "links": ["A>B"], "ts": "2026-01-01T01:00:00Z"},
    ...     {"id": 2, "kind": "failure", "links": ["A>B"], "ts": "2026-01-01T01:00:00.5Z"}])
    {'A>B'}
    """
    last: dict[str, str] = {}
    changes = [e for e in events if e["kind"] in ("failure", "repair")]
    for ev in sorted(changes, key=lambda e: (_ts(e["ts"]), e.get("id") or 0)):
        for name in ev["links"]:
            last[name] = ev["kind"]
    return {name for name, kind in last.items() if kind == "failure"}


def markdown_code(text: str) -> str:
    """``text`` as an inline code span of Markdown (CommonMark, "Code spans"): shown as
    it is, since nothing inside a code span is Markdown, and Streamlit turns no address
    or ``:emoji:`` in one into a link or a picture (it does in backslash-escaped text).
    The fence is one backtick longer than any run of backticks in ``text``, padded
    with a space where ``text`` starts or ends with one.

    >>> print(markdown_code("https://evil.example/x"), markdown_code("a`b"))
    `https://evil.example/x` ``a`b``
    >>> print(markdown_code("`x"))
    `` `x ``
    """
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def with_reverses(down: set[str], reverses: Mapping[str, str]) -> set[str]:
    """``down`` and the link back of each (``reverses``: link -> its reverse, as
    ``GET /topology`` pairs them): what a failure event holds down.

    >>> sorted(with_reverses({"A>B", "X>Y"}, {"A>B": "B>A", "B>A": "A>B"}))
    ['A>B', 'B>A', 'X>Y']
    """
    return down | {reverses[name] for name in down if name in reverses}


#: A link is stale when its newest sample is this many grid steps behind the network's
#: newest sample (and at least ``STALE_FLOOR_SECONDS``).
STALE_STEPS = 3
STALE_FLOOR_SECONDS = 30.0
STALE_RULE = (
    f"{STALE_STEPS} grid steps behind the newest sample, {STALE_FLOOR_SECONDS:.0f} s at least"
)


def link_status(
    latest: Sequence[Row],
    down: set[str],
    step_seconds: float,
) -> dict[str, str]:
    """Each link's status (:data:`LINK_STATUSES`): ``down`` when a failure is open on it,
    ``no data`` when it never reported, ``stale`` when its newest sample lags the newest
    sample of the whole network by more than :data:`STALE_STEPS` grid steps (and
    :data:`STALE_FLOOR_SECONDS`), else ``up``. Measured against the network, not the
    clock: one silent link stands out, while a collector or engine behind the clock for
    every link is :func:`network_lag`'s business, not each link's.

    >>> rows = [{"name": "A>B", "ts": "2026-01-01T00:09:00Z"},
    ...         {"name": "B>C", "ts": "2026-01-01T00:00:00Z"},
    ...         {"name": "C>D", "ts": None}, {"name": "D>E", "ts": "2026-01-01T00:09:00Z"}]
    >>> link_status(rows, {"D>E"}, 60)
    {'A>B': 'up', 'B>C': 'stale', 'C>D': 'no data', 'D>E': 'down'}
    """
    stamps = [_ts(r["ts"]) for r in latest if r.get("ts") is not None]
    newest = max(stamps, default=None)
    limit = max(STALE_STEPS * step_seconds, STALE_FLOOR_SECONDS)
    out = {}
    for r in latest:
        name, ts = r["name"], r.get("ts")
        if name in down:
            out[name] = "down"
        elif ts is None or newest is None:
            out[name] = "no data"
        else:
            late = (newest - _ts(ts)).total_seconds() > limit
            out[name] = "stale" if late else "up"
    return out


def network_lag(latest: Sequence[Row], now: datetime) -> float | None:
    """Seconds since the newest sample of any link (None when none reported): how far
    the collectors are behind the clock.

    >>> from datetime import UTC
    >>> network_lag([{"ts": "2026-01-01T00:09:00Z"}, {"ts": None}],
    ...             datetime(2026, 1, 1, 0, 10, tzinfo=UTC))
    60.0
    """
    stamps = [_ts(r["ts"]) for r in latest if r.get("ts") is not None]
    return (now - max(stamps)).total_seconds() if stamps else None


def half_segment(link: Row, positions: Mapping[str, tuple[float, float]]) -> dict | None:
    """A directed link drawn as the half from its source to the midpoint (so ``A>B`` and
    ``B>A`` sit side by side): ``link``, ``x``, ``y``, ``x2``, ``y2``; None when a node
    has no position.

    >>> half_segment({"name": "A>B", "src": "A", "dst": "B"}, {"A": (0.0, 0.0), "B": (2.0, 4.0)})
    {'link': 'A>B', 'x': 0.0, 'y': 0.0, 'x2': 1.0, 'y2': 2.0}
    >>> half_segment({"name": "A>C", "src": "A", "dst": "C"}, {"A": (0.0, 0.0)}) is None
    True
    """
    src, dst = str(link.get("src")), str(link.get("dst"))
    if src not in positions or dst not in positions:
        return None
    (x, y), (x2, y2) = positions[src], positions[dst]
    return {"link": link["name"], "x": x, "y": y, "x2": (x + x2) / 2, "y2": (y + y2) / 2}


def network_segments(
    links: Sequence[Row],
    positions: Mapping[str, tuple[float, float]],
    now_bps: Mapping[str, float],
    peak_bps: Mapping[str, float],
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per directed link: the half of its edge nearest its source (so A>B and
    B>A both show), with current and forecast-peak utilisation, its status and the loads
    as text with units (for tooltips). A link that is not ``up`` has no utilisation: a
    failed link at 0 bit/s is not an idle one.

    >>> seg = network_segments(
    ...     [{"name": "A>B", "src": "A", "dst": "B", "capacity_bps": 10.0}],
    ...     {"A": (0.0, 0.0), "B": (2.0, 0.0)}, {"A>B": 5.0}, {"A>B": 9.0})
    >>> seg[["link", "x", "x2", "utilisation_now", "utilisation_peak", "status"]
    ...     ].to_dict("records")
    [{'link': 'A>B', 'x': 0.0, 'x2': 1.0, 'utilisation_now': 0.5, 'utilisation_peak': 0.9, \
'status': 'up'}]
    >>> network_segments([{"name": "A>B", "src": "A", "dst": "B", "capacity_bps": 10.0}],
    ...     {"A": (0.0, 0.0), "B": (2.0, 0.0)}, {"A>B": 0.0}, {},
    ...     {"A>B": "down"})[["status", "utilisation_now", "load_now"]].values.tolist()
    [['down', None, '0 bit/s']]
    """
    status = status or {}
    rows = []
    for link in links:
        segment = half_segment(link, positions)
        if segment is None:
            continue
        name = link["name"]
        cap = link.get("capacity_bps")
        now, peak = now_bps.get(name), peak_bps.get(name)
        state = status.get(name, "up" if now is not None else "no data")
        up = state == "up"
        rows.append(
            {
                **segment,
                "status": state,
                "capacity_bps": cap,
                "load_now_bps": now,
                "peak_forecast_bps": peak,
                "utilisation_now": utilisation(now, cap) if up else None,
                "utilisation_peak": utilisation(peak, cap) if up else None,
                "load_now": human_bps(now),
                "peak_forecast": human_bps(peak),
                "capacity": human_bps(cap),
            }
        )
    return pd.DataFrame(rows)


#: Where a node's label may go, tried in this order: (name, dx, dy, text align), with
#: dx, dy in pixels from the node.
LABEL_PLACES = (
    ("above", 0, -10, "center"),
    ("below", 0, 12, "center"),
    ("right", 8, 0, "left"),
    ("left", -8, 0, "right"),
)


def label_offsets(
    positions: Mapping[str, tuple[float, float]], width: float = 600, height: float = 380
) -> pd.DataFrame:
    """Node labels placed so that they do not overlap: each label tries the
    :data:`LABEL_PLACES` around its node (in pixels of a chart about ``width`` x
    ``height``) and takes the first clear of the labels placed before it; a label with no
    clear place is left out (the node's tooltip still names it). The chart draws each
    place as its own text layer with that place's pixel offset, so a label stays next to
    its node whatever the chart's real size; the size only decides what counts as an
    overlap.

    >>> df = label_offsets({"A": (0.0, 0.0), "B": (0.01, 0.0), "C": (10.0, 10.0)})
    >>> df.set_index("node")["place"].to_dict()
    {'A': 'above', 'B': 'below', 'C': 'above'}
    """
    cols = ["node", "x", "y", "place"]
    if not positions:
        return pd.DataFrame(columns=cols)
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    sx = width / max(max(xs) - min(xs), 1e-9)
    sy = height / max(max(ys) - min(ys), 1e-9)
    char_w, box_h = 6.0, 12.0
    boxes: list[tuple[float, float, float, float]] = []
    rows = []
    for node, (x, y) in sorted(positions.items()):
        px, py = (x - min(xs)) * sx, (max(ys) - y) * sy  # screen: y grows downwards
        w = char_w * len(node)
        chosen = None
        for place, dx, dy, align in LABEL_PLACES:
            left = px + dx - {"center": w / 2, "left": 0.0, "right": w}[align]
            box = (left, py + dy - box_h / 2, left + w, py + dy + box_h / 2)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes
            ):
                boxes.append(box)
                chosen = place
                break
        rows.append({"node": node, "x": x, "y": y, "place": chosen})
    return pd.DataFrame(rows, columns=cols)


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


def event_bands(
    events: Sequence[Row],
    link: str,
    start: datetime,
    end: datetime,
    min_width: timedelta = timedelta(0),
) -> pd.DataFrame:
    """Shaded bands for one link: failures until the repair of the same link (or the end
    of the range), maintenance windows as given, detector re-routes over ``min_width``
    (their detection window; a re-route has an onset but no end). Any band is at least
    ``min_width`` wide, so an instant still shows.

    >>> from datetime import UTC
    >>> ev = [{"kind": "failure", "links": ["A>B"], "ts": "2026-01-01T01:00:00Z",
    ...        "end_ts": None, "note": ""},
    ...       {"kind": "repair", "links": ["A>B"], "ts": "2026-01-01T02:00:00Z",
    ...        "end_ts": None, "note": ""},
    ...       {"kind": "reroute", "links": ["A>B"], "ts": "2026-01-01T03:00:00Z",
    ...        "end_ts": None, "note": ""}]
    >>> b = event_bands(ev, "A>B", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2,
    ...                 tzinfo=UTC), min_width=timedelta(minutes=5))
    >>> b[["kind", "start", "end"]].astype(str).values.tolist()
    [['failure', '2026-01-01 01:00:00+00:00', '2026-01-01 02:00:00+00:00'], \
['reroute', '2026-01-01 03:00:00+00:00', '2026-01-01 03:05:00+00:00']]
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
        until = max(until, ev.ts + min_width)
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


ALERT_KINDS = ("failure", "drift", "capacity")
#: A detector re-route has an onset, no end: its band spans the detector's window
#: (``forecaster.drift.DriftMonitor``'s ``reroute_window`` default, in grid steps).
REROUTE_BAND_STEPS = 5


def link_alerts(alerts: Sequence[Row], link: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Alerts of every kind naming ``link`` that are open (pending or firing, however old
    their onset) or began in ``[start, end]``; the magnitude as text with its unit (see
    :func:`magnitude_text`). ``in_range`` tells which ones the chart can mark.

    >>> from datetime import UTC
    >>> a = [{"kind": k, "state": s, "links": ["A>B"], "onset": t, "message": "",
    ...       "magnitude": m} for k, s, t, m in (
    ...      ("drift", "resolved", "2026-01-01T00:30:00Z", 0.4),
    ...      ("capacity", "firing", "2025-12-31T20:00:00Z", 1.2),
    ...      ("drift", "resolved", "2025-12-31T20:00:00Z", 0.1))]
    >>> t = link_alerts(a, "A>B", datetime(2026, 1, 1, tzinfo=UTC),
    ...                 datetime(2026, 1, 2, tzinfo=UTC))
    >>> t[["kind", "magnitude", "in_range"]].values.tolist()
    [['drift', '+40 %', True], ['capacity', '120 % of capacity', False]]
    """
    cols = ["onset", "kind", "state", "magnitude", "message", "in_range"]
    df = frame(alerts, ["onset", "kind", "state", "magnitude", "message", "links"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["in_range"] = (df["onset"] >= pd.Timestamp(start)) & (df["onset"] <= pd.Timestamp(end))
    keep = df["links"].map(lambda ls: link in ls) & (df["in_range"] | (df["state"] != "resolved"))
    df = df.loc[keep].reset_index(drop=True)
    df["magnitude"] = list(map(magnitude_text, df["kind"], df["magnitude"]))
    return df[cols]


def magnitude_text(kind: str, magnitude: float | None) -> str:
    """An alert's magnitude with its unit: a change in % for drift and failure alerts,
    a share of capacity for capacity alerts.

    >>> magnitude_text("drift", -0.25), magnitude_text("capacity", 1.27)
    ('-25 %', '127 % of capacity')
    >>> magnitude_text("failure", None)
    '–'
    """
    if magnitude is None or not math.isfinite(magnitude):
        return "–"
    if kind == "capacity":
        return f"{100 * magnitude:.0f} % of capacity"
    return f"{100 * magnitude:+.0f} %"


def rank_links(
    names: Sequence[str],
    status: Mapping[str, str],
    alerts: Sequence[Row],
    latest: Sequence[Row],
    capacity: Mapping[str, float | None],
) -> list[str]:
    """``names`` in the order a page should offer them first: reporting (``up``) links
    with firing alerts, then the other reporting links, each by forecast peak utilisation
    (``peak_bps`` over ``capacity`` in bit/s, highest first); then down and stale links;
    links without data last.

    >>> rank_links(["a", "b", "c", "d", "e"],
    ...            {"a": "no data", "b": "up", "c": "up", "d": "up", "e": "down"},
    ...            [{"state": "firing", "links": ["d", "e"]}],
    ...            [{"name": "b", "peak_bps": 5.0}, {"name": "c", "peak_bps": 9.0}],
    ...            {"b": 10.0, "c": 10.0})
    ['d', 'c', 'b', 'e', 'a']
    """
    firing = {n for a in alerts if a["state"] == "firing" for n in a["links"]}
    peak = {r["name"]: r.get("peak_bps") for r in latest}
    tier = {"up": 0, "down": 1, "stale": 1, "no data": 2}

    def key(name: str) -> tuple[int, int, float, str]:
        util = utilisation(peak.get(name), capacity.get(name))
        return (
            tier.get(status.get(name, "no data"), 2),
            int(name not in firing),
            -(util or 0.0),
            name,
        )

    return sorted(names, key=key)


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
    ``ttc_steps`` as not converged. Best first: the models that converged after more
    of the events, then by mean ttc (a mean over one event of three is no better than
    one over all three).

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
    >>> once = ttc_table([{"convergence": {"fast": ev(0, "converged"), "sure": ev(2, "converged")}},
    ...                   {"convergence": {"fast": ev(None, "not_converged"),
    ...                                    "sure": ev(4, "converged")}}])
    >>> once[["model", "ttc_steps", "converged"]].values.tolist()
    [['sure', 3.0, 2], ['fast', 0.0, 1]]
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
    return df.sort_values(
        ["converged", "ttc_steps"],
        ascending=[False, True],
        na_position="last",
        kind="stable",
        ignore_index=True,
    )


ALERT_COLUMNS = [
    "id",
    "state",
    "kind",
    "link",
    "model",
    "onset",
    "magnitude",
    "message",
    "silenced",
    "part_of",
]


def alerts_table(alerts: Sequence[Row]) -> pd.DataFrame:
    """Alerts for a table: the links named, the magnitude with its unit, ``–`` where an
    alert has no model (failure alerts come from the detector, not a model), and the
    failure alert it is grouped under (``part_of``, ``#id``; ``–`` when none).

    >>> t = alerts_table([{"id": 1, "state": "firing", "kind": "failure", "link": None,
    ...     "links": ["A>B", "B>C"], "model": None, "onset": "2026-01-01T00:00:00Z",
    ...     "magnitude": 0.5, "message": "re-route", "parent_id": None},
    ...     {"id": 2, "state": "firing", "kind": "drift", "link": "A>B", "links": ["A>B"],
    ...     "model": "hybrid", "onset": "2026-01-01T00:00:00Z", "magnitude": 2.0,
    ...     "message": "level drift", "parent_id": 1}])
    >>> t[["link", "model", "magnitude", "part_of"]].values.tolist()
    [['A>B, B>C', '–', '+50 %', '–'], ['A>B', 'hybrid', '+200 %', '#1']]
    """
    df = frame(alerts, [*ALERT_COLUMNS, "links"])
    if df.empty:
        return pd.DataFrame(columns=ALERT_COLUMNS)
    df["silenced"] = df["silenced"].fillna(False).astype(bool) if "silenced" in df else False
    df["link"] = df["link"].fillna(df["links"].map(lambda ls: ", ".join(ls)))
    df["model"] = df["model"].fillna("–")
    df["magnitude"] = list(map(magnitude_text, df["kind"], df["magnitude"]))
    parent = df["parent_id"] if "parent_id" in df else pd.Series(None, index=df.index)
    df["part_of"] = parent.map(lambda p: "–" if pd.isna(p) else f"#{int(p)}")
    return df[ALERT_COLUMNS]


SILENCE_COLUMNS = ["link", "kind", "ends_at", "comment", "created_by", "starts_at", "id"]


def silences_table(silences: Sequence[Row]) -> pd.DataFrame:
    """Silences for a table: a matcher left out reads ``any``.

    >>> t = silences_table([{"id": 1, "link": None, "kind": "capacity", "comment": "",
    ...     "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-01T02:00:00Z",
    ...     "created_by": "ops"}])
    >>> t[["link", "kind", "created_by"]].values.tolist(), str(t["ends_at"].iloc[0])
    ([['any', 'capacity', 'ops']], '2026-01-01 02:00:00+00:00')
    """
    df = frame(silences, SILENCE_COLUMNS)
    if df.empty:
        return pd.DataFrame(columns=SILENCE_COLUMNS)
    df["link"] = df["link"].fillna("any")
    df["kind"] = df["kind"].fillna("any")
    return df[SILENCE_COLUMNS]


def bps_unit(values: Iterable[float | None]) -> tuple[str, float]:
    """The SI unit that reads best for a set of loads in bit/s (the largest below 1000),
    and its scale: divide by the scale to express the values in the unit.

    >>> bps_unit([3e7, 1.8e8]), bps_unit([]), bps_unit([2e12])
    (('Mbit/s', 1000000.0), ('bit/s', 1.0), ('Tbit/s', 1000000000000.0))
    """
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    for unit, scale in BPS_UNITS:
        if top >= scale:
            return unit, scale
    return "bit/s", 1.0


BPS_UNITS = (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3))


def in_unit(df: pd.DataFrame, columns: Sequence[str], scale: float) -> pd.DataFrame:
    """A copy of ``df`` with the bit/s ``columns`` divided by ``scale`` (see :func:`bps_unit`)."""
    out = df.copy()
    for col in columns:
        if col in out.columns:
            out[col] = out[col].astype(float) / scale
    return out


def human_bps(value: float | None) -> str:
    """
    >>> human_bps(1.25e9), human_bps(None)
    ('1.25 Gbit/s', '–')
    """
    if value is None or not math.isfinite(value):
        return "–"
    for unit, scale in BPS_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} bit/s"


def duration_text(seconds: float) -> str:
    """A duration as an operator says it.

    >>> duration_text(36), duration_text(180), duration_text(3600), duration_text(5400)
    ('36 s', '3 min', '1 h', '1.5 h')
    >>> duration_text(86_400 * 7)
    '7 d'
    """
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


#: Look-back choices of the Link page, in grid steps (the default first): the same
#: choices read well on the demo's 3-s grid and on a 60-s production grid.
BACK_STEPS = (60, 240, 1440, 10_080)


def window_label(steps: int, step_seconds: float) -> str:
    """
    >>> window_label(60, 3), window_label(1440, 60)
    ('60 steps (3 min)', '1440 steps (1 d)')
    """
    return f"{steps} steps ({duration_text(steps * step_seconds)})"


# --- what if: a failure's predicted effect (``GET /api/v1/whatif``, ``/risk``) -------------


def percent_text(fraction: float | None) -> str:
    """A fraction as a whole percentage, ``–`` when unknown.

    >>> percent_text(1.374), percent_text(0.004), percent_text(None)
    ('137 %', '0 %', '–')
    """
    if fraction is None or not math.isfinite(fraction):
        return "–"
    return f"{100 * fraction:.0f} %"


def _peak(values: Sequence[float | None] | None) -> tuple[float | None, int | None]:
    """The largest finite value and its index, (None, None) when there is none."""
    best: tuple[float | None, int | None] = (None, None)
    for i, v in enumerate(values or []):
        if v is not None and math.isfinite(v) and (best[0] is None or v > best[0]):
            best = (float(v), i)
    return best


def whatif_segments(
    links: Sequence[Row], positions: Mapping[str, tuple[float, float]], answer: Row
) -> pd.DataFrame:
    """The map of a what-if answer: one half-edge per directed link (as
    :func:`network_segments` draws them) with its forecast peak utilisation without the
    failure (``utilisation_base``: the peak of ``baseline_bps`` over capacity) and with
    it (``utilisation_whatif``: the API's ``peak_utilisation``), and the status each map
    draws: ``status_base`` is ``down`` for links already down (``up`` otherwise),
    ``status`` is ``failed`` for the links failed in the scenario besides; a link the
    answer leaves out has ``no forecast``. Loads are also given as text with units for
    tooltips.

    >>> answer = {"failed": ["A>B"], "already_down": [], "links": [
    ...     {"link": "A>B", "capacity_bps": 10.0, "failed": True, "baseline_bps": [4.0, 6.0],
    ...      "load_bps": [0.0, 0.0], "peak_utilisation": None},
    ...     {"link": "A>C", "capacity_bps": 10.0, "failed": False, "baseline_bps": [2.0, 3.0],
    ...      "load_bps": [6.0, 9.0], "peak_utilisation": 0.9}]}
    >>> links = [{"name": "A>B", "src": "A", "dst": "B"}, {"name": "A>C", "src": "A", "dst": "C"}]
    >>> pos = {"A": (0.0, 0.0), "B": (2.0, 0.0), "C": (0.0, 2.0)}
    >>> whatif_segments(links, pos, answer)[
    ...     ["link", "status_base", "status", "utilisation_base", "utilisation_whatif"]
    ... ].values.tolist()
    [['A>B', 'up', 'failed', 0.6, nan], ['A>C', 'up', 'up', 0.3, 0.9]]
    """
    by_name = {r["link"]: r for r in answer.get("links", [])}
    already = set(answer.get("already_down", []))
    failed = set(answer.get("failed", [])) | {n for n, r in by_name.items() if r.get("failed")}
    rows = []
    for link in links:
        segment = half_segment(link, positions)
        if segment is None:
            continue
        name = link["name"]
        got = by_name.get(name) or {}
        cap = got.get("capacity_bps", link.get("capacity_bps"))
        base, _ = _peak(got.get("baseline_bps"))
        load, _ = _peak(got.get("load_bps"))
        if not got:
            status_base = status = "no forecast"
        else:
            status_base = "down" if name in already else "up"
            status = "down" if name in already else "failed" if name in failed else "up"
        rows.append(
            {
                **segment,
                "status_base": status_base,
                "status": status,
                "capacity_bps": cap,
                "utilisation_base": utilisation(base, cap) if status_base == "up" else None,
                "utilisation_whatif": got.get("peak_utilisation") if status == "up" else None,
                "base_peak": human_bps(base),
                "whatif_peak": human_bps(load) if status == "up" else "–",
                "capacity": human_bps(cap),
            }
        )
    return pd.DataFrame(rows)


WHATIF_COLUMNS = [
    "link",
    "peak_percent",
    "at",
    "ahead",
    "peak_bps",
    "baseline_peak_bps",
    "capacity_bps",
]


def _at(answer: Row, index: int | None) -> tuple[datetime | None, str]:
    """The time of horizon step ``index`` and how far ahead of the issue it is, as text."""
    times = answer.get("times") or []
    if index is None or index >= len(times):
        return None, "–"
    at = _ts(times[index])
    ahead = (at - _ts(answer["issued_at"])).total_seconds()
    return at, f"in {duration_text(ahead)}" if ahead > 0 else "now"


def overload_table(answer: Row, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The links ``names`` (default: the answer's ``overloaded``, worst first) with their
    peak utilisation under the failure in % of capacity (``peak_percent``), when it comes
    (``at``, UTC, and ``ahead`` of the forecasts' issue, as text), the peak load with and
    without the failure and the capacity, in bit/s.

    >>> answer = {"issued_at": "2026-01-01T00:00:00Z", "overloaded": ["A>C"],
    ...     "times": ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
    ...     "links": [{"link": "A>C", "capacity_bps": 10.0, "baseline_bps": [2.0, 3.0],
    ...                "load_bps": [12.0, 9.0], "utilisation": [1.2, 0.9],
    ...                "peak_utilisation": 1.2}]}
    >>> overload_table(answer)[["link", "peak_percent", "ahead", "peak_bps"]].values.tolist()
    [['A>C', 120.0, 'in 1 min', 12.0]]
    """
    by_name = {r["link"]: r for r in answer.get("links", [])}
    rows = []
    for name in answer.get("overloaded", []) if names is None else names:
        r = by_name.get(name)
        if r is None:
            continue
        util, index = _peak(r.get("utilisation"))
        load, load_index = _peak(r.get("load_bps"))
        at, ahead = _at(answer, index if index is not None else load_index)
        peak = r.get("peak_utilisation", util)
        rows.append(
            {
                "link": name,
                "peak_percent": None if peak is None else 100 * float(peak),
                "at": at,
                "ahead": ahead,
                "peak_bps": load,
                "baseline_peak_bps": _peak(r.get("baseline_bps"))[0],
                "capacity_bps": r.get("capacity_bps"),
            }
        )
    return pd.DataFrame(rows, columns=WHATIF_COLUMNS)


def busiest_links(answer: Row) -> list[str]:
    """Links that survive the failure, highest peak utilisation first (unknown last).

    >>> busiest_links({"links": [
    ...     {"link": "a", "failed": False, "peak_utilisation": 0.2},
    ...     {"link": "b", "failed": True, "peak_utilisation": None},
    ...     {"link": "c", "failed": False, "peak_utilisation": None},
    ...     {"link": "d", "failed": False, "peak_utilisation": 0.7}]})
    ['d', 'a', 'c']
    """
    alive = [r for r in answer.get("links", []) if not r.get("failed")]
    known = [r for r in alive if r.get("peak_utilisation") is not None]
    unknown = [r for r in alive if r.get("peak_utilisation") is None]
    known.sort(key=lambda r: -float(r["peak_utilisation"]))
    return [r["link"] for r in known + unknown]


def utilisation_lines(answer: Row, names: Sequence[str]) -> pd.DataFrame:
    """Utilisation over the horizon (``percent`` of capacity, at ``ts``, and ``at`` as
    UTC text for tooltips) of links ``names``, with the failure (``case`` ``with the
    failure``) and without it (``without``).

    >>> answer = {"times": ["2026-01-01T00:01:00Z"], "links": [{"link": "A>C",
    ...     "capacity_bps": 10.0, "baseline_bps": [3.0], "utilisation": [1.2]}]}
    >>> utilisation_lines(answer, ["A>C"])[["link", "case", "percent"]].values.tolist()
    [['A>C', 'with the failure', 120.0], ['A>C', 'without', 30.0]]
    """
    by_name = {r["link"]: r for r in answer.get("links", [])}
    times = pd.to_datetime(answer.get("times") or [], utc=True, format="ISO8601")
    rows = []
    for name in names:
        r = by_name.get(name)
        if r is None:
            continue
        cap = r.get("capacity_bps")
        for t, with_, base in zip(
            times, r.get("utilisation") or [], r.get("baseline_bps") or [], strict=False
        ):
            at = t.strftime("%d %b %H:%M:%S")
            for case, value in (("with the failure", with_), ("without", utilisation(base, cap))):
                rows.append({"link": name, "ts": t, "at": at, "case": case, "percent": value})
    df = pd.DataFrame(rows, columns=["link", "ts", "at", "case", "percent"])
    df["percent"] = df["percent"].astype(float) * 100
    return df


def unroutable_table(answer: Row) -> pd.DataFrame:
    """The origin-destination demands the failure leaves without a path, largest first
    (``demand_bps`` in bit/s)."""
    df = pd.DataFrame(answer.get("unroutable_pairs") or [], columns=["src", "dst", "demand_bps"])
    return df.sort_values("demand_bps", ascending=False, kind="stable").reset_index(drop=True)


RISK_COLUMNS = ["cut", "worst_utilisation", "worst_link", "worst_time", "overloaded",
                "unroutable_bps"]  # fmt: skip


def risk_table(risk: Row) -> pd.DataFrame:
    """The N-1 scan as the API ranks it (worst first): the links cut, the worst
    utilisation within the horizon as text in % (``–`` when no capacity is known), on
    which link and when (UTC), the links it overloads, the demand left unroutable
    (bit/s, the peak over the horizon).

    >>> risk_table({"scenarios": [{"failed": ["A>B"], "worst_utilisation": 1.31,
    ...     "worst_link": "A>C", "worst_time": "2026-01-01T00:05:00Z",
    ...     "overloaded": ["A>C", "C>B"], "unroutable_bps": 0.0}]}
    ... )[["cut", "worst_utilisation", "worst_link", "overloaded"]].values.tolist()
    [['A>B', '131 %', 'A>C', 'A>C, C>B']]
    """
    rows = [
        {
            "cut": ", ".join(s.get("failed", [])),
            "worst_utilisation": percent_text(s.get("worst_utilisation")),
            "worst_link": s.get("worst_link") or "–",
            "worst_time": s.get("worst_time"),
            "overloaded": ", ".join(s.get("overloaded", [])) or "none",
            "unroutable_bps": float(s.get("unroutable_bps") or 0.0),
        }
        for s in risk.get("scenarios", [])
    ]
    df = pd.DataFrame(rows, columns=RISK_COLUMNS)
    df["worst_time"] = pd.to_datetime(df["worst_time"], utc=True, format="ISO8601")
    return df
