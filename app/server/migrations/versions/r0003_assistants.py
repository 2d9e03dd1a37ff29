"""assistants and assistant_keys: the widget's assistants and their hashed widget keys.

An assistant is a named configuration for the widget (app.server.assistants); its public widget
keys are stored as SHA-256 hashes with the origins allowed to use them.

An assistant's settings are one JSON document validated by `app.server.assistant_schema`, so a
new display option needs no migration; what is looked up (the slug, the key hash) has columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "assistant_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("assistant_id", sa.String(64), sa.ForeignKey("assistants.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("origins", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_assistant_keys_assistant_id", "assistant_keys", ["assistant_id"])
    op.create_index("ix_assistant_keys_key_hash", "assistant_keys", ["key_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_assistant_keys_key_hash", table_name="assistant_keys")
    op.drop_index("ix_assistant_keys_assistant_id", table_name="assistant_keys")
    op.drop_table("assistant_keys")
    op.drop_table("assistants")
