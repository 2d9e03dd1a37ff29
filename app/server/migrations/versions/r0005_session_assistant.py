"""sessions.assistant: the assistant a conversation belongs to, so no other assistant continues it.

A session started through an assistant's widget key or full page records the assistant's slug;
continuing or reading it through another assistant (or through none, or an assistant continuing
a session that had none) is refused as if the session did not exist. NULL for sessions started
without an assistant (KBCHAT_WIDGET_KEYS, the API, the Gradio UI) and for all older sessions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:  # SQLite needs the batch mode
        batch.add_column(sa.Column("assistant", sa.String(64), nullable=True))
        batch.create_index("ix_sessions_assistant", ["assistant"])


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_index("ix_sessions_assistant")
        batch.drop_column("assistant")
