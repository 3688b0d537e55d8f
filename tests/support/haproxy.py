"""A private HAProxy in front of test replicas: its config written by the test, its own free
loopback ports, its servers' states read from its stats page.

The balancer is Debian's `haproxy` (2.6 or newer), run in the foreground (`-db`) for one test
and stopped at the end. It balances round robin with no stickiness (no cookie, no source
hash), checks each replica's `/readyz` every `CHECK_INTERVAL_MS`, and takes a replica out
after `FALL` failed checks and back after `RISE` good ones. It retries a request on another
replica only when the connection to the first one failed (HAProxy's default
`retry-on conn-failure`), that is when the request never reached a replica, so the balancer
itself never sends one turn twice. Each request gets a connection of its own to its replica
(`http-server-close`), so no request is ever sent on an idle connection the replica is
closing at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.reliability.faults import missing_tool
from tests.support.servers import free_port

CHECK_INTERVAL_MS = 300
FALL = 2
RISE = 2
START_TIMEOUT = 30.0


def haproxy_binary() -> str:
    """Give the path of `haproxy`, or skip (fail, when fault tests are required) without it."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        missing_tool("haproxy is not installed (Debian: apt-get install haproxy)")
    return found


def config_text(servers: Sequence[tuple[str, int]], port: int, stats_port: int) -> str:
    """Give the HAProxy configuration: the API on `port`, round robin over `servers`
    (name, port), the stats page on `stats_port`."""
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout http-keep-alive 10s",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "frontend api",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "frontend stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 0",
        "backend replicas",
        "    balance roundrobin",
        "    option http-server-close",
        "    option httpchk",
        "    http-check send meth GET uri /readyz",
        "    http-check expect status 200",
    ]
    check = f"check inter {CHECK_INTERVAL_MS}ms fall {FALL} rise {RISE}"
    lines += [f"    server {name} 127.0.0.1:{p} {check}" for name, p in servers]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServerStats:
    """One replica as HAProxy sees it."""

    status: str
    """UP, DOWN, or a transition ("UP 1/2", "DOWN 1/2")."""
    sessions: int
    """Requests HAProxy sent to it so far (health checks not counted)."""


@dataclass
class Balancer:
    """A running HAProxy: `url` for clients, `stats_url` for its CSV stats."""

    process: subprocess.Popen[bytes]
    url: str
    stats_url: str
    log: Path

    async def servers(self, http: httpx.AsyncClient) -> dict[str, ServerStats]:
        """Give each replica's state and request count, by server name."""
        response = await http.get(f"{self.stats_url};csv", timeout=10)
        response.raise_for_status()
        rows = csv.DictReader(io.StringIO(response.text.lstrip("# ")))
        return {
            row["svname"]: ServerStats(row["status"], int(row["stot"] or 0))
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_status(
        self, http: httpx.AsyncClient, name: str, status: str, within: float
    ) -> float:
        """Wait until HAProxy reports server `name` as `status` (exactly); give the seconds."""
        started = time.monotonic()
        seen = ""
        while time.monotonic() - started < within:
            seen = (await self.servers(http))[name].status
            if seen == status:
                return time.monotonic() - started
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"HAProxy did not mark {name} {status} within {within:g}s (last: {seen!r}):\n"
            + self.log.read_text(errors="replace")[-3000:]
        )


@contextlib.contextmanager
def haproxy(servers: Sequence[tuple[str, int]], directory: Path) -> Iterator[Balancer]:
    """Run HAProxy over `servers` (name, port) until the block ends, its config and log in
    `directory`; give it once its API port accepts connections."""
    binary = haproxy_binary()
    port, stats_port = free_port(), free_port()
    config = directory / "haproxy.cfg"
    config.write_text(config_text(servers, port, stats_port))
    check = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, f"HAProxy rejects its config:\n{check.stdout}{check.stderr}"
    log = directory / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    stats_url = f"http://127.0.0.1:{stats_port}/stats"
    balancer = Balancer(process, f"http://127.0.0.1:{port}", stats_url, log)
    try:
        _wait_listening(balancer)
        yield balancer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_listening(balancer: Balancer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            httpx.get(f"{balancer.stats_url};csv", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if balancer.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "HAProxy did not start:\n" + balancer.log.read_text(errors="replace")[-3000:]
                ) from None
            time.sleep(0.05)
