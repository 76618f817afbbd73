"""Queries of the live engine: buckets of samples, forecasts, errors, alerts, checkpoints.

Bulk writes go through COPY into a temporary table and one INSERT, so that a tick of
thousands of links costs a few statements, and ON CONFLICT DO NOTHING makes a replayed
tick (after a restart from an older checkpoint) store nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, select, text, update
from sqlalchemy.orm import Session

from db import partitions
from db.models import Alert, AlertState, Event, ModelCheckpoint, ModelVersion

ENGINE_LOCK_KEY = 0x6C696E6B63617374  # "linkcast" as 8 bytes: the leader's advisory lock


@dataclass(frozen=True)
class LinkRow:
    id: int
    name: str
    capacity_bps: float | None


def all_links(conn: Connection) -> list[LinkRow]:
    rows = conn.execute(text("SELECT id, name, capacity_bps FROM link ORDER BY id"))
    return [LinkRow(*r) for r in rows]


def bucket_means(conn: Connection, start: datetime, end: datetime) -> dict[int, float]:
    """Mean load per link over samples with ``start <= ts < end``; quarantined samples
    (quality other than ``ok``) are left out, so nothing downstream learns from them."""
    rows = conn.execute(
        text(
            "SELECT link_id, avg(value_bps) FROM sample WHERE ts >= :a AND ts < :b"
            " AND quality = 'ok' GROUP BY link_id"
        ),
        {"a": start, "b": end},
    )
    return {int(k): float(v) for k, v in rows}


def bucket_history(
    conn: Connection, start: datetime, end: datetime, step_seconds: int
) -> list[tuple[datetime, dict[int, float]]]:
    """:func:`bucket_means` of every grid bucket in ``[start, end)``, oldest first (buckets
    without an ``ok`` sample are left out): what the engine's excursion filter is rebuilt
    from after a restart."""
    rows = conn.execute(
        text(
            "SELECT to_timestamp(floor(extract(epoch FROM ts) / :s) * :s) AS bucket, link_id,"
            " avg(value_bps) FROM sample WHERE ts >= :a AND ts < :b AND quality = 'ok'"
            " GROUP BY 1, 2 ORDER BY 1"
        ),
        {"a": start, "b": end, "s": step_seconds},
    )
    out: list[tuple[datetime, dict[int, float]]] = []
    for bucket, link_id, value in rows:
        if not out or out[-1][0] != bucket:
            out.append((bucket, {}))
        out[-1][1][int(link_id)] = float(value)
    return out


def mark_excursions(
    conn: Connection, excursions: Iterable[tuple[int, datetime, float, float]], step: timedelta
) -> int:
    """Mark ``excursion`` the samples of each reverted bucket, given as (link id, bucket
    start, centre, limit): those farther than the limit from the centre of the range the
    bucket was judged against (the others of the bucket, if any, stay ``ok``). Returns
    how many samples were marked."""
    rows = list(excursions)
    if not rows:
        return 0
    result = conn.execute(
        text(
            "UPDATE sample s SET quality = 'excursion'"
            " FROM unnest(CAST(:links AS integer[]), CAST(:starts AS timestamptz[]),"
            " CAST(:centres AS float8[]), CAST(:limits AS float8[])) AS x(link_id, a, m, t)"
            " WHERE s.link_id = x.link_id AND s.ts >= x.a AND s.ts < x.a + :step"
            " AND s.quality = 'ok' AND abs(s.value_bps - x.m) > x.t"
        ),
        {
            "links": [r[0] for r in rows],
            "starts": [r[1] for r in rows],
            "centres": [r[2] for r in rows],
            "limits": [r[3] for r in rows],
            "step": step,
        },
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def issued_forecasts(
    conn: Connection, oldest: datetime, newest: datetime
) -> list[tuple[int, str, datetime, list[float]]]:
    """(link_id, model, issued_at, value_bps) issued in [oldest, newest]."""
    rows = conn.execute(
        text(
            "SELECT link_id, model, issued_at, value_bps FROM forecast"
            " WHERE issued_at >= :a AND issued_at <= :b"
        ),
        {"a": oldest, "b": newest},
    )
    return [(int(a), str(b), c, list(d)) for a, b, c, d in rows]


def reporting_links(conn: Connection, before: datetime) -> set[int]:
    """Ids of the links with a sample before ``before``: the links that have reported."""
    sql = text(
        "SELECT l.id FROM link l WHERE EXISTS "
        "(SELECT 1 FROM sample s WHERE s.link_id = l.id AND s.ts < :before)"
    )
    return {int(r[0]) for r in conn.execute(sql, {"before": before})}


def count_samples(conn: Connection, start: datetime, end: datetime) -> int:
    return int(
        conn.scalar(
            text("SELECT count(*) FROM sample WHERE ts >= :a AND ts < :b"), {"a": start, "b": end}
        )
        or 0
    )


def first_sample_after(conn: Connection, start: datetime) -> datetime | None:
    return conn.scalar(text("SELECT min(ts) FROM sample WHERE ts >= :a"), {"a": start})


def array_literal(values: Iterable[float | None]) -> str:
    """A PostgreSQL array in COPY text form; None and NaN become NULL.

    >>> array_literal([1.5, None, float("nan"), 2e9])
    '{1.5,NULL,NULL,2000000000.0}'
    """
    return "{" + ",".join("NULL" if v is None or v != v else repr(v) for v in values) + "}"


def text_array_literal(values: Iterable[str]) -> str:
    """A PostgreSQL ``text[]`` literal of ``values``, each element double-quoted with
    its backslashes and double quotes escaped (the array input syntax of PostgreSQL's
    manual, "Arrays"): cast with ``::text[]``. Two C-level replaces an element, where
    psycopg's array dumpers run Python per element (binary) or a regular expression
    (text).

    >>> text_array_literal(['a>b', 'x{"y"},\\z', 'NULL', ''])
    '{"a>b","x{\\\\"y\\\\"},\\\\\\\\z","NULL",""}'
    >>> text_array_literal([])
    '{}'
    """
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(quoted) + '"}' if quoted else "{}"


def real_array_literals(rows: np.ndarray) -> list[str]:
    """Each row of ``rows`` (``(n, H)``, bit/s; NaN: none) as a ``real[]`` literal
    (:func:`array_literal`), rounded to single precision first: PostgreSQL refuses a
    ``real`` that underflows to 0 (an error of 5e-324 bit/s) instead of rounding it.

    >>> real_array_literals(np.array([[5e-324, 1.5], [np.nan, 2e9]]))
    ['{0.0,1.5}', '{NULL,2000000000.0}']
    """
    return [array_literal(row) for row in np.asarray(rows, dtype=np.float32).tolist()]


def _insert_new(conn: Connection, table: str, columns: Sequence[str], lines: Iterable[str]) -> int:
    """COPY tab-separated ``lines`` (no tabs, newlines or backslashes in the fields) into
    a temporary copy of ``table``, then insert the rows whose key is not there yet."""
    raw = conn.connection.driver_connection
    assert raw is not None
    stage, cols = f"{table}_stage", ", ".join(columns)
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            copy.write("".join(lines).encode())
    result = conn.execute(
        text(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")
    )
    return result.rowcount


FORECAST_COLUMNS = (
    "link_id",
    "model",
    "issued_at",
    "step_seconds",
    "value_bps",
    "lower_bps",
    "upper_bps",
)


def insert_forecasts(conn: Connection, lines: Iterable[str]) -> int:
    """COPY lines of FORECAST_COLUMNS; existing (link, model, issued_at) are kept as they are."""
    return _insert_new(conn, "forecast", FORECAST_COLUMNS, lines)


ERROR_COLUMNS = ("link_id", "model", "ts", "actual_bps", "error_bps")


def insert_errors(conn: Connection, lines: Iterable[str]) -> int:
    """COPY lines of ERROR_COLUMNS; existing (link, model, ts) are kept."""
    return _insert_new(conn, "forecast_error", ERROR_COLUMNS, lines)


# --- alerts -------------------------------------------------------------------------------


def open_alerts(session: Session, kind: str | None = None) -> list[Alert]:
    """Pending and firing alerts (of ``kind``, or every kind), oldest first."""
    query = select(Alert).where(Alert.state != AlertState.RESOLVED).order_by(Alert.id)
    if kind is not None:
        query = query.where(Alert.kind == kind)
    return list(session.scalars(query).all())


def resolve_alert(session: Session, alert: Alert, at: datetime) -> None:
    alert.state, alert.resolved_at, alert.updated_at = AlertState.RESOLVED, at, at


def promote_pending(session: Session, *, older_than: datetime, at: datetime) -> int:
    """Pending alerts whose onset is at or before ``older_than`` start firing."""
    result = session.execute(
        update(Alert)
        .where(Alert.state == AlertState.PENDING, Alert.onset <= older_than)
        .values(state=AlertState.FIRING, firing_at=at, updated_at=at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def add_event(
    session: Session,
    *,
    kind: str,
    links: list[str],
    ts: datetime,
    note: str = "",
    source: str = "operator",
    end_ts: datetime | None = None,
) -> Event:
    event = Event(kind=kind, links=links, ts=ts, note=note, source=source, end_ts=end_ts)
    session.add(event)
    session.flush()
    return event


# --- checkpoints and versions ----------------------------------------------------------


def save_checkpoint(
    session: Session,
    *,
    last_bucket: datetime,
    step_seconds: int,
    link_ids: list[int],
    state: bytes,
    keep: int = 3,
) -> None:
    session.add(
        ModelCheckpoint(
            last_bucket=last_bucket, step_seconds=step_seconds, link_ids=link_ids, state=state
        )
    )
    session.flush()
    session.execute(
        text(
            "DELETE FROM model_checkpoint WHERE id NOT IN"
            " (SELECT id FROM model_checkpoint ORDER BY id DESC LIMIT :keep)"
        ),
        {"keep": keep},
    )


def latest_checkpoint(session: Session, step_seconds: int) -> ModelCheckpoint | None:
    """The newest checkpoint made with this grid step (another step cannot resume it)."""
    return session.scalar(
        select(ModelCheckpoint)
        .where(ModelCheckpoint.step_seconds == step_seconds)
        .order_by(ModelCheckpoint.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class GridChange:
    """State of the engine stored on another grid than the one it now runs on."""

    steps: list[int]  # the other grid steps (seconds)
    until: datetime  # the end of the last bucket the other grid processed


def grid_change(session: Session, step_seconds: int, since: datetime) -> GridChange | None:
    """Whether the engine's stored state is of another grid step than ``step_seconds``.

    The newest checkpoint says which grid the engine ran on last: if it is this one,
    nothing changed (one row read). Otherwise (another step, or no checkpoint, as after
    a crash before the first) the forecasts issued since the checkpoint's bucket, or
    since ``since`` without one (the earliest bucket a new engine replays), say which
    grid stored them. BRIN on issued_at keeps that to the recent rows.
    """
    newest = session.execute(
        select(ModelCheckpoint.step_seconds, ModelCheckpoint.last_bucket)
        .order_by(ModelCheckpoint.id.desc())
        .limit(1)
    ).first()
    if newest is not None and newest.step_seconds == step_seconds:
        return None
    found: dict[int, datetime] = {}
    if newest is not None:
        found[newest.step_seconds] = newest.last_bucket + timedelta(seconds=newest.step_seconds)
        since = newest.last_bucket
    rows = session.execute(
        text(
            "SELECT step_seconds, max(issued_at) FROM forecast"
            " WHERE issued_at >= :since AND step_seconds <> :s GROUP BY step_seconds"
        ),
        {"since": since, "s": step_seconds},
    )
    for step, issued in rows:
        found[step] = max(found.get(step, issued), issued)
    if not found:
        return None
    return GridChange(steps=sorted(found), until=max(found.values()))


@dataclass(frozen=True)
class Discarded:
    checkpoints: int
    forecasts: int
    errors: int


def discard_grid_state(session: Session, step_seconds: int) -> Discarded:
    """Delete what the engine stored on other grids than ``step_seconds``: every
    checkpoint, the forecasts of other steps (a new grid's forecast of the same time
    would otherwise be dropped as a duplicate) and the forecast errors scored since the
    oldest of them (errors do not name their grid: those were scored on the old one).
    The samples, links, events and alerts stay."""
    params = {"s": step_seconds}
    oldest = session.scalar(
        text("SELECT min(issued_at) FROM forecast WHERE step_seconds <> :s"), params
    )
    forecasts = session.execute(text("DELETE FROM forecast WHERE step_seconds <> :s"), params)
    errors = 0
    if oldest is not None:
        errors = session.execute(
            text("DELETE FROM forecast_error WHERE ts >= :t"), {"t": oldest}
        ).rowcount  # type: ignore[attr-defined]
    checkpoints = session.execute(text("DELETE FROM model_checkpoint"))
    return Discarded(
        checkpoints=int(checkpoints.rowcount),  # type: ignore[attr-defined]
        forecasts=int(forecasts.rowcount),  # type: ignore[attr-defined]
        errors=int(errors),
    )


def record_version(
    session: Session,
    *,
    model: str,
    kind: str,
    duration_seconds: float | None = None,
    window_steps: int | None = None,
    note: str = "",
) -> int:
    current = session.scalar(
        text("SELECT coalesce(max(version), 0) FROM model_version WHERE model = :m"),
        {"m": model},
    )
    version = int(current or 0) + 1
    session.add(
        ModelVersion(
            model=model,
            version=version,
            kind=kind,
            duration_seconds=duration_seconds,
            window_steps=window_steps,
            note=note,
        )
    )
    return version


def delete_older_than(conn: Connection, *, forecasts: datetime, samples: datetime) -> None:
    """Retention: forecasts and errors older than ``forecasts``, samples older than
    ``samples``, resolved alerts resolved before ``forecasts``.

    The three time-partitioned tables lose whole UTC-day partitions
    (:func:`db.partitions.drop_older_than`): each cutoff is rounded down to the start
    of its UTC day, so rows are kept for at least the retention and at most a day more,
    and no long DELETE runs under load. Each table is done in a short transaction of its
    own on another connection of ``conn``'s engine (a lock on one is never held while
    waiting for another); the alerts are deleted in ``conn``'s transaction.
    Raises :class:`db.partitions.PartitionLockTimeout` when a table stayed busy."""
    cutoffs = {"sample": samples, "forecast": forecasts, "forecast_error": forecasts}
    for table, cutoff in cutoffs.items():
        partitions.drop_older_than(conn.engine, table, cutoff)
    conn.execute(
        text("DELETE FROM alert WHERE state = 'resolved' AND resolved_at < :t"),
        {"t": forecasts},
    )


def grid_floor(ts: datetime, step_seconds: int) -> datetime:
    """The start of the grid bucket holding ``ts``.

    >>> from datetime import UTC
    >>> grid_floor(datetime(2026, 1, 1, 0, 7, 31, tzinfo=UTC), 300).isoformat()
    '2026-01-01T00:05:00+00:00'
    """
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_seconds, ts.tzinfo)
