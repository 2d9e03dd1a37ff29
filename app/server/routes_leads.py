"""Leads over HTTP: the widget's `POST /api/leads` (widget key, like chat), the admin's list per
assistant, and the admin's webhook secret (shown once). Errors are problem details."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field
from slowapi import Limiter

from app.server import problems
from app.server.access import AdminCaller, ChatCaller
from app.server.assistant_schema import LanguageCode
from app.server.inputs import SessionId, Text
from app.server.leads import MAX_LIST, LeadExists, LeadOut, Leads, NoLeadCapture
from app.server.routes_admin import ADMIN_BEARER
from app.server.routes_assistants import AssistantId

MAX_LEAD_NAME = 200
MAX_EMAIL = 254  # RFC 5321's path limit; email-validator refuses longer too


def _plain_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("name must not be empty")
    if any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co"} for c in value):
        raise ValueError("name must not contain control characters")
    return value


class LeadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: SessionId | None = Field(
        None, description="The conversation; unset: a new one, whose id the answer gives."
    )
    name: Annotated[
        Text, Field(min_length=1, max_length=MAX_LEAD_NAME), AfterValidator(_plain_name)
    ]
    email: Annotated[EmailStr, Field(max_length=MAX_EMAIL)]
    consent: Literal[True] = Field(description="The visitor ticked the consent checkbox.")
    language: LanguageCode = Field("en", description="The language the form was shown in.")


class LeadCreated(BaseModel):
    id: int
    session_id: str = Field(description="Chat with this session id from now on.")


class WebhookSecret(BaseModel):
    secret: str = Field(description="Signs the webhook; shown this once, a new call replaces it.")


def leads_router(limiter: Limiter, rate: str) -> APIRouter:
    router = APIRouter(tags=["leads"])
    admin: dict[str, Any] = {
        "dependencies": [Depends(ADMIN_BEARER)],
        "responses": problems.responses(401, 403, 404, 422, 429),
    }

    def store(request: Request) -> Leads:
        leads: Leads = request.app.state.leads
        return leads

    @router.post(
        "/api/leads",
        status_code=201,
        responses=problems.responses(400, 401, 403, 404, 409, 413, 422, 429),
    )
    @limiter.limit(rate)
    def create_lead(request: Request, body: LeadRequest, caller: ChatCaller) -> LeadCreated:
        """The visitor's name and email, with consent, for their conversation (widget key as
        for /api/chat). 404 when the key's assistant does not collect leads or the session is
        unknown; 409 when the conversation already has one. The operator's webhook is notified
        in the background."""
        if caller.assistant is None or caller.widget is None:
            raise HTTPException(404, "this widget key does not collect contact details")
        try:
            lead = store(request).capture(
                caller.assistant,
                caller.widget.collection,
                body.session_id,
                body.name,
                str(body.email),
                body.language,
            )
        except NoLeadCapture as exc:
            raise HTTPException(404, str(exc)) from exc
        except LeadExists as exc:
            raise HTTPException(409, str(exc)) from exc
        return LeadCreated(id=lead.id, session_id=lead.session_id)

    @router.get("/api/assistants/{assistant}/leads", tags=["assistants"], **admin)
    def list_leads(
        request: Request,
        assistant: AssistantId,
        _: AdminCaller,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    ) -> list[LeadOut]:
        """The assistant's leads, newest first (admin); they outlive a deleted assistant."""
        return store(request).of_assistant(assistant, limit)

    @router.post(
        "/api/assistants/{assistant}/webhook-secret", status_code=201, tags=["assistants"], **admin
    )
    def webhook_secret(request: Request, assistant: AssistantId, _: AdminCaller) -> WebhookSecret:
        """A new secret for the assistant's lead webhook (admin), in this answer only; the
        previous one stops signing at once."""
        secret = store(request).new_secret(assistant)
        if secret is None:
            raise HTTPException(404, f"no assistant {assistant!r}")
        return WebhookSecret(secret=secret)

    return router
