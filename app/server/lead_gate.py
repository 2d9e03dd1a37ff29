"""The chat's side of lead capture: an assistant that asks for contact details `before` the
chat answers only conversations that have them (POST /api/leads starts such a conversation);
one that asks `after` N answers gives answer N+1 only once the conversation has them (POST
/api/leads with its session id). Refusals are a 403 problem with `code: lead_required`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from app.server import problems
from app.server.chat_gate import run_sync

if TYPE_CHECKING:
    from app.server.access import Caller
    from app.server.leads import Leads
    from app.server.services import Services

LEAD_REQUIRED = "lead_required"


async def lead_refusal(request: Request, caller: Caller, session_id: str | None) -> Response | None:
    """A 403 problem with `code: lead_required`, or None when the chat may go on."""
    key = caller.assistant
    if key is None or key.settings.leads.mode == "off":
        return None
    config = key.settings.leads
    leads: Leads = request.app.state.leads
    if config.mode == "after":
        # the widget asks after N answers, but only the server can make it stick: answer N+1
        # waits for the lead. A new conversation (no session id) has no answers yet.
        if not session_id:
            return None
        services: Services = request.app.state.services
        answers = await run_sync(lambda: services.conversations.answers(session_id))
        if answers < config.after_messages:
            return None
    if await run_sync(lambda: leads.has_lead(session_id, key.assistant)):
        return None
    when = "first" if config.mode == "before" else "to go on"
    return problems.problem_response(
        403,
        f"this assistant needs your name and email {when} (POST /api/leads)",
        instance=request.url.path,
        code=LEAD_REQUIRED,
    )
