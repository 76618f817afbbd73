"""Engine and session factory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError
from sqlalchemy.orm import Session, sessionmaker


def is_connection_problem(exc: BaseException) -> bool:
    """True if ``exc`` means the database cannot be reached or answer now: a connection
    refused or lost, the server shutting down, a transaction it rolled back (psycopg's
    ``OperationalError`` and its subclasses, as raised or as SQLAlchemy wraps them), or
    the connection pool exhausted. The API answers it 503 with ``Retry-After``; the
    engine does not count it against the bucket it was processing."""
    if isinstance(exc, OperationalError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, psycopg.OperationalError)


def sqlalchemy_url(url: str) -> str:
    """Name the psycopg 3 driver in a plain ``postgresql://`` URL.

    >>> sqlalchemy_url("postgresql://postgres@127.0.0.1:5432/test")
    'postgresql+psycopg://postgres@127.0.0.1:5432/test'
    >>> sqlalchemy_url("postgres://u@h/d")
    'postgresql+psycopg://u@h/d'
    """
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://...)")


def make_engine(url: str, *, pool_size: int = 8, connect_timeout: int = 5) -> Engine:
    """An engine whose connections work in UTC (see :func:`_utc`) with JIT off."""
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": connect_timeout,
            "application_name": "linkcast",
            # JIT pays off for long analytic scans; linkcast's reads are short and span many
            # day partitions, where compiling took over 20 s of a 30-s timeout (the soak).
            "options": "-c jit=off",
        },
    )
    event.listen(engine, "connect", _utc)
    return engine


def _utc(dbapi_connection: Any, _record: Any) -> None:
    """Set the session's time zone to UTC on every new connection.

    PostgreSQL hands ``timestamptz`` values over in the session's zone: on a server whose
    ``timezone`` is not UTC (Debian's initdb takes the host's), or with ``PGTZ`` set in
    the environment (libpq applies it after the startup options), every time in the API
    would read ``+01:00`` instead of ``Z``. Committed, so that the pool's rollback on
    return does not undo it.
    """
    dbapi_connection.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
