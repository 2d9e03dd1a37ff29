"""A new handoff tells the operator: the assistant's webhook gets a signed `handoff.requested`
event (received by a real HTTP server on loopback), and its notify_email gets a mail through a
real SMTP server on loopback (aiosmtpd), neither blocking the visitor's request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from tests.openai_stub import OpenAIStub, condensing
from tests.services import free_port
from tests.test_assistants import AUTH, SHOP, new_key, shop
from tests.test_handoff import build_app, chat
from tests.test_leads import Receiver, verify


class Inbox:
    """aiosmtpd's handler: keeps every mail it is given."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while len(self.mails) < count and time.monotonic() < end:
            time.sleep(0.02)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_webhook_and_mail_on_a_new_handoff(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    receiver = Receiver([])
    smtp_settings = {
        "host": "127.0.0.1",
        "port": port,
        "from": "kbchat@example.com",
        "starttls": False,
    }
    try:
        with (
            OpenAIStub(reply=condensing("Within 30 days [1].")) as stub,
            TestClient(
                build_app(tmp_path, stub, webhook_allow_private=True, smtp=smtp_settings)
            ) as client,
        ):
            body = shop(
                leads={"mode": "off", "webhook_url": receiver.url},
                handoff={"enabled": True, "notify_email": "ops@example.com"},
            )
            assert client.post("/api/assistants", json=body, headers=AUTH).status_code == 201
            secret = client.post("/api/assistants/shoe-shop/webhook-secret", headers=AUTH).json()[
                "secret"
            ]
            headers = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}
            question = "How do returns work?\r\nBcc: victim@example.com"
            session = chat(client, headers, question)["session_id"]
            r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
            assert r.json()["state"] == "waiting"
            client.post("/api/handoff", json={"session_id": session}, headers=headers)  # again

            receiver.wait_for(1)
            inbox.wait_for(1)
            time.sleep(0.3)  # a second notification for the repeated request would be here now
            [(sent, raw)] = receiver.received
            assert verify(secret, sent["X-Kbchat-Signature"], raw)
            assert not verify("whsec_wrong", sent["X-Kbchat-Signature"], raw)
            event = json.loads(raw)
            assert event["type"] == "handoff.requested" and event["event"] == "handoff.requested"
            assert event["assistant"] == "shoe-shop" and event["session_id"] == session
            assert event["reason"] == "button" and event["question"] == question
            assert event["offline"] is False

            [(to, mail)] = inbox.mails
            assert to == ["ops@example.com"]
            assert mail["From"] == "kbchat@example.com"
            assert "shoe-shop" in mail["Subject"] and mail["Bcc"] is None
            text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
            assert session in text and "How do returns work? Bcc: victim@example.com" in text
    finally:
        receiver.close()


def test_a_mail_server_that_is_down_does_not_fail_the_visitor(tmp_path: Path) -> None:
    smtp_settings = {"host": "127.0.0.1", "port": free_port(), "starttls": False}
    with (
        OpenAIStub(reply=condensing("Within 30 days [1].")) as stub,
        TestClient(build_app(tmp_path, stub, smtp=smtp_settings)) as client,
    ):
        body = shop(handoff={"enabled": True, "notify_email": "ops@example.com"})
        assert client.post("/api/assistants", json=body, headers=AUTH).status_code == 201
        headers = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}
        session = chat(client, headers, "How do returns work?")["session_id"]
        r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
        assert r.status_code == 200 and r.json()["state"] == "waiting"
        [sent] = client.app.state.handoffs.notifier.sent  # type: ignore[attr-defined]
        assert sent.result(15) is False  # logged, not raised
