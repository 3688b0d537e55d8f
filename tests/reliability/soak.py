"""Soak: one real `tenantry serve` process (SQLite store, JWT auth, TTL pruning on) under
mixed traffic from many tenants, while its RSS, open file descriptors and TCP connections
are sampled. Shared by `test_soak.py` (a 2-minute smoke run in CI) and `bench/soak.py` (30
minutes, results and plots in bench/results/).

The traffic is paced (a fixed offered rate, at most `concurrency` requests in flight): chat,
streamed chat, OpenAI-compatible chat, session lists, message reads, session and user
deletes, over `tenants` users. Every message a tenant sends carries the tenant's token, and
every read is checked for another tenant's token. Some chats open a session that is never
used again, so TTL pruning has something to delete; at the end the run checks that every
such session old enough is gone and that recently used ones are still there.

How the verdicts stay meaningful on a noisy shared machine (see `judge`):

- The first `warmup` seconds are left out of every baseline: the server fills its caches,
  SQLite its page cache, the allocator its arenas, and the tenants their first sessions;
  and pruning gets under way (its first deletions come `prune_inactive_seconds` after the
  start), so the warm-up should be longer than that plus one prune interval: then the first
  window and the last carry the same kind of work.
- The latency baseline is the first `window` seconds after warm-up, compared with the last
  `window` seconds. Each window's p99 is also computed as the median of the p99s of its
  10-second slices: a sustained slow-down (a leak, a growing scan) raises every slice, while
  a few seconds of CPU stolen by another process raise only one. The verdict uses that
  robust p99; the plain p99s are reported next to it.
- Other processes on the machine can still slow a whole window down. So when the last
  window's p99 is over the allowance, the run goes on for up to `extra_windows` more windows
  and the newest is judged: a burst of noise passes once it is over, while a lasting
  slow-down (a leak, a scan that grows with the data) fails every window it is given. The
  figures say how many extra windows were run, and every ratio seen.
- RSS, descriptors and connections compare the median of the samples of the first window
  with the median of the samples of the last window (one sample is noise, a window is not),
  and RSS is also checked for a steady climb: the least-squares slope over the measured
  period, extrapolated over the run, must stay within the same allowance.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import psutil

from tenantry.tenancy import split_tenant_id

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "tenantry-soak-secret-" + "0123456789abcdef" * 4
SLICE = 10.0
"""Seconds per slice for the robust p99 (the median of the slices' p99s)."""
OPERATIONS = {
    "chat": 30,
    "stream": 12,
    "completions": 5,
    "sessions": 15,
    "messages": 28,
    "delete_session": 7,
    "delete_user": 3,
}
"""Relative weights of the request kinds."""
EPHEMERAL_SHARE = 0.2
"""Share of chats that open a session never used again (for pruning to delete)."""
HOT_SHARE, HOT_TRAFFIC = 0.1, 0.5
"""10 % of the tenants get half of the traffic; the rest share the other half."""


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 120.0
    warmup: float = 20.0
    window: float = 40.0
    tenants: int = 10_000
    rate: float = 60.0
    """Requests offered per second."""
    concurrency: int = 32
    sample_every: float = 2.0
    prune_inactive_seconds: float = 30.0
    prune_interval_seconds: float = 5.0
    seed: int = 0
    # What the verdicts allow:
    rss_factor: float = 1.3
    rss_slack_mb: float = 16.0
    fd_slack: int = 8
    connection_slack: int = 8
    p99_factor: float = 1.5
    extra_windows: int = 0
    """If the last window's p99 is over the allowance, run up to this many more windows
    and judge the newest: noise from other processes passes, a lasting slow-down does not."""

    def __post_init__(self) -> None:
        if self.warmup + 2 * self.window > self.seconds:
            raise ValueError("the run must hold the warm-up and two separate windows")
        if self.warmup < self.prune_inactive_seconds + self.prune_interval_seconds:
            raise ValueError("the warm-up must last until pruning is under way")


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    connections: int
    threads: int
    cpu_seconds: float
    store_mb: float


@dataclass
class SoakResult:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    requests: list[tuple[float, str, float, int]] = field(default_factory=list)
    """(start second, kind, duration in seconds, status) of every request."""
    violations: list[str] = field(default_factory=list)
    pruned_by_server: int = 0
    prune_checked: int = 0
    prune_survivors: list[str] = field(default_factory=list)
    recent_checked: int = 0
    recent_missing: list[str] = field(default_factory=list)
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    seconds: float = 0.0
    """How long the traffic ran: `config.seconds`, plus any extra windows."""
    p99_ratios: list[float] = field(default_factory=list)
    """The robust p99 ratio (last window / first) at the planned end and after each extra
    window."""


# --- the server process ---------------------------------------------------------------------


class ServerProcess:
    """`tenantry serve` on a free loopback port; its output is read all along, keeping the
    last lines and the number of sessions its pruner reported."""

    def __init__(self, store_url: str, cwd: Path, config: SoakConfig) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
        env |= {
            "TENANTRY_STORE_URL": store_url,
            "TENANTRY_JWT_SECRET": JWT_SECRET,
            "TENANTRY_JWT_ORG_CLAIM": "org",
            "TENANTRY_PRUNE_INACTIVE_HOURS": repr(config.prune_inactive_seconds / 3600),
            "TENANTRY_PRUNE_INTERVAL_SECONDS": repr(config.prune_interval_seconds),
        }
        command = [str(Path(sys.executable).parent / "tenantry"), "serve", "--port", "0"]
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


# --- the traffic ----------------------------------------------------------------------------


class Tenants:
    """Tenant ids (with ':' and unicode), their secret tokens and their JWTs."""

    def __init__(self, count: int, seed: int) -> None:
        self.ids = [f"soak:{i:05d}-ü" for i in range(count)]
        self.hot = self.ids[: max(1, int(count * HOT_SHARE))]
        self._seed = seed
        self._tokens: dict[str, str] = {}
        self._jwts: dict[str, str] = {}

    def token(self, tenant: str) -> str:
        if tenant not in self._tokens:
            digest = hashlib.blake2b(f"{self._seed}/{tenant}".encode(), digest_size=6)
            self._tokens[tenant] = "T" + digest.hexdigest()
        return self._tokens[tenant]

    def headers(self, tenant: str) -> dict[str, str]:
        if tenant not in self._jwts:
            org, user = split_tenant_id(tenant)  # "soak:00001-ü" is user "00001-ü" of org "soak"
            claims = {"org": org, "sub": user, "exp": int(time.time()) + 86_400}
            self._jwts[tenant] = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {self._jwts[tenant]}"}

    def pick(self, rng: random.Random) -> str:
        return rng.choice(self.hot if rng.random() < HOT_TRAFFIC else self.ids)


@dataclass
class Ledger:
    """What the traffic did that the end checks need: sessions opened once, chats, deletes."""

    ephemeral: list[tuple[float, str, str]] = field(default_factory=list)
    last_chat: dict[tuple[str, str], float] = field(default_factory=dict)
    deleted_user_at: dict[str, float] = field(default_factory=dict)
    deleted_session_at: dict[tuple[str, str], float] = field(default_factory=dict)


def _done_user(events: str) -> str | None:
    """Give the user id of a chat stream's `done` event (None if there is none)."""
    _, found, rest = events.partition("event: done\ndata: ")
    return json.loads(rest.split("\n", 1)[0])["user_id"] if found else None


class Traffic:
    def __init__(self, client: httpx.AsyncClient, config: SoakConfig, started: float) -> None:
        self.client = client
        self.config = config
        self.started = started
        self.rng = random.Random(config.seed)
        self.tenants = Tenants(config.tenants, config.seed)
        self.ledger = Ledger()
        self.records: list[tuple[float, str, float, int]] = []
        self.violations: list[str] = []
        self.sequence = 0
        self.kinds = list(OPERATIONS)
        self.weights = list(OPERATIONS.values())

    def now(self) -> float:
        return time.monotonic() - self.started

    def _violation(self, text: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(text)

    def _session(self, tenant: str, ephemeral: bool) -> str:
        token = self.tenants.token(tenant)
        if ephemeral:
            self.sequence += 1
            return f"e{self.sequence}-{token}"
        return f"s{self.rng.randrange(3)}-{token}"

    def _check_contents(self, tenant: str, messages: Sequence[dict[str, Any]], where: str) -> None:
        token = self.tenants.token(tenant)
        for message in messages:
            if token not in message.get("content", ""):
                self._violation(f"{where} of {tenant}: {str(message.get('content'))[:80]!r}")

    async def one(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        tenant = self.tenants.pick(self.rng)
        ephemeral = kind == "chat" and self.rng.random() < EPHEMERAL_SHARE
        session = self._session(tenant, ephemeral)
        user_path = f"/v1/users/{quote(tenant, safe='')}"
        session_path = f"{user_path}/sessions/{quote(session, safe='')}"
        token = self.tenants.token(tenant)
        text = f"{token} says hello {self.sequence}"
        headers = self.tenants.headers(tenant)
        started = self.now()
        try:
            if kind == "chat":
                body = {"message": text, "session_id": session}
                response = await self.client.post("/v1/chat", json=body, headers=headers)
            elif kind == "stream":
                body = {"message": text, "session_id": session}
                response = await self.client.post("/v1/chat/stream", json=body, headers=headers)
            elif kind == "completions":
                body = {
                    "model": "tenantry",
                    "messages": [{"role": "user", "content": text}],
                    "metadata": {"session_id": session},
                }
                response = await self.client.post(
                    "/v1/chat/completions", json=body, headers=headers
                )
            elif kind == "sessions":
                response = await self.client.get(f"{user_path}/sessions", headers=headers)
            elif kind == "messages":
                url = f"{session_path}/messages?limit=20"
                response = await self.client.get(url, headers=headers)
            elif kind == "delete_session":
                response = await self.client.delete(session_path, headers=headers)
            else:
                response = await self.client.delete(user_path, headers=headers)
        except httpx.HTTPError as exc:
            self.records.append((started, kind, self.now() - started, 0))
            self._violation(f"{kind} failed: {type(exc).__name__}: {exc}")
            return
        finished = self.now()
        self.records.append((started, kind, finished - started, response.status_code))
        self._judge(kind, tenant, session, response, started, finished, ephemeral)

    def _judge(
        self,
        kind: str,
        tenant: str,
        session: str,
        response: httpx.Response,
        started: float,
        finished: float,
        ephemeral: bool,
    ) -> None:
        status = response.status_code
        token = self.tenants.token(tenant)
        if status >= 500 or status in (400, 401, 403, 422):
            self._violation(f"{kind} of {tenant} answered {status}: {response.text[:200]}")
            return
        if kind in ("chat", "stream", "completions"):
            if status == 200:
                self.ledger.last_chat[(tenant, session)] = finished
                if ephemeral:
                    self.ledger.ephemeral.append((finished, tenant, session))
            if kind == "chat" and status == 200 and response.json()["user_id"] != tenant:
                self._violation(f"chat of {tenant} answered for {response.json()['user_id']}")
            if kind == "stream" and status == 200 and _done_user(response.text) != tenant:
                self._violation(f"stream of {tenant} did not end as {tenant}")
            if status == 200 and token not in response.text:
                self._violation(f"{kind} of {tenant}: reply without the tenant's token")
        elif kind == "sessions" and status == 200:
            strangers = [s for s in response.json()["sessions"] if not s.endswith(token)]
            if strangers:
                self._violation(f"sessions of {tenant} listed {strangers[:3]}")
        elif kind == "messages" and status == 200:
            self._check_contents(tenant, response.json()["messages"], "messages")
        elif kind == "delete_session" and status in (204, 404):
            self.ledger.deleted_session_at[(tenant, session)] = started
        elif kind == "delete_user" and status in (200, 404):
            self.ledger.deleted_user_at[tenant] = started

    async def run(self, until: float) -> None:
        """Offer `config.rate` requests a second until `until` (seconds since the start)."""
        gate = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.config.rate
        next_at = self.now()

        async def bounded() -> None:
            try:
                await self.one()
            finally:
                gate.release()

        while next_at < until:
            delay = next_at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            task = asyncio.create_task(bounded())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at = max(next_at + interval, self.now() - 1.0)  # never a burst to catch up
        if tasks:
            await asyncio.gather(*tasks)


# --- the run --------------------------------------------------------------------------------


async def _sampler(
    process: psutil.Process, started: float, db: Path, every: float, out: list[Sample]
) -> None:
    while True:
        out.append(await asyncio.to_thread(sample, process, started, db))
        await asyncio.sleep(every)


async def _check_pruning(
    client: httpx.AsyncClient, traffic: Traffic, result: SoakResult, end: float
) -> None:
    """Every session opened once and idle for longer than the TTL plus a prune interval (and
    a margin) is gone; every session chatted in during the last third of the TTL is there."""
    config = traffic.config
    ledger = traffic.ledger
    old_enough = end - config.prune_inactive_seconds - config.prune_interval_seconds - 5.0
    candidates = [(t, u, s) for t, u, s in ledger.ephemeral if t < old_enough]
    for _, tenant, session in candidates[:200]:
        result.prune_checked += 1
        path = f"/v1/users/{quote(tenant, safe='')}/sessions/{quote(session, safe='')}/messages"
        response = await client.get(path, headers=traffic.tenants.headers(tenant))
        if response.status_code != 404:
            result.prune_survivors.append(f"{tenant}/{session}: {response.status_code}")
    recent_after = end - config.prune_inactive_seconds / 3
    recent = [
        (key, t)
        for key, t in ledger.last_chat.items()
        if t > recent_after
        and ledger.deleted_user_at.get(key[0], -1.0) < t
        and ledger.deleted_session_at.get(key, -1.0) < t
    ]
    for (tenant, session), _ in recent[:200]:
        result.recent_checked += 1
        path = f"/v1/users/{quote(tenant, safe='')}/sessions/{quote(session, safe='')}/messages"
        response = await client.get(path, headers=traffic.tenants.headers(tenant))
        if response.status_code != 200:
            result.recent_missing.append(f"{tenant}/{session}: {response.status_code}")


async def run_soak(config: SoakConfig, workdir: Path) -> SoakResult:
    """Run one soak in `workdir` (the SQLite file goes there); give everything measured."""
    result = SoakResult(config)
    db = workdir / "soak.db"
    with running_server(f"sqlite:///{db}", workdir, config) as server:
        process = psutil.Process(server.process.pid)
        # Idle connections go before uvicorn's keep-alive timeout (5 s) closes them, so no
        # request is sent on a connection the server is closing.
        limits = httpx.Limits(
            max_connections=config.concurrency,
            max_keepalive_connections=config.concurrency,
            keepalive_expiry=2.0,
        )
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            started = time.monotonic()
            traffic = Traffic(client, config, started)
            sampler = asyncio.create_task(
                _sampler(process, started, db, config.sample_every, result.samples)
            )
            try:
                result.seconds = config.seconds
                await traffic.run(until=result.seconds)
                result.p99_ratios.append(_p99_ratio(config, traffic.records, result.seconds))
                while (
                    result.p99_ratios[-1] > config.p99_factor
                    and len(result.p99_ratios) <= config.extra_windows
                ):
                    result.seconds += config.window
                    await traffic.run(until=result.seconds)
                    result.p99_ratios.append(_p99_ratio(config, traffic.records, result.seconds))
                result.samples.append(await asyncio.to_thread(sample, process, started, db))
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            await _check_pruning(client, traffic, result, traffic.now())
        result.requests = traffic.records
        result.violations = traffic.violations
        result.exit_code = server.stop()
        result.pruned_by_server = server.pruned
        result.log_tail = list(server.tail)[-30:]
    return result


# --- the verdicts ---------------------------------------------------------------------------


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _p99_ratio(
    config: SoakConfig, records: Sequence[tuple[float, str, float, int]], end: float
) -> float:
    first = robust_p99(records, config.warmup, config.warmup + config.window)
    return round(robust_p99(records, end - config.window, end) / first, 2)


def robust_p99(records: Sequence[tuple[float, str, float, int]], start: float, end: float) -> float:
    """The median of the p99s of the `SLICE`-second slices of [start, end)."""
    slices: dict[int, list[float]] = {}
    for t, _, seconds, _ in records:
        if start <= t < end:
            slices.setdefault(int((t - start) // SLICE), []).append(seconds)
    values = [p99(v) for v in slices.values() if len(v) >= 20]
    return statistics.median(values) if values else math.nan


def _median(samples: Sequence[Sample], start: float, end: float, name: str) -> float:
    values = [getattr(s, name) for s in samples if start <= s.t < end]
    return statistics.median(values) if values else math.nan


def _slope_per_second(samples: Sequence[Sample], start: float, name: str) -> float:
    points = [(s.t, getattr(s, name)) for s in samples if s.t >= start]
    if len(points) < 3:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def per_window(result: SoakResult, window: float) -> list[dict[str, Any]]:
    """Figures per `window` seconds: requests, p99 (plain and robust), RSS, fds, connections."""
    rows = []
    for index in range(math.ceil(result.seconds / window)):
        start, end = index * window, min((index + 1) * window, result.seconds)
        in_window = [r for r in result.requests if start <= r[0] < end]
        samples = [s for s in result.samples if start <= s.t < end]
        rows.append(
            {
                "start_s": start,
                "requests": len(in_window),
                "p99_ms": round(p99([r[2] for r in in_window]) * 1000, 1),
                "robust_p99_ms": round(robust_p99(result.requests, start, end) * 1000, 1),
                "rss_mb": round(max((s.rss_mb for s in samples), default=math.nan), 1),
                "fds": max((s.fds for s in samples), default=0),
                "connections": max((s.connections for s in samples), default=0),
                "store_mb": round(max((s.store_mb for s in samples), default=math.nan), 1),
            }
        )
    return rows


def judge(result: SoakResult) -> dict[str, Any]:
    """Give every figure and verdict of a run; `verdicts` maps each criterion to pass/fail."""
    config = result.config
    first = (config.warmup, config.warmup + config.window)
    last = (result.seconds - config.window, result.seconds + 1)
    rss_first = _median(result.samples, *first, "rss_mb")
    rss_last = _median(result.samples, *last, "rss_mb")
    rss_allowed = rss_first * config.rss_factor + config.rss_slack_mb
    slope = _slope_per_second(result.samples, config.warmup, "rss_mb")
    rss_projected = rss_first + max(0.0, slope) * (result.seconds - config.warmup)
    fds_first = _median(result.samples, *first, "fds")
    fds_last = _median(result.samples, *last, "fds")
    conn_first = _median(result.samples, *first, "connections")
    conn_last = _median(result.samples, *last, "connections")
    p99_first = robust_p99(result.requests, *first)
    p99_last = robust_p99(result.requests, *last)
    plain_first = p99([r[2] for r in result.requests if first[0] <= r[0] < first[1]])
    plain_last = p99([r[2] for r in result.requests if last[0] <= r[0] < last[1]])
    statuses = collections.Counter(r[3] for r in result.requests)
    by_kind = collections.Counter(r[1] for r in result.requests)
    cpu = [s.cpu_seconds for s in result.samples]
    verdicts = {
        "no_5xx_or_failed_request": not any(s >= 500 or s == 0 for s in statuses),
        "no_foreign_data_or_bad_answer": not result.violations,
        "rss_flat": rss_last <= rss_allowed and rss_projected <= rss_allowed,
        "fds_flat": fds_last <= fds_first + config.fd_slack,
        "connections_flat": conn_last <= conn_first + config.connection_slack,
        "p99_within_factor": p99_last <= p99_first * config.p99_factor,
        "pruning_deleted_idle_sessions": result.prune_checked > 0 and not result.prune_survivors,
        "pruning_kept_active_sessions": result.recent_checked > 0 and not result.recent_missing,
        "server_stopped_gracefully": result.exit_code in (0, -signal.SIGTERM)
        and any("Application shutdown complete" in line for line in result.log_tail),
    }
    return {
        "requests": len(result.requests),
        "requests_per_second": round(len(result.requests) / result.seconds, 1),
        "seconds": result.seconds,
        "extra_windows_run": max(0, len(result.p99_ratios) - 1),
        "p99_ratio_history": result.p99_ratios,
        "by_kind": dict(by_kind),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rss_mb": {
            "first_window": round(rss_first, 1),
            "last_window": round(rss_last, 1),
            "allowed": round(rss_allowed, 1),
            "slope_mb_per_hour": round(slope * 3600, 1),
            "projected_end": round(rss_projected, 1),
            "max": round(max(s.rss_mb for s in result.samples), 1),
        },
        "fds": {"first_window": fds_first, "last_window": fds_last},
        "connections": {"first_window": conn_first, "last_window": conn_last},
        "p99_ms": {
            "first_window_robust": round(p99_first * 1000, 1),
            "last_window_robust": round(p99_last * 1000, 1),
            "first_window_plain": round(plain_first * 1000, 1),
            "last_window_plain": round(plain_last * 1000, 1),
            "ratio_robust": round(p99_last / p99_first, 2),
            "ratio_plain": round(plain_last / plain_first, 2),
        },
        "server_cpu_seconds": round(cpu[-1] - cpu[0], 1) if cpu else 0.0,
        "store_mb_end": round(result.samples[-1].store_mb, 1) if result.samples else 0.0,
        "pruned_by_server": result.pruned_by_server,
        "prune_checked": result.prune_checked,
        "prune_survivors": result.prune_survivors[:5],
        "recent_checked": result.recent_checked,
        "recent_missing": result.recent_missing[:5],
        "violations": result.violations[:10],
        "verdicts": verdicts,
    }


def to_json(result: SoakResult) -> dict[str, Any]:
    """The whole run as JSON-ready data (samples and per-window figures, not every request)."""
    return {
        "config": asdict(result.config),
        "figures": judge(result),
        "windows": per_window(result, result.config.window),
        "samples": [asdict(s) for s in result.samples],
        "log_tail": result.log_tail,
    }


def main(argv: list[str]) -> None:
    """python -m tests.reliability.soak [SECONDS]: a quick run, figures as JSON."""
    import tempfile

    seconds = float(argv[0]) if argv else 120.0
    config = SoakConfig(
        seconds=seconds,
        warmup=20.0,
        window=(seconds - 20.0) / 2,
        prune_inactive_seconds=15.0,
        prune_interval_seconds=5.0,
    )
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(run_soak(config, Path(workdir)))
    print(json.dumps(judge(result), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
