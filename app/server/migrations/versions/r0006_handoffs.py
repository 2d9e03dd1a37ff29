"""handoffs, messages.grounded and messages.cited: what the operator console reads.

A handoff is a visitor's conversation handed to a person: its state (waiting for an operator,
active while one is answering, closed once handed back), why it started, and an email the visitor
left when nobody was there. `grounded` (whether an answer had passages above the relevance
cut-off) and `cited` (the [n] it cites) make "unanswered" and source usage exact; both are NULL
for questions and for answers stored before this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("grounded", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("cited", sa.Text(), nullable=True))
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("contact_email", sa.String(320), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("accepted", sa.DateTime(), nullable=True),
        sa.Column("closed", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_handoffs_session_id", "handoffs", ["session_id"])
    op.create_index("ix_handoffs_state", "handoffs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_state", table_name="handoffs")
    op.drop_index("ix_handoffs_session_id", table_name="handoffs")
    op.drop_table("handoffs")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("cited")
        batch.drop_column("grounded")
