"""counter_state: the last reading of every counter series (counters to rates)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per (series, link): the reading the next one's delta is taken from. A series
    # is its name and every label (ifHCOutOctets{ifName="et1",instance="r1"}), so two
    # that one rule maps to the same link keep their own readings.
    # numeric keeps a 64-bit counter's every digit; ts is seconds since the epoch, as the
    # collectors send it (an exact comparison decides whether a reading is newer).
    # Both are NULL between the row's creation and its first reading's commit.
    op.create_table(
        "counter_state",
        sa.Column("series", sa.Text, primary_key=True),
        sa.Column("link", sa.Text, primary_key=True),
        sa.Column("value", sa.Numeric, nullable=True),
        sa.Column("ts", sa.Double, nullable=True),
        sa.CheckConstraint("value >= 0", name="counter_state_value"),
    )


def downgrade() -> None:
    op.drop_table("counter_state")
