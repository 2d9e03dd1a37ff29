"""Lead capture: a lead stored with its conversation, hostile and invalid bodies refused, chat
refused in `before` mode until the conversation has a lead, the webhook secret shown once and
never public, webhook URLs into private networks refused, and the signed webhook received by a
real HTTP server on loopback (retried until it answers, never following a redirect)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_assistants import AUTH, SHOP, emptied, make_app, module_client, new_key, shop

CONSENT = {"en": "I agree that Pip's shop may email me.", "de": "Ich bin einverstanden."}
LEAD = {"name": "Ada Lovelace", "email": "ada@example.com", "consent": True, "language": "en"}


def leads(mode: str = "before", **fields: Any) -> dict[str, Any]:
    return {"mode": mode, "after_messages": 2, "consent": CONSENT, **fields}


def verify(secret: str, header: str, body: bytes) -> bool:
    """The README's receiver check, verbatim in spirit."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


class Receiver:
    """A webhook receiver on loopback answering the scripted statuses in turn (then 200)."""

    def __init__(self, statuses: list[int], location: str = "") -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/kbchat"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < end:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Default settings: webhooks to https on public hosts only."""
    with module_client(tmp_path_factory, "leads") as c:
        yield c


@pytest.fixture
def client(app: TestClient) -> TestClient:
    return emptied(app)


@pytest.fixture
def private_ok(tmp_path: Path) -> Iterator[TestClient]:
    """KBCHAT_WEBHOOK_ALLOW_PRIVATE=true (this test's receiver is on loopback); quick retries."""
    with TestClient(make_app(tmp_path, webhook_allow_private=True)) as c:
        c.app.state.leads.webhooks.backoff = 0.05  # type: ignore[attr-defined]
        yield c


def setup(client: TestClient, **lead_fields: Any) -> dict[str, str]:
    r = client.post("/api/assistants", json=shop(leads=leads(**lead_fields)), headers=AUTH)
    assert r.status_code == 201, r.text
    return {"X-Kbchat-Key": new_key(client), "Origin": SHOP}


def test_a_lead_is_stored_with_its_conversation(client: TestClient) -> None:
    headers = setup(client, mode="after")
    r = client.post("/api/chat", json={"message": "returns?"}, headers=headers)
    assert r.status_code == 200, r.text
    session = r.json()["session_id"]
    hostile = '<img src=x onerror=alert(1)> "Ada"'
    body = {**LEAD, "session_id": session, "name": hostile, "language": "de"}
    r = client.post("/api/leads", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["session_id"] == session
    again = client.post("/api/leads", json=body, headers=headers)
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/pro")

    [lead] = client.get("/api/assistants/shoe-shop/leads?limit=1", headers=AUTH).json()
    assert lead["session_id"] == session and lead["name"] == hostile
    assert lead["email"] == "ada@example.com" and lead["language"] == "de"
    assert lead["consent_text"] == CONSENT["de"] and lead["consent_at"]
    # a language without a consent text stores the default language's
    r = client.post("/api/leads", json={**LEAD, "language": "fr"}, headers=headers)
    assert r.status_code == 201
    newest = client.get("/api/assistants/shoe-shop/leads?limit=1", headers=AUTH).json()
    assert [n["consent_text"] for n in newest] == [CONSENT["en"]]
    assert client.get("/api/assistants/nobody/leads", headers=AUTH).json() == []


def test_sessions_of_other_collections_and_keys_without_leads_are_refused(
    client: TestClient,
) -> None:
    headers = setup(client, mode="after")
    before = client.get("/api/assistants/shoe-shop/leads", headers=AUTH).json()  # outlive deletes
    unknown = {**LEAD, "session_id": "f" * 32}
    assert client.post("/api/leads", json=unknown, headers=headers).status_code == 404
    # the demo key (same-origin, no assistant) collects nothing
    assert client.post("/api/leads", json=LEAD).status_code == 404
    r = client.post("/api/chat", json={"message": "monorail?"})  # default collection
    other_collection = {**LEAD, "session_id": r.json()["session_id"]}
    assert client.post("/api/leads", json=other_collection, headers=headers).status_code == 404
    off = client.patch("/api/assistants/shoe-shop", json={"leads": {"mode": "off"}}, headers=AUTH)
    assert off.status_code == 200, off.text
    assert client.post("/api/leads", json=LEAD, headers=headers).status_code == 404
    assert client.get("/api/assistants/shoe-shop/leads", headers=AUTH).json() == before


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-email"},
        {"email": "ada@"},
        {"email": "a" * 250 + "@example.com"},
        {"email": "ada@example.com\r\nBcc: eve@example.com"},
        {"consent": False},
        {"consent": None},
        {"consent": "yes"},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "Ada\u202eecalevoL"},
        {"name": "Ada\x00"},
        {"language": "../../etc"},
        {"session_id": "../x"},
        {"admin": True},
    ],
)
def test_invalid_leads_are_422(client: TestClient, change: dict[str, Any]) -> None:
    headers = setup(client)
    before = client.get("/api/assistants/shoe-shop/leads", headers=AUTH).json()
    r = client.post("/api/leads", json={**LEAD, **change}, headers=headers)
    assert r.status_code == 422, r.text
    assert client.get("/api/assistants/shoe-shop/leads", headers=AUTH).json() == before


