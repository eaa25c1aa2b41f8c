"""Listening sockets, bound before anything serves on them: a taken port is a clear error at
start-up, and with port 0 the server knows (and prints) the port it got."""

from __future__ import annotations

import socket

from shoal.errors import ShoalError


def listen(host: str, port: int, flag: str, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket listening on ``host:port`` (IPv6 hosts with or without brackets);
    ``reuse_port``: one of several on the same port, the kernel spreading connections over
    them (``SO_REUSEPORT``; the front-end processes of ``serve/cluster/``)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted sockets inherit this: without it a reply written in two parts (an HTTP head and
    # body) waits for the client's delayed ACK, 40 ms per request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ShoalError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    """``host:port`` of a bound socket, an IPv6 host in brackets (as in URLs)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
