"""Telling the operator about a new handoff: the assistant's signed webhook (the lead webhook's
URL, secret, retries and SSRF checks, app.server.lead_webhook) with a `handoff.requested` event,
and an email to the assistant's `handoff.notify_email` through KBCHAT_SMTP_HOST.

Neither ever blocks the visitor's request: webhooks go to their pool, mail to a one-thread
queue of its own; failures are logged (and counted for webhooks), never raised."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from app.server.lead_webhook import Webhooks, event_payload

if TYPE_CHECKING:
    from app.server.assistant_schema import AssistantSettings
    from app.settings import SmtpSettings

log = logging.getLogger(__name__)
HANDOFF_REQUESTED = "handoff.requested"
SMTP_TIMEOUT_S = 10.0
MAX_PENDING_MAILS = 200  # a mail server that is down must not grow our memory without bound


class Mailer:
    """Sends plain-text mail through one SMTP server, one at a time, in a thread of its own."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kbchat-smtp")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def configured(self) -> bool:
        return bool(self.smtp.host)

    def send(self, to: str, subject: str, body: str) -> Future[bool]:
        """Queue one mail; the future says whether the server took it (tests wait on it)."""
        with self._lock:
            full = self._pending >= MAX_PENDING_MAILS
            if not full:
                self._pending += 1
        if full or not self.configured:
            if full:
                log.warning("handoff mail dropped: %d mails are waiting", MAX_PENDING_MAILS)
            done: Future[bool] = Future()
            done.set_result(False)
            return done
        return self._pool.submit(self._send_once, to, subject, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _send_once(self, to: str, subject: str, body: str) -> bool:
        try:
            self._deliver(to, subject, body)
            return True
        except Exception as exc:  # logged, never raised: the visitor is long gone
            log.warning("handoff mail to the operator failed: %s", type(exc).__name__)
            return False
        finally:
            with self._lock:
                self._pending -= 1

    def _deliver(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()  # refuses CR/LF in headers: no header injection
        message["From"] = self.smtp.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.smtp.host or "", self.smtp.port, timeout=SMTP_TIMEOUT_S) as server:
            if self.smtp.starttls:
                server.starttls(context=ssl.create_default_context())
            if self.smtp.username:
                password = self.smtp.password.get_secret_value() if self.smtp.password else ""
                server.login(self.smtp.username, password)
            server.send_message(message)


class HandoffNotifier:
    """`requested(...)`: a new handoff, told to the webhook and by email where configured."""

    def __init__(self, webhooks: Webhooks, mailer: Mailer) -> None:
        self.webhooks = webhooks
        self.mailer = mailer
        self.sent: list[Future[bool]] = []  # the last deliveries, for tests to wait on

    def requested(
        self,
        *,
        assistant: str,
        config: AssistantSettings,
        secret: str | None,
        payload: dict[str, Any],
    ) -> None:
        futures: list[Future[bool]] = []
        url = config.leads.webhook_url
        if url:
            if secret:
                body = event_payload(HANDOFF_REQUESTED, {"assistant": assistant, **payload})
                futures.append(self.webhooks.send(url, secret, body))
            else:
                log.warning("assistant %r has a webhook URL but no secret yet", assistant)
        to = config.handoff.notify_email
        if to and self.mailer.configured:
            futures.append(self.mailer.send(to, *mail_text(assistant, payload)))
        self.sent = futures

    def close(self) -> None:
        self.mailer.close()


def mail_text(assistant: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and body: plain text, the visitor's words only in the body (never a header)."""
    subject = f"kbchat: a visitor of {assistant} asks for a person"
    question = " ".join(str(payload.get("question") or "").split())[:500]
    lines = [
        f"Assistant: {assistant}",
        f"Conversation: {payload['session_id']}",
        f"Reason: {payload['reason']}",
        f"Language: {payload.get('language') or '-'}",
        f"Outside opening hours: {'yes' if payload.get('offline') else 'no'}",
        f"First question: {question or '-'}",
        "",
        "Answer it with POST /api/conversations/{id}/reply (admin key), or in the console.",
    ]
    return subject, "\n".join(lines) + "\n"