def test_a_lead_without_consent_field_is_422(client: TestClient) -> None:
    headers = setup(client)
    body = {k: v for k, v in LEAD.items() if k != "consent"}
    assert client.post("/api/leads", json=body, headers=headers).status_code == 422


def test_before_mode_refuses_chat_until_the_conversation_has_a_lead(client: TestClient) -> None:
    headers = setup(client, mode="before")
    r = client.post("/api/chat", json={"message": "returns?"}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "lead_required"
    stream = {"message": "returns?", "stream": True}
    assert client.post("/api/chat", json=stream, headers=headers).json()["code"] == "lead_required"
    session = client.post("/api/leads", json=LEAD, headers=headers).json()["session_id"]
    r = client.post(
        "/api/chat", json={"message": "returns?", "session_id": session}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == session and r.json()["sources"][0]["source"] == "returns.md"
    # another conversation, or the same one through another assistant's key, still needs one
    fresh = client.post("/api/chat", json={"message": "returns?"}, headers=headers)
    assert fresh.status_code == 403


def test_lead_capture_needs_consent_text_in_the_default_language(client: TestClient) -> None:
    for bad in ({"mode": "before"}, {"mode": "after", "consent": {"de": "Ja."}}):
        r = client.post("/api/assistants", json=shop(leads=bad), headers=AUTH)
        assert r.status_code == 422, r.text
    hostile = {"mode": "before", "consent": {"en": "ok\u202e"}}
    assert client.post("/api/assistants", json=shop(leads=hostile), headers=AUTH).status_code == 422


def test_the_webhook_secret_is_shown_once_and_never_public(client: TestClient) -> None:
    headers = setup(client)
    r = client.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH)
    assert r.status_code == 201
    secret = r.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    second = client.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH).json()
    assert second["secret"] != secret
    seen = [
        client.get("/api/assistants", headers=AUTH).text,
        client.get("/api/assistants/shoe-shop", headers=AUTH).text,
        client.get("/api/widget/config", headers=headers).text,
        client.get("/api/assistants/shoe-shop/leads", headers=AUTH).text,
    ]
    for text in seen:
        assert secret not in text and second["secret"] not in text and "whsec_" not in text
    assert client.post("/api/assistants/nobody/webhook-secret", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http
        "https://127.0.0.1/x",
        "https://localhost:8000/x",
        "https://10.1.2.3/x",
        "https://192.168.0.10/x",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://0.0.0.0/x",
        "https://[::1]/x",
        "https://user:pw@hooks.example.com/x",
        "javascript:alert(1)",
        "ftp://hooks.example.com/x",
        "https://hooks.example.com/x#frag",
        "https://hooks.example.com:99999/x",  # a port beyond 65535
    ],
)
def test_webhooks_into_private_networks_are_refused(client: TestClient, url: str) -> None:
    body = shop(leads=leads(webhook_url=url))
    r = client.post("/api/assistants", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert client.post("/api/assistants", json=shop(), headers=AUTH).status_code == 201
    patch = {"leads": leads(webhook_url=url)}
    assert client.patch("/api/assistants/shoe-shop", json=patch, headers=AUTH).status_code == 422


def test_the_webhook_is_signed_and_verifies(private_ok: TestClient) -> None:
    receiver = Receiver([])
    try:
        headers = setup(private_ok, webhook_url=receiver.url)
        secret = private_ok.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH).json()
        session = private_ok.post("/api/leads", json=LEAD, headers=headers).json()["session_id"]
        receiver.wait_for(1)
        [(sent, body)] = receiver.received
        assert verify(secret["secret"], sent["X-Kbchat-Signature"], body)
        assert not verify("whsec_wrong", sent["X-Kbchat-Signature"], body)
        assert not verify(secret["secret"], sent["X-Kbchat-Signature"], body + b" ")
        payload = json.loads(body)
        assert payload == {
            "type": "lead.created",
            "event": "lead.created",
            "assistant": "shoe-shop",
            "session_id": session,
            "name": LEAD["name"],
            "email": LEAD["email"],
            "language": "en",
            "created": payload["created"],
        }
        stamp = int(dict(p.split("=", 1) for p in sent["X-Kbchat-Signature"].split(","))["t"])
        assert abs(stamp - time.time()) < 300
    finally:
        receiver.close()


