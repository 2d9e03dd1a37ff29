"""The operator's webhook (an assistant's `leads.webhook_url`): a signed POST of one event
(`lead.created`, `handoff.requested`), retried, never blocking the visitor.

Every body names its event in `type` (and, as lead webhooks always did, in `event`); see
`event_payload`.

The signature is Stripe's scheme: `X-Kbchat-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">` with the assistant's webhook secret, so a receiver can check the body came from
us and refuse old replays by `t` (README: "Lead webhooks").

An admin who can set an assistant's webhook URL must not make the server call its own network
(cloud metadata, Redis, an intranet admin page): the host is resolved and every address must be
global, when the URL is saved and again before each attempt; plain http and private targets
need KBCHAT_WEBHOOK_ALLOW_PRIVATE. Redirects are never followed. What remains is the short gap
between our check and httpx's own lookup (DNS rebinding); a receiver behind an egress proxy
closes it."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Kbchat-Signature"
ATTEMPTS = 3
TIMEOUT_S = 5.0
MAX_WORKERS = 2  # deliveries in flight at once; the rest wait in the executor's queue
MAX_PENDING = 1000  # beyond this many waiting, a new one is dropped (and counted as failed)


class WebhookRefused(ValueError):
    """The URL may not be called from this server (scheme or a non-public address)."""


def check_target(url: str, allow_private: bool) -> None:
    """Raise WebhookRefused unless `url` is https to a host whose every address is global."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise WebhookRefused("the webhook URL must use https")
    if allow_private:
        return
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # ValueError: a port beyond 65535
        raise WebhookRefused(f"the webhook host {host!r} cannot be resolved") from exc
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise WebhookRefused(
                f"the webhook host {host!r} resolves to a private, loopback or link-local "
                "address (KBCHAT_WEBHOOK_ALLOW_PRIVATE allows that)"
            )


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Kbchat-Signature value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached)."""


def event_payload(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of one event: `type` names it (`event` too: the lead webhook's original
    field, kept so existing receivers go on working), then the event's own fields."""
    return {"type": event, "event": event, **fields}


class Webhooks:
    """Delivers in a small thread pool; `on_outcome("delivered" | "failed")` counts each
    delivery once (app.observability.metrics). `backoff` is the first wait between tries,
    doubling after each."""

    def __init__(
        self,
        allow_private: bool,
        on_outcome: Callable[[str], None],
        *,
        backoff: float = 1.0,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.allow_private = allow_private
        self.on_outcome = on_outcome
        self.backoff = backoff
        self.attempts = attempts
        self._pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="kbchat-webhook")
        self._lock = threading.Lock()
        self._pending = 0

    def send(self, url: str, secret: str, payload: dict[str, Any]) -> Future[bool]:
        """Queue one delivery; the future says whether it arrived (tests wait on it)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        with self._lock:
            full = self._pending >= MAX_PENDING
            if not full:
                self._pending += 1
        if full:  # a receiver that is down must not grow our memory without bound
            log.warning("webhook dropped: %d deliveries are waiting", MAX_PENDING)
            self.on_outcome("failed")
            done: Future[bool] = Future()
            done.set_result(False)
            return done
        return self._pool.submit(self._deliver_once, url, secret, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _deliver_once(self, url: str, secret: str, body: bytes) -> bool:
        try:
            return self._deliver(url, secret, body)
        finally:
            with self._lock:
                self._pending -= 1

    def _deliver(self, url: str, secret: str, body: bytes) -> bool:
        host = urlsplit(url).hostname
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=60),
            retry=retry_if_exception_type(DeliveryFailed),  # a refused target stays refused
        )
        try:
            with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
                for attempt in retrying:
                    with attempt:
                        self._post(client, url, secret, body)
        except (RetryError, WebhookRefused) as exc:
            cause = exc.last_attempt.exception() if isinstance(exc, RetryError) else exc
            log.warning("webhook to %s failed after %d tries: %s", host, self.attempts, cause)
            self.on_outcome("failed")
            return False
        except Exception:  # a bug must not kill the pool's thread silently
            log.exception("webhook to %s failed", host)
            self.on_outcome("failed")
            return False
        self.on_outcome("delivered")
        return True

    def _post(self, client: httpx.Client, url: str, secret: str, body: bytes) -> None:
        check_target(url, self.allow_private)  # again: DNS may have changed since it was saved
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kbchat-webhook",
            SIGNATURE_HEADER: signature(secret, body, int(time.time())),
        }
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(type(exc).__name__) from exc
        if not response.is_success:  # a redirect too: never followed
            raise DeliveryFailed(f"HTTP {response.status_code}")


LeadWebhooks = Webhooks  # the name app.server.leads and older code import
