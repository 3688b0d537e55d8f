"""A private Redis Cluster for tests: 3 primaries + 3 replicas on free loopback ports.

Each node is a `redis-server --cluster-enabled yes` with `appendonly yes` and
`appendfsync always` (what a node acknowledged is on its disk), its files in a temporary
directory of its own; `redis-cli --cluster create ... --cluster-replicas 1` joins them. A
short `cluster-node-timeout` makes a killed primary's replica take over within seconds.
Everything is killed and removed at the end. Without `redis-server` / `redis-cli` the test
skips (fails when TENANTRY_TEST_REQUIRE_FAULTS=1, as in CI).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.reliability.faults import missing_tool
from tests.support.servers import free_port

NODE_TIMEOUT_MS = 1000
"""cluster-node-timeout: a primary silent this long is suspected failed (then the replicas
elect one of them within about as long again)."""
START_TIMEOUT = 60.0
CREATE_OPTIONS = ("--cluster-replicas", "1", "--cluster-yes")


@dataclass
class Node:
    """One `redis-server` of the cluster."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    bus_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "cluster-enabled": "yes",
            "cluster-port": str(self.bus_port),
            "cluster-config-file": str(self.directory / "nodes.conf"),
            "cluster-node-timeout": str(NODE_TIMEOUT_MS),
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.directory / "redis.log"),
        }
        command = [self.binary]
        for name, value in settings.items():
            command += [f"--{name}", value]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(lambda: self.ask("PING") is True, f"redis node {self.address}", self)

    def ask(self, *command: str) -> Any:
        """Give one command's reply (decoded), or None if the node does not answer."""
        if self.process is not None and self.process.poll() is not None:
            return None
        try:
            with redis.Redis(port=self.port, socket_timeout=2, decode_responses=True) as client:
                return client.execute_command(*command)
        except redis.RedisError:
            return None

    def kill(self) -> None:
        """Kill -9 the node (as a crash of its machine would, minus the disk)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def replication(self) -> dict[str, str]:
        """INFO replication as a dict ({} if the node does not answer)."""
        info = self.ask("INFO", "replication")
        return {str(k): str(v) for k, v in info.items()} if isinstance(info, dict) else {}

    def role(self) -> str:
        """'master' or 'slave', '' if the node does not answer."""
        return self.replication().get("role", "")


def _cluster_state(node: Node) -> str:
    info = node.ask("CLUSTER", "INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state", ""))
    return "ok" if "cluster_state:ok" in str(info) else ""


def _wait_for(check: object, what: str, node: Node | None, timeout: float = START_TIMEOUT) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            log = node.directory / "redis.log" if node is not None else None
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what} did not come up within {timeout:g}s:\n{tail}")
        time.sleep(0.05)


@dataclass
class RedisCluster:
    """A running cluster: its nodes, and the store URL that reaches it."""

    nodes: list[Node]

    @property
    def url(self) -> str:
        seeds = ",".join(node.address for node in self.nodes[:3])
        return f"redis+cluster://{seeds}"

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok and knows 3 primaries with a replica each."""
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        return all(_cluster_state(n) == "ok" for n in live) and (
            sum(n.role() == "master" for n in live) == 3
        )

    def primaries(self) -> list[Node]:
        return [n for n in self.nodes if n.role() == "master"]

    def replica_of(self, primary: Node) -> Node:
        for node in self.nodes:
            if node.replication().get("master_port") == str(primary.port):
                return node
        raise AssertionError(f"no replica follows {primary.address}")

    def synced(self) -> bool:
        """Healthy, every node up, and every replica's link to its primary up."""
        if not self.healthy() or any(
            n.process is None or n.process.poll() is not None for n in self.nodes
        ):
            return False
        replicas = [n.replication() for n in self.nodes if n.role() == "slave"]
        return len(replicas) == 3 and all(r.get("master_link_status") == "up" for r in replicas)

    def wait_synced(self, timeout: float = START_TIMEOUT) -> None:
        _wait_for(self.synced, "every Redis Cluster replica in sync", None, timeout)

    def promote(self, replica: Node, timeout: float = START_TIMEOUT) -> None:
        """`CLUSTER FAILOVER` on `replica` (a planned switch: it waits for the replica to
        catch up, then swaps roles); wait until it is a primary and the cluster healthy."""
        assert replica.ask("CLUSTER", "FAILOVER") is not None, "CLUSTER FAILOVER refused"
        _wait_for(
            lambda: replica.role() == "master" and self.healthy(), "the failover", None, timeout
        )

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until `healthy()`; give the seconds it took."""
        started = time.monotonic()
        _wait_for(self.healthy, "the Redis Cluster (cluster_state:ok)", None, timeout)
        return time.monotonic() - started


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """Give a running 3 + 3 cluster, every replica in sync; always kill it and remove its
    files afterwards."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        missing_tool("redis-server or redis-cli is not installed (Debian package redis-server)")
    root = Path(tempfile.mkdtemp(prefix="tenantry-redis-cluster-"))
    nodes = [Node(server, root / f"node{i}") for i in range(6)]
    try:
        for node in nodes:
            node.start()
        created = subprocess.run(
            [cli, "--cluster", "create", *(n.address for n in nodes), *CREATE_OPTIONS],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if created.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed:\n{created.stdout}")
        cluster = RedisCluster(nodes)
        cluster.wait_synced()
        yield cluster
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)
