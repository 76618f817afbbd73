"""Query functions. Each takes the session as a keyword argument."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import ApiToken, Event, Link, ModelVersion, Sample, Scope
from db.silences import SILENCE_MATCHES_ALERT


def split_link_name(name: str) -> tuple[str | None, str | None]:
    """Source and destination nodes of an ``A>B`` link name.

    >>> split_link_name("ATLAng>HSTNng")
    ('ATLAng', 'HSTNng')
    >>> split_link_name("r1:xe-0/0/1")
    (None, None)
    """
    if ">" in name:
        src, dst = name.split(">", 1)
        return src, dst
    return None, None


def list_links(*, session: Session, offset: int = 0, limit: int = 1000) -> tuple[list[Link], int]:
    total = session.scalar(select(func.count()).select_from(Link)) or 0
    rows = session.scalars(select(Link).order_by(Link.name).offset(offset).limit(limit)).all()
    return list(rows), total


def get_link(*, session: Session, name: str) -> Link | None:
    return session.scalar(select(Link).where(Link.name == name))


def upsert_link(
    *,
    session: Session,
    name: str,
    src: str | None,
    dst: str | None,
    capacity_bps: float | None,
    labels: dict[str, Any],
) -> tuple[Link, bool]:
    """Create a link or update its attributes. Returns (link, created).

    One statement (INSERT ... ON CONFLICT), so that two requests registering the same new
    link at once both succeed, as would a push registering it meanwhile."""
    if src is None and dst is None:
        src, dst = split_link_name(name)
    values: dict[str, Any] = dict(src=src, dst=dst, capacity_bps=capacity_bps, labels=labels)
    link_id, created = session.execute(
        pg_insert(Link)
        .values(name=name, **values)
        .on_conflict_do_update(index_elements=[Link.name], set_=values)
        # xmax is 0 on a row this statement inserted, the updating transaction's id otherwise
        .returning(Link.id, literal_column("xmax = 0", Boolean).label("created"))
    ).one()
    link = session.get(Link, link_id, populate_existing=True)
    assert link is not None
    return link, bool(created)


def get_samples(
    *,
    session: Session,
    link_id: int,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[Sample]:
    """Samples of one link with ``start <= ts < end``, oldest first, at most ``limit``."""
    query = select(Sample).where(Sample.link_id == link_id)
    if start is not None:
        query = query.where(Sample.ts >= start)
    if end is not None:
        query = query.where(Sample.ts < end)
    return list(session.scalars(query.order_by(Sample.ts).limit(limit)).all())


def count_samples(*, session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Sample)) or 0


# --- tokens -----------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    id: int
    scope: str
    token: str


def create_token(*, session: Session, scope: str, name: str = "") -> NewToken:
    if scope not in Scope.ALL:
        raise ValueError(f"unknown scope {scope!r}; valid scopes: {', '.join(Scope.ALL)}")
    token = "lc_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name or f"{scope} token", scope=scope, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return NewToken(id=row.id, scope=scope, token=token)


def token_scope(*, session: Session, token: str) -> str | None:
    """The scope of a valid, unrevoked token, else None."""
    return session.scalar(
        select(ApiToken.scope).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )


def token_name(*, session: Session, token: str) -> str | None:
    """The name of a valid, unrevoked token, else None."""
    return session.scalar(
        select(ApiToken.name).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )


def ping(*, session: Session) -> None:
    session.execute(text("SELECT 1"))


# --- forecasts, errors, alerts, events, models ------------------------------------------


def get_forecasts(
    *,
    session: Session,
    link_id: int,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
    step: int | None,
    latest: bool,
    limit: int,
) -> list[dict[str, Any]]:
    """Forecast rows (issued_at, model, step, ts, value, lower, upper), by ts then step.

    ``start``/``end`` bound the target time ``ts``; ``latest`` keeps only the newest
    issue of each model; ``step`` keeps one horizon step.
    """
    sql = text(
        """
        WITH f AS (
            SELECT * FROM forecast
            WHERE link_id = :link_id
              AND (CAST(:model AS text) IS NULL OR model = :model)
              AND (CAST(:start AS timestamptz) IS NULL
                   OR issued_at >= CAST(:start AS timestamptz) - interval '1 day')
              AND (CAST(:end AS timestamptz) IS NULL OR issued_at < :end)
        ), chosen AS (
            SELECT * FROM f
            WHERE NOT :latest OR issued_at = (
                SELECT max(issued_at) FROM f f2 WHERE f2.model = f.model)
        )
        SELECT c.issued_at, c.model, h.step::int AS step,
               c.issued_at + (h.step - 1) * c.step_seconds * interval '1 second' AS ts,
               h.value::float8 AS value, c.lower_bps[h.step]::float8 AS lower,
               c.upper_bps[h.step]::float8 AS upper
        FROM chosen c CROSS JOIN LATERAL unnest(c.value_bps) WITH ORDINALITY AS h(value, step)
        WHERE (CAST(:step AS int) IS NULL OR h.step = :step)
          AND (CAST(:start AS timestamptz) IS NULL
               OR c.issued_at + (h.step - 1) * c.step_seconds * interval '1 second' >= :start)
          AND (CAST(:end AS timestamptz) IS NULL
               OR c.issued_at + (h.step - 1) * c.step_seconds * interval '1 second' < :end)
        ORDER BY ts, step, c.model
        LIMIT :limit
        """
    )
    params = {
        "link_id": link_id,
        "model": model,
        "start": start,
        "end": end,
        "step": step,
        "latest": latest,
        "limit": limit,
    }
    return [dict(r._mapping) for r in session.execute(sql, params)]


def get_errors(
    *,
    session: Session,
    link_id: int,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
    step: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Scored errors (ts, model, step, error = forecast - actual, actual), by ts."""
    sql = text(
        """
        SELECT e.ts, e.model, h.step::int AS step, h.err::float8 AS error_bps,
               e.actual_bps
        FROM forecast_error e
        CROSS JOIN LATERAL unnest(e.error_bps) WITH ORDINALITY AS h(err, step)
        WHERE e.link_id = :link_id AND h.err IS NOT NULL
          AND (CAST(:model AS text) IS NULL OR e.model = :model)
          AND (CAST(:start AS timestamptz) IS NULL OR e.ts >= :start)
          AND (CAST(:end AS timestamptz) IS NULL OR e.ts < :end)
          AND (CAST(:step AS int) IS NULL OR h.step = :step)
        ORDER BY e.ts, step, e.model
        LIMIT :limit
        """
    )
    params = {
        "link_id": link_id,
        "model": model,
        "start": start,
        "end": end,
        "step": step,
        "limit": limit,
    }
    return [dict(r._mapping) for r in session.execute(sql, params)]


