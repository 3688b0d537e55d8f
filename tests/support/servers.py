"""Servers for tests: an ASGI app on uvicorn in a thread (`serve`), or a real `tenantry serve`
process (`spawn_server`), each on a loopback port the kernel picked."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from tests.support.env import clean_environ

START_TIMEOUT = 60.0
"""Seconds a server process gets to say where it listens."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; give its base URL.

    The server binds port 0, so the kernel picks a free port and no other process can take
    it between choosing and binding; the URL names the port it got."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Spawned:
    """A server process, and what it printed so far: `url` once uvicorn says where it
    listens."""

    process: subprocess.Popen[str]
    url: str = ""
    log: list[str] = field(default_factory=list)
    listening: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                self.listening.set()
        self.listening.set()  # the process ended (url stays empty if it never listened)

    @property
    def output(self) -> str:
        return "".join(self.log)


@contextlib.contextmanager
def spawn(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Iterator[Spawned]:
    """Run the server `command` in `cwd`; give it once uvicorn says where it listens. Its
    output is read all along (a full pipe would block the server) into `Spawned.log`. A
    process still running at the end of the block is stopped with SIGTERM (SIGKILL if it does
    not stop within a minute)."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    spawned = Spawned(process)
    reader = threading.Thread(target=spawned.read, daemon=True)
    reader.start()
    try:
        if not spawned.listening.wait(START_TIMEOUT) or not spawned.url:
            raise AssertionError(f"the server did not start:\n{spawned.output[-4000:]}")
        yield spawned
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(10)


def tenantry_command() -> str:
    """The `tenantry` script of the running interpreter's environment."""
    return str(Path(sys.executable).parent / "tenantry")


@contextlib.contextmanager
def spawn_server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Spawned]:
    """Run `tenantry serve --port 0 ARGS` as a real process in `cwd`, configured by `env`
    alone (no TENANTRY_* or OPENAI_* setting of this process leaks in); see `spawn`."""
    command = [tenantry_command(), "serve", "--port", "0", *args]
    with spawn(command, cwd, clean_environ(env)) as spawned:
        yield spawned
