"""links, samples and API tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "link",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("src", sa.Text),
        sa.Column("dst", sa.Text),
        sa.Column("capacity_bps", sa.Double),
        sa.Column("labels", JSONB, nullable=False, server_default="{}"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("capacity_bps IS NULL OR capacity_bps > 0", name="capacity_positive"),
    )
    op.create_table(
        "sample",
        # No foreign key: the per-row check would double the cost of ingestion, and the
        # only writer (db.ingest) joins on `link`, so an unknown link id cannot get in.
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value_bps", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("link_id", "ts"),
    )
    # Samples arrive in time order: a BRIN index serves "everything since t" at a tiny
    # fraction of a B-tree's insert cost. Per-link ranges use the primary key.
    op.create_index("sample_ts", "sample", ["ts"], postgresql_using="brin")
    # Where TimescaleDB is installed, samples live in a hypertable (chunks by day).
    bind = op.get_bind()
    has_timescale = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    if has_timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        op.execute(
            "SELECT create_hypertable('sample', 'ts', chunk_time_interval => interval '1 day',"
            " migrate_data => true)"
        )
    op.create_table(
        "api_token",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name="scope_known"),
    )


def downgrade() -> None:
    op.drop_table("api_token")
    op.drop_table("sample")
    op.drop_table("link")
