"""The full-page assistant at /a/{id}: the page (escaped branding, strict CSP, one 404 for every
id it does not serve) and its key-less chats (X-Kbchat-Assistant, same-origin only, with the
assistant's collection, persona and caps). Real Chroma, the toy embedder, the loopback LLM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import AUTH, SHOP, make_app, new_key, shop

SELF = "http://testserver"  # the TestClient's Host: same-origin requests carry this Origin
PAGE = {"X-Kbchat-Assistant": "shoe-shop"}
HOSTILE_NAME = '</title><script>alert("pwned")</script> Pip & "Co"'


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as c:
        yield c


def create(client: TestClient, **fields: Any) -> None:
    r = client.post("/api/assistants", json=shop(**{"fullpage": True, **fields}), headers=AUTH)
    assert r.status_code == 201, r.text


def chat(client: TestClient, headers: dict[str, str], session: str | None = None) -> Any:
    body = {"message": "How do I return shoes?", "session_id": session}
    return client.post("/api/chat", json=body, headers=headers)


# ------------------------------------------------------------------------------------ the page


def test_the_page_shows_the_assistant_escaped_under_a_strict_csp(client: TestClient) -> None:
    create(client, name=HOSTILE_NAME, default_language="pt-BR", theme="light")
    r = client.get("/a/shoe-shop")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    title = re.search(r"<title>(.*)</title>", html)
    assert title is not None
    assert title.group(1) == (
        "&lt;/title&gt;&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"
        " Pip &amp; &quot;Co&quot;"
    )
    assert "<script>" not in html and 'alert("pwned")' not in html
    # one script: the widget from this server, in page mode for this assistant
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert len(scripts) == 1
    assert 'src="/widget.js"' in scripts[0] and 'data-mode="page"' in scripts[0]
    assert 'data-assistant="shoe-shop"' in scripts[0] and 'data-color="#ff5500"' in scripts[0]
    assert '<html lang="pt-BR" dir="ltr">' in html
    assert "<style" not in html and " style=" not in html  # the CSP allows no inline style
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/a/nobody",  # unknown
        "/a/shoe-shop-2",  # unknown, like an existing one
        "/a/disabled",  # exists, full page off
        "/a/Shoe-Shop",  # not a slug
        "/a/" + "a" * 300,
        "/a/%3Cscript%3E",
        "/a/shoe-shop%00",
    ],
)
def test_unknown_disabled_or_malformed_ids_get_the_same_404(client: TestClient, path: str) -> None:
    create(client)
    create(client, id="disabled", fullpage=False)
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in r.headers
    assert r.text == client.get("/a/nobody").text  # nothing tells them apart
    assert "shoe-shop" not in r.text and "disabled" not in r.text and "<script" not in r.text


def test_a_right_to_left_default_language_sets_the_pages_direction(client: TestClient) -> None:
    create(client, default_language="ar", greeting={"ar": "مرحبًا"})
    assert '<html lang="ar" dir="rtl">' in client.get("/a/shoe-shop").text


def test_the_full_page_can_be_switched_off_again(client: TestClient) -> None:
    create(client)
    assert client.get("/a/shoe-shop").status_code == 200
    assert chat(client, PAGE).status_code == 200
    patch = client.patch("/api/assistants/shoe-shop", json={"fullpage": False}, headers=AUTH)
    assert patch.status_code == 200 and patch.json()["fullpage"] is False
    assert client.get("/a/shoe-shop").status_code == 404
    assert chat(client, PAGE).status_code == 403


# ------------------------------------------------------------------------- its chats


def test_same_origin_chats_get_the_assistants_collection_config_and_sessions(
    client: TestClient,
) -> None:
    create(client)
    browser = {**PAGE, "Origin": SELF, "Sec-Fetch-Site": "same-origin"}
    r = chat(client, browser)
    assert r.status_code == 200, r.text
    assert r.json()["sources"][0]["source"] == "returns.md"  # the assistant's knowledge base
    session = r.json()["session_id"]
    # a GET from the page carries Sec-Fetch-Site but no Origin
    get = {**PAGE, "Sec-Fetch-Site": "same-origin"}
    config = client.get("/api/widget/config", headers=get)
    assert config.status_code == 200 and config.json()["assistant"] == "shoe-shop"
    assert "instructions" not in config.json() and "fullpage" not in config.json()
    assert client.get(f"/api/sessions/{session}", headers=get).status_code == 200
    other = client.post("/api/chat", json={"message": "x", "collection": "default"}, headers=PAGE)
    assert other.status_code == 403  # bound to its collection like its widget keys


@pytest.mark.parametrize(
    "hostile",
    [
        {"Origin": "https://evil.test"},
        {"Origin": SHOP},  # even a site one of its widget keys allows: that site has the key
        {"Origin": "null"},  # sandboxed frames, data: URLs
        {"Origin": "http://testserver.evil.test"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
        {"Origin": SELF, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_other_sites_cannot_use_the_full_pages_identity(
    client: TestClient, hostile: dict[str, str]
) -> None:
    create(client)
    new_key(client)  # SHOP has a key of its own
    headers = {**PAGE, **hostile}
    r = chat(client, headers)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/api/widget/config", headers=headers).status_code == 403
    assert client.post(
        "/api/feedback",
        json={"session_id": "a" * 32, "message_id": 1, "rating": "up"},
        headers=headers,
    ).status_code in {403, 422}


def test_a_preflight_cannot_get_the_assistant_header_allowed(client: TestClient) -> None:
    create(client)
    new_key(client)  # SHOP gets CORS answers for its key...
    r = client.options(
        "/api/chat",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-kbchat-assistant",
        },
    )
    # ...but never for the full page's header: the browser does not send the request
    assert "x-kbchat-assistant" not in r.headers.get("access-control-allow-headers", "").lower()
    assert r.status_code == 400


@pytest.mark.parametrize("assistant", ["disabled", "nobody", "", "../shoe-shop", "x" * 200])
def test_an_assistant_without_a_full_page_is_refused(client: TestClient, assistant: str) -> None:
    create(client, id="disabled", fullpage=False)
    r = chat(client, {"X-Kbchat-Assistant": assistant})
    assert r.status_code == 403
    assert r.json()["detail"] == "no full-page assistant by that name"


def test_the_assistants_caps_apply_to_its_page(client: TestClient) -> None:
    create(client, caps={"session_messages": 2, "daily_messages": 3})
    first = chat(client, PAGE)
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    assert chat(client, PAGE, session).status_code == 200
    over = chat(client, PAGE, session)
    assert over.status_code == 429 and "conversation" in over.json()["detail"]
    assert chat(client, PAGE).status_code == 200
    day = chat(client, PAGE)
    assert day.status_code == 429 and "daily" in day.json()["detail"]
    # a widget key of the same assistant has caps of its own, as every key does
    key = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}
    assert chat(client, key).status_code == 200


def test_the_page_chats_with_the_assistants_persona_and_model(tmp_path: Path) -> None:
    with (
        OpenAIStub(reply=condensing("Within 30 days [1].")) as stub,
        TestClient(make_app(tmp_path, stub)) as client,
    ):
        create(client, model="stub-large")
        r = chat(client, {**PAGE, "Origin": SELF})
        assert r.status_code == 200, r.text
        assert stub.requests[-1]["model"] == "stub-large"
        system = stub.requests[-1]["messages"][0]["content"]
        assert "You are Pip, the shoe shop's cheerful helper." in system
