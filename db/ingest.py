"""Bulk writes of samples: one COPY straight into `sample`, an upsert when needed.

Link names are resolved to ids in Python (a per-process cache, checked against the
table on every write, so a stale entry can never attach samples to a missing link).
New samples, the common case, go in with a single COPY into `sample`: the cheapest
write PostgreSQL has. If any (link, ts) of the batch is already stored, that COPY
fails as a whole; it is rolled back to a savepoint and the batch goes through a
staging table and one INSERT .. ON CONFLICT DO UPDATE instead (last write wins; an
identical retry rewrites no row). Either way the request is one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

import psycopg
from sqlalchemy import Engine

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sample_stage "
    "(link_id integer NOT NULL, ts timestamptz NOT NULL, value_bps double precision NOT NULL) "
    "ON COMMIT DELETE ROWS"
)

# Unknown links are registered; `A>B` names give the link's source and destination nodes.
# NOT EXISTS first, so that known names do not burn identity values on conflict.
_REGISTER_LINKS = """
INSERT INTO link (name, src, dst)
SELECT n,
       CASE WHEN strpos(n, '>') > 0 THEN split_part(n, '>', 1) END,
       CASE WHEN strpos(n, '>') > 0 THEN substr(n, strpos(n, '>') + 1) END
FROM unnest(%(names)s::text[]) AS n
WHERE NOT EXISTS (SELECT 1 FROM link l WHERE l.name = n)
ON CONFLICT (name) DO NOTHING
"""

_UPSERT_SAMPLES = """
INSERT INTO sample (link_id, ts, value_bps)
SELECT link_id, ts, value_bps FROM sample_stage
ON CONFLICT (link_id, ts) DO UPDATE SET value_bps = EXCLUDED.value_bps
WHERE sample.value_bps IS DISTINCT FROM EXCLUDED.value_bps
"""


class LinkIds:
    """Link name -> id, learned from the table; shared by the threads of one process."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(self, cur: psycopg.Cursor, names: Collection[str]) -> dict[str, int]:
        """Ids of ``names``, registering unknown ones, all checked against ``link``."""
        with self._lock:
            known = {n: self._ids[n] for n in names if n in self._ids}
        if known:  # every cached (name, id) pair must still be in the table
            cur.execute(
                "SELECT count(*) FROM link l JOIN unnest(%s::text[], %s::int[]) AS k(name, id)"
                " ON l.id = k.id AND l.name = k.name",
                (list(known), list(known.values())),
            )
            row = cur.fetchone()
            if row is None or row[0] != len(known):
                known = {}  # the table changed under us: learn again
                with self._lock:
                    self._ids.clear()
        missing = [n for n in names if n not in known]
        if missing:
            cur.execute(_REGISTER_LINKS, {"names": missing})
            cur.execute("SELECT name, id FROM link WHERE name = ANY(%s)", (missing,))
            found = dict(cur.fetchall())
            with self._lock:
                self._ids.update(found)
            known.update(found)
        return known


def copy_payload(rows: Iterable[tuple[int, str, float]]) -> bytes:
    r"""COPY text for (link_id, ts as RFC 3339, value_bps) rows.

    >>> copy_payload([(7, "2026-01-01T00:00:00+00:00", 1e9)])
    b'7\t2026-01-01T00:00:00+00:00\t1000000000.0\n'
    """
    return "".join([f"{link}\t{ts}\t{value!r}\n" for link, ts, value in rows]).encode()


def write_samples(
    engine: Engine, rows: Collection[tuple[str, str, float]], link_ids: LinkIds
) -> int:
    """Store samples in one transaction: all of them or none.

    ``rows`` are (link name, ts as RFC 3339, value_bps); each (link, ts) must appear
    once (the caller keeps the last of duplicates). Returns the rows written.
    """
    if not rows:
        return 0
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            ids = link_ids.resolve(cur, {name for name, _, _ in rows})
            payload = copy_payload((ids[name], ts, value) for name, ts, value in rows)
            cur.execute("SAVEPOINT fresh")
            try:
                with cur.copy("COPY sample (link_id, ts, value_bps) FROM STDIN") as copy:
                    copy.write(payload)
                written = len(rows)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT fresh")
                cur.execute(_STAGE_DDL)  # rare path; inside this transaction on purpose
                with cur.copy("COPY sample_stage (link_id, ts, value_bps) FROM STDIN") as copy:
                    copy.write(payload)
                cur.execute(_UPSERT_SAMPLES)
                written = cur.rowcount
        conn.commit()
        return written
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
