"""Private database servers that a test may stop and start at will.

The shared PostgreSQL and Redis (TENANTRY_TEST_*_URL) serve other tests concurrently and must
never be restarted, so the fault tests start their own: a `redis-server` and a PostgreSQL
cluster (initdb + pg_ctl) on free loopback ports, with their data in a temporary directory
that is always removed at the end.

When a tool is missing, `missing_tool` skips the test, or fails it when
TENANTRY_TEST_REQUIRE_FAULTS=1 (CI sets it, so the fault tests can never silently skip there).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from tests.support.reliability.crash import (
    Ledger,
    Load,
    Sent,
    check_stored,
    client_limits,
    counting_server,
    make_scopes,
    until,
    wait_ready,
)
from tests.support.servers import free_port

REQUIRE_VARIABLE = "TENANTRY_TEST_REQUIRE_FAULTS"
START_TIMEOUT = 60.0


def missing_tool(what: str) -> NoReturn:
    """Skip the test because `what` is missing, or fail it if fault tests are required."""
    message = f"{what}; the fault tests need it"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1)", pytrace=False)
    pytest.skip(f"{message} (set {REQUIRE_VARIABLE}=1 to make this a failure)")


def _wait_for(
    check: Callable[[], bool], what: str, log: Path, timeout: float = START_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{what} did not come up within {timeout:g}s:\n{tail}")
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


# --- Redis ----------------------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` of our own, with `appendonly yes` and `appendfsync always`, so a write
    Redis acknowledged survives even a kill -9 of Redis."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        log = self.directory / "redis.log"
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(log),
        }
        command = [self.binary]
        for name, value in settings.items():
            command += [f"--{name}", value]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(self._answers, f"redis-server on port {self.port}", log)

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")  # not -LOADING while replaying
        except OSError:
            return False

    def crash(self) -> None:
        """Kill -9 the server: what it acknowledged must be in its append-only file."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """Give a running private Redis; always kill it and remove its files afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_tool("redis-server is not installed (Debian package redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="tenantry-faults-redis-"))
    redis = PrivateRedis(binary, directory)
    try:
        redis.start()
        yield redis
    finally:
        redis.crash()
        shutil.rmtree(directory, ignore_errors=True)


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Find the directory of initdb and pg_ctl: pg_config's, else the newest Debian install
    (/usr/lib/postgresql/<major>/bin), else the PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(d) for d in debian), key=lambda d: _major(d.parent.name))[::-1]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


