"""Folder sync into a real embedded Chroma with the fake embedder: incremental, crash-safe, strict.

The embedder is fake (token-bag vectors), everything else is real: loaders, the XLM-R tokenizer,
chunking, language detection, the SQLite manifest and Chroma's PersistentClient.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.ingest import ingest_folder
from app.search import Hit, search
from app.settings import Settings, load_settings
from app.store import EmbeddingMismatchError, StoreError, open_collection
from ingestion.sync import FolderSync, SyncReport, chunk_id
from tests.fakes import FakeEmbedder

NAME = "kbtest"

EN = (
    "# Library Guide\n\n"
    + " ".join(
        f"Visitors may borrow up to {i} books for three weeks and renew them online."
        for i in range(40)
    )
    + "\n\n## Opening hours\n\nThe library opens at nine in the morning on weekdays.\n"
)
DE = "Öffnungszeiten der Stadtbibliothek\n\n" + " ".join(
    f"Die Bibliothek leiht Besuchern bis zu {i} Bücher für drei Wochen aus und verlängert sie."
    for i in range(40)
)
ZH = "图书馆指南\n\n" + "".join(
    f"读者最多可以借{i}本书，借期为三个星期，并且可以在网上续借。" for i in range(60)
)
FR_HTML = (
    "<html><head><title>Guide de la bibliothèque</title><style>p{color:red}</style></head>"
    "<body><h1>Horaires</h1>"
    + "".join(
        f"<p>La bibliothèque prête jusqu'à {i} livres pour trois semaines aux visiteurs.</p>"
        for i in range(30)
    )
    + "<script>var secret = 'do not index';</script></body></html>"
)
JA = "図書館の案内\n\n" + "".join(
    f"利用者は本を{i}冊まで三週間借りることができ、オンラインで延長できます。" for i in range(50)
)
AR = "دليل المكتبة\n\n" + " ".join(
    f"يمكن للزوار استعارة {i} كتب لمدة ثلاثة أسابيع وتجديدها عبر الإنترنت." for i in range(40)
)

CORPUS: dict[str, str] = {
    "en.md": EN,
    "de.txt": DE,
    "zh.txt": ZH,
    "fr.html": FR_HTML,
    "docs/ja.md": JA,
    "docs/deep/ar.txt": AR,
}
LANGUAGES = {
    "en.md": "en",
    "de.txt": "de",
    "zh.txt": "zh",
    "fr.html": "fr",
    "docs/ja.md": "ja",
    "docs/deep/ar.txt": "ar",
}


# --------------------------------------------------------------------------- fixtures/helpers


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KBCHAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture(autouse=True)
def _chunk_vectors_only(_isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count chunk embeddings exactly; sentence vectors are counted apart
    (`SyncReport.sentences_embedded`, test_sentences_are_counted_apart below)."""
    monkeypatch.setenv("KBCHAT_CHUNK_SENTENCE_VECTORS", "false")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def test_sentences_are_counted_apart(
    root: Path, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingestion.sentences import META_KEY, unpack

    monkeypatch.setenv("KBCHAT_CHUNK_SENTENCE_VECTORS", "true")
    fake = FakeEmbedder()
    report = ingest_folder(
        load_settings(data_dir=tmp_path / "data"), root, NAME, embedder=fake, client=client
    )
    assert report.sentences_embedded > 0
    assert fake.texts_embedded == report.embedded + report.sentences_embedded
    packed = [unpack(m.get(META_KEY), fake.dimension) for _, m in rows(client)]
    assert sum(len(v) for v in packed if v is not None) == report.sentences_embedded


@pytest.fixture
def client(tmp_path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    write_files(folder, CORPUS)
    return folder


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def pdf_bytes(*pages: str) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=True)
    c.setTitle("Handbook")
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return buf.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(client: Any, name: str = NAME) -> list[tuple[str, dict[str, Any]]]:
    got = client.get_collection(name).get(include=["metadatas"])
    return list(zip(got["ids"], got["metadatas"], strict=True))


def count(client: Any, name: str = NAME) -> int:
    return int(client.get_collection(name).count())


def chunks_per_source(client: Any, name: str = NAME) -> Counter[str]:
    return Counter(str(m["source"]) for _, m in rows(client, name))


def clean_ingest(
    tmp_path: Path, root: Path, client: Any, name: str = "kbclean"
) -> tuple[SyncReport, int]:
    """A fresh ingest of the same folder into a new collection (own manifests), for comparison."""
    clean_settings = load_settings(data_dir=tmp_path / f"data-{name}")
    report = ingest_folder(clean_settings, root, name, embedder=FakeEmbedder(), client=client)
    return report, count(client, name)


def assert_consistent(client: Any, root: Path, name: str = NAME) -> None:
    """No duplicate (source, chunk_index); every chunk belongs to the file's current content."""
    pairs = Counter((m["source"], m["chunk_index"]) for _, m in rows(client, name))
    dupes = [p for p, n in pairs.items() if n > 1]
    assert not dupes, dupes
    for chunk, meta in rows(client, name):
        path = root / str(meta["source"])
        assert path.is_file(), meta["source"]
        assert meta["file_hash"] == sha256(path), meta["source"]
        assert chunk == chunk_id(str(meta["source"]), str(meta["file_hash"]), meta["chunk_index"])
    for source, n in chunks_per_source(client, name).items():
        metas = [m for _, m in rows(client, name) if m["source"] == source]
        assert {m["chunk_count"] for m in metas} == {n}
        assert sorted(m["chunk_index"] for m in metas) == list(range(n))


def manifest_files(settings: Settings, name: str = NAME) -> list[Path]:
    base = settings.manifests_dir / f"{name}.sqlite"
    return [p for p in (base, Path(f"{base}-wal"), Path(f"{base}-shm")) if p.exists()]


# --------------------------------------------------------------------------- first ingest


def test_first_ingest(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert sorted(report.added) == sorted(CORPUS)
    assert report.updated == [] and report.removed == []
    assert report.failed == [] and report.skipped == []
    assert report.unchanged == 0
    assert report.chunks_written == count(client) == report.embedded == fake.texts_embedded
    assert report.chunks_written > len(CORPUS)  # the long files give several chunks
    assert report.collection == NAME
    assert report.root == str(root.resolve())

    per_source = chunks_per_source(client)
    assert set(per_source) == set(CORPUS)
    assert max(per_source.values()) >= 2
    for _, meta in rows(client):
        source = str(meta["source"])
        assert meta["language"] == LANGUAGES[source], source
        assert meta["file_hash"] == sha256(root / source)
        assert meta["chunk_count"] == per_source[source]
        assert 0 <= int(meta["chunk_index"]) < per_source[source]
        assert 0 < int(meta["tokens"]) <= 512
    titles = {str(m["source"]): m["title"] for _, m in rows(client)}
    assert titles["en.md"] == "Library Guide"
    assert titles["de.txt"] == "Öffnungszeiten der Stadtbibliothek"
    assert titles["fr.html"] == "Guide de la bibliothèque"
    sections = {m["section"] for _, m in rows(client) if m["source"] == "en.md"}
    assert sections == {"Library Guide"}  # the short last section joined the one before it
    en = client.get_collection(NAME).get(where={"source": "en.md"}, include=["documents"])
    assert any("## Opening hours" in d and "nine in the morning" in d for d in en["documents"])
    docs = client.get_collection(NAME).get(where={"source": "fr.html"}, include=["documents"])
    assert not any("secret" in d or "color:red" in d for d in docs["documents"])
    assert_consistent(client, root)


def test_collection_metadata(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    col = client.get_collection(NAME)
    meta = col.metadata
    assert meta["kbchat_model"] == "fake/e5"
    assert meta["kbchat_weights"] == "fake"
    assert meta["kbchat_prefix"] == "e5"
    assert meta["kbchat_dim"] == 32
    assert meta["kbchat_max_tokens"] == 512
    assert meta["kbchat_chunk_tokens"] == settings.chunk.tokens == 512
    assert meta["kbchat_chunk_overlap"] == settings.chunk.overlap == 64
    assert meta["kbchat_source_dir"] == str(root.resolve())
    assert col.configuration["hnsw"]["space"] == "cosine"


def test_pdf_pages_and_docx_are_ingested(
    settings: Settings, tmp_path: Path, client: Any, fake: FakeEmbedder
) -> None:
    import docx

    folder = tmp_path / "office"
    write_files(folder, {"manual.pdf": pdf_bytes("Page one is about apples.", "Page two: pears.")})
    d = docx.Document()
    d.add_heading("Reisekosten", level=1)
    d.add_paragraph("Die Reisekosten werden innerhalb von zwei Wochen erstattet. " * 5)
    d.save(str(folder / "richtlinie.docx"))
    report = ingest_folder(settings, folder, NAME, embedder=fake, client=client)
    assert sorted(report.added) == ["manual.pdf", "richtlinie.docx"]
    pages = sorted(m["page"] for _, m in rows(client) if m["source"] == "manual.pdf")
    assert pages == [1, 2]
    titles = {m["source"]: m["title"] for _, m in rows(client)}
    assert titles == {"manual.pdf": "Handbook", "richtlinie.docx": "Reisekosten"}
    assert all("page" not in m for _, m in rows(client) if m["source"] == "richtlinie.docx")


# --------------------------------------------------------------------------- incremental


def test_rerun_unchanged_embeds_nothing(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    first = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    calls, embedded, total = fake.calls, fake.texts_embedded, count(client)
    assert calls >= 1
    again = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert again.unchanged == len(CORPUS)
    assert again.embedded == 0 and again.chunks_written == 0 and again.chunks_removed == 0
    assert again.added == again.updated == again.removed == []
    assert (fake.calls, fake.texts_embedded) == (calls, embedded)
    assert count(client) == total == first.chunks_written


def test_unchanged_run_never_touches_the_tokenizer(
    settings: Settings, root: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_folder(settings, root, NAME, embedder=FakeEmbedder(), client=client)

    class NoModel(FakeEmbedder):
        @property
        def tokenizer(self) -> Any:
            raise AssertionError("tokenizer loaded although nothing changed")

        def encode_passages(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("embedded although nothing changed")

    report = ingest_folder(settings, root, NAME, embedder=NoModel(), client=client)
    assert report.unchanged == len(CORPUS)


def test_change_delete_add(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    old_hash = sha256(root / "de.txt")
    old_ids_de = {i for i, m in rows(client) if m["source"] == "de.txt"}
    zh_chunks = chunks_per_source(client)["zh.txt"]
    (root / "de.txt").write_text(DE.replace("drei Wochen", "vier Wochen"), encoding="utf-8")
    (root / "zh.txt").unlink()
    write_files(root, {"docs/new.txt": "A brand new notice about parking rules. " * 30})
    embedded_before = fake.texts_embedded

    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.updated == ["de.txt"]
    assert report.removed == ["zh.txt"]
    assert report.added == ["docs/new.txt"]
    assert report.unchanged == len(CORPUS) - 2
    assert report.failed == []
    per_source = chunks_per_source(client)
    assert report.embedded == per_source["de.txt"] + per_source["docs/new.txt"]
    assert fake.texts_embedded - embedded_before == report.embedded
    assert report.chunks_removed == len(old_ids_de) + zh_chunks
    assert "zh.txt" not in per_source
    assert not any(m["file_hash"] == old_hash for _, m in rows(client))
    assert not old_ids_de & {i for i, _ in rows(client)}
    de_docs = client.get_collection(NAME).get(where={"source": "de.txt"}, include=["documents"])
    assert any("vier Wochen" in d for d in de_docs["documents"])
    assert not any("drei Wochen" in d for d in de_docs["documents"])
    assert_consistent(client, root)
    _, clean_total = clean_ingest(tmp_path, root, client)
    assert count(client) == clean_total


def test_removed_chunk_counts(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    before = chunks_per_source(client)
    (root / "zh.txt").unlink()
    shutil.rmtree(root / "docs")
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert sorted(report.removed) == ["docs/deep/ar.txt", "docs/ja.md", "zh.txt"]
    assert (
        report.chunks_removed
        == before["zh.txt"] + before["docs/ja.md"] + before["docs/deep/ar.txt"]
    )
    assert set(chunks_per_source(client)) == {"en.md", "de.txt", "fr.html"}


def test_shrinking_file_leaves_no_stale_tail(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert chunks_per_source(client)["de.txt"] >= 2
    (root / "de.txt").write_text("Die Bibliothek ist heute geschlossen.", encoding="utf-8")
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.updated == ["de.txt"]
    assert chunks_per_source(client)["de.txt"] == 1
    assert_consistent(client, root)


# --------------------------------------------------------------------------- bad input


def test_broken_hidden_and_unsupported_files(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    good_pdf = pdf_bytes("Page one is about apples.", "Page two is about pears.")
    write_files(
        root,
        {
            "empty.txt": b"",
            "cut.pdf": good_pdf[: int(len(good_pdf) * 0.4)],
            "fake.docx": b"this is not a zip file",
            "blob.txt": b"\x00\x01\x02binary" * 50,
            ".secret.txt": "hidden file text",
            ".git/config.txt": "hidden folder text",
            "tool.exe": b"MZ\x90\x00",
            "README": "no extension",
            "docs/.cache/x.md": "# hidden folder deeper",
        },
    )
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert sorted(report.added) == sorted(CORPUS)
    failed = {p.source: p.reason for p in report.failed}
    skipped = {p.source: p.reason for p in report.skipped}
    assert set(failed) == {"empty.txt", "cut.pdf", "fake.docx"}
    assert failed["empty.txt"] == "empty file"
    assert "PDF" in failed["cut.pdf"]
    assert failed["fake.docx"] == "not a valid .docx (bad zip)"
    assert skipped == {
        ".git/": "hidden folder",
        ".secret.txt": "hidden file",
        "README": "unsupported file type (no extension)",
        "blob.txt": "binary content",
        "docs/.cache/": "hidden folder",
        "tool.exe": "unsupported file type '.exe'",
    }
    assert set(chunks_per_source(client)) == set(CORPUS)
    # failures are retried next time (they are not recorded as done) but never embedded
    calls = fake.calls
    again = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert again.unchanged == len(CORPUS)
    assert {p.source for p in again.failed} == set(failed)
    assert fake.calls == calls


def test_file_over_size_limit_fails(tmp_path: Path, root: Path, client: Any) -> None:
    settings = load_settings(data_dir=tmp_path / "data", ingest={"max_file_mb": 0.003})
    report = ingest_folder(settings, root, NAME, embedder=FakeEmbedder(), client=client)
    sizes = {rel: (root / rel).stat().st_size for rel in CORPUS}
    too_big = {rel for rel, size in sizes.items() if size > 0.003 * 2**20}
    assert too_big and too_big != set(CORPUS)
    assert {p.source for p in report.failed} == too_big
    assert all(p.reason.startswith("larger than 0.00") for p in report.failed)
    assert sorted(report.added) == sorted(set(CORPUS) - too_big)


def test_file_that_breaks_keeps_its_old_chunks(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    before = {i: m for i, m in rows(client) if m["source"] == "de.txt"}
    assert before
    (root / "de.txt").write_bytes(b"")
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert [(p.source, p.reason) for p in report.failed] == [("de.txt", "empty file")]
    assert report.updated == [] and report.removed == [] and report.chunks_removed == 0
    assert report.unchanged == len(CORPUS) - 1
    after = {i: m for i, m in rows(client) if m["source"] == "de.txt"}
    assert after == before
    # once it is repaired it is updated normally
    (root / "de.txt").write_text(DE + " Neu.", encoding="utf-8")
    fixed = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert fixed.updated == ["de.txt"] and fixed.failed == []
    assert_consistent(client, root)


# --------------------------------------------------------------------------- recovery


def test_lost_manifest_is_rebuilt_from_the_store(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    files = manifest_files(settings)
    assert settings.manifests_dir / f"{NAME}.sqlite" in files
    for path in files:
        path.unlink()
    calls, total = fake.calls, count(client)
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.unchanged == len(CORPUS)
    assert report.embedded == 0 and report.added == [] and report.updated == []
    assert fake.calls == calls
    assert count(client) == total
    assert (settings.manifests_dir / f"{NAME}.sqlite").is_file()


def test_lost_manifest_still_notices_changes(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    for path in manifest_files(settings):
        path.unlink()
    (root / "en.md").write_text(EN + "\nOne more line.\n", encoding="utf-8")
    (root / "zh.txt").unlink()
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.updated == ["en.md"]
    assert report.removed == ["zh.txt"]
    assert report.unchanged == len(CORPUS) - 2
    assert_consistent(client, root)
    assert count(client) == clean_ingest(tmp_path, root, client)[1]


def test_crash_between_flushes_then_rerun(
    tmp_path: Path, root: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", ingest={"embed_batch_chunks": 2})
    fake = FakeEmbedder()
    real_encode = fake.encode_passages
    seen = {"n": 0}

    def crash_on_second(texts: list[str]) -> np.ndarray:
        seen["n"] += 1
        if seen["n"] == 2:
            raise RuntimeError("simulated crash (out of memory)")
        return real_encode(texts)

    monkeypatch.setattr(fake, "encode_passages", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_folder(settings, root, NAME, embedder=fake, client=client)
    partial = chunks_per_source(client)
    assert 0 < len(partial) < len(CORPUS)  # the first flush landed, the rest did not

    fresh = FakeEmbedder()
    report = ingest_folder(settings, root, NAME, embedder=fresh, client=client)
    assert report.unchanged == len(partial)
    assert sorted(report.added) == sorted(set(CORPUS) - set(partial))
    assert_consistent(client, root)
    assert set(chunks_per_source(client)) == set(CORPUS)
    assert count(client) == clean_ingest(tmp_path, root, client)[1]


def test_crash_after_new_chunks_before_old_deleted(
    settings: Settings,
    root: Path,
    client: Any,
    fake: FakeEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worst moment for an update: new version written, old one not yet removed."""
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    (root / "de.txt").write_text(DE.replace("Bücher", "Zeitschriften"), encoding="utf-8")
    real_delete = FolderSync._delete

    def crash_on_old_version_delete(self: FolderSync, where: dict[str, Any]) -> int:
        if "$and" in where:
            raise RuntimeError("simulated kill")
        return real_delete(self, where)

    monkeypatch.setattr(FolderSync, "_delete", crash_on_old_version_delete)
    with pytest.raises(RuntimeError, match="simulated kill"):
        ingest_folder(settings, root, NAME, embedder=fake, client=client)
    hashes = {m["file_hash"] for _, m in rows(client) if m["source"] == "de.txt"}
    assert len(hashes) == 2  # both versions are in the store right now
    monkeypatch.setattr(FolderSync, "_delete", real_delete)

    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.added + report.updated == ["de.txt"]
    assert report.unchanged == len(CORPUS) - 1
    assert_consistent(client, root)
    assert count(client) == clean_ingest(tmp_path, root, client)[1]


def test_crash_and_lost_manifest(
    settings: Settings,
    root: Path,
    client: Any,
    fake: FakeEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both versions of a file in the store and no manifest: the file is redone, not trusted."""
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    (root / "de.txt").write_text(DE.replace("Bücher", "Zeitschriften"), encoding="utf-8")
    real_delete = FolderSync._delete

    def crash(self: FolderSync, where: dict[str, Any]) -> int:
        if "$and" in where:
            raise RuntimeError("simulated kill")
        return real_delete(self, where)

    monkeypatch.setattr(FolderSync, "_delete", crash)
    with pytest.raises(RuntimeError):
        ingest_folder(settings, root, NAME, embedder=fake, client=client)
    monkeypatch.setattr(FolderSync, "_delete", real_delete)
    for path in manifest_files(settings):
        path.unlink()
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert report.added + report.updated == ["de.txt"]
    assert_consistent(client, root)
    assert count(client) == clean_ingest(tmp_path, root, client)[1]


def test_concurrent_ingest_is_refused(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    from filelock import FileLock

    lock = settings.data_dir / "locks" / f"{NAME}.lock"
    lock.parent.mkdir(parents=True)
    with FileLock(lock), pytest.raises(StoreError, match="another ingest into 'kbtest'"):
        ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert fake.calls == 0
    # and the lock is not left behind by the refusal
    assert ingest_folder(settings, root, NAME, embedder=fake, client=client).added


def test_not_a_folder_creates_nothing(settings: Settings, tmp_path: Path, client: Any) -> None:
    with pytest.raises(NotADirectoryError, match="nope"):
        ingest_folder(settings, tmp_path / "nope", NAME, embedder=FakeEmbedder(), client=client)
    assert NAME not in {c.name for c in client.list_collections()}


def test_not_a_folder_with_reembed_keeps_the_collection(
    settings: Settings, root: Path, tmp_path: Path, client: Any, fake: FakeEmbedder
) -> None:
    """A typo in the path must not drop (reembed) or retarget an existing knowledge base."""
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    total = count(client)
    (tmp_path / "file.txt").write_text("not a folder")
    for wrong in (tmp_path / "typo", tmp_path / "file.txt"):
        with pytest.raises(NotADirectoryError):
            ingest_folder(settings, wrong, NAME, embedder=fake, client=client, reembed=True)
        assert count(client) == total
        assert client.get_collection(NAME).metadata["kbchat_source_dir"] == str(root.resolve())


# --------------------------------------------------------------------------- embedding config


def test_other_model_is_refused(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    total, meta = count(client), dict(client.get_collection(NAME).metadata)
    other = FakeEmbedder("other/multilingual-e5-base", dimension=16)
    with pytest.raises(EmbeddingMismatchError) as info:
        ingest_folder(settings, root, NAME, embedder=other, client=client)
    message = str(info.value)
    assert "fake/e5" in message
    assert "other/multilingual-e5-base" in message
    assert "--reembed" in message
    assert other.calls == 0
    assert count(client) == total
    assert dict(client.get_collection(NAME).metadata) == meta
    with pytest.raises(EmbeddingMismatchError, match="other/multilingual-e5-base"):
        search(settings, "Bibliothek", collection_name=NAME, embedder=other, client=client)


def test_other_weights_or_prefix_are_refused(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    from app.embeddings.profiles import PrefixProfile

    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    requantised = FakeEmbedder(weights="fake-q8")
    with pytest.raises(EmbeddingMismatchError, match="fake-q8"):
        ingest_folder(settings, root, NAME, embedder=requantised, client=client)
    no_prefix = FakeEmbedder()
    no_prefix.profile = PrefixProfile("none")
    from app.embeddings.e5 import EmbeddingSpec

    no_prefix.spec = EmbeddingSpec("fake/e5", "fake", "none", 32, 512)
    with pytest.raises(EmbeddingMismatchError, match="prefix scheme e5 -> none"):
        ingest_folder(settings, root, NAME, embedder=no_prefix, client=client)


def test_other_chunking_is_refused(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    calls = fake.calls
    for changed in (
        load_settings(data_dir=tmp_path / "data", chunk={"tokens": 200}),
        load_settings(data_dir=tmp_path / "data", chunk={"overlap": 0}),
    ):
        with pytest.raises(EmbeddingMismatchError) as info:
            ingest_folder(changed, root, NAME, embedder=fake, client=client)
        assert "--reembed" in str(info.value)
    assert "chunks of 512 tokens" in str(info.value)
    assert fake.calls == calls
    # searching only needs the vectors to match: other chunk settings are fine there
    changed = load_settings(data_dir=tmp_path / "data", chunk={"tokens": 200})
    assert search(changed, "Bibliothek", collection_name=NAME, k=2, embedder=fake, client=client)


def test_reembed_replaces_the_collection(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    other = FakeEmbedder("other/multilingual-e5-base", dimension=16)
    rechunked = load_settings(data_dir=tmp_path / "data", chunk={"tokens": 200})
    report = ingest_folder(rechunked, root, NAME, embedder=other, client=client, reembed=True)
    assert sorted(report.added) == sorted(CORPUS)
    assert report.unchanged == 0
    assert other.texts_embedded == report.embedded == count(client)
    col = client.get_collection(NAME)
    assert col.metadata["kbchat_model"] == "other/multilingual-e5-base"
    assert col.metadata["kbchat_dim"] == 16
    assert col.metadata["kbchat_chunk_tokens"] == 200
    assert col.metadata["kbchat_source_dir"] == str(root.resolve())
    assert col.configuration["hnsw"]["space"] == "cosine"
    assert_consistent(client, root)
    # the new configuration is now the accepted one, and the old one is refused
    again = ingest_folder(rechunked, root, NAME, embedder=other, client=client)
    assert again.unchanged == len(CORPUS) and again.embedded == 0
    with pytest.raises(EmbeddingMismatchError):
        ingest_folder(settings, root, NAME, embedder=FakeEmbedder(), client=client)


# --------------------------------------------------------------------------- search


def test_search_returns_hits(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    hits = search(
        settings, "Bibliothek Bücher", collection_name=NAME, k=3, embedder=fake, client=client
    )
    assert len(hits) == 3
    assert all(isinstance(h, Hit) for h in hits)
    for h in hits:
        assert h.source in CORPUS
        assert h.language == LANGUAGES[h.source]
        assert 0.0 <= h.score <= 1.0
        assert h.text
        assert h.title
    ranked = [h.ranking_score for h in hits]  # language centring ranks (settings default)
    assert None not in ranked and ranked == sorted(ranked, reverse=True)  # type: ignore[type-var]
    assert fake.queries == 1


def test_search_finds_the_exact_chunk(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    got = client.get_collection(NAME).get(
        where={"source": "docs/ja.md"}, include=["documents", "metadatas"]
    )
    longest = max(range(len(got["ids"])), key=lambda i: len(got["documents"][i]))
    target = got["documents"][longest]
    hits = search(settings, target, collection_name=NAME, k=5, embedder=fake, client=client)
    assert hits[0].source == "docs/ja.md"
    assert hits[0].text == target
    assert hits[0].chunk_index == got["metadatas"][longest]["chunk_index"]
    assert hits[0].score > 0.9
    assert hits[0].to_dict()["source"] == "docs/ja.md"


def test_search_unknown_collection(settings: Settings, client: Any, fake: FakeEmbedder) -> None:
    with pytest.raises(StoreError, match="no knowledge base named 'missing'"):
        search(settings, "x", collection_name="missing", embedder=fake, client=client)


# --------------------------------------------------------------------------- hardening (issue 7)

CANARY = "CANARY-3b7e root:x:0:0 never index me"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text(CANARY, encoding="utf-8")
    return outside


def _add_links(root: Path, outside: Path) -> dict[str, str]:
    """Links of every kind; returns source -> words its skip reason must contain."""
    (root / "passwd.txt").symlink_to(outside / "secret.txt")
    (root / "etc").symlink_to(outside, target_is_directory=True)
    (root / "alias.md").symlink_to(root / "en.md")
    (root / "docs-again").symlink_to(root / "docs", target_is_directory=True)
    (root / "docs" / "up").symlink_to(root, target_is_directory=True)  # a loop through ..
    (root / "self.md").symlink_to(root / "self.md")
    return {
        "passwd.txt": "outside",
        "etc/": "outside",
        "alias.md": "inside",
        "docs-again/": "inside",
        "docs/up/": "inside",
        "self.md": "loops",
    }


def _assert_no_canary(client: Any, name: str = NAME) -> None:
    docs = client.get_collection(name).get(include=["documents"])["documents"]
    assert all(CANARY not in d for d in docs)


def test_symlinks_are_never_followed(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    expected = _add_links(root, _outside(tmp_path))
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    skipped = {p.source: p.reason for p in report.skipped}
    for source, words in expected.items():
        assert words in skipped.get(source, ""), (source, skipped)
    assert sorted(report.added) == sorted(CORPUS)  # each real file once, no link twice
    _assert_no_canary(client)
    assert_consistent(client, root)


def test_unreadable_folder_is_reported(
    settings: Settings,
    root: Path,
    client: Any,
    fake: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_scandir = os.scandir
    locked = root / "docs" / "deep"

    def scandir(path: Any = ".") -> Any:  # what a folder without read permission does
        if Path(os.fsdecode(path)) == locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    skipped = {p.source: p.reason for p in report.skipped}
    assert "Permission denied" in skipped.get("docs/deep/", ""), skipped
    assert sorted(report.added) == sorted(set(CORPUS) - {"docs/deep/ar.txt"})


def test_file_name_that_is_not_utf8_is_escaped_and_the_rest_ingested(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    import json

    with open(os.path.join(os.fsencode(root), b"bad\xffname.txt"), "wb") as f:
        f.write(b"The ferry to the island leaves at noon.")
    with open(os.path.join(os.fsencode(root), b"untitled\xfe.txt"), "wb") as f:
        f.write(b"word " * 40)  # a first line too long for a title: the name is the title
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert sorted(report.added) == sorted([*CORPUS, "bad\\xffname.txt", "untitled\\xfe.txt"])
    assert any(p.source == "bad\\xffname.txt" for p in report.notes)
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    sources = {str(m["source"]) for _, m in rows(client)}
    assert "bad\\xffname.txt" in sources
    for source in sources:
        source.encode("utf-8")
    again = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    titles = {str(m["title"]) for _, m in rows(client) if m["source"] == "untitled\\xfe.txt"}
    assert titles == {"untitled\\xfe"}
    assert again.unchanged == len(CORPUS) + 2 and not again.added and not again.removed


def test_file_changed_during_ingest_stores_the_hash_of_its_text(
    settings: Settings,
    root: Path,
    client: Any,
    fake: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_plan = FolderSync.plan

    def plan_then_edit(self: FolderSync, folder: Path, name: str) -> Any:
        plan = real_plan(self, folder, name)
        (root / "de.txt").write_text("Neue Fassung: die Bibliothek ist geschlossen.", "utf-8")
        return plan

    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    (root / "de.txt").write_text("Zweite Fassung: die Bibliothek öffnet um acht.", "utf-8")
    monkeypatch.setattr(FolderSync, "plan", plan_then_edit)
    # The settings' manifest is bound, so ingest_folder uses its early plan; force a re-plan.
    monkeypatch.setattr(FolderSync, "bind", lambda self: False)
    ingest_folder(settings, root, NAME, embedder=fake, client=client)
    metas = [m for _, m in rows(client) if m["source"] == "de.txt"]
    docs = client.get_collection(NAME).get(where={"source": "de.txt"})["documents"]
    assert docs == ["Neue Fassung: die Bibliothek ist geschlossen."]
    assert {m["file_hash"] for m in metas} == {sha256(root / "de.txt")}
    assert_consistent(client, root)


def test_cut_files_are_reported_as_truncated(
    tmp_path: Path, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        ingest={"max_chars": 2000, "max_chunks": 2},
        chunk={"tokens": 64, "overlap": 8},
    )
    (root / "long.txt").write_text("word " * 50_000, encoding="utf-8")
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    cut = {}
    for p in report.truncated:
        cut[p.source] = cut.get(p.source, "") + p.reason + "; "
    assert "2000 characters" in cut["long.txt"] and "first 2 chunks" in cut["long.txt"]
    assert max(chunks_per_source(client).values()) <= 2
    assert "long.txt" in report.added


# --------------------------------------------------------------------------- through the server


def _app(settings: Settings, client: Any) -> Any:
    from app.server.app import create_app

    return create_app(settings, embedder=FakeEmbedder(), client=client, llm=None, with_ui=False)


def test_server_sync_skips_symlinks_out(tmp_path: Path, client: Any) -> None:
    from fastapi.testclient import TestClient

    settings = load_settings(data_dir=tmp_path / "data", admin_api_key="k" * 20)
    folder = settings.collections_dir / NAME
    write_files(folder, {"en.md": EN})
    (folder / "passwd.txt").symlink_to(_outside(tmp_path) / "secret.txt")
    (folder / "etc").symlink_to(tmp_path / "outside", target_is_directory=True)
    chunking = {
        "kbchat_chunk_tokens": settings.chunk.tokens,
        "kbchat_chunk_overlap": settings.chunk.overlap,
    }
    open_collection(client, NAME, FakeEmbedder().spec, chunking, create=True)  # sync needs one
    with TestClient(_app(settings, client)) as http:
        got = http.post(
            f"/api/collections/{NAME}/sync", headers={"Authorization": "Bearer " + "k" * 20}
        )
    assert got.status_code == 200, got.text
    skipped = {p["source"]: p["reason"] for p in got.json()["skipped"]}
    assert "outside" in skipped["passwd.txt"] and "outside" in skipped["etc/"]
    # en.md was indexed (by the start-up re-sync of the existing collection), the links not
    assert {m["source"] for _, m in rows(client)} == {"en.md"}
    _assert_no_canary(client)


def test_upload_answer_lists_saved_indexed_and_failed(tmp_path: Path, client: Any) -> None:
    from fastapi.testclient import TestClient

    settings = load_settings(data_dir=tmp_path / "data", admin_api_key="k" * 20)
    files = [
        ("files", ("good.md", EN.encode(), "text/markdown")),
        ("files", ("broken.pdf", b"%PDF-1.4 cut short", "application/pdf")),
        ("files", ("empty.txt", b"", "text/plain")),
    ]
    with TestClient(_app(settings, client)) as http:
        got = http.post(
            f"/api/collections/{NAME}/documents",
            files=files,
            headers={"Authorization": "Bearer " + "k" * 20},
        )
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["saved"] == ["good.md", "broken.pdf", "empty.txt"]
    assert body["indexed"] == ["good.md"]
    failed = {f["file"]: f["reason"] for f in body["failed"]}
    assert set(failed) == {"broken.pdf", "empty.txt"} and "empty" in failed["empty.txt"]
    folder = settings.collections_dir / NAME
    assert sorted(p.name for p in folder.iterdir()) == ["broken.pdf", "empty.txt", "good.md"]


def test_upload_temp_files_are_invisible_to_the_scan(
    settings: Settings, root: Path, client: Any, fake: FakeEmbedder
) -> None:
    (root / ".kbchat-upload-1234abcd").write_bytes(b"half an upload")
    report = ingest_folder(settings, root, NAME, embedder=fake, client=client)
    assert not [p for p in report.skipped if "kbchat-upload" in p.source]


_KILLED_CHILD = """
import os, signal, sys
from pathlib import Path
from app.ingest import ingest_folder
from app.settings import load_settings
from tests.fakes import FakeEmbedder

class KilledMidSync(FakeEmbedder):
    def encode_passages(self, texts):
        if self.calls >= 1:  # the first batch is written, the second never is
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_passages(texts)

settings = load_settings(data_dir=Path(sys.argv[1]), ingest={"embed_batch_chunks": 4})
ingest_folder(settings, Path(sys.argv[2]), sys.argv[3], embedder=KilledMidSync())
"""


def test_interrupted_sync_is_finished_at_the_next_start(tmp_path: Path) -> None:
    """A sync killed with SIGKILL (pending files, partial chunks), a file added and an upload
    left half-written while the server was down: the next start finishes all of it by itself."""
    import signal
    import subprocess
    import sys
    import time

    from fastapi.testclient import TestClient

    from app.store import make_client
    from ingestion.manifest import Manifest

    settings = load_settings(data_dir=tmp_path / "data")
    folder = settings.collections_dir / NAME
    write_files(folder, CORPUS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBCHAT_")}
    env["KBCHAT_CHUNK_SENTENCE_VECTORS"] = "false"  # one encode call per batch: killed in the 2nd
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(settings.data_dir), str(folder), NAME],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    manifest = Manifest(settings.manifests_dir / f"{NAME}.sqlite")
    assert any(e.state == "pending" for e in manifest.entries().values())
    manifest.close()
    write_files(folder, {"late.md": "# Late\n\nAdded while the server was down."})
    stale = folder / ".kbchat-upload-dead"
    stale.write_bytes(b"half an upload")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    client = make_client(settings)
    assert count(client) > 0  # the first batch reached the store before the kill
    with TestClient(_app(settings, client)):
        deadline = time.monotonic() + 60  # detects a hang, not a timing
        while time.monotonic() < deadline:
            manifest = Manifest(settings.manifests_dir / f"{NAME}.sqlite")
            entries = manifest.entries()
            manifest.close()
            if len(entries) == len(CORPUS) + 1 and all(e.state == "done" for e in entries.values()):
                break
            time.sleep(0.2)
    assert sorted(entries) == sorted([*CORPUS, "late.md"])
    assert all(e.state == "done" for e in entries.values())
    assert set(chunks_per_source(client)) == {*CORPUS, "late.md"}
    assert_consistent(client, folder)
    assert not stale.exists()


def test_html_lang_attribute_is_the_chunks_language_when_valid(
    settings: Settings, client: Any, fake: FakeEmbedder, tmp_path: Path
) -> None:
    """Too few words to detect a language, but the page says which it is; a bogus tag doesn't."""
    page = "<html lang='{}'><body><p>Horário: 9h-17h. Preço: 5 €.</p></body></html>"
    folder = tmp_path / "pages"
    write_files(folder, {"pt.html": page.format("pt-BR"), "bogus.html": page.format("x-foo")})
    ingest_folder(settings, folder, NAME, embedder=fake, client=client)
    languages = {str(m["source"]): m["language"] for _, m in rows(client)}
    assert languages == {"pt.html": "pt", "bogus.html": "und"}


def test_chunk_min_tokens_setting_reaches_the_chunker(
    client: Any, fake: FakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notes"
    write_files(folder, {"hours.md": "# Hours\n\nOpen 9-5.\n\n## Phone\n\nCall 555.\n"})
    ingest_folder(load_settings(data_dir=tmp_path / "a"), folder, "merged", embedder=fake,
                  client=client)  # fmt: skip
    monkeypatch.setenv("KBCHAT_CHUNK_MIN_TOKENS", "0")
    ingest_folder(load_settings(data_dir=tmp_path / "b"), folder, "apart", embedder=fake,
                  client=client)  # fmt: skip
    assert client.get_collection("merged").count() == 1
    assert client.get_collection("apart").count() == 2
