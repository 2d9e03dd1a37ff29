"""messages.error: why an answer ended with the fallback

The stable code (llm_incomplete, llm_timeout, ...). Nullable, so existing rows stay valid.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("error", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("error")
