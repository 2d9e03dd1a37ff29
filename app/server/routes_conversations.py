"""Stored conversations over HTTP for the operator (admin key): the filtered list, a transcript,
the streamed export, and erasure by conversation or by a lead's email. Thin wrappers around
app.server.conversation_admin.ConversationAdmin; errors are problem details."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.server import problems
from app.server.access import AdminCaller
from app.server.assistant_schema import LANGUAGE_PATTERN, SLUG_PATTERN
from app.server.conversation_admin import (
    MAX_LIMIT,
    ConversationAdmin,
    ConversationPage,
    Transcript,
)
from app.server.conversation_export import MEDIA_TYPES, csv_lines, file_name, json_lines
from app.server.conversation_query import (
    MAX_CURSOR,
    MAX_Q,
    ConversationFilter,
    Cursor,
    Rating,
    decode_cursor,
    end_of,
    start_of,
)
from app.server.inputs import CollectionName, Text
from app.server.routes_admin import ADMIN_BEARER

log = logging.getLogger(__name__)
MAX_EMAIL = 254
ConversationId = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The conversation's session id.")
]
Moment = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO 8601 date (a whole day) or date and time (UTC unless it says).",
    ),
]


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[EmailStr, Field(max_length=MAX_EMAIL)]


class Erased(BaseModel):
    erased: int = Field(description="How many conversations were erased.")


def _moment(name: str, value: str | None) -> date | datetime | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name}: expected an ISO 8601 date or date and time") from None


def conversation_filter(
    assistant: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=64)] = None,
    collection: Annotated[CollectionName | None, Query(max_length=200)] = None,
    language: Annotated[
        str | None,
        Query(pattern=LANGUAGE_PATTERN, max_length=35, description="Any question in it."),
    ] = None,
    since: Moment = None,
    until: Moment = None,
    rating: Annotated[
        Rating | None, Query(description="An answer rated up / down; none: no feedback.")
    ] = None,
    unanswered: Annotated[
        bool | None, Query(description="true: some answer found nothing relevant.")
    ] = None,
    handed_over: Annotated[bool | None, Query(description="true: handed to a person.")] = None,
    lead: Annotated[bool | None, Query(description="true: the visitor left a contact.")] = None,
    q: Annotated[
        Text | None,
        Query(min_length=1, max_length=MAX_Q, description="Case-insensitive text of a message."),
    ] = None,
) -> ConversationFilter:
    """The list's and the export's filters; `since` and `until` are on the last message."""
    start, end = _moment("since", since), _moment("until", until)
    return ConversationFilter(
        assistant=assistant,
        collection=collection,
        language=language,
        since=start_of(start) if start is not None else None,
        until=end_of(end) if end is not None else None,
        rating=rating,
        unanswered=unanswered,
        handed_over=handed_over,
        lead=lead,
        q=q,
    )


Filters = Annotated[ConversationFilter, Depends(conversation_filter)]


def conversations_router() -> APIRouter:
    router = APIRouter(
        prefix="/api/conversations",
        tags=["conversations"],
        dependencies=[Depends(ADMIN_BEARER)],
        responses=problems.responses(401, 403, 422, 429),
    )

    def admin(request: Request) -> ConversationAdmin:
        service: ConversationAdmin = request.app.state.conversation_admin
        return service

    @router.get("", summary="List conversations")
    def list_conversations(
        request: Request,
        _: AdminCaller,
        filters: Filters,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[
            str | None, Query(max_length=MAX_CURSOR, description="A page's `next`.")
        ] = None,
    ) -> ConversationPage:
        """Conversations, newest last message first, with their counts, languages, first
        question, ratings, unanswered answers, handoff state and whether a lead was left."""
        after: Cursor | None = None
        if cursor is not None:
            try:
                after = decode_cursor(cursor)
            except ValueError as exc:
                raise HTTPException(422, f"cursor: {exc}") from None
        return admin(request).list_conversations(filters, limit, after)

    @router.get(
        "/export",
        summary="Export conversations",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "csv: one row per message (columns: session_id, assistant, "
                "collection, message_id, role, language, created, content, grounded, feedback, "
                "sources as `file#n; ...`; cells a spreadsheet would run as formulas start with "
                "'). json: JSON Lines, one conversation per line (the list's fields and "
                "`messages` as in the transcript).",
                "content": {"text/csv": {}, "application/x-ndjson": {}},
            }
        },
    )
    def export(
        request: Request,
        _: AdminCaller,
        filters: Filters,
        format: Annotated[Literal["csv", "json"], Query()] = "csv",
    ) -> StreamingResponse:
        """Every conversation the filters match, streamed as an attachment, conversations in
        session id order (each batch read in its own short transaction), messages in order."""
        batches = admin(request).export(filters)
        lines = csv_lines(batches) if format == "csv" else json_lines(batches)
        log.info("export of conversations as %s started", format)
        return StreamingResponse(
            lines,
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{file_name(format)}"'},
        )

    @router.post(
        "/erase",
        summary="Erase a visitor's conversations by email",
        responses=problems.responses(400, 413),
    )
    def erase_by_email(request: Request, body: EraseRequest, _: AdminCaller) -> Erased:
        """Erase every conversation whose lead gave this email (case-insensitive), with its
        messages, feedback, lead and handoffs (a privacy request); 0 when there is none."""
        return Erased(erased=admin(request).erase_by_email(str(body.email)))

    @router.get("/{session_id}", summary="Read a transcript", responses=problems.responses(404))
    def transcript(request: Request, session_id: ConversationId, _: AdminCaller) -> Transcript:
        """The conversation's messages with their sources, citations, feedback and errors, its
        lead and its handoffs."""
        found = admin(request).transcript(session_id)
        if found is None:
            raise HTTPException(404, "no such conversation")
        return found

    @router.delete(
        "/{session_id}",
        status_code=204,
        summary="Erase a conversation",
        responses=problems.responses(404),
    )
    def erase(request: Request, session_id: ConversationId, _: AdminCaller) -> Response:
        """Erase the conversation and everything linked to it (messages, feedback, lead,
        handoffs) for good."""
        if not admin(request).erase(session_id):
            raise HTTPException(404, "no such conversation")
        return Response(status_code=204)

    return router
