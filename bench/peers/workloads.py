"""The measurements that drive a `Peer`, run in a fresh child process per framework.

`measure(name, sizes)` proves the adapter reads history, then runs the workloads that
bench/frameworks.py reports:

1. overhead: `users` × `rounds` turns, round-robin over users (each turn reads that user's
   history), sequentially and concurrently (each round's turns under asyncio.gather);
2. growth: the next turn's time for sessions pre-filled to each `history` size (all in one
   database), and for a user of `probe_turns` turns in databases holding each `tenants` count
   of other tenants (one database per count, all open at once). The timed turns go
   round-robin over the sizes, so the machine's load, which drifts on a shared machine,
   weighs on every size alike and the ratios between sizes stay meaningful;
3. storage: database bytes per stored turn, and bytes one more turn adds at each size.

The child refuses every non-loopback connection and counts the attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bench.common import summary_ms
from bench.peers import (
    HistoryNotRead,
    Peer,
    PeerUnavailable,
    check_reads_history,
    database_bytes,
    load,
)

SESSION = "main"
LANGGRAPH_CAP = 1000
"""LangGraph writes the whole message list into each of its ~3 checkpoints per turn, so a
thread's storage grows with the square of its length; its history growth stops here."""
PREFILL_CHUNK = 5_000


@runtime_checkable
class SizedPeer(Protocol):
    """A peer whose storage is not one SQLite file: it says how many bytes it holds."""

    async def database_bytes(self) -> int: ...


@dataclass(frozen=True)
class Sizes:
    """The counts of one run."""

    users: int
    rounds: int
    history: tuple[int, ...]
    tenants: tuple[int, ...]
    warmup: int
    timed: int
    timed_max: int
    timed_budget: float
    """Seconds of timed rounds after which no more than `timed` rounds are run."""
    probe_turns: int = 10
    caps: dict[str, int] = field(default_factory=lambda: {"langgraph": LANGGRAPH_CAP})


