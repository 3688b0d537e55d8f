"""Turn locks: one scope's turns never overlap, in one process or across replicas.

`LocalScopeLocks` is the in-process table of per-scope asyncio locks; it is the whole turn
lock of the embedded stores, and the first step of the server-backed ones.

`hold_turn` is the turn lock of the server-backed stores. It first takes the in-process
entry, so turns of one scope in one process queue on an asyncio lock and only one of them at
a time asks the server. Then it polls the backend's `try_acquire` (a PostgreSQL advisory
lock, a Redis key) with a growing pause, so a waiter holds no connection while it waits,
until the deadline. The whole wait, local and remote, is bounded by the one timeout; past
it the turn fails with `ScopeBusy` (`busy`, the one message for it).

While held, the lock is recorded in a context variable (`held_lock`), so the store can fence
the turn's write: the append checks, in the same atomic step, that the lock is still this
holder's, and refuses to store a turn whose lock was lost (`ScopeLockLost`, from `lost`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tenantry.errors import ScopeBusy, ScopeLockLost
from tenantry.tenancy import Scope

FIRST_PAUSE = 0.005
"""Seconds between the first tries for a lock held elsewhere; doubles up to MAX_PAUSE."""
MAX_PAUSE = 0.1


def busy(scope: Scope, timeout: float) -> ScopeBusy:
    """Give the error of a turn that waited `timeout` seconds for its scope in vain."""
    return ScopeBusy(
        f"scope {scope} is busy: another turn (in this or another replica) held it for more "
        f"than {timeout:g}s; retry later, or raise the agent's lock_timeout"
    )


def lost(scope: Scope) -> ScopeLockLost:
    """Give the error of a turn whose lock was gone when it came to write."""
    return ScopeLockLost(
        f"the turn lost its lock on scope {scope} before writing (it ran longer than the lock "
        "could be kept, or the connection that held it broke); nothing of this turn was "
        "stored; run the turn again"
    )


# --- in one process ---------------------------------------------------------------------------


class LocalScopeLocks:
    """Per-scope asyncio locks for one process. An entry lives only while someone holds or
    waits for it, so the table never grows beyond the number of scopes in flight."""

    def __init__(self) -> None:
        self._entries: dict[Scope, _LockEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def hold(self, scope: Scope, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold the scope's lock (`async with`); ScopeBusy after `timeout` seconds of waiting."""
        return _Hold(self._entries, scope, timeout)


class _Hold:
    """`LocalScopeLocks.hold`'s context manager (a class: cheaper per turn than a generator)."""

    __slots__ = ("entries", "entry", "scope", "timeout")

    def __init__(self, entries: dict[Scope, _LockEntry], scope: Scope, timeout: float) -> None:
        self.entries, self.scope, self.timeout = entries, scope, timeout

    async def __aenter__(self) -> None:
        entry = self.entries.get(self.scope)
        if entry is None:
            entry = self.entries[self.scope] = _LockEntry()
        self.entry = entry
        entry.users += 1
        try:
            if entry.users == 1:
                # Nobody else holds or waits for this scope: the lock is free with no queue,
                # so acquire() returns at once without suspending; no timer is needed.
                await entry.lock.acquire()
            else:
                try:
                    async with asyncio.timeout(self.timeout):
                        await entry.lock.acquire()
                except TimeoutError:
                    raise busy(self.scope, self.timeout) from None
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.entry.lock.release()
        self._leave()

    def _leave(self) -> None:
        entry = self.entry
        entry.users -= 1
        if entry.users == 0:
            del self.entries[self.scope]


class _LockEntry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


# --- across replicas --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A turn lock this task holds: which store, which scope, and the backend's proof."""

    owner: object
    scope: Scope
    proof: Any


_held: ContextVar[tuple[HeldLock, ...]] = ContextVar("tenantry_held_locks", default=())


def held_lock(owner: object, scope: Scope) -> HeldLock | None:
    """Give the lock on `scope` that the current task holds through `owner`, if any."""
    for held in _held.get():
        if held.owner is owner and held.scope == scope:
            return held
    return None


@asynccontextmanager
async def hold_turn(
    owner: object,
    local: LocalScopeLocks,
    scope: Scope,
    timeout: float,  # noqa: ASYNC109
    try_acquire: Callable[[], Awaitable[Any]],
    release: Callable[[Any], Awaitable[None]],
) -> AsyncIterator[HeldLock]:
    """Hold the scope's turn lock: `try_acquire()` gives a proof of holding, or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with local.hold(scope, timeout):
        proof = await _try_once(try_acquire, release)
        pause = FIRST_PAUSE
        while proof is None:
            left = deadline - loop.time()
            if left <= 0:
                raise busy(scope, timeout)
            await asyncio.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, MAX_PAUSE)
            proof = await _try_once(try_acquire, release)
        held = HeldLock(owner, scope, proof)
        token = _held.set((*_held.get(), held))
        try:
            yield held
        finally:
            _held.reset(token)
            # Shielded: a cancelled turn must still give its lock back.
            await asyncio.shield(release(proof))


_undoing: set[asyncio.Future[Any]] = set()


async def _try_once(
    try_acquire: Callable[[], Awaitable[Any]], release: Callable[[Any], Awaitable[None]]
) -> Any:
    """One try, shielded: if the waiter is cancelled while the server grants the lock, the
    grant is given back instead of leaking."""
    attempt = asyncio.ensure_future(try_acquire())
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        attempt.add_done_callback(lambda done: _undo(done, release))
        raise


def _undo(attempt: asyncio.Future[Any], release: Callable[[Any], Awaitable[None]]) -> None:
    if attempt.cancelled() or attempt.exception() is not None or attempt.result() is None:
        return
    undo = asyncio.ensure_future(release(attempt.result()))
    _undoing.add(undo)
    undo.add_done_callback(_undoing.discard)


__all__ = [
    "FIRST_PAUSE",
    "MAX_PAUSE",
    "HeldLock",
    "LocalScopeLocks",
    "busy",
    "held_lock",
    "hold_turn",
    "lost",
]
