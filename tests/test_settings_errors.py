"""A bad KBCHAT_* value is one line naming the variable; an unknown one is a warning; a busy port
is refused before anything loads. The real `kbchat` entry point, in a folder of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def kbchat(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m app` with no KBCHAT_* from the caller and no repo `.env` (cwd is tmp_path)."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("KBCHAT_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=tmp_path,
        env={
            **clean,
            "PYTHONPATH": str(REPO),
            "KBCHAT_DATA_DIR": str(tmp_path / "data"),
            "COLUMNS": "200",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KBCHAT_RETRIEVAL_K", "abc", "valid integer"),
        ("KBCHAT_RETRIEVAL_K", "500", "less than or equal to 50"),
        ("KBCHAT_SERVER_PORT", "-1", "greater than or equal to 1"),
        ("KBCHAT_EMBEDDING_DEVICE", "tpu", "'auto', 'cpu', 'cuda' or 'mps'"),
        ("KBCHAT_SERVER_RATE_LIMIT", "lots", "rate limit"),
        ("KBCHAT_SERVER_TRUSTED_PROXIES", "10.0.0.1", "expected JSON"),
        ("KBCHAT_COLLECTION", "a", "invalid collection name"),
    ],
)
def test_bad_env_value_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    line = one_error_line(kbchat(tmp_path, "collections", **{name: value}))
    assert name in line and repr(value) in line and expected in line, line
    assert "retrieval.k" not in line


def test_bad_dotenv_value_says_it_comes_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KBCHAT_CHUNK_TOKENS=lots\n", encoding="utf-8")
    line = one_error_line(kbchat(tmp_path, "collections"))
    assert "KBCHAT_CHUNK_TOKENS='lots' (in .env)" in line, line


def test_hostile_values_are_shown_escaped_and_short(tmp_path: Path) -> None:
    line = one_error_line(
        kbchat(tmp_path, "collections", KBCHAT_RETRIEVAL_K="\x1b[2J" + "9" * 5000)
    )
    assert "\x1b" not in line and "'\\x1b[2J999" in line and len(line) < 300, line
    (tmp_path / ".env").write_bytes(b"KBCHAT_RETRIEVAL_K=\xff\xfe3\n")
    line = one_error_line(kbchat(tmp_path, "collections"))
    assert line.startswith("error: .env is not UTF-8 text"), line


def test_unknown_variables_are_warned_about_with_the_closest_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KBCHAT_LLM_MODLE=x\n", encoding="utf-8")
    proc = kbchat(tmp_path, "collections", "--json", KBCHAT_RETREIVAL_K="3", KBCHAT_ZZZ="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 3, proc.stderr
    assert "KBCHAT_RETREIVAL_K (environment)" in proc.stderr
    assert "did you mean KBCHAT_RETRIEVAL_K?" in proc.stderr
    assert "KBCHAT_LLM_MODLE (.env)" in proc.stderr
    assert "did you mean KBCHAT_LLM_MODEL?" in proc.stderr
    assert "KBCHAT_ZZZ (environment) is not a kbchat setting" in proc.stderr


def test_known_variables_cover_env_example() -> None:
    """Every variable documented in .env.example is known, so none of them is warned about."""
    import re

    from app.settings_errors import known_variables, unknown_variable_warnings

    example = (REPO / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#? ?(KBCHAT_[A-Z0-9_]+)=", example, re.M))
    assert len(documented) > 30 and documented <= known_variables()
    assert unknown_variable_warnings({n: "1" for n in documented}, {}) == []


def test_serve_on_a_busy_port_says_so_before_loading_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # a model that cannot be found: loading anything would fail with another message
        proc = kbchat(
            tmp_path, "serve", "--port", str(port), KBCHAT_EMBEDDING_MODEL=str(tmp_path / "none")
        )
    line = one_error_line(proc)
    assert f"127.0.0.1:{port}" in line and "in use" in line, line


def test_bad_value_inside_json_names_where(tmp_path: Path) -> None:
    keys = '[{"key": "short", "collection": "c", "origins": ["x"]}]'
    line = one_error_line(kbchat(tmp_path, "collections", KBCHAT_WIDGET_KEYS=keys))
    assert "KBCHAT_WIDGET_KEYS[0].key='short'" in line and "at least 8 characters" in line, line
    line = one_error_line(kbchat(tmp_path, "collections", KBCHAT_SERVER='{"port": 0}'))
    assert "KBCHAT_SERVER.port=" in line and "greater than or equal to 1" in line, line


def test_a_password_in_any_bad_url_is_never_printed(tmp_path: Path) -> None:
    """Not only secret fields: a URL setting (KBCHAT_EMBEDDING_URL) may carry user:password."""
    url = "ftp://kbchat:hunter2@embeddings.internal/v1"
    line = one_error_line(kbchat(tmp_path, "collections", KBCHAT_EMBEDDING_URL=url))
    assert "KBCHAT_EMBEDDING_URL='ftp://kbchat:***@embeddings.internal/v1'" in line, line
    assert "hunter2" not in line, line
