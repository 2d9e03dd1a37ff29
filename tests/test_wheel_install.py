"""`pip install .` (not editable) gives a working kbchat: the wheel carries everything read at run
time. Built from a copy of the checkout, installed into a fresh venv that borrows the dependencies
already installed here (a .pth line, so no torch download), run from a folder outside the repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
REPO = Path(__file__).resolve().parent.parent
ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*_cache")
AT_ROOT = {".git", ".venv", "data", "build", "dist", "test-artifacts"}  # not app/data


def not_source(folder: str, names: list[str]) -> set[str]:
    top = AT_ROOT.intersection(names) if Path(folder) == REPO else set()
    return top | ANYWHERE(folder, names)


DOC = (
    "# Opening hours\n\nThe Lindenberg public library opens at nine o'clock every weekday. "
    "On Saturdays it closes at one in the afternoon.\n"
)


class Installed:
    """The installed `kbchat` run in a folder that is not the repository."""

    def __init__(self, venv: Path, work: Path, model_dir: Path) -> None:
        self.venv, self.work = venv, work
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("KBCHAT_", "OPENAI_"))}
        keep.pop("PYTHONPATH", None)
        self.env = {
            **keep,
            "KBCHAT_DATA_DIR": str(work / "data"),
            "KBCHAT_EMBEDDING_MODEL": str(model_dir),
            "HF_HUB_OFFLINE": "1",
        }

    def run(self, *args: str, exe: str = "kbchat", timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(self.venv / "bin" / exe), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{exe} {args} failed ({proc.returncode}):\n{proc.stderr}"
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory,
    e5_model_dir: Path,
    seed_language_reference: Callable[[Path, Iterable[str]], None],
) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=not_source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist"]
    subprocess.run([*build, source], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("kbchat-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    )  # the dependencies installed here, after the venv's own site-packages
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_kbchat_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")
    install = [*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index"]
    subprocess.run([*install, wheel], check=True, timeout=300)
    work = tmp / "work"
    (work / "kb" / "en").mkdir(parents=True)
    (work / "kb" / "en" / "library.md").write_text(DOC, encoding="utf-8")
    # English statistics of query correction computed already (the installed kbchat still reads
    # the shipped sentences from the wheel to check them): 400 fewer texts through the model.
    seed_language_reference(work / "data", ["en"])
    return Installed(venv, work, e5_model_dir)


def test_wheel_carries_licence_and_notice(installed: Installed) -> None:
    import zipfile

    (wheel,) = installed.venv.parent.joinpath("dist").glob("kbchat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"LICENSE", "NOTICE"} <= {Path(n).name for n in names if ".dist-info/" in n}, names


def test_installed_code_is_the_wheel(installed: Installed) -> None:
    where = installed.run("-c", "import app; print(app.__file__)", exe="python").strip()
    assert Path(where).is_relative_to(installed.venv), where


def test_help_and_version(installed: Installed) -> None:
    assert "ingest" in installed.run("--help")
    from app import __version__

    assert installed.run("--version").strip() == f"kbchat {__version__}"
    assert installed.run("-m", "app", "--version", exe="python").strip() == f"kbchat {__version__}"


def test_model_info(installed: Installed) -> None:
    info = installed.json("model", "info")
    assert info["model_id"] == "intfloat/multilingual-e5-small"
    assert info["query_form"] == "query: {text}"


def test_ingest_and_ask_without_llm(installed: Installed) -> None:
    report = installed.json("ingest", "kb")
    assert report["added"] == ["en/library.md"], report
    result = installed.json("ask", "When does the library open on weekdays?")
    assert "nine o'clock" in result["answer"], result
    assert result["sources"][0]["source"] == "en/library.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("content-type", ""), r.read()


def test_serve_widget_and_docs(installed: Installed) -> None:
    """The server starts from the wheel and serves the widget and the docs' own assets."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(installed.venv / "bin" / "kbchat"), "serve", "--port", str(port)],
        cwd=installed.work,
        env={**installed.env, "KBCHAT_INGEST_RESYNC_ON_START": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (
                f"serve exited:\n{proc.stderr.read() if proc.stderr else ''}"
            )
            try:
                if _get(f"{base}/api/health")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer in time"
                time.sleep(0.5)
        status, _, body = _get(f"{base}/widget.js")
        assert status == 200 and b"kbchat" in body.lower()
        assert b"DOMPurify" in body and b"marked v18" in body  # vendored files are in the wheel
        status, _, body = _get(f"{base}/docs")
        (script,) = re.findall(r'src="(/[^"]*swagger-ui-bundle\.js)"', body.decode())
        assert status == 200 and b"swagger" in _get(f"{base}{script}")[2].lower()  # not the UI's
    finally:
        proc.terminate()
        proc.wait(timeout=30)
