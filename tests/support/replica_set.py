"""Replicas of `tenantry serve` on fixed loopback ports, for a balancer to spread requests
over: each one can be killed with SIGKILL and started again on the same port, where the
balancer's config expects it.

Starting and stopping run in a worker thread (a server takes seconds to import and start),
so the event loop that drives the load keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.env import clean_environ
from tests.support.servers import Spawned, free_port, spawn, tenantry_command


@dataclass
class ReplicaSet:
    """`count` replicas named r0, r1 ..., each `tenantry serve ARGS` on its own port, configured
    by `env` alone (see `spawn_server`), working in `cwd`."""

    count: int
    cwd: Path
    env: Mapping[str, str]
    args: tuple[str, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    running: dict[str, tuple[contextlib.AbstractContextManager[Spawned], Spawned]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self.ports = {f"r{i}": free_port() for i in range(self.count)}

    @property
    def servers(self) -> list[tuple[str, int]]:
        """(name, port) of every replica, for the balancer's config."""
        return list(self.ports.items())

    def _start(self, name: str) -> None:
        command = [tenantry_command(), "serve", "--port", str(self.ports[name]), *self.args]
        server = spawn(command, self.cwd, clean_environ(dict(self.env)))
        self.running[name] = (server, server.__enter__())

    async def start(self, *names: str) -> None:
        """Start the named replicas (all of them if none is named), together; return once
        each listens. A replica that fails to start fails this, and the others keep
        running until `stop_all`."""
        results = await asyncio.gather(
            *(asyncio.to_thread(self._start, name) for name in names or self.ports),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def kill(self, name: str) -> tuple[float, float]:
        """SIGKILL the replica and wait until it is gone (its sockets closed); give the
        monotonic times of the kill and of that."""
        server, spawned = self.running.pop(name)
        killed = time.monotonic()
        spawned.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(spawned.process.wait, 30)
        gone = time.monotonic()
        assert spawned.process.returncode == -signal.SIGKILL, spawned.output[-3000:]
        await asyncio.to_thread(server.__exit__, None, None, None)
        return killed, gone

    def output(self, name: str) -> str:
        return self.running[name][1].output if name in self.running else ""

    def stop_all(self) -> None:
        """Stop every running replica (SIGTERM, see `spawn`)."""
        while self.running:
            _, (server, _) = self.running.popitem()
            server.__exit__(None, None, None)


@contextlib.contextmanager
def replica_set(count: int, cwd: Path, env: Mapping[str, str], *args: str) -> Iterator[ReplicaSet]:
    """A `ReplicaSet` whose replicas are all stopped when the block ends (none started yet)."""
    replicas = ReplicaSet(count, cwd, env, args)
    try:
        yield replicas
    finally:
        replicas.stop_all()
