"""End to end with the real E5 model and a real Chroma: the CLI, sync, kills, refusals, server."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
# Each test's `kbchat` processes start from a fresh data dir: `reference_languages` puts query
# correction's statistics of the test's languages there (conftest.seed_language_reference).

DOCS = {
    "en/volcano.md": "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. Its "
    "eruption in the year 79 buried the Roman cities of Pompeii and Herculaneum under ash.",
    "de/bahn.txt": "Die Schwebebahn in Wuppertal ist eine hängende Einschienenbahn. Sie wurde "
    "1901 eröffnet und fährt über dem Fluss Wupper durch die Stadt.",
    "es/cocina.html": "<html><head><title>Paella valenciana</title></head><body><h1>Paella</h1>"
    "<p>La paella es un plato de arroz de Valencia. Se cocina con azafrán, pollo, conejo y "
    "judías verdes en una sartén ancha.</p></body></html>",
    "zh/tea.txt": "龙井茶是中国著名的绿茶，产于浙江省杭州市西湖附近。"
    "它以色绿、香郁、味甘、形美著称。",
    "ja/shinkansen.md": "# 新幹線\n\n新幹線は日本の高速鉄道で、1964年に東京と新大阪の間で"
    "開業した。最高速度は時速320キロメートルに達する。",
    "ar/desert.md": "# الصحراء الكبرى\n\nالصحراء الكبرى هي أكبر صحراء حارة في العالم، وتقع في شمال "
    "أفريقيا وتمتد عبر عدة دول منها مصر وليبيا والجزائر.",
}
QUERIES = [  # (question, language, expected source): never the document's own language
    ("Which cities were destroyed by the eruption of Vesuvius?", "en", "en/volcano.md"),
    ("¿Qué ciudades romanas quedaron sepultadas por el Vesubio?", "es", "en/volcano.md"),
    ("When did the suspended monorail in Wuppertal open?", "en", "de/bahn.txt"),
    ("Welche Zutaten hat eine Paella?", "de", "es/cocina.html"),
    ("Where is Longjing green tea grown?", "en", "zh/tea.txt"),
    (
        "Quelle est la vitesse maximale du train à grande vitesse japonais ?",
        "fr",
        "ja/shinkansen.md",
    ),
    ("What is the largest hot desert in the world?", "en", "ar/desert.md"),
]


def write_docs(root: Path, docs: dict[str, str]) -> None:
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def chroma_client(data_dir: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(
        path=str(data_dir / "chroma"), settings=Settings(anonymized_telemetry=False)
    )


@pytest.mark.reference_languages("en", "de", "es", "zh", "ja", "ar", "fr")
def test_cross_lingual_ingest_search_and_sync(cli: Any, tmp_path: Path, e5: Any) -> None:
    from app.search import search
    from app.settings import load_settings

    kb = tmp_path / "kb"
    write_docs(kb, DOCS)
    (kb / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")
    (kb / ".hidden.md").write_text("secret", encoding="utf-8")
    report = cli.json("ingest", str(kb), "--collection", "multi")
    assert sorted(report["added"]) == sorted(DOCS)
    assert [f["source"] for f in report["failed"]] == ["broken.pdf"]
    assert any(s["source"] == ".hidden.md" for s in report["skipped"])
    assert report["chunks_written"] == report["embedded"] >= len(DOCS)

    hits = cli.json("search", QUERIES[1][0], "--collection", "multi", "--k", "3")
    assert hits[0]["source"] == "en/volcano.md"
    assert hits[0]["language"] == "en"
    assert 0.7 < hits[0]["score"] <= 1.0

    settings = load_settings(data_dir=tmp_path / "data")
    client = chroma_client(tmp_path / "data")
    for question, _lang, expected in QUERIES:
        found = search(settings, question, collection_name="multi", k=3, embedder=e5, client=client)
        assert found[0].source == expected, (question, [h.source for h in found])
    languages = {
        h.source: h.language
        for h in search(
            settings, "travel", collection_name="multi", k=6, embedder=e5, client=client
        )
    }
    assert languages.get("de/bahn.txt", "de") == "de"
    assert languages.get("zh/tea.txt", "zh") == "zh"

    # Nothing changed: nothing embedded.
    again = cli.json("ingest", str(kb), "--collection", "multi")
    assert again["unchanged"] == len(DOCS) and again["embedded"] == 0 and not again["added"]

    # Change one, delete one, add one.
    (kb / "de/bahn.txt").write_text(
        DOCS["de/bahn.txt"] + " Die Strecke ist 13,3 Kilometer lang.", encoding="utf-8"
    )
    (kb / "zh/tea.txt").unlink()
    write_docs(
        kb,
        {
            "fr/fromage.md": "# Le camembert\n\nLe camembert est un fromage normand "
            "au lait de vache, à pâte molle et à croûte fleurie."
        },
    )
    synced = cli.json("ingest", str(kb), "--collection", "multi")
    assert synced["updated"] == ["de/bahn.txt"]
    assert synced["removed"] == ["zh/tea.txt"]
    assert synced["added"] == ["fr/fromage.md"]
    collection = chroma_client(tmp_path / "data").get_collection("multi")
    metas = collection.get(include=["metadatas"])["metadatas"]
    sources = Counter(m["source"] for m in metas)
    assert "zh/tea.txt" not in sources
    assert sources["fr/fromage.md"] >= 1
    current = hashlib.sha256((kb / "de/bahn.txt").read_bytes()).hexdigest()
    assert {m["file_hash"] for m in metas if m["source"] == "de/bahn.txt"} == {current}
    # A new process: an embedded Chroma caches its index per process, so this one's is stale.
    hits = cli.json("search", "What kind of milk is camembert made from?", "-c", "multi")
    assert hits[0]["source"] == "fr/fromage.md"


@pytest.mark.reference_languages("en", "de")
def test_changed_embedding_config_is_refused(cli: Any, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    write_docs(kb, {k: DOCS[k] for k in list(DOCS)[:2]})
    cli.json("ingest", str(kb))
    refused = cli.run("search", "volcano", check=False, KBCHAT_EMBEDDING_PREFIX_SCHEME="none")
    assert refused.returncode == 2
    assert "prefix scheme e5" in refused.stderr and "--reembed" in refused.stderr
    assert "Traceback" not in refused.stderr
    rechunk = cli.run("ingest", str(kb), check=False, KBCHAT_CHUNK_TOKENS="200")
    assert rechunk.returncode == 2 and "--reembed" in rechunk.stderr
    redone = cli.json("ingest", str(kb), "--reembed", KBCHAT_CHUNK_TOKENS="200")
    assert len(redone["added"]) == 2
    meta = chroma_client(tmp_path / "data").get_collection("default").metadata
    assert meta["kbchat_chunk_tokens"] == 200
    assert meta["kbchat_model"] == "intfloat/multilingual-e5-small"


def _done_files(manifest: Path) -> int:
    try:
        with sqlite3.connect(manifest, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM files WHERE state='done'").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.reference_languages("en")
def test_kill_at_any_moment_then_rerun_leaves_no_duplicates_or_orphans(
    cli: Any, tmp_path: Path
) -> None:
    kb = tmp_path / "kb"
    words = ["river", "mountain", "city", "bridge", "harbour"]
    words += ["market", "castle", "forest", "island", "valley"]
    docs = {}
    for i in range(60):
        body = " ".join(f"{words[(i + j) % 10]}{j % 7}" for j in range(120))
        docs[f"d{i // 20}/doc{i:02d}.txt"] = f"Document {i}. " + body
    write_docs(kb, docs)
    manifest = tmp_path / "data" / "manifests" / "embedded" / "default.sqlite"
    env = {"KBCHAT_INGEST_EMBED_BATCH_CHUNKS": "3", "KBCHAT_CHUNK_TOKENS": "60"}
    kills = 0
    for stop_after in (2, 10, 25):
        proc = cli.popen("ingest", str(kb), "--json", **env)
        deadline = time.monotonic() + 240
        while _done_files(manifest) < stop_after and proc.poll() is None:
            assert time.monotonic() < deadline, "ingest made no progress"
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if stop_after == 10:  # the folder changes between crashes too
            (kb / "d0/doc00.txt").write_text("Changed after a crash. harbour7", encoding="utf-8")
            (kb / "d2/doc59.txt").unlink()
    assert kills >= 2
    final = cli.json("ingest", str(kb), **env)
    assert not final["failed"]
    rerun = cli.json("ingest", str(kb), **env)
    assert rerun["embedded"] == 0 and rerun["unchanged"] == 59

    got = chroma_client(tmp_path / "data").get_collection("default").get(include=["metadatas"])
    metas = got["metadatas"]
    assert len(set(got["ids"])) == len(got["ids"])
    pairs = Counter((m["source"], m["chunk_index"]) for m in metas)
    assert max(pairs.values()) == 1, "duplicate chunks"
    files = {p.relative_to(kb).as_posix(): p for p in kb.rglob("*.txt")}
    assert {m["source"] for m in metas} == set(files), "orphan or missing files"
    per_source = Counter(m["source"] for m in metas)
    for m in metas:
        assert m["file_hash"] == hashlib.sha256(files[m["source"]].read_bytes()).hexdigest()
        assert per_source[m["source"]] == m["chunk_count"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.reference_languages("en", "de", "es", "zh", "ja", "ar")
def test_chroma_server_mode(cli: Any, tmp_path: Path) -> None:
    import chromadb

    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        pytest.fail("the chroma CLI is not installed beside this Python")
    port = _free_port()
    server = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                assert server.poll() is None, "chroma run exited"
                assert time.monotonic() < deadline, "chroma server did not start"
                time.sleep(0.3)
        kb = tmp_path / "kb"
        write_docs(kb, DOCS)
        env = {"KBCHAT_CHROMA_HOST": "127.0.0.1", "KBCHAT_CHROMA_PORT": str(port)}
        report = cli.json("ingest", str(kb), "--collection", "remote", **env)
        assert len(report["added"]) == len(DOCS)
        hits = cli.json(
            "search",
            "¿Dónde está el desierto más grande?",
            "--collection",
            "remote",
            "--k",
            "2",
            **env,
        )
        assert hits[0]["source"] == "ar/desert.md"
        remote = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection("remote")
        assert remote.count() == report["chunks_written"]
        assert not (tmp_path / "data" / "chroma").exists(), "server mode wrote a local store"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unreachable_chroma_server_is_a_clear_error(cli: Any, tmp_path: Path) -> None:
    write_docs(tmp_path / "kb", {"a.md": "# A\n\nText."})
    proc = cli.run(
        "ingest",
        str(tmp_path / "kb"),
        check=False,
        KBCHAT_CHROMA_HOST="127.0.0.1",
        KBCHAT_CHROMA_PORT=str(_free_port()),
    )
    assert proc.returncode == 2
    assert "chroma run" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.reference_languages("en", "fr")
def test_ingest_report_names_cut_and_guessed_files(cli: Any, tmp_path: Path) -> None:
    """The terminal report (not only --json) says which files were cut short, and why."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "long.txt").write_text("The monorail opened in 1901. " * 400, encoding="utf-8")
    (kb / "odd.txt").write_bytes("Café au lait, crème brûlée. ".encode() * 20 + b"\xff\xfe bad")
    out = cli.run("ingest", str(kb), KBCHAT_INGEST_MAX_CHARS="2000").stdout
    assert "truncated: long.txt" in out
    assert "note: odd.txt" in out
