"""The console's widget preview: /a/{id}?preview=TOKEN serves the assistant as saved, full page
on or off, with its widget configuration inline (escaped, nothing private), only for a token the
unlocked console minted for that assistant with the current admin key and not yet expired;
any other token gets the page as without one (the one 404 when the full page is off)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.server import preview_token
from tests.test_assistants import ADMIN, AUTH, module_client, shop

HOSTILE = '</script><script>alert("pwned")</script> & <!--'


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with module_client(tmp_path_factory, "console-preview") as c:
        made = c.post(
            "/api/assistants", json=shop(fullpage=False, greeting={"en": HOSTILE}), headers=AUTH
        )
        assert made.status_code == 201, made.text
        other = c.post("/api/assistants", json={"id": "other"}, headers=AUTH)
        assert other.status_code == 201, other.text
        yield c


def inline_config(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="kbchat-preview-config">(.*?)</script>', page
    )
    assert found is not None
    return json.loads(found.group(1))


def test_a_token_shows_the_saved_assistant_even_with_its_full_page_off(
    client: TestClient,
) -> None:
    assert client.get("/a/shoe-shop").status_code == 404  # full page off
    token = preview_token.mint(ADMIN, "shoe-shop")
    r = client.get(f"/a/shoe-shop?preview={token}")
    assert r.status_code == 200
    config = inline_config(r.text)
    assert config["greeting"] == {"en": HOSTILE} and config["color"] == "#ff5500"
    assert "instructions" not in config and "caps" not in config and "keys" not in config
    assert "webhook_url" not in json.dumps(config)
    assert "You are Pip" not in r.text  # the persona never reaches a page
    # the hostile greeting cannot close the data block: exactly two script tags, one </script>
    assert len(re.findall(r"<script\b", r.text)) == 2 and r.text.count("</script>") == 2
    assert "alert(" in r.text and '<script>alert("pwned")' not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]


def bad_tokens() -> list[str]:
    now = time.time()
    good = preview_token.mint(ADMIN, "shoe-shop", now)
    expiry, mac = good.split(".")
    return [
        "",
        "1",
        preview_token.mint(ADMIN, "other", now),  # another assistant's
        preview_token.mint("an-old-admin-key", "shoe-shop", now),  # before the key rotated
        preview_token.mint(ADMIN, "shoe-shop", now - preview_token.PREVIEW_TTL_S - 5),  # expired
        f"{int(expiry) + 3600}.{mac}",  # a longer life, same mac
        f"{expiry}.{'0' * 32}",
        f"{expiry}.{mac.upper()}",
        good + "0",
        good + "&x=" + "a" * 5000,
        "9" * 13 + "." + mac,
    ]


@pytest.mark.parametrize("token", bad_tokens())
def test_any_other_token_gets_the_same_404(client: TestClient, token: str) -> None:
    r = client.get("/a/shoe-shop", params={"preview": token})
    assert r.status_code == 404
    assert r.text == client.get("/a/nobody").text
    assert "kbchat-preview-config" not in r.text


def test_a_token_for_an_unknown_or_malformed_id_gets_the_404(client: TestClient) -> None:
    for assistant in ("ghost", "Shoe-Shop", "a" * 300):
        token = preview_token.mint(ADMIN, assistant)
        assert client.get(f"/a/{assistant}?preview={token}").status_code == 404


def test_a_public_full_page_with_a_stale_token_is_the_public_page(client: TestClient) -> None:
    assert client.patch("/api/assistants/other", json={"fullpage": True}, headers=AUTH).is_success
    stale = preview_token.mint(ADMIN, "other", time.time() - preview_token.PREVIEW_TTL_S - 5)
    r = client.get(f"/a/other?preview={stale}")
    assert r.status_code == 200 and "kbchat-preview-config" not in r.text
    assert r.headers["cache-control"] == "no-cache"


def test_without_an_admin_key_no_token_is_valid() -> None:
    token = preview_token.mint(ADMIN, "shop")
    assert preview_token.verify(ADMIN, "shop", token)
    assert not preview_token.verify(None, "shop", token)
    assert not preview_token.verify("", "shop", token)
