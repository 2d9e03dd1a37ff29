"""`kbchat db`: the conversations database's schema (Alembic revisions shipped with kbchat).

`kbchat serve` migrates at start by itself; these commands let an operator migrate ahead of a
rollout, or check where a database stands, without starting a server.
"""

from __future__ import annotations

import typer

db_app = typer.Typer(help="The conversations database (KBCHAT_DATABASE_URL).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Migrate the database to the newest schema (adopting a pre-migration one); idempotent."""
    from app.cli import _settings, _user_errors, out
    from app.server import schema
    from app.server.database import make_engine

    settings = _settings()
    with _user_errors():
        engine = make_engine(settings.db_url)
        schema.upgrade(engine)
        revision = schema.current_revision(engine)
    out.print(f"database at revision {revision} (head)", highlight=False)


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the newest one this kbchat ships; changes nothing."""
    from app.cli import _settings, _user_errors, out
    from app.server import schema
    from app.server.database import make_engine

    settings = _settings()
    with _user_errors():
        revision = schema.current_revision(make_engine(settings.db_url))
    head = schema.head_revision()
    state = "up to date" if revision == head else "kbchat db upgrade (or kbchat serve) migrates it"
    out.print(f"database: {revision or 'none'}; newest: {head} ({state})", highlight=False)


@db_app.command("prune")
def prune() -> None:
    """Erase conversations older than KBCHAT_RETENTION_DAYS once, and print how many."""
    from app.cli import _settings, _user_errors, out
    from app.server.database import make_engine
    from app.server.erasure import prune_expired

    settings = _settings()
    days = settings.retention_days
    if days == 0:
        out.print("KBCHAT_RETENTION_DAYS is 0 (keep forever): nothing erased", highlight=False)
        return
    with _user_errors():
        from app.server import schema

        engine = make_engine(settings.db_url)
        schema.upgrade(engine)
        erased = prune_expired(engine, days)
    out.print(f"erased {erased} conversations older than {days} days", highlight=False)
