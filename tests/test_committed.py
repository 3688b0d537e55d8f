"""`replay.committed`, the commit checkpoint: a write runs to its end whatever happens to its
caller, and one that never waits runs without a task of its own."""

from __future__ import annotations

import asyncio

import pytest

from tenantry.replay import committed


async def test_a_write_that_never_waits_is_done_without_a_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def write() -> str:
        return "stored"

    def no_task(*args: object, **kwargs: object) -> None:
        raise AssertionError("a task was made for a write that never waited")

    monkeypatch.setattr(asyncio, "ensure_future", no_task)
    assert await committed(write()) == "stored"


async def test_a_write_failing_at_once_raises_its_error() -> None:
    async def write() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await committed(write())


async def test_a_waiting_write_gets_every_value_and_error_it_waits_for() -> None:
    loop = asyncio.get_running_loop()
    first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def write() -> list[object]:
        seen.append(await first)
        try:
            await second
        except KeyError as exc:
            seen.append(repr(exc))
        await asyncio.sleep(0)  # a bare yield, as asyncio.sleep(0) makes
        seen.append(await third)
        return seen

    done = asyncio.ensure_future(committed(write()))
    await asyncio.sleep(0)
    first.set_result(1)
    await asyncio.sleep(0)
    second.set_exception(KeyError("k"))
    await asyncio.sleep(0)
    third.set_result(3)
    assert await asyncio.wait_for(done, 5) == [1, "KeyError('k')", 3]


async def test_a_caller_cancelled_while_the_write_waits_lets_it_finish() -> None:
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    finished: list[str] = []

    async def write() -> None:
        await gate
        finished.append("committed")

    caller = asyncio.ensure_future(committed(write()))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0.01)
    assert not caller.done()  # still waiting for the write
    gate.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished == ["committed"]


async def test_a_write_failing_after_a_wait_raises_its_error() -> None:
    async def write() -> None:
        await asyncio.sleep(0.001)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await committed(write())
