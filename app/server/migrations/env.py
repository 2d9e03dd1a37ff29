"""Alembic environment: migrate over the connection app.server.schema hands in.

That connection already holds the migration lock (a Postgres advisory lock in its open
transaction, or a file lock for SQLite), so everything runs inside it. Logging is left to kbchat
(no fileConfig here).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from app.server.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # the plain `alembic` CLI with -x url=...: a developer writing a revision
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database: alembic -x url=sqlite:///path ...")
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