def test_a_failing_receiver_gets_it_on_the_third_try(private_ok: TestClient) -> None:
    receiver = Receiver([500, 503])
    try:
        headers = setup(private_ok, webhook_url=receiver.url)
        secret = private_ok.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH).json()
        assert private_ok.post("/api/leads", json=LEAD, headers=headers).status_code == 201
        receiver.wait_for(3)
        assert len(receiver.received) == 3
        bodies = {body for _, body in receiver.received}
        assert len(bodies) == 1  # the same event each time
        assert all(
            verify(secret["secret"], h["X-Kbchat-Signature"], b) for h, b in receiver.received
        )
        metrics = _wait_metric(private_ok, 'kbchat_lead_webhooks_total{outcome="delivered"} 1.0')
        assert 'kbchat_lead_webhooks_total{outcome="failed"} 0.0' in metrics
    finally:
        receiver.close()


def test_redirects_are_not_followed_and_failures_are_counted(private_ok: TestClient) -> None:
    target = Receiver([])
    receiver = Receiver([302, 302, 302], location=target.url)
    try:
        headers = setup(private_ok, webhook_url=receiver.url)
        private_ok.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH)
        assert private_ok.post("/api/leads", json=LEAD, headers=headers).status_code == 201
        _wait_metric(private_ok, 'kbchat_lead_webhooks_total{outcome="failed"} 1.0')
        assert len(receiver.received) == 3 and target.received == []
    finally:
        receiver.close()
        target.close()


def test_leads_are_rate_limited(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, server={"rate_limit": "3/minute"})) as client:
        headers = setup(client, mode="after")
        codes = [
            client.post("/api/leads", json=LEAD, headers=headers).status_code for _ in range(4)
        ]
        assert codes == [201, 201, 201, 429]


def _wait_metric(client: TestClient, line: str, timeout: float = 15.0) -> str:
    end = time.monotonic() + timeout
    while True:
        text = client.get("/metrics", headers=AUTH).text
        if line in text or time.monotonic() > end:
            assert line in text
            return text
        time.sleep(0.05)


def test_deliveries_beyond_the_queue_bound_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.server import lead_webhook

    receiver = Receiver([])
    outcomes: list[str] = []
    hooks = lead_webhook.LeadWebhooks(True, outcomes.append, backoff=0.01)
    try:
        assert hooks.send(receiver.url, "whsec_x", {"event": "lead.created"}).result(10) is True
        monkeypatch.setattr(lead_webhook, "MAX_PENDING", 0)
        assert hooks.send(receiver.url, "whsec_x", {"event": "lead.created"}).result(10) is False
        assert outcomes == ["delivered", "failed"] and len(receiver.received) == 1
    finally:
        hooks.close()
        receiver.close()