def measure(name: str, sizes: Sizes) -> dict[str, Any]:
    """Measure one framework (run in a fresh process); give its results."""
    guard = _NetworkGuard()
    guard.install()
    workdir = Path(tempfile.mkdtemp(prefix=f"tenantry-bench-{name}-"))
    try:
        results = asyncio.run(_measure(name, sizes, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["network_connections_refused"] = len(guard.refused)
    return results


class _NetworkGuard:
    """Refuses every connection that does not go to this machine; counts the attempts."""

    LOOPBACK = ("127.0.0.1", "::1", "localhost")

    def __init__(self) -> None:
        self.refused: list[str] = []

    def install(self) -> None:
        original = socket.socket.connect
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            family = sock.family in (socket.AF_INET, socket.AF_INET6)
            if family and address[0] not in guard.LOOPBACK:
                guard.refused.append(str(address[0]))
                raise ConnectionRefusedError(f"the benchmark uses no network: {address[0]}")
            original(sock, address)

        socket.socket.connect = connect  # type: ignore[method-assign]


async def _measure(name: str, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    try:
        peer = load(name)
    except PeerUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    results: dict[str, Any] = {"available": True, "settings": peer.settings}
    await _sanity(peer, workdir / "sanity.db")
    results["reads_history"] = True
    for mode in ("sequential", "concurrent"):
        results[mode] = await _overhead(name, workdir / f"{mode}.db", sizes, mode)
        print(f"  {name:14} {mode:10} mean {results[mode]['mean_ms']:8.2f} ms", flush=True)
    results["history"] = await _history_growth(name, workdir / "history.db", sizes)
    results["tenants"] = await _tenant_growth(name, workdir, sizes)
    return results


async def _sanity(peer: Peer, path: Path) -> None:
    await peer.open(path)
    try:
        await check_reads_history(peer)
    finally:
        await peer.close()
        _remove(path)


# --- 1. overhead ----------------------------------------------------------------------------


async def _turn_done(peer: Peer, user_id: str, text: str, since: float) -> float:
    """Run a turn; give the seconds from `since` to its reply."""
    if not await peer.turn(user_id, SESSION, text):
        raise HistoryNotRead(f"{peer.name}: empty reply")
    return time.perf_counter() - since


async def _timed_turn(peer: Peer, user_id: str, text: str) -> tuple[float, float]:
    """Run a turn alone; give its wall-clock seconds and the CPU seconds the process spent
    on it in all its threads (what the machine's other load barely changes)."""
    cpu = time.process_time()
    wall = await _turn_done(peer, user_id, text, time.perf_counter())
    return wall, time.process_time() - cpu


async def _overhead(name: str, path: Path, sizes: Sizes, mode: str) -> dict[str, Any]:
    """Every user takes a turn per round: one after the other, or all at once. A concurrent
    turn's latency counts from its round's start, when all of the round's turns arrive."""
    peer = load(name)
    await peer.open(path)
    users = [f"user-{i:03d}" for i in range(sizes.users)]
    samples: list[float] = []
    cpu_samples: list[float] = []
    try:
        await peer.turn("warm-up", SESSION, "Hello")  # lazy set-up is not a turn's cost
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        for r in range(sizes.rounds):
            texts = [(user, f"Message {r} from {user}") for user in users]
            if mode == "concurrent":
                since = time.perf_counter()
                samples += await asyncio.gather(*(_turn_done(peer, *t, since) for t in texts))
            else:
                for user, text in texts:
                    wall, used = await _timed_turn(peer, user, text)
                    samples.append(wall)
                    cpu_samples.append(used)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        for user in users:
            stored = await peer.stored_turns(user, SESSION)
            if stored != sizes.rounds:
                raise HistoryNotRead(f"{name}: {user} holds {stored} turns, not {sizes.rounds}")
    finally:
        await peer.close()
    size = database_bytes(path)
    _remove(path)
    turns = len(samples)
    return {
        **summary_ms(samples),
        **({"cpu": summary_ms(cpu_samples)} if cpu_samples else {}),
        "wall_s": round(wall, 3),
        "wall_per_turn_ms": round(wall / turns * 1000, 3),
        "cpu_per_turn_ms": round(cpu / turns * 1000, 3),
        "turns_per_s": round(turns / wall, 1),
        "db_bytes": size,
        "bytes_per_turn": round(size / (turns + 1)),  # + the warm-up turn
    }


# --- 2. growth ------------------------------------------------------------------------------


async def _prefill(peer: Peer, user_id: str, turns: int) -> str:
    """Pre-fill the user's session with `turns` turns; give the newest pre-filled text."""
    texts = [f"Earlier message {i}" for i in range(turns)]
    for chunk in range(0, len(texts), PREFILL_CHUNK):
        await peer.prefill(user_id, SESSION, texts[chunk : chunk + PREFILL_CHUNK])
    stored = await peer.stored_turns(user_id, SESSION)
    if stored != turns:
        raise HistoryNotRead(f"{peer.name}: pre-filled {turns} turns, the framework holds {stored}")
    return texts[-1]


async def _warm_up(peer: Peer, user_id: str, newest: str, sizes: Sizes) -> None:
    """Run the untimed turns; the first must show `newest` (pre-filled) to the model."""
    for i in range(sizes.warmup):
        await peer.turn(user_id, SESSION, f"Warm-up message {i}")
        if i == 0 and newest not in peer.model_input():
            raise HistoryNotRead(
                f"{peer.name}: after the pre-fill the model input lacks {newest!r}: "
                "the pre-filled history is not read"
            )


async def _round_robin(targets: Sequence[tuple[Peer, str]], sizes: Sizes) -> list[dict]:
    """Time turns of each (peer, user), one of each per round: `sizes.timed` rounds, and
    more (up to `sizes.timed_max`) while the rounds so far took under `sizes.timed_budget`
    seconds, so cheap turns get enough samples for a steady median on a busy machine. Each
    round goes largest size first: what a big turn leaves behind (garbage, cold caches) then
    lands on the next largest, not on the smallest."""
    walls: list[list[float]] = [[] for _ in targets]
    cpus: list[list[float]] = [[] for _ in targets]
    inputs = [0] * len(targets)
    gc.collect()
    started = time.perf_counter()
    rounds = 0
    while rounds < sizes.timed or (
        rounds < sizes.timed_max and time.perf_counter() - started < sizes.timed_budget
    ):
        for i in reversed(range(len(targets))):  # targets come smallest first
            peer, user = targets[i]
            wall, cpu = await _timed_turn(peer, user, f"Next message {rounds}")
            walls[i].append(wall)
            cpus[i].append(cpu)
            if rounds == 0:  # what the model got, counted outside the timed turn
                inputs[i] = len(peer.model_input())
        rounds += 1
    return [
        {"next_turn": summary_ms(w), "next_turn_cpu": summary_ms(c), "model_input_messages": n}
        for w, c, n in zip(walls, cpus, inputs, strict=True)
    ]


async def _history_growth(name: str, path: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """The next turn's time for sessions of each history size, in one database."""
    cap = sizes.caps.get(name)
    sizes_measured = [n for n in sizes.history if cap is None or n <= cap]
    points: dict[int, dict[str, Any]] = {
        n: {"turns": n, "skipped": _cap_reason(name, cap or 0)}
        for n in sizes.history
        if n not in sizes_measured
    }
    users = {n: f"user-{n}-turns" for n in sizes_measured}
    peer = load(name)
    await peer.open(path)
    try:
        await peer.turn("warm-up", SESSION, "Hello")
        newest = {}
        for n in sizes_measured:
            started = time.perf_counter()
            newest[n] = await _prefill(peer, users[n], n)
            points[n] = {"turns": n, "prefill_s": round(time.perf_counter() - started, 2)}
        for n in sizes_measured:  # one size at a time, to see what its turns add
            before = used_bytes(path)
            await _warm_up(peer, users[n], newest[n], sizes)
            added = (used_bytes(path) - before) / sizes.warmup
            points[n]["bytes_added_per_turn"] = round(added)
        timed = await _round_robin([(peer, users[n]) for n in sizes_measured], sizes)
        for n, figures in zip(sizes_measured, timed, strict=True):
            points[n] |= figures
            print(f"  {name:14} {n:>7} turns   p50 {_p50(points[n]):8.2f} ms", flush=True)
        turns = (
            sum(sizes_measured)
            + 1
            + len(sizes_measured) * (sizes.warmup + timed[0]["next_turn"]["n"])
        )
        database = {"db_bytes": database_bytes(path), "turns": turns}
    finally:
        await peer.close()
        _remove(path)
    for n in sizes_measured:
        points[n]["database"] = database
    return [points[n] for n in sizes.history]


def _cap_reason(name: str, cap: int) -> str:
    return (
        f"not measured: {name} writes the whole message list into each of its ~3 checkpoints "
        f"per turn (see bytes one more turn adds), so its sessions stop at {cap:,} turns"
    )


def measure_tenants(name: str, sizes: Sizes, make: Callable[[], Peer] | None = None) -> dict:
    """Measure only the tenant growth of one framework (run in a fresh process), on the
    peer `make()` gives (default: `load(name)`); give its results (bench/tenants.py)."""
    factory = make if make is not None else functools.partial(load, name)
    guard = _NetworkGuard()
    guard.install()
    workdir = Path(tempfile.mkdtemp(prefix=f"tenantry-bench-{name}-"))
    started = time.perf_counter()
    try:
        points = asyncio.run(_tenant_growth(name, workdir, sizes, factory))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "available": True,
        "settings": factory().settings,
        "tenants": points,
        "seconds": round(time.perf_counter() - started, 1),
        "network_connections_refused": len(guard.refused),
    }


async def _tenant_growth(
    name: str, workdir: Path, sizes: Sizes, make: Callable[[], Peer] | None = None
) -> list[dict[str, Any]]:
    """The next turn's time for one user, in databases holding each count of other tenants
    (one database per count, all open at once), on peers `make()` gives (default:
    `load(name)`)."""
    peers: list[tuple[Peer, Path]] = []
    points: list[dict[str, Any]] = []
    try:
        for tenants in sizes.tenants:
            path = workdir / f"tenants-{tenants}.db"
            peer = make() if make is not None else load(name)
            await peer.open(path)
            peers.append((peer, path))
            points.append(await _tenants_database(peer, path, tenants, sizes))
        timed = await _round_robin([(peer, "probe") for peer, _ in peers], sizes)
        for point, figures in zip(points, timed, strict=True):
            point |= figures
            tenants = point["tenants"]
            print(f"  {name:14} {tenants:>7} tenants p50 {_p50(point):8.2f} ms", flush=True)
    finally:
        for peer, path in peers:
            await peer.close()
            _remove(path)
    return points


async def _tenants_database(peer: Peer, path: Path, tenants: int, sizes: Sizes) -> dict:
    """Fill a database with the measured user ("probe", created first: an old tenant) and
    `tenants` others (the warm-up user and clones of one real turn); warm the probe up."""
    await peer.turn("warm-up", SESSION, "Hello")
    newest = await _prefill(peer, "probe", sizes.probe_turns)
    started = time.perf_counter()
    if tenants > 1:
        ids = [f"tenant-{i:06d}" for i in range(tenants - 1)]
        await peer.add_tenants(ids, SESSION)
        if await peer.stored_turns(ids[-1], SESSION) != 1:
            raise HistoryNotRead(f"{peer.name}: a cloned tenant does not hold its turn")
    filled = round(time.perf_counter() - started, 2)
    await _warm_up(peer, "probe", newest, sizes)
    size = await peer.database_bytes() if isinstance(peer, SizedPeer) else database_bytes(path)
    return {"tenants": tenants, "prefill_s": filled, "db_bytes": size}


def _p50(point: dict[str, Any]) -> float:
    return float(point["next_turn"]["p50_ms"])


# --- storage --------------------------------------------------------------------------------


def used_bytes(path: Path) -> int:
    """Give the bytes the database's b-tree pages use (page bytes minus their unused space),
    read through SQLite's dbstat table: byte-exact, unlike the file's size."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (used,) = conn.execute("SELECT sum(pgsize - unused) FROM dbstat").fetchone()
    return int(used or 0)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


__all__ = [
    "LANGGRAPH_CAP",
    "SESSION",
    "SizedPeer",
    "Sizes",
    "measure",
    "measure_tenants",
    "used_bytes",
]
