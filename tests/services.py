"""Real servers for deployment tests: PostgreSQL 15, redis-server, a Chroma server and `kbchat
serve`, each a subprocess on a free loopback port with its files in a temp folder.

Every `start_*` is a context manager that waits until its server answers and, on exit, stops it
and removes its files, so a failing test leaves no server behind. Each server's output goes to a
log file whose tail is quoted when it fails to start.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.live_server import free_port

REPO = Path(__file__).resolve().parent.parent
PG_MAJOR = "15"  # compose.yaml's postgres image has the same major version
PG_BIN = Path(os.environ.get("PG_BIN", f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CHROMA = Path(sys.executable).parent / "chroma"  # chromadb's CLI, installed with kbchat
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
CADDYFILE = REPO / "deploy" / "Caddyfile"  # compose.yaml's load balancer
UNPRIVILEGED = "nobody"  # postgres refuses to run as root


def missing_binaries() -> list[str]:
    """The server programs (and the database driver) this machine lacks; .ci/run installs the
    programs, scripts/setup.sh the driver."""
    wanted = [PG_BIN / "initdb", PG_BIN / "postgres", Path(REDIS_SERVER), CHROMA, Path(CADDY)]
    missing = [str(p) for p in wanted if not os.access(p, os.X_OK)]
    if importlib.util.find_spec("psycopg") is None:  # kbchat's driver for postgresql+psycopg://
        missing.append("psycopg (pip install kbchat[postgres])")
    return missing


@dataclass
class Server:
    """One running server process; `url` is how clients reach it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    url: str
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or a container dies."""
        self.stop(signal.SIGKILL)


def _spawn(
    name: str, argv: list[str], log: Path, *, user: str | None = None, **kwargs: object
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            **kwargs,
        )
    finally:
        out.close()


def _wait(server: Server, ready: object, timeout: float) -> None:
    """Poll `ready()` until it returns true; fail with the server's log if it exits or lingers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.tail()}"
            )
        try:
            if ready():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} did not become ready in {timeout:.0f} s:\n{server.tail()}")


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextmanager
def _workdir(prefix: str, owner: str | None = None) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if owner:
        shutil.chown(base, owner)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def start_postgres(database: str = "kbchat", user: str = "kbchat") -> Iterator[Server]:
    """A fresh PostgreSQL cluster (trust auth on loopback only) with one empty database;
    `url` is the SQLAlchemy URL for psycopg 3. Run as an unprivileged user when we are root."""
    runas = UNPRIVILEGED if os.geteuid() == 0 else None
    with _workdir("kbchat-pg-", runas) as base:
        data, log = base / "pgdata", base / "postgres.log"
        init = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            user=runas,
            group=pwd.getpwnam(runas).pw_gid if runas else None,
            extra_groups=[] if runas else None,
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        port = free_port()
        argv = [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"]
        server = Server("postgres", _spawn("postgres", argv, log, user=runas), port, "", log)
        try:
            _wait(server, lambda: _pg_ready(port, user), 60)
            created = subprocess.run(
                [
                    str(PG_BIN / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    user,
                    database,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                raise RuntimeError(f"createdb failed: {created.stderr}")
            server.url = f"postgresql+psycopg://{user}@127.0.0.1:{port}/{database}"
            yield server
        finally:
            server.stop(signal.SIGINT)  # "fast" shutdown: ends sessions, no recovery needed


def _pg_ready(port: int, user: str) -> bool:
    check = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user]
    return subprocess.run(check, capture_output=True, timeout=10).returncode == 0


def create_database(postgres: Server, name: str) -> str:
    """Another empty database in the same cluster; returns its URL."""
    user = postgres.url.split("//", 1)[1].split("@", 1)[0]
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", user, name],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def start_redis() -> Iterator[Server]:
    """redis-server keeping everything in memory (no RDB, no AOF); `url` is redis://."""
    with _workdir("kbchat-redis-") as base:
        port = free_port()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base)]
        argv += ["--save", "", "--appendonly", "no"]
        log = base / "redis.log"
        server = Server(
            "redis", _spawn("redis", argv, log), port, f"redis://127.0.0.1:{port}/0", log
        )
        try:
            _wait(server, lambda: _redis_pong(port), 30)
            yield server
        finally:
            server.stop()


def _redis_pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@contextmanager
def start_chroma() -> Iterator[Server]:
    """`chroma run` (the chromadb package's own server) persisting into a temp folder."""
    with _workdir("kbchat-chroma-") as base:
        port = free_port()
        argv = [str(CHROMA), "run", "--path", str(base / "db"), "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
        log = base / "chroma.log"
        url = f"http://127.0.0.1:{port}"
        server = Server("chroma", _spawn("chroma", argv, log), port, url, log)
        try:
            _wait(server, lambda: httpx.get(f"{url}/api/v2/heartbeat", timeout=2).is_success, 60)
            yield server
        finally:
            server.stop()


def balancer_config(port: int, upstreams: list[str]) -> str:
    """deploy/Caddyfile with this machine's ports for compose's service names, no admin API."""
    text = CADDYFILE.read_text(encoding="utf-8")
    for old, new in (
        (":8000 {", f":{port} {{"),
        ("kbchat-a:8000 kbchat-b:8000", " ".join(upstreams)),
    ):
        if old not in text:
            raise AssertionError(f"deploy/Caddyfile no longer has {old!r}: update this test")
        text = text.replace(old, new, 1)
    return "{\n\tadmin off\n\tauto_https off\n}\n" + text


@contextmanager
def start_balancer(upstreams: list[str]) -> Iterator[Server]:
    """Caddy with compose.yaml's configuration (deploy/Caddyfile) in front of `upstreams`."""
    with _workdir("kbchat-caddy-") as base:
        port = free_port()
        config = base / "Caddyfile"
        config.write_text(balancer_config(port, upstreams), encoding="utf-8")
        argv = [CADDY, "run", "--adapter", "caddyfile", "--config", str(config)]
        env = {**os.environ, "XDG_DATA_HOME": str(base), "XDG_CONFIG_HOME": str(base)}
        log = base / "caddy.log"
        url = f"http://127.0.0.1:{port}"
        server = Server("caddy", _spawn("caddy", argv, log, env=env), port, url, log)
        try:
            _wait(server, lambda: httpx.get(f"{url}/api/ready", timeout=5).is_success, 60)
            yield server
        finally:
            server.stop()


@dataclass
class Kbchat:
    """One `kbchat serve` replica: this checkout's code, the given settings, its own port.

    It runs in an empty working folder, so no `.env` of the developer's is read."""

    env: Mapping[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> Server:
        """Start the process without waiting (replicas started at the same moment)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KBCHAT_", "OPENAI_"))}
        env.update(self.env)
        env.update(PYTHONPATH=str(REPO), KBCHAT_SERVER_PORT=str(self.port), HF_HUB_OFFLINE="1")
        argv = [sys.executable, "-m", "app.cli", "serve"]
        log = self.workdir / f"kbchat-{self.port}.log"
        process = _spawn("kbchat", argv, log, cwd=self.workdir, env=env)
        self.server = Server(f"kbchat on {self.port}", process, self.port, self.url, log)
        return self.server

    def wait(self, path: str = "/api/ready", timeout: float = 180) -> None:
        assert self.server is not None
        _wait(self.server, lambda: httpx.get(self.url + path, timeout=5).is_success, timeout)

    def start(self) -> Kbchat:
        self.spawn()
        self.wait()
        return self

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@contextmanager
def kbchat_replicas(env: Mapping[str, str], workdir: Path, count: int) -> Iterator[list[Kbchat]]:
    """`count` replicas with the same settings (not started); all are stopped on exit."""
    replicas = [Kbchat(env, workdir) for _ in range(count)]
    try:
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


ADMIN_KEY = "replica-test-admin-key"
RATE_LIMIT = "6/minute"


def replica_settings(
    *, data_dir: Path, model_dir: Path, postgres_url: str, redis_url: str, chroma_port: int
) -> dict[str, str]:
    """The settings every replica gets, key for key those of compose.yaml's kbchat services
    (tests/test_deploy_files.py compares the names): one data folder shared by all replicas,
    the model materialised beforehand, the conversation database, the rate-limit store, the
    Chroma server, an admin key, and the load balancer (here: the test) as trusted proxy.
    No LLM is configured, so answers are extractive. KBCHAT_SERVER_PORT is set per replica."""
    return {
        "KBCHAT_DATA_DIR": str(data_dir),
        "KBCHAT_EMBEDDING_MODEL": str(model_dir),
        "KBCHAT_SERVER_HOST": "127.0.0.1",
        "KBCHAT_DATABASE_URL": postgres_url,
        "KBCHAT_REDIS_URL": redis_url,
        "KBCHAT_CHROMA_HOST": "127.0.0.1",
        "KBCHAT_CHROMA_PORT": str(chroma_port),
        "KBCHAT_ADMIN_API_KEY": ADMIN_KEY,
        "KBCHAT_SERVER_RATE_LIMIT": RATE_LIMIT,
        "KBCHAT_SERVER_TRUSTED_PROXIES": '["127.0.0.1"]',
        "KBCHAT_LOG_FORMAT": "json",
    }
