"""KBCHAT_REDACT_CONTACTS: emails and phone numbers (several countries and formats) become
placeholders in storage only; years, prices, dates, order and version numbers stay; the
conversation read back for the next turn is the redacted one."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.server.db import ConversationStore
from app.server.redaction import redact_contacts
from tests.conversation_seed import answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to ada.lovelace+kb@example.co.uk please", "Write to [email] please"),
        ("Mail: JOSE@correo.es.", "Mail: [email]."),
        ("Call +1 415-555-2671 today", "Call [phone] today"),
        ("US: (415) 555-2671", "US: [phone]"),
        ("US: 415.555.2671", "US: [phone]"),
        ("Berlin: +49 30 1234567", "Berlin: [phone]"),
        ("Festnetz 030 1234567 bitte", "Festnetz [phone] bitte"),
        ("London +44 20 7946 0958", "London [phone]"),
        ("Paris 06 12 34 56 78", "Paris [phone]"),
        ("Madrid +34 612 34 56 78", "Madrid [phone]"),
        ("Tokyo +81 3-1234-5678", "Tokyo [phone]"),
        ("mail a@b.io or call +33 1 42 68 53 00", "mail [email] or call [phone]"),
    ],
)
def test_contacts_are_replaced(text: str, expected: str) -> None:
    assert redact_contacts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Founded in 1901, rebuilt in 2024.",
        "It costs $1,299.00 or 1.299,00 € (was 1499).",
        "Order 123456789 shipped; order #20240517 too.",
        "Delivered on 2024-05-17, 17.05.2024 or 05/17/2024.",
        "Update to version 1.2.3 or 10.0.19045.",
        "Invoice INV-2024-00123, ISBN 978-3-16-148410-0, zip 10115 Berlin.",
        "Pi is 3.14159; 1 800 000 people; @support on social media.",
        "no digits and no at sign",
    ],
)
def test_numbers_that_are_not_contacts_stay(text: str) -> None:
    assert redact_contacts(text) == text


def test_long_text_is_redacted_throughout() -> None:
    text = ("filler words here. " * 3000) + "end: +49 30 1234567"
    assert redact_contacts(text).endswith("end: [phone]")


def test_storage_is_redacted_only_when_switched_on(tmp_path: Path) -> None:
    question = "I am ada@example.com, call me on +49 30 1234567"
    reply = answer("We will write to ada@example.com [1].")
    plain = ConversationStore(f"sqlite:///{tmp_path / 'plain.sqlite3'}")
    session = plain.open_session(None, "default")
    plain.add_exchange(session, question, reply)
    assert [t.content for t in plain.history(session)] == [question, reply.answer]

    store = ConversationStore(f"sqlite:///{tmp_path / 'redacted.sqlite3'}", redact=True)
    session = store.open_session(None, "default")
    store.add_exchange(session, question, reply)
    assert reply.answer == "We will write to ada@example.com [1]."  # the visitor's copy
    stored = [m["content"] for m in store.conversation(session)["messages"]]
    assert stored == ["I am [email], call me on [phone]", "We will write to [email] [1]."]
    assert [t.content for t in store.history(session)] == stored  # the next turn's history
    plain.engine.dispose()
    store.engine.dispose()