def list_alerts(
    *,
    session: Session,
    state: str | None,
    kind: str | None,
    link: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    sql = text(
        f"""
        SELECT a.id, a.kind, a.state, l.name AS link, a.links, a.model, a.onset,
               a.magnitude, a.message, a.created_at, a.updated_at, a.firing_at, a.resolved_at,
               a.parent_id,
               EXISTS (SELECT 1 FROM silence s WHERE {SILENCE_MATCHES_ALERT}) AS silenced
        FROM alert a LEFT JOIN link l ON l.id = a.link_id
        WHERE (CAST(:state AS text) IS NULL OR a.state = :state)
          AND (CAST(:kind AS text) IS NULL OR a.kind = :kind)
          AND (CAST(:link AS text) IS NULL OR :link = ANY(a.links))
        ORDER BY a.onset DESC, a.id DESC
        LIMIT :limit
        """
    )
    params = {"state": state, "kind": kind, "link": link, "limit": limit}
    return [dict(r._mapping) for r in session.execute(sql, params)]


def list_events(
    *,
    session: Session,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[Event]:
    query = select(Event)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if start is not None:
        query = query.where(Event.ts >= start)
    if end is not None:
        query = query.where(Event.ts < end)
    return list(session.scalars(query.order_by(Event.ts.desc()).limit(limit)).all())


def get_event(*, session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id)


def unknown_links(*, session: Session, names: list[str]) -> list[str]:
    known = set(session.scalars(select(Link.name).where(Link.name.in_(names))).all())
    return [n for n in names if n not in known]


def rerouted_links(
    *, session: Session, start: datetime, end: datetime, exclude: list[str]
) -> list[str]:
    """Links named by detected re-route events with ts in [start, end), minus ``exclude``."""
    rows = session.scalars(
        select(Event.links).where(Event.kind == "reroute", Event.ts >= start, Event.ts < end)
    ).all()
    return sorted({link for links in rows for link in links} - set(exclude))


def errors_around(
    *,
    session: Session,
    start: datetime,
    end: datetime,
    exclude: list[str],
) -> list[dict[str, Any]]:
    """One-step-ahead errors and actuals of every link in [start, end), for event views."""
    sql = text(
        """
        SELECT l.name AS link, e.model, e.ts, e.actual_bps, e.error_bps[1]::float8 AS error_bps
        FROM forecast_error e JOIN link l ON l.id = e.link_id
        WHERE e.ts >= :start AND e.ts < :end AND e.error_bps[1] IS NOT NULL
          AND NOT (l.name = ANY(CAST(:exclude AS text[])))
        ORDER BY e.ts
        """
    )
    rows = session.execute(sql, {"start": start, "end": end, "exclude": exclude})
    return [dict(r._mapping) for r in rows]


def model_summaries(*, session: Session, since: datetime) -> list[dict[str, Any]]:
    """Per model: latest version, last retrain, one-step RMSE and MAE since ``since``."""
    sql = text(
        """
        WITH v AS (
            SELECT model, max(version) AS version,
                   max(trained_at) FILTER (WHERE kind = 'retrain') AS last_retrain,
                   count(*) FILTER (WHERE kind = 'retrain') AS retrains
            FROM model_version GROUP BY model
        ), e AS (
            SELECT model, sqrt(avg(error_bps[1]::float8 ^ 2)) AS rmse_bps,
                   avg(abs(error_bps[1]::float8)) AS mae_bps, count(*) AS scored
            FROM forecast_error WHERE ts >= :since AND error_bps[1] IS NOT NULL
            GROUP BY model
        )
        SELECT coalesce(v.model, e.model) AS name, v.version, v.last_retrain,
               coalesce(v.retrains, 0) AS retrains, e.rmse_bps, e.mae_bps,
               coalesce(e.scored, 0) AS scored
        FROM v FULL JOIN e ON e.model = v.model
        """
    )
    return [dict(r._mapping) for r in session.execute(sql, {"since": since})]


def model_versions(*, session: Session, limit: int = 100) -> list[ModelVersion]:
    return list(
        session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit)).all()
    )


def links_latest(*, session: Session, model: str) -> list[dict[str, Any]]:
    """Every link with its newest plausible (``ok``) sample and the peak of ``model``'s
    newest forecast."""
    sql = text(
        """
        SELECT l.name, l.capacity_bps, s.ts, s.value_bps, f.issued_at,
               (SELECT max(v)::float8 FROM unnest(f.value_bps) v) AS peak_bps,
               (SELECT max(u)::float8 FROM unnest(f.upper_bps) u) AS peak_upper_bps
        FROM link l
        LEFT JOIN LATERAL (
            SELECT ts, value_bps FROM sample WHERE link_id = l.id AND quality = 'ok'
            ORDER BY ts DESC LIMIT 1
        ) s ON true
        LEFT JOIN LATERAL (
            SELECT issued_at, value_bps, upper_bps FROM forecast
            WHERE link_id = l.id AND model = :model ORDER BY issued_at DESC LIMIT 1
        ) f ON true
        ORDER BY l.name
        """
    )
    return [dict(r._mapping) for r in session.execute(sql, {"model": model})]
