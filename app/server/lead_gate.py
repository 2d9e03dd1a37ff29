"""The chat's side of lead capture: an assistant that asks for contact details `before` the
chat answers only conversations that have them (POST /api/leads starts such a conversation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from app.server import problems
from app.server.chat_gate import run_sync

if TYPE_CHECKING:
    from app.server.access import Caller
    from app.server.leads import Leads

LEAD_REQUIRED = "lead_required"


async def lead_refusal(request: Request, caller: Caller, session_id: str | None) -> Response | None:
    """A 403 problem with `code: lead_required`, or None when the chat may go on."""
    key = caller.assistant
    if key is None or key.settings.leads.mode != "before":
        return None
    leads: Leads = request.app.state.leads
    if await run_sync(lambda: leads.has_lead(session_id, key.assistant)):
        return None
    return problems.problem_response(
        403,
        "this assistant needs your name and email first (POST /api/leads)",
        instance=request.url.path,
        code=LEAD_REQUIRED,
    )
