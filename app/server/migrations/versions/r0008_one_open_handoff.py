"""ux_handoffs_open: at most one open (waiting or active) handoff per conversation.

Two requests for a person at once (a double click, two replicas) could each find no open
handoff and insert one, notifying the operator twice; the partial unique index refuses the
second insert, and the service reads the first instead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('waiting', 'active')")


def upgrade() -> None:
    op.create_index(
        "ux_handoffs_open",
        "handoffs",
        ["session_id"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ux_handoffs_open", table_name="handoffs")
