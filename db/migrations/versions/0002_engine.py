"""forecasts, errors, alerts, events, checkpoints and model versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, REAL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per link, model and issue: the H steps as arrays (real = float4, enough for
    # a forecast and half the size). Step h (1-based) targets issued_at + (h-1)*step_seconds.
    op.create_table(
        "forecast",
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("step_seconds", sa.Integer, nullable=False),
        sa.Column("value_bps", ARRAY(REAL), nullable=False),
        sa.Column("lower_bps", ARRAY(REAL), nullable=False),
        sa.Column("upper_bps", ARRAY(REAL), nullable=False),
        sa.PrimaryKeyConstraint("link_id", "model", "issued_at"),
    )
    op.create_index("forecast_issued", "forecast", ["issued_at"], postgresql_using="brin")
    # Scored when the actual arrives: error = forecast - actual, for h = 1..H (NULL where
    # no forecast targeted this bucket from h steps back).
    op.create_table(
        "forecast_error",
        sa.Column("link_id", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actual_bps", sa.Double, nullable=False),
        sa.Column("error_bps", ARRAY(REAL), nullable=False),
        sa.PrimaryKeyConstraint("link_id", "model", "ts"),
    )
    op.create_index("forecast_error_ts", "forecast_error", ["ts"], postgresql_using="brin")
    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("links", ARRAY(sa.Text), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("end_ts", TS),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("source", sa.Text, nullable=False, server_default="operator"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "kind IN ('failure', 'repair', 'maintenance', 'reroute')", name="event_kind"
        ),
    )
    op.create_index("event_ts", "event", ["ts"])
    op.create_table(
        "alert",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("link_id", sa.Integer),
        sa.Column("links", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("model", sa.Text),
        sa.Column("onset", TS, nullable=False),
        sa.Column("magnitude", sa.Double),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("firing_at", TS),
        sa.Column("resolved_at", TS),
        sa.CheckConstraint("kind IN ('drift', 'failure', 'capacity')", name="alert_kind"),
        sa.CheckConstraint("state IN ('pending', 'firing', 'resolved')", name="alert_state"),
    )
    op.create_index("alert_state", "alert", ["state", "onset"])
    op.create_table(
        "model_checkpoint",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("last_bucket", TS, nullable=False),
        sa.Column("step_seconds", sa.Integer, nullable=False),
        sa.Column("link_ids", ARRAY(sa.Integer), nullable=False),
        sa.Column("state", BYTEA, nullable=False),
    )
    op.create_table(
        "model_version",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("trained_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("duration_seconds", sa.Double),
        sa.Column("window_steps", sa.Integer),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("model_version_model", "model_version", ["model", "version"], unique=True)


def downgrade() -> None:
    for table in (
        "model_version",
        "model_checkpoint",
        "alert",
        "event",
        "forecast_error",
        "forecast",
    ):
        op.drop_table(table)
