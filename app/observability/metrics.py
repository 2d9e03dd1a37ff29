"""kbchat's Prometheus metrics, in a registry of their own per app (two apps in one process,
as in tests, never share counters). Every label has a bounded set of values: route templates,
never raw paths; known methods; LLM error codes; sync actions."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.chat.types import LLM_ERRORS, ChatResult, Token

if TYPE_CHECKING:
    from ingestion.sync import SyncReport

log = logging.getLogger("kbchat.chat")
E = TypeVar("E")
# An answer takes from well under a second (extractive) to the LLM deadline (90 s by default).
CHAT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 90, 120)
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SYNC_ACTIONS = ("added", "updated", "removed", "failed", "skipped")


class Metrics:
    """The metrics and the hooks that move them; `exposition()` is what GET /metrics serves."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "kbchat_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "kbchat_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ["method", "route"],
            registry=r,
        )
        self.rate_limited = Counter(
            "kbchat_rate_limited",
            "Requests refused for a rate limit (429), by route; the Web UI's chat is route 'ui'.",
            ["route"],
            registry=r,
        )
        self.chat_seconds = Histogram(
            "kbchat_chat_duration_seconds",
            "One chat answer, start to end (after any wait for a chat slot), by mode.",
            ["mode"],
            buckets=CHAT_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "kbchat_chat_first_token_seconds",
            "From the start of an answer to its first text, by mode.",
            ["mode"],
            buckets=CHAT_BUCKETS,
            registry=r,
        )
        self.retrieval_seconds = Histogram(
            "kbchat_retrieval_duration_seconds",
            "The search for passages of one chat answer (embedding the question included).",
            buckets=RETRIEVAL_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "kbchat_llm_errors",
            "Answers the LLM failed (kbchat answered with its fallback), by error code.",
            ["kind"],
            registry=r,
        )
        self.ingest_documents = Counter(
            "kbchat_ingest_documents",
            "Documents handled by syncs of this process, by action.",
            ["action"],
            registry=r,
        )
        self.ingest_chunks = Counter(
            "kbchat_ingest_chunks",
            "Chunks written to or removed from the store by syncs of this process.",
            ["action"],
            registry=r,
        )
        self.query_batch = Histogram(
            "kbchat_query_batch_size",
            "Questions embedded together in one forward pass by the query batcher.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.query_cached = Counter(
            "kbchat_query_vectors_cached",
            "Question embeddings answered from the batcher's cache of recent queries.",
            registry=r,
        )
        self.lead_webhooks = Counter(
            "kbchat_lead_webhooks",
            "Lead webhook deliveries, by outcome (delivered, or failed after its retries).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("delivered", "failed"):
            self.lead_webhooks.labels(outcome)
        for kind in LLM_ERRORS:  # every series exists from the start, at 0
            self.llm_errors.labels(kind)
        for action in SYNC_ACTIONS:
            self.ingest_documents.labels(action)
        for action in ("written", "removed"):
            self.ingest_chunks.labels(action)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def observe_chat(self, events: Iterator[E]) -> Iterator[E]:
        """Pass a chat's events through, timing them: the first non-empty Token is the first
        token; the event carrying the result (Done, Completed) ends the answer. One INFO record
        sums the answer up; an abandoned stream (client gone) is not counted."""
        started = time.perf_counter()
        first: float | None = None
        for event in events:
            if first is None and isinstance(event, Token) and event.text:
                first = time.perf_counter() - started
            result = getattr(event, "result", None)
            if isinstance(result, ChatResult):
                self._answered(result, time.perf_counter() - started, first)
            yield event

    def _answered(self, result: ChatResult, seconds: float, first: float | None) -> None:
        self.chat_seconds.labels(result.mode).observe(seconds)
        if first is not None:
            self.first_token_seconds.labels(result.mode).observe(first)
        if not result.small_talk:  # a greeting is answered without retrieval
            self.retrieval_seconds.observe(result.retrieval_ms / 1000)
        if result.error is not None:
            self.llm_errors.labels(result.error).inc()
        facts: dict[str, Any] = {
            "chat_mode": result.mode,
            "language": result.language,
            "sources": len(result.sources),
            "llm_error": result.error,
            "retrieval_ms": result.retrieval_ms,
            "first_token_ms": None if first is None else round(first * 1000, 1),
            "duration_ms": round(seconds * 1000, 1),
        }
        log.info(
            "chat answered: %s",
            " ".join(f"{k}={v}" for k, v in facts.items()),
            extra=facts,
        )

    def synced(self, report: SyncReport) -> None:
        for action in SYNC_ACTIONS:
            self.ingest_documents.labels(action).inc(len(getattr(report, action)))
        self.ingest_chunks.labels("written").inc(report.chunks_written)
        self.ingest_chunks.labels("removed").inc(report.chunks_removed)
