"""Two `kbchat serve` replicas behind one (simulated) load balancer, on real PostgreSQL 15,
redis-server and a Chroma server (`chroma run`), driven through the HTTP API only.

What a deployment with several replicas must keep: a conversation begun on one replica goes on
on the other; a document uploaded through one is answered from the other; the rate limit is one
budget, not one per replica; killing a replica loses nothing; replicas started together on an
empty database all come up. The settings are those of compose.yaml (tests/services.py).

The servers are Debian's (.ci/run installs postgresql-15 and redis-server); without them the
test is skipped, unless REQUIRE_REPLICA_SERVERS=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.services import (
    ADMIN_KEY,
    RATE_LIMIT,
    Kbchat,
    Server,
    create_database,
    kbchat_replicas,
    replica_settings,
    require,
    start_balancer,
    start_chroma,
    start_postgres,
    start_redis,
)

pytestmark = [pytest.mark.replicas, pytest.mark.slow, pytest.mark.timeout(900)]

COLLECTION = "handbook"
LIGHTHOUSE = (
    "# The Lindholm lighthouse\n\n"
    "The Lindholm lighthouse was built in 1887 from red granite quarried on the island. "
    "Its lamp can be seen 23 nautical miles out at sea. "
    "The last keeper, Astrid Berg, lived in the tower until 1961.\n"
)
ORCHARD = (
    "# Der Obstgarten von Kellinghusen\n\n"
    "Im Obstgarten von Kellinghusen wachsen 340 Apfelbäume alter Sorten. "
    "Die Ernte beginnt jedes Jahr Mitte September und wird im Dorf zu Most gepresst.\n"
)


@dataclass
class Cluster:
    a: Kbchat
    b: Kbchat
    postgres: Server
    redis: Server
    chroma: Server
    balancer: Server
    settings: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module")
def cluster(e5_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require("postgres", "redis", "chroma", "caddy")
    base = tmp_path_factory.mktemp("replicas")
    with start_postgres() as postgres, start_redis() as redis, start_chroma() as chroma:
        settings = replica_settings(
            data_dir=base / "shared-data",
            model_dir=e5_model_dir,
            postgres_url=postgres.url,
            redis_url=redis.url,
            chroma_port=chroma.port,
        )
        with kbchat_replicas(settings, base, 2) as (a, b):
            a.spawn()
            a.wait_for("/api/health")  # A made the tables (today's create_all); see the race test
            b.spawn()
            a.wait()
            b.wait()
            with start_balancer([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as balancer:
                yield Cluster(a, b, postgres, redis, chroma, balancer, settings, base)


def chat(replica: Kbchat, message: str, client_ip: str, **fields: Any) -> httpx.Response:
    """One chat turn as a load balancer forwards it: the client's address in X-Forwarded-For."""
    return httpx.post(
        f"{replica.url}/api/chat",
        json={"message": message, **fields},
        headers={"X-Forwarded-For": client_ip},
        timeout=60,
    )


