"""Whose conversation a widget caller may continue, read or rate: only its own assistant's (or,
for a KBCHAT_WIDGET_KEYS key, one of its knowledge base started without an assistant).

Two assistants may answer from the same knowledge base; a session id that leaks from one (a
shared link, a log, a screenshot) must not let the other's visitors read or continue it. So a
session of another assistant is answered exactly like one that does not exist (404)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.server.chat_gate import run_sync

if TYPE_CHECKING:
    from app.server.access import Caller
    from app.server.db import ConversationStore, SessionOwner


def caller_assistant(caller: Caller) -> str | None:
    """The assistant a caller's new conversations are recorded under (None: no assistant)."""
    return caller.assistant.assistant if caller.assistant is not None else None


def may_use(caller: Caller, owner: SessionOwner) -> bool:
    """True when `caller` may see this session. Callers without a widget key (the same-site
    API, an admin) see every session, as before assistants existed."""
    if caller.widget is None:
        return True
    return owner.collection == caller.widget.collection and owner.assistant == caller_assistant(
        caller
    )


async def foreign_session(
    conversations: ConversationStore, caller: Caller, session_id: str | None
) -> bool:
    """True when `session_id` names an existing session this caller may not continue: of
    another assistant, or, for a caller without a widget key, of an assistant it does not name
    (Services.chat refuses those too; checking first turns it into a 404 before any stream)."""
    if not session_id:
        return False
    owner = await run_sync(lambda: conversations.owner(session_id))
    if owner is None:
        return False  # unknown: a new conversation starts, as before
    if caller.widget is None:
        return owner.assistant != caller_assistant(caller)
    return not may_use(caller, owner)
