"""The shared turn-lock loop of the networked stores, against a fake server lock: a lock
granted to a turn that was cancelled meanwhile, or held by a turn that is cancelled, is
always given back."""

from __future__ import annotations

import asyncio

import pytest

from tenantry.errors import ScopeBusy
from tenantry.storage.base import LocalScopeLocks
from tenantry.storage.turnlock import held_lock, hold_turn
from tenantry.tenancy import Scope

SCOPE = Scope("u", "s")


class FakeServerLock:
    def __init__(self) -> None:
        self.holder: str | None = None
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.answer.set()
        self.released: list[str] = []

    async def try_acquire(self) -> str | None:
        self.asked.set()
        await self.answer.wait()
        if self.holder is not None:
            return None
        self.holder = "proof"
        return self.holder

    async def release(self, proof: str) -> None:
        self.released.append(proof)
        self.holder = None


async def test_a_grant_that_arrives_after_the_waiter_was_cancelled_is_given_back() -> None:
    server = FakeServerLock()
    server.answer.clear()  # the server is slow to answer

    async def turn() -> None:
        async with hold_turn(
            object(), LocalScopeLocks(), SCOPE, 5, server.try_acquire, server.release
        ):
            raise AssertionError("the turn must not run")

    task = asyncio.create_task(turn())
    await server.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.answer.set()  # the grant arrives after all
    for _ in range(10):
        await asyncio.sleep(0)
    assert server.released == ["proof"]
    assert server.holder is None


async def test_a_cancelled_turn_still_releases_its_lock() -> None:
    server = FakeServerLock()
    inside = asyncio.Event()
    owner = object()

    async def turn() -> None:
        async with hold_turn(
            owner, LocalScopeLocks(), SCOPE, 5, server.try_acquire, server.release
        ):
            assert held_lock(owner, SCOPE) is not None
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(turn())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.released == ["proof"]
    assert held_lock(owner, SCOPE) is None


async def test_a_lock_held_elsewhere_is_polled_until_the_deadline() -> None:
    server = FakeServerLock()
    server.holder = "another replica"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ScopeBusy, match="u/s is busy"):
        async with hold_turn(
            object(), LocalScopeLocks(), SCOPE, 0.3, server.try_acquire, server.release
        ):
            pass
    assert 0.3 <= loop.time() - started < 1.5
    assert server.released == []
