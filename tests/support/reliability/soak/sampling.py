"""The server under soak, and the samples of its resources: `tenantry serve` as a process
whose output is read all along, and its RSS, descriptors, connections, threads and CPU time."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.support.env import clean_environ
from tests.support.reliability.soak.config import JWT_SECRET, Sample, SoakConfig
from tests.support.servers import tenantry_command


class ServerProcess:
    """`tenantry serve` on a free loopback port; its output is read all along, keeping the
    last lines and the number of sessions its pruner reported."""

    def __init__(self, store_url: str, cwd: Path, config: SoakConfig) -> None:
        env = clean_environ(
            {
                "TENANTRY_STORE_URL": store_url,
                "TENANTRY_JWT_SECRET": JWT_SECRET,
                "TENANTRY_JWT_ORG_CLAIM": "org",
                "TENANTRY_PRUNE_INACTIVE_HOURS": repr(config.prune_inactive_seconds / 3600),
                "TENANTRY_PRUNE_INTERVAL_SECONDS": repr(config.prune_interval_seconds),
            }
        )
        command = [tenantry_command(), "serve", "--port", "0"]
        self.process = subprocess.Popen(
            [*command, "--model", "offline", "--log-level", "info"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = ""
        self.pruned = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.listening = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "tenantry.server.access" not in line:
                self.tail.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                self.listening.set()
            pruned = re.search(r"pruned (\d+) session", line)
            if pruned:
                self.pruned += int(pruned.group(1))
        self.listening.set()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.reader.join(10)
        return self.process.returncode


@contextlib.contextmanager
def running_server(store_url: str, cwd: Path, config: SoakConfig) -> Iterator[ServerProcess]:
    server = ServerProcess(store_url, cwd, config)
    try:
        if not server.listening.wait(60) or not server.url:
            raise AssertionError("the server did not start:\n" + "".join(server.tail))
        yield server
    finally:
        server.stop()


def _sqlite_mb(path: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += (path.parent / (path.name + suffix)).stat().st_size
    return total / 2**20


def sample(process: psutil.Process, started: float, db: Path) -> Sample:
    """Give the server's RSS, open descriptors, TCP connections, threads and CPU time now."""
    with process.oneshot():
        cpu = process.cpu_times()
        return Sample(
            t=time.monotonic() - started,
            rss_mb=process.memory_info().rss / 2**20,
            fds=process.num_fds(),
            connections=len(process.net_connections(kind="tcp")),
            threads=process.num_threads(),
            cpu_seconds=cpu.user + cpu.system,
            store_mb=_sqlite_mb(db),
        )


async def keep_sampling(
    process: psutil.Process, started: float, db: Path, every: float, out: list[Sample]
) -> None:
    """Append a sample to `out` every `every` seconds, until cancelled."""
    while True:
        out.append(await asyncio.to_thread(sample, process, started, db))
        await asyncio.sleep(every)
