"""Real servers for tests, started from local binaries and stopped when the block ends.

`start_postgres()` runs a throwaway PostgreSQL 15 (Debian's binaries in /usr/lib/postgresql/15/bin)
on a free loopback port with password authentication, and yields a `postgresql+psycopg://` URL;
`create_database(url, name)` gives each test its own empty database on that server. PostgreSQL
refuses to run as root, so as root the cluster belongs to `nobody`. Password authentication
(scram) on TCP, unlike a trust-only cluster, so tests can check a wrong password and that the
password never shows.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("KBCHAT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "kbchat"


def postgres_missing() -> str | None:
    """Why a real Postgres cannot be started here (a pytest skip reason), or None."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL will not start as root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'kbchat[postgres]')"
    return None


def free_port(low: int = 20000, high: int = 60000) -> int:
    """A loopback TCP port above 20000 that nothing listens on right now."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def start_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster for the duration of the block; yields the URL of its `kbchat`
    database (user `kbchat`, a random password, 127.0.0.1 on a free port)."""
    base = Path(tempfile.mkdtemp(prefix="kbchat-pg-"))
    data, password = base / "data", secrets.token_urlsafe(16)
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        shutil.chown(pwfile, "nobody")
    port = free_port()
    subprocess.run(
        _as_owner(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -h 127.0.0.1 -c fsync=off -c max_connections=50"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    started = False
    try:
        subprocess.run(
            _as_owner([*pg_ctl, "-l", str(base / "log"), "-o", options, "start"]),
            check=True,
            capture_output=True,
        )
        started = True
        url = f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/postgres"
        yield create_database(url, "kbchat")
    finally:
        if started:
            subprocess.run(_as_owner([*pg_ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create an empty database `name` on the server of `url`; returns its URL."""
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