def upload(replica: Kbchat, name: str, text: str, collection: str = COLLECTION) -> None:
    response = httpx.post(
        f"{replica.url}/api/collections/{collection}/documents",
        files=[("files", (name, text.encode(), "text/markdown"))],
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["indexed"] == [name], response.json()


def sources(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["source"] for s in response.json()["sources"]]


@pytest.fixture(scope="module")
def handbook(cluster: Cluster) -> str:
    """One document uploaded through replica A."""
    upload(cluster.a, "lighthouse.md", LIGHTHOUSE)
    return COLLECTION


def test_a_document_uploaded_through_a_is_answered_from_b(cluster: Cluster, handbook: str) -> None:
    question = "How far out at sea can the Lindholm lighthouse be seen?"
    assert "lighthouse.md" in sources(chat(cluster.b, question, "10.0.1.1", collection=handbook))
    # B now holds a chain for the collection; a later upload through A must reach it too
    upload(cluster.a, "orchard.md", ORCHARD)
    question = "Wie viele Apfelbäume wachsen im Obstgarten von Kellinghusen?"
    assert "orchard.md" in sources(chat(cluster.b, question, "10.0.1.1", collection=handbook))


def test_a_collection_deleted_and_made_again_through_a_is_served_by_b(cluster: Cluster) -> None:
    """B's cached chain points at the collection it first saw; after A deletes the collection
    and an upload makes a new one of the same name, B must answer from the new one."""
    name = "recreated"
    question = "How far out at sea can the Lindholm lighthouse be seen?"
    upload(cluster.a, "lighthouse.md", LIGHTHOUSE, collection=name)
    assert "lighthouse.md" in sources(chat(cluster.b, question, "10.0.2.1", collection=name))
    deleted = httpx.delete(
        f"{cluster.a.url}/api/collections/{name}",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    assert deleted.status_code == 204, deleted.text
    upload(cluster.a, "orchard.md", ORCHARD, collection=name)
    question = "Wie viele Apfelbäume wachsen im Obstgarten von Kellinghusen?"
    assert sources(chat(cluster.b, question, "10.0.2.1", collection=name)) == ["orchard.md"]


def test_a_conversation_begun_on_a_continues_on_b(cluster: Cluster, handbook: str) -> None:
    first = chat(
        cluster.a, "When was the Lindholm lighthouse built?", "10.0.3.1", collection=handbook
    )
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    second = chat(
        cluster.b, "Who was its last keeper?", "10.0.3.1", session_id=session, collection=handbook
    )
    assert second.status_code == 200, second.text
    assert second.json()["session_id"] == session  # B continued A's session, not a new one
    for replica in (cluster.a, cluster.b):
        conversation = httpx.get(f"{replica.url}/api/sessions/{session}", timeout=30).json()
        assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"] * 2
        assert conversation["messages"][0]["content"] == "When was the Lindholm lighthouse built?"
        assert conversation["messages"][2]["content"] == "Who was its last keeper?"


def test_the_rate_limit_is_one_budget_across_replicas(cluster: Cluster, handbook: str) -> None:
    """As many chats pass when they are split across A and B as when all go to A."""
    allowed = int(RATE_LIMIT.split("/")[0])
    on_one = [
        chat(cluster.a, "hello", "10.0.4.1", collection=handbook).status_code
        for _ in range(allowed + 2)
    ]
    assert on_one == [200] * allowed + [429] * 2
    replicas = [cluster.a, cluster.b] * (allowed + 2)
    split = [
        chat(r, "hello", "10.0.4.2", collection=handbook).status_code
        for r in replicas[: allowed + 2]
    ]
    assert split == on_one


def chats_answered(replica: Kbchat) -> float:
    """POST /api/chat requests `replica` answered, whatever their status (its /metrics)."""
    response = httpx.get(
        f"{replica.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "kbchat_http_requests_total"
        and sample.labels["method"] == "POST"
        and sample.labels["route"] == "/api/chat"
    )


def test_the_balancer_keeps_a_client_on_one_replica_and_a_forged_address_buys_no_budget(
    cluster: Cluster, handbook: str
) -> None:
    """Through compose's load balancer (deploy/Caddyfile). A client that keeps Caddy's cookie
    has every request answered by one replica (the replicas' own /metrics count them), while
    clients without it get both replicas' cookies. The X-Forwarded-For a client forges is
    replaced by its real address, so a new forged address for every request buys no new budget
    (the budget is in Redis, one for both replicas, so only the address can make a new one)."""
    allowed = int(RATE_LIMIT.split("/")[0])
    replicas = (cluster.a, cluster.b)
    before = [chats_answered(r) for r in replicas]
    with httpx.Client(base_url=cluster.balancer.url, timeout=60) as client:
        statuses = [
            client.post(
                "/api/chat",
                json={"message": "hello", "collection": handbook},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            ).status_code
            for i in range(allowed + 1)
        ]
        kept = client.cookies.get("kbchat_replica")
    served = [chats_answered(r) - was for r, was in zip(replicas, before, strict=True)]
    assert sorted(served) == [0, allowed + 1], served  # all on one replica, none on the other
    assert statuses == [200] * allowed + [429]
    cookies: set[str] = set()  # new clients: Caddy spreads them, naming each replica apart
    for _ in range(40):  # Caddy picks at random for them: 40 on one replica has odds 2**-39
        cookies.add(
            httpx.get(f"{cluster.balancer.url}/api/health", timeout=30).cookies["kbchat_replica"]
        )
        if len(cookies) == 2:
            break
    assert len(cookies) == 2 and kept in cookies, (kept, cookies)


def test_killing_a_replica_loses_nothing(cluster: Cluster, handbook: str) -> None:
    """SIGKILL A right after it answered: B serves the conversation and the documents, and so
    does A once restarted (nothing lived only in A's memory)."""
    first = chat(cluster.a, "What was the lighthouse built from?", "10.0.5.1", collection=handbook)
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    cluster.a.kill()
    for _ in range(4):  # whichever replica the balancer picks first, B answers
        through = httpx.get(f"{cluster.balancer.url}/api/sessions/{session}", timeout=30)
        assert through.status_code == 200, through.text
    question = "Where does the lamp of the Lindholm lighthouse shine?"
    for replica in (cluster.b, cluster.a):
        if replica is cluster.a:
            replica.start()  # same settings, same port: as an orchestrator restarts it
        turn = chat(replica, question, "10.0.5.1", session_id=session, collection=handbook)
        assert "lighthouse.md" in sources(turn)
        conversation = httpx.get(f"{replica.url}/api/sessions/{session}", timeout=30).json()
        contents = [m["content"] for m in conversation["messages"] if m["role"] == "user"]
        assert contents[0] == "What was the lighthouse built from?"
        assert contents[1:] == [question] * (2 if replica is cluster.a else 1)


def test_replicas_started_together_on_an_empty_database_all_come_up(cluster: Cluster) -> None:
    settings = {
        **cluster.settings,
        "KBCHAT_DATABASE_URL": create_database(cluster.postgres.url, "started_together"),
        "KBCHAT_DATA_DIR": str(cluster.workdir / "started-together-data"),  # nothing to re-sync
    }
    with kbchat_replicas(settings, cluster.workdir, 2) as replicas:
        for replica in replicas:
            replica.spawn()
        for replica in replicas:
            replica.wait_for(
                "/api/health", timeout=120
            )  # up: the database part of start-up is done
