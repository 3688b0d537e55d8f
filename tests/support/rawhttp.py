"""HTTP as an attacker sends it: raw bytes over a socket to a test server, so headers and
request targets reach the server exactly as written (httpx would refuse or normalise them)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def port_of(url: str) -> int:
    """Give the port of a server's base URL (`serve` gives http://127.0.0.1:PORT)."""
    port = urlsplit(url).port
    assert port is not None, url
    return port


def raw_http(url: str, request: bytes, *, read: bool = True) -> bytes:
    """Send `request` as is to the server at `url`; give all it answers until it closes the
    connection (send `Connection: close`), or nothing when `read` is false."""
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while read and (chunk := sock.recv(65536)):
            chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["port_of", "raw_http"]
