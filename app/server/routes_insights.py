"""Insights over HTTP (admin): top questions, content gaps, source usage, quality over time, and
a refresh of the question clusters. Thin wrappers of app.server.insights.InsightsService; every
filter is checked here, so a bad date, an unknown language or a huge limit is a 422 problem."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

import langcodes
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from app.server import problems
from app.server.access import AdminCaller
from app.server.assistant_schema import SLUG_PATTERN
from app.server.inputs import CollectionName
from app.server.insights import InsightsService
from app.server.insights_quality import Bucket, QualityRow
from app.server.insights_reports import ClusterReport, Filters, SourceUsage, utc_today
from app.server.routes_admin import ADMIN_BEARER

MAX_CLUSTERS = 100
MAX_EXAMPLES = 10
MAX_DOCUMENTS = 500
MAX_DAYS = 366  # the longest period one report reads
DEFAULT_DAYS = 30
REFRESH_WAIT_S = 10.0  # an HTTP call that waits longer risks its client's timeout
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _language(value: str) -> str:
    """A language code as messages store them (ISO 639-1/3, or "und"), and a real one."""
    if not _LANGUAGE.fullmatch(value) or not langcodes.tag_is_valid(value):
        raise ValueError("unknown language: use an ISO 639 code such as 'de' or 'und'")
    return value


Language = Annotated[str, AfterValidator(_language)]
AssistantQuery = Annotated[
    str | None, Query(pattern=SLUG_PATTERN, max_length=64, description="Only this assistant.")
]
CollectionQuery = Annotated[CollectionName | None, Query(description="Only this knowledge base.")]
LanguageQuery = Annotated[
    Language | None, Query(max_length=3, description="Only questions in this language.")
]
SinceQuery = Annotated[date | None, Query(description="From this day (UTC), inclusive.")]
UntilQuery = Annotated[date | None, Query(description="Up to this day (UTC), inclusive.")]


def filters(
    assistant: AssistantQuery = None,
    collection: CollectionQuery = None,
    language: LanguageQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Filters:
    """The report filters; a period longer than MAX_DAYS or ending before it starts is a 422.
    Without dates a report reads the last DEFAULT_DAYS days."""
    until = until or utc_today()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise HTTPException(422, "since must not be after until")
    if (until - since).days + 1 > MAX_DAYS:
        raise HTTPException(422, f"a report reads at most {MAX_DAYS} days")
    return Filters(assistant, collection, language, since, until)


ReportFilters = Annotated[Filters, Depends(filters)]
Limit = Annotated[int, Query(ge=1, le=MAX_CLUSTERS, description="Clusters in the answer.")]
Examples = Annotated[
    int, Query(ge=0, le=MAX_EXAMPLES, description="Example questions per cluster.")
]
OperatorLanguage = Annotated[
    Language | None,
    Query(
        max_length=3,
        description="The operator's language: representatives in it where a cluster has one.",
    ),
]


class Refreshed(BaseModel):
    pending: int = Field(description="Questions still waiting to be clustered.")


def insights_router() -> APIRouter:
    router = APIRouter(prefix="/api/insights", tags=["insights"])
    admin: dict[str, Any] = {
        "dependencies": [Depends(ADMIN_BEARER)],
        "responses": problems.responses(401, 403, 422, 429),
    }

    def service(request: Request) -> InsightsService:
        insights: InsightsService = request.app.state.insights
        return insights

    @router.get("/top-questions", **admin)
    def top_questions(
        request: Request,
        _: AdminCaller,
        f: ReportFilters,
        limit: Limit = 20,
        examples: Examples = 3,
        operator_language: OperatorLanguage = None,
    ) -> list[ClusterReport]:
        """Questions clustered by meaning across languages, largest clusters first (admin)."""
        return service(request).top_questions(
            f, limit=limit, examples=examples, language=operator_language
        )

    @router.get("/content-gaps", **admin)
    def content_gaps(
        request: Request,
        _: AdminCaller,
        f: ReportFilters,
        limit: Limit = 20,
        examples: Examples = 3,
        operator_language: OperatorLanguage = None,
    ) -> list[ClusterReport]:
        """Clusters of questions that found nothing relevant, got a thumbs-down or were handed
        to a person, with examples: the documents to write, and in which languages (admin)."""
        return service(request).content_gaps(
            f, limit=limit, examples=examples, language=operator_language
        )

    @router.get("/sources", **admin)
    def sources(
        request: Request,
        _: AdminCaller,
        f: ReportFilters,
        limit: Annotated[int, Query(ge=1, le=MAX_DOCUMENTS)] = 50,
    ) -> SourceUsage:
        """Documents cited most, and documents never cited, per language (admin)."""
        return service(request).source_usage(f, limit=limit)

    @router.get("/quality", **admin)
    def quality(
        request: Request, _: AdminCaller, f: ReportFilters, bucket: Bucket = "day"
    ) -> list[QualityRow]:
        """Conversations, messages, answered and unanswered questions, feedback and its score,
        handovers: per day or week, language and assistant (admin)."""
        return service(request).quality(f, bucket)

    @router.post("/refresh", **admin)
    def refresh(request: Request, _: AdminCaller) -> Refreshed:
        """Cluster the questions not clustered yet, in the background, and wait up to
        REFRESH_WAIT_S seconds (admin): call again until `pending` is 0. Reports do this too,
        waiting two seconds; `kbchat insights refresh` does all in the foreground."""
        return Refreshed(pending=service(request).catch_up(REFRESH_WAIT_S))

    return router
