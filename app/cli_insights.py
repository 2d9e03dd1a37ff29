"""`kbchat insights`: cluster the stored questions now (reports start it in the background),
e.g. from cron after a busy day or once after an upgrade."""

from __future__ import annotations

import typer

insights_app = typer.Typer(help="Insights on the visitors' questions.", no_args_is_help=True)


@insights_app.command("refresh")
def refresh() -> None:
    """Embed and cluster every question not clustered yet; safe while servers run."""
    from app.cli import _settings, _user_errors, out
    from app.embeddings.e5 import build_embeddings
    from app.server.db import ConversationStore
    from app.server.insights import build_insights
    from app.store import make_client

    settings = _settings()
    with _user_errors():
        store = ConversationStore(settings.db_url)
        embedder = build_embeddings(settings)
        service = build_insights(settings, store.engine, embedder, make_client(settings))
        added = service.refresh()
    out.print(f"{added} new questions clustered", highlight=False)
