"""sample quality, the alert lifecycle, silences and the notification outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A sample is stored as sent, and marked when it is not plausible: above the link's
    # line rate, or a one-step excursion that reverted at once. Only 'ok' ones are learned.
    # (A constant default: PostgreSQL adds the column without rewriting the table.)
    op.add_column("sample", sa.Column("quality", sa.Text, nullable=False, server_default="ok"))
    op.create_check_constraint(
        "sample_quality", "sample", "quality IN ('ok', 'over_line_rate', 'excursion')"
    )
    # The lifecycle: an alert resolves only after its condition has stayed clear for a
    # number of steps (clear_steps counts them, so a restart resumes the count); alerts
    # one failure caused hang under that failure's alert (parent_id).
    op.add_column("alert", sa.Column("parent_id", sa.BigInteger, nullable=True))
    op.add_column("alert", sa.Column("clear_steps", sa.Integer, nullable=False, server_default="0"))
    op.create_index("alert_parent", "alert", ["parent_id"])
    # Silences: matchers on link and kind (NULL matches any), until ends_at.
    op.create_table(
        "silence",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("link", sa.Text, nullable=True),
        sa.Column("kind", sa.Text, nullable=True),
        sa.Column("starts_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IS NULL OR kind IN ('drift', 'failure', 'capacity')"),
        sa.CheckConstraint("ends_at > starts_at", name="silence_ends_after_start"),
    )
    op.create_index("silence_ends", "silence", ["ends_at"])
    # The outbox: a notification is written in the transaction that changed its alert and
    # deleted from nowhere; a worker delivers it (delivered_at) or retries it later.
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("receiver", sa.Text, nullable=False),
        sa.Column("alert_id", sa.BigInteger, nullable=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index(
        "notification_due",
        "notification",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("notification")
    op.drop_table("silence")
    op.drop_index("alert_parent", table_name="alert")
    op.drop_column("alert", "clear_steps")
    op.drop_column("alert", "parent_id")
    op.drop_constraint("sample_quality", "sample")
    op.drop_column("sample", "quality")
