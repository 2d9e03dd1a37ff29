"""Rate limits in a real redis-server (KBCHAT_REDIS_URL): two app instances, as two replicas,
spend from one budget; memory stays the default; a bad URL stops the start in one line without
its password; Redis down means each process counts alone (never a 500, never unlimited)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder
from tests.services import Server, require, start_redis
from tests.test_settings_errors import kbchat, one_error_line

ADMIN = "admin-secret-123"
RATE = "4/minute"


@pytest.fixture
def redis() -> Iterator[Server]:
    require("redis")
    with start_redis() as server:
        yield server


def stored_keys(server: Server) -> list[str]:
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    return sorted(str(k) for k in client.keys("*"))


def make_app(tmp_path: Path, name: str, **overrides: Any) -> Any:
    """An app with the fake embedder and no LLM; chats to the absent collection answer 404
    after the rate limit was spent, which is all these tests need."""
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / name,
        ingest={"resync_on_start": False},
        server={"rate_limit": RATE, "upload_rate_limit": RATE},
        admin_api_key=ADMIN,
        **overrides,
    )
    return create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)


def chat(client: TestClient, **headers: str) -> int:
    return client.post("/api/chat", json={"message": "hello"}, headers=headers).status_code


def feedback(client: TestClient) -> int:
    body = {"session_id": "s" * 8, "message_id": 1, "rating": "up"}
    return client.post("/api/feedback", json=body).status_code


def test_two_apps_share_one_budget(tmp_path: Path, redis: Server) -> None:
    a = TestClient(make_app(tmp_path, "a", redis_url=redis.url))
    b = TestClient(make_app(tmp_path, "b", redis_url=redis.url))
    with a, b:
        chats = [chat(client) for client in (a, b, a, b, a, b)]
        assert [c == 429 for c in chats] == [False] * 4 + [True] * 2, chats
        feedbacks = [feedback(client) for client in (b, a, b, a, b)]  # slowapi's limiter
        assert [c == 429 for c in feedbacks] == [False] * 4 + [True], feedbacks
        assert a.get("/api/ready").json()["redis"] is True


def test_keys_are_prefixed_apart_and_never_hold_a_presented_key(
    tmp_path: Path, redis: Server
) -> None:
    with TestClient(make_app(tmp_path, "a", redis_url=redis.url)) as a:
        # the admin key may be presented as X-Kbchat-Key: it must not become a Redis key
        assert chat(a, **{"X-Kbchat-Key": ADMIN}) != 429
        feedback(a)
    with TestClient(make_app(tmp_path, "b", redis_url=redis.url, redis_prefix="other")) as b:
        assert chat(b) != 429
        # the chat and upload budgets have the same rate, yet count apart
        assert b.post("/gradio_api/upload", files={"files": ("a.txt", b"x")}).status_code != 429
    keys = stored_keys(redis)
    assert keys and all(k.startswith(("kbchat:", "other:")) for k in keys), keys
    assert not any(ADMIN in k for k in keys), keys
    assert any(k.startswith("other:") and "chat:" in k for k in keys), keys
    assert any(k.startswith("other:") and "upload:" in k for k in keys), keys


def test_memory_is_the_default_and_each_app_counts_alone(tmp_path: Path) -> None:
    a = TestClient(make_app(tmp_path, "a"))
    b = TestClient(make_app(tmp_path, "b"))
    with a, b:
        assert [chat(a) for _ in range(4)] + [chat(b) for _ in range(4)] == [404] * 8
        assert chat(a) == 429 and chat(b) == 429
        assert "redis" not in a.get("/api/ready").json()


def test_redis_down_each_process_counts_alone_and_recovers(
    tmp_path: Path, redis: Server, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(tmp_path, "a", redis_url=redis.url)
    with TestClient(app) as client:
        assert [chat(client) for _ in range(2)] == [404, 404]
        redis.stop()
        with caplog.at_level(logging.WARNING, logger="app.server.rate_store"):
            after = [chat(client) for _ in range(5)]
        # not unusable: answered as usual; not unlimited: a full budget, counted in memory
        assert after == [404] * 4 + [429], after
        assert sum("Redis unreachable" in r.getMessage() for r in caplog.records) == 1
        assert redis.url.split("//")[1] not in caplog.text  # no address in the warning
        ready = client.get("/api/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["redis"] is False and ready.json()["ready"] is True
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
        assert "kbchat_rate_limit_shared 0.0" in metrics
        local = re.search(r"^kbchat_rate_limit_local_decisions_total (\S+)$", metrics, re.M)
        assert local and float(local.group(1)) >= 5, metrics
        assert feedback(client) != 500  # slowapi falls back to memory too
    # a replica that starts while Redis is down starts, and counts alone
    with TestClient(make_app(tmp_path, "b", redis_url=redis.url)) as late:
        assert [chat(late) for _ in range(5)] == [404] * 4 + [429]


def test_budget_store_goes_back_to_redis(tmp_path: Path, redis: Server) -> None:
    from app.server.access import RateBudget
    from app.server.rate_store import BudgetStore

    store = BudgetStore(redis.url, retry_s=0)
    budget = RateBudget("2/minute", "chat", store)
    assert budget.hit("ip:x") is None
    redis.stop()
    assert budget.hit("ip:x") is None  # memory, from 0
    assert budget.hit("ip:x") is None
    assert budget.hit("ip:x") is not None
    redis.start()  # an empty Redis again (nothing was saved)
    assert budget.hit("ip:y") is None
    assert any("/chat:ip:y/" in k for k in stored_keys(redis)), stored_keys(redis)


@pytest.mark.parametrize(
    "url", ["http://user:hunter2@cache:6379/0", "cache:6379", "memory://", "async+redis://h"]
)
def test_a_bad_redis_url_stops_the_start_in_one_line_without_its_password(
    tmp_path: Path, url: str
) -> None:
    line = one_error_line(kbchat(tmp_path, "collections", KBCHAT_REDIS_URL=url))
    assert "KBCHAT_REDIS_URL" in line and "redis://, rediss://, redis+unix://" in line, line
    assert "hunter2" not in line, line


def test_a_bad_redis_prefix_stops_the_start_in_one_line(tmp_path: Path) -> None:
    line = one_error_line(kbchat(tmp_path, "collections", KBCHAT_REDIS_PREFIX="kb*:{x}"))
    assert "KBCHAT_REDIS_PREFIX='kb*:{x}'" in line and "pattern" in line, line
