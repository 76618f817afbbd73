"""name the silence.kind CHECK constraint as the others are named (silence_kind)

0003 created it without a name, so PostgreSQL called it silence_kind_check; 0003 is
applied on existing databases and stays as it is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _rename(old: str, new: str) -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_constraint
                     WHERE conrelid = 'silence'::regclass AND conname = '{old}') THEN
            ALTER TABLE silence RENAME CONSTRAINT {old} TO {new};
          END IF;
        END $$
        """
    )


def upgrade() -> None:
    _rename("silence_kind_check", "silence_kind")


def downgrade() -> None:
    _rename("silence_kind", "silence_kind_check")
