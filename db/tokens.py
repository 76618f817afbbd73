"""API tokens beyond creating and checking one (db/queries.py): list, revoke, and the
table's generation that the API's token cache is checked against (api/tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from db.models import ApiToken

# Whatever decides a token's answer (its hash, scope and revocation) for every token,
# as one digest: it changes when a token is created, revoked, deleted or altered, by
# the CLI or by hand in SQL, and it is the same again only for the same table.
GENERATION_SQL = text(
    "SELECT md5(coalesce(string_agg(concat_ws(':', id, token_hash, scope, revoked_at),"
    " ',' ORDER BY id), '')) FROM api_token"
)


def token_generation(conn: Connection | Session) -> str:
    """The digest of the token table (see ``GENERATION_SQL``): one scan of a table of a
    few rows, read by each API process a few times a second."""
    return str(conn.execute(GENERATION_SQL).scalar_one())


def list_tokens(*, session: Session) -> list[ApiToken]:
    """Every token, revoked ones too, oldest first (only hashes are stored)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)).all())


@dataclass(frozen=True)
class Revoked:
    matched: list[ApiToken]  # the tokens named (by id, else by name)
    revoked: int  # of them, revoked now (the others were already)


def revoke_tokens(*, session: Session, key: str) -> Revoked:
    """Revoke the token whose id is ``key``, else every token named ``key``.

    A name may be shared (``linkcast up`` names its admin token so; scopes name the
    others by default): every live token of that name is revoked. Tokens revoked
    already keep the time they were revoked at.
    """
    matched: list[ApiToken] = []
    if key.isdigit():
        by_id = session.get(ApiToken, int(key))
        matched = [by_id] if by_id is not None else []
    if not matched:
        matched = list(
            session.scalars(select(ApiToken).where(ApiToken.name == key).order_by(ApiToken.id))
        )
    live = [t.id for t in matched if t.revoked_at is None]
    if live:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id.in_(live), ApiToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        session.flush()
        for t in matched:
            session.refresh(t)
    return Revoked(matched=matched, revoked=len(live))