class PrivatePostgres:
    """A PostgreSQL cluster of our own: trust auth, listening on 127.0.0.1 only."""

    def __init__(
        self, bindir: Path, directory: Path, settings: dict[str, str] | None = None
    ) -> None:
        self.bindir = bindir
        self.directory = directory
        self.settings = dict(settings or {})
        """Lines added to postgresql.conf (name = value, the value as the file spells it)."""
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()
        # PostgreSQL refuses to run as root: then it runs as the postgres system user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self._as, *command], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def create(self) -> None:
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",  # the cluster dies with the test; initdb need not fsync its files
        )
        if self.settings:
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
        )
        _wait_for(lambda: _accepts(self.port), f"PostgreSQL on port {self.port}", self.log)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' (a clean shutdown) or 'immediate' (as if it crashed)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """Stop the server for good, even when pg_ctl cannot (kill -9 of the postmaster)."""
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            self.stop("immediate")
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_postgres(settings: dict[str, str] | None = None) -> Iterator[PrivatePostgres]:
    """Give a running private PostgreSQL (with `settings` in its postgresql.conf); always stop
    it and remove its files afterwards."""
    bindir = postgres_bindir()
    if bindir is None:
        missing_tool("PostgreSQL's initdb and pg_ctl are not installed (Debian package postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing_tool("runuser is missing, and PostgreSQL cannot run as root")
    directory = Path(tempfile.mkdtemp(prefix="tenantry-faults-pg-"))
    postgres = PrivatePostgres(bindir, directory, settings)
    try:
        postgres.create()
        postgres.start()
        yield postgres
    finally:
        if postgres.running():
            postgres.kill()
        shutil.rmtree(directory, ignore_errors=True)


# --- an outage under load -------------------------------------------------------------------


@dataclass
class OutageReport:
    """What the clients saw before, during and after the database's outage."""

    statuses: Counter[int | str] = field(default_factory=Counter)
    """Every chat response's status ("no response" for a transport error), all phases."""
    during: Counter[int | str] = field(default_factory=Counter)
    """Statuses of the chat requests sent and answered while the database was down."""
    outage: float = 0.0
    """Seconds the database was down."""
    probes: dict[str, Counter[int | str]] = field(default_factory=dict)
    """Statuses of the other endpoints, asked again and again during the outage."""
    slowest_probe: float = 0.0
    slowest: float = 0.0
    """Seconds of the slowest request, any phase."""
    recovery: float = 0.0
    """Seconds from the database answering again to /readyz answering 200."""
    acknowledged_after: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        probes = ", ".join(f"{path} {dict(seen)}" for path, seen in self.probes.items())
        return (
            f"chat statuses {dict(self.statuses)}; during the {self.outage:.1f}s outage "
            f"{dict(self.during)}, {probes} (slowest {self.slowest_probe:.2f}s); slowest chat "
            f"request {self.slowest:.2f}s; ready {self.recovery:.2f}s after "
            f"the database was back, then {self.acknowledged_after} turns acknowledged"
        )


async def _probe(http: httpx.AsyncClient, path: str, report: OutageReport) -> None:
    """GET `path` during the outage: it must be a 503 with Retry-After, and quick."""
    started = time.monotonic()
    try:
        response = await http.get(path)
    except httpx.TransportError as exc:
        status: int | str = f"no response ({type(exc).__name__})"
        retry_after = None
    else:
        status, retry_after = response.status_code, response.headers.get("Retry-After")
    seconds = time.monotonic() - started
    report.probes.setdefault(path, Counter())[status] += 1
    report.slowest_probe = max(report.slowest_probe, seconds)
    if status != 503 or retry_after is None:
        report.problems.append(f"GET {path} during the outage: {status}, Retry-After {retry_after}")


async def through_outage(
    store_url: str,
    workdir: Path,
    stop: Callable[[], None],
    start: Callable[[], None],
    *,
    clients: int = 20,
    users: int = 10,
    sessions_per_user: int = 2,
    turns_before: int = 100,
    turns_after: int = 100,
    outage: float = 8.0,
    request_bound: float = 10.0,
    recovery_bound: float = 5.0,
) -> OutageReport:
    """Serve `store_url` under `clients` concurrent chat clients; once `turns_before` turns
    were acknowledged, `stop()` the database, let every client see the outage, ask /readyz
    and two read endpoints, `start()` it again and wait (bounded) until /readyz is 200 and
    `turns_after` more turns were acknowledged. The tenantry server is never restarted.
    Then check that every acknowledged turn is stored whole (`check_stored`)."""
    report = OutageReport()
    scopes = make_scopes(users, sessions_per_user)
    with counting_server(store_url, workdir) as server:
        async with httpx.AsyncClient(
            base_url=server.url, limits=client_limits(clients + 5), timeout=request_bound + 20
        ) as http:
            await wait_ready(http)
            load = Load(
                http, scopes, clients, 0, stop_on_transport_error=False, pause_after_error=0.05
            )
            running = asyncio.ensure_future(load.run())
            try:
                await until(lambda: len(load.acknowledged()) >= turns_before, 60, "turns")
                await asyncio.to_thread(stop)
                down = time.monotonic()
                sent_before = len(load.sent)

                def everyone_saw_it() -> bool:
                    seen = {s.client for s in load.sent[sent_before:] if s.ended is not None}
                    return len(seen) == clients

                # The outage lasts `outage` seconds (long enough for a connection pool to
                # give up reconnecting for a while) and until every client saw it.
                paths = ("/readyz", "/v1/users", f"/v1/users/{scopes[0][0]}/export")
                while time.monotonic() - down < outage or not everyone_saw_it():
                    if time.monotonic() - down > outage + request_bound + 10:
                        raise AssertionError("the clients were not answered during the outage")
                    for path in paths:
                        await _probe(http, path, report)
                up_called = time.monotonic()
                report.outage = up_called - down
                await asyncio.to_thread(start)
                report.recovery = await wait_ready(http, recovery_bound)
                acked = len(load.acknowledged())
                await until(
                    lambda: len(load.acknowledged()) >= acked + turns_after,
                    60,
                    "turns to succeed again",
                )
                report.acknowledged_after = len(load.acknowledged()) - acked
            finally:
                load.stop()
                await asyncio.wait_for(running, request_bound + 30)
            _classify(load.sent, down, up_called, report, request_bound)
            check = await check_stored(
                http,
                Ledger(),
                scopes,
                load.acknowledged(),
                [s for s in load.sent if not s.acknowledged],
            )
            report.problems += check.problems
    return report


def _classify(
    sent: list[Sent],
    down: float,
    up_called: float,
    report: OutageReport,
    request_bound: float,
) -> None:
    for s in sent:
        status: int | str = s.status if s.status is not None else "no response"
        report.statuses[status] += 1
        report.slowest = max(report.slowest, s.seconds)
        if down <= s.started and s.ended is not None and s.ended <= up_called:
            report.during[status] += 1
        if s.status is None:
            report.problems.append(f"{s.text!r}: no response: {s.error}")
        elif s.status not in (200, 503):
            report.problems.append(f"{s.text!r}: {s.status} {s.error}")
        elif s.status == 503 and s.retry_after is None:
            report.problems.append(f"{s.text!r}: 503 without Retry-After")
        if s.seconds > request_bound:
            report.problems.append(f"{s.text!r} took {s.seconds:.1f}s ({s.status})")
    if set(report.during) != {503}:
        report.problems.append(f"requests during the outage got {dict(report.during)}, not 503")
    if report.slowest_probe > request_bound:
        report.problems.append(f"a request during the outage took {report.slowest_probe:.1f}s")
