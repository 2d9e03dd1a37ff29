"""Is the listen address free? Asked before the model and the UI load, which take a while."""

from __future__ import annotations

import errno
import socket


def unavailable(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, or None when it can (bound as uvicorn binds)."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        return f"cannot listen on {shown}: {exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"{shown} is in use (another kbchat?): stop it, or choose another port with"
                    " --port or KBCHAT_SERVER_PORT"
                )
            return f"cannot listen on {shown}: {exc.strerror}"
    return None
