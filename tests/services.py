"""Real servers for tests: PostgreSQL 15, redis-server, a Chroma server (`chroma run`), Caddy and
`kbchat serve`, each a child process on a free loopback port with its files in a temp folder.

Every `start_*` is a context manager that waits until its server answers and, on exit, stops it
and removes its files. Every server runs in the foreground as a child of the test process, and
the kernel stops it when that process dies (PR_SET_PDEATHSIG), so a run killed midway (a
timeout, kill -9) leaves no server behind either; pg_ctl would have daemonised PostgreSQL. A
server's output goes to a log file whose tail is quoted when it fails to start.

`require(...)` skips a test whose servers are not installed here, or fails it where
REQUIRE_REPLICA_SERVERS=1 (.ci/run installs them, so in CI a missing server is a failure).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PG_MAJOR = "15"  # compose.yaml's postgres image has the same major version
PG_BIN = Path(os.environ.get("PG_BIN", f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CHROMA = Path(sys.executable).parent / "chroma"  # chromadb's CLI, installed with kbchat
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
CADDYFILE = REPO / "deploy" / "Caddyfile"  # compose.yaml's load balancer
UNPRIVILEGED = "nobody"  # postgres refuses to run as root
REQUIRED = "REQUIRE_REPLICA_SERVERS"


def free_port() -> int:
    """A loopback TCP port above 20000 that nothing listens on now (the kernel's pick)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port > 20000:
            return port
    raise RuntimeError("no free port above 20000")


def _programs(*paths: str | Path) -> list[str]:
    return [str(p) for p in paths if not os.access(p, os.X_OK)]


def _needs() -> dict[str, list[str]]:
    """What each server needs, missing here: .ci/run installs the programs, scripts/setup.sh
    the database driver."""
    psycopg = importlib.util.find_spec("psycopg") is not None  # for postgresql+psycopg://
    return {
        "postgres": _programs(PG_BIN / "initdb", PG_BIN / "postgres", PG_BIN / "pg_isready")
        + ([] if psycopg else ["psycopg (pip install 'kbchat[postgres]')"]),
        "redis": _programs(REDIS_SERVER),
        "chroma": _programs(CHROMA),
        "caddy": _programs(CADDY),
    }


def missing(*servers: str) -> list[str]:
    """The programs and drivers that `servers` ("postgres", "redis", ...) lack here."""
    needs = _needs()
    return [gap for server in servers for gap in needs[server]]


def require(*servers: str) -> None:
    """Skip the test when a server it needs is not installed; fail it instead in CI."""
    if gaps := missing(*servers):
        message = f"servers for this test are not installed: {', '.join(gaps)}"
        if os.environ.get(REQUIRED) == "1":
            pytest.fail(f"{message} ({REQUIRED}=1)")
        pytest.skip(f"{message} (.ci/run installs them)")


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _dies_with_us(sig: int) -> Callable[[], None]:
    """A preexec_fn: the child gets `sig` when the thread that started it dies. It runs after
    the switch to another user (which would clear the setting), right before exec."""
    parent = os.getpid()

    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    return preexec


def _as(user: str | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


@dataclass
class Server:
    """One server process; `url` is how clients reach it. `start()` after `stop()` runs the
    same program on the same port and files again, as an orchestrator restarts a container."""

    name: str
    argv: list[str]
    port: int
    url: str
    log: Path
    ready: Callable[[], bool]
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready_timeout: float = 60
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def spawn(self) -> Server:
        """Start the process without waiting for it to answer."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=_dies_with_us(self.stop_signal),
                **_as(self.user),
            )
        return self

    def wait(self, timeout: float | None = None) -> Server:
        """Until the server answers; stopped, and its log quoted, if it exits or lingers."""
        self._until(self.ready, self.ready_timeout if timeout is None else timeout)
        return self

    def start(self, timeout: float | None = None) -> Server:
        return self.spawn().wait(timeout)

    def _until(self, ready: Callable[[], bool], timeout: float) -> None:
        assert self.process is not None, f"{self.name} was not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                if ready():
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int | None = None, timeout: float = 20) -> None:
        """`stop_signal` (the server's own clean shutdown) and wait; SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal if sig is None else sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or a container dies."""
        self.stop(signal.SIGKILL)


@contextmanager
def _running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _workdir(prefix: str, owner: str | None = None) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if owner:
        shutil.chown(base, owner)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _answers(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=5).is_success


@contextmanager
def start_postgres(database: str = "kbchat", user: str = "kbchat") -> Iterator[Server]:
    """A fresh PostgreSQL cluster with one empty database; `url` is its SQLAlchemy URL for
    psycopg 3, with the password. Password (scram) authentication on 127.0.0.1, as compose's
    postgres service, so tests can also show a wrong password and that it never shows.
    As root, the cluster runs as an unprivileged user."""
    runas = UNPRIVILEGED if os.geteuid() == 0 else None
    with _workdir("kbchat-pg-", runas) as base:
        data, pwfile, password = base / "pgdata", base / "pw", secrets.token_urlsafe(16)
        pwfile.write_text(password + "\n", encoding="utf-8")
        if runas:
            shutil.chown(pwfile, runas)
        init = [str(PG_BIN / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}"]
        init += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        init += ["-E", "UTF8", "--locale=C"]
        done = subprocess.run(  # type: ignore[call-overload]
            init, capture_output=True, text=True, timeout=120, **_as(runas)
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        port = free_port()
        argv = [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"]
        ready = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user]
        server = Server(
            "postgres",
            argv,
            port,
            f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/postgres",
            base / "postgres.log",
            lambda: subprocess.run(ready, capture_output=True, timeout=10).returncode == 0,
            stop_signal=signal.SIGINT,  # "fast" shutdown: ends sessions, no recovery needed
            user=runas,
        )
        with _running(server):
            server.url = create_database(server.url, database)
            yield server


def create_database(url: str, name: str) -> str:
    """An empty database `name` on the server of `url`; returns its URL."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return parsed.set(database=name).render_as_string(hide_password=False)


@contextmanager
def start_redis() -> Iterator[Server]:
    """redis-server keeping everything in memory (no RDB, no AOF); `url` is redis://. After
    `stop()`, `start()` brings back an empty Redis on the same port."""
    with _workdir("kbchat-redis-") as base:
        port = free_port()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base)]
        argv += ["--save", "", "--appendonly", "no"]
        url = f"redis://127.0.0.1:{port}/0"
        with _running(Server("redis", argv, port, url, base / "redis.log", _pong(port))) as s:
            yield s


def _pong(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    return ready


@contextmanager
def start_chroma() -> Iterator[Server]:
    """`chroma run` (the chromadb package's own server) persisting into a temp folder."""
    with _workdir("kbchat-chroma-") as base:
        port = free_port()
        argv = [str(CHROMA), "run", "--path", str(base / "db"), "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        ready = _answers(f"{url}/api/v2/heartbeat")
        with _running(Server("chroma", argv, port, url, base / "chroma.log", ready)) as server:
            yield server


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
        url = f"http://127.0.0.1:{port}"
        ready = _answers(f"{url}/api/ready")
        server = Server("caddy", argv, port, url, base / "caddy.log", ready, env=env)
        with _running(server):
            yield server


class Kbchat(Server):
    """One `kbchat serve` replica: this checkout's code, the given settings, its own port. It
    runs in an empty working folder, so no `.env` of the developer's is read."""

    def __init__(self, settings: Mapping[str, str], workdir: Path) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KBCHAT_", "OPENAI_"))}
        env.update(settings)
        env.update(PYTHONPATH=str(REPO), KBCHAT_SERVER_PORT=str(port), HF_HUB_OFFLINE="1")
        url = f"http://127.0.0.1:{port}"
        super().__init__(
            f"kbchat on {port}",
            [sys.executable, "-m", "app.cli", "serve"],
            port,
            url,
            workdir / f"kbchat-{port}.log",
            _answers(f"{url}/api/ready"),
            env=env,
            cwd=workdir,
            ready_timeout=180,
        )

    def wait_for(self, path: str, timeout: float = 180) -> None:
        """Until GET `path` succeeds (/api/health: up, before the model is loaded)."""
        self._until(_answers(self.url + path), timeout)


@contextmanager
def kbchat_replicas(
    settings: Mapping[str, str], workdir: Path, count: int
) -> Iterator[list[Kbchat]]:
    """`count` replicas with the same settings (not started); all are stopped on exit."""
    replicas = [Kbchat(settings, workdir) for _ in range(count)]
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
