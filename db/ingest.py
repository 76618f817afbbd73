"""Bulk writes of samples: COPY into a per-connection staging table, then one upsert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sample_stage "
    "(link text NOT NULL, ts timestamptz NOT NULL, value_bps double precision NOT NULL) "
    "ON COMMIT DELETE ROWS"
)

# Unknown links are registered; `A>B` names give the link's source and destination nodes.
# NOT EXISTS first, so that known names do not burn identity values on conflict.
_REGISTER_LINKS = """
INSERT INTO link (name, src, dst)
SELECT DISTINCT s.link,
       CASE WHEN strpos(s.link, '>') > 0 THEN split_part(s.link, '>', 1) END,
       CASE WHEN strpos(s.link, '>') > 0 THEN substr(s.link, strpos(s.link, '>') + 1) END
FROM sample_stage s
WHERE NOT EXISTS (SELECT 1 FROM link l WHERE l.name = s.link)
ON CONFLICT (name) DO NOTHING
"""

# Last write wins; an identical retry rewrites nothing (no new row versions).
_UPSERT_SAMPLES = """
INSERT INTO sample (link_id, ts, value_bps)
SELECT l.id, s.ts, s.value_bps FROM sample_stage s JOIN link l ON l.name = s.link
ON CONFLICT (link_id, ts) DO UPDATE SET value_bps = EXCLUDED.value_bps
WHERE sample.value_bps IS DISTINCT FROM EXCLUDED.value_bps
"""

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(links: Sequence[str], ts: Sequence[datetime], values: Sequence[float]) -> bytes:
    lines = [
        f"{link.translate(_COPY_ESCAPES)}\t{t.isoformat()}\t{v!r}\n"
        for link, t, v in zip(links, ts, values, strict=True)
    ]
    return "".join(lines).encode()


def write_samples(
    engine: Engine, links: Sequence[str], ts: Sequence[datetime], values: Sequence[float]
) -> int:
    """Store samples in one transaction: all of them or none.

    Each (link, ts) must appear once (the caller keeps the last of duplicates).
    Returns the number of rows inserted or changed.
    """
    if not links:
        return 0
    payload = _copy_text(links, ts, values)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            if not raw.info.get("sample_stage"):
                cur.execute(_STAGE_DDL)
                conn.commit()
                raw.info["sample_stage"] = True
            with cur.copy("COPY sample_stage (link, ts, value_bps) FROM STDIN") as copy:
                copy.write(payload)
            cur.execute(_REGISTER_LINKS)
            cur.execute(_UPSERT_SAMPLES)
            changed = cur.rowcount
        conn.commit()
        return changed
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
