"""questions and question_clusters: visitors' questions clustered by meaning across languages.

Filled incrementally by app.server.insights (each user message once: message_id is unique); a
cluster keeps the running mean of its members' vectors.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "questions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("assistant", sa.String(64), nullable=True),
        sa.Column("collection", sa.String(512), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("answer_id", sa.Integer(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_questions_session_id", "questions", ["session_id"])
    op.create_index("ix_questions_assistant", "questions", ["assistant"])
    op.create_index("ix_questions_cluster_id", "questions", ["cluster_id"])
    op.create_index("ix_questions_created", "questions", ["created"])
    op.create_table(
        "question_clusters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("centroid", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("representative", sa.Integer(), nullable=True),
        sa.Column("languages", sa.Text(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("question_clusters")
    for name in ("created", "cluster_id", "assistant", "session_id"):
        op.drop_index(f"ix_questions_{name}", table_name="questions")
    op.drop_table("questions")
