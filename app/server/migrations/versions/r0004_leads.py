"""leads, and assistants.webhook_secret: lead capture per assistant.

A lead is a visitor's name and email for one conversation (at most one per session), with the
consent text shown and when it was given; the assistant's webhook secret signs the notification
sent to the operator for each new lead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assistants") as batch:  # SQLite needs the batch mode
        batch.add_column(sa.Column("webhook_secret", sa.String(64), nullable=True))
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("assistant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_at", sa.DateTime(), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_leads_session_id", "leads", ["session_id"], unique=True)
    op.create_index("ix_leads_assistant_id", "leads", ["assistant_id"])


def downgrade() -> None:
    op.drop_index("ix_leads_assistant_id", table_name="leads")
    op.drop_index("ix_leads_session_id", table_name="leads")
    op.drop_table("leads")
    with op.batch_alter_table("assistants") as batch:
        batch.drop_column("webhook_secret")
