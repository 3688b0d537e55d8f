"""The turn locks: the shared loop of the networked stores, against a fake server lock (a lock
granted to a turn that was cancelled meanwhile, or held by a turn that is cancelled, is
always given back), and the in-process table every store starts with."""

from __future__ import annotations

import asyncio

import pytest

from tenantry.errors import ScopeBusy
from tenantry.storage.locks import LocalScopeLocks, held_lock, hold_turn
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


async def test_a_turn_that_waited_too_long_hears_one_message_wherever_it_waited() -> None:
    """Behind a turn of this process or behind one of another replica, the error names the
    scope and the timeout and says what to do, in the same words."""
    locks = LocalScopeLocks()
    async with locks.hold(SCOPE, 5):
        with pytest.raises(ScopeBusy) as here:
            async with locks.hold(SCOPE, 0.05):
                pass
    server = FakeServerLock()
    server.holder = "another replica"
    with pytest.raises(ScopeBusy) as elsewhere:
        async with hold_turn(
            object(), LocalScopeLocks(), SCOPE, 0.05, server.try_acquire, server.release
        ):
            pass
    assert str(here.value) == str(elsewhere.value)
    for said in ("scope u/s is busy", "more than 0.05s", "retry later", "lock_timeout"):
        assert said in str(here.value)


# --- the in-process table: a free scope is taken without a timer, and still serialises ------


async def test_a_free_scope_is_taken_at_once_and_the_next_turn_waits_for_it() -> None:
    locks = LocalScopeLocks()
    order: list[str] = []
    first_inside = asyncio.Event()
    let_first_go = asyncio.Event()

    async def first() -> None:
        async with locks.hold(SCOPE, 5):
            order.append("first in")
            first_inside.set()
            await let_first_go.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.hold(SCOPE, 5):
            order.append("second in")

    one = asyncio.create_task(first())
    await first_inside.wait()
    two = asyncio.create_task(second())
    third_arrived = asyncio.create_task(second())
    await asyncio.sleep(0)  # let both reach the lock
    assert order == ["first in"]
    assert len(locks) == 1
    let_first_go.set()
    await asyncio.gather(one, two, third_arrived)
    assert order == ["first in", "first out", "second in", "second in"]
    assert len(locks) == 0


async def test_a_turn_behind_a_held_scope_still_times_out() -> None:
    locks = LocalScopeLocks()
    async with locks.hold(SCOPE, 5):
        with pytest.raises(ScopeBusy, match="u/s is busy"):
            async with locks.hold(SCOPE, 0.01):
                pass
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_turn_arriving_while_a_woken_waiter_has_not_run_yet_queues_behind_it() -> None:
    locks = LocalScopeLocks()
    order: list[str] = []
    held = locks.hold(SCOPE, 5)
    await held.__aenter__()

    async def turn(name: str) -> None:
        async with locks.hold(SCOPE, 5):
            order.append(name)

    waiter = asyncio.create_task(turn("waiter"))
    await asyncio.sleep(0)  # the waiter queues on the lock
    await held.__aexit__(None, None, None)  # wakes the waiter, which has not run yet
    late = asyncio.create_task(turn("late"))
    await asyncio.gather(waiter, late)
    assert order == ["waiter", "late"]
    assert len(locks) == 0


async def test_cancelled_waiters_leave_the_lock_table_empty() -> None:
    locks = LocalScopeLocks()
    async with locks.hold(SCOPE, 5):
        waiters = [asyncio.create_task(locks.hold(SCOPE, 5).__aenter__()) for _ in range(3)]
        await asyncio.sleep(0)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert len(locks) == 1
    assert len(locks) == 0
