from __future__ import annotations

import asyncio

import pytest

from tenantry import Agent, OfflineModel
from tenantry._runner import _BackgroundLoop, run_sync


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_run_sync_gives_the_coroutine_result() -> None:
    assert run_sync(_answer()) == 42


def test_sync_calls_work_inside_a_running_loop_like_jupyter() -> None:
    async def notebook_cell() -> str:
        agent = Agent(model=OfflineModel())
        return agent.run("My name is Nia", user_id="n").content

    assert "Nia" in asyncio.run(notebook_cell())


def test_a_sync_call_from_the_loop_thread_is_refused_clearly() -> None:
    async def nested() -> None:
        run_sync(_answer())

    with pytest.raises(RuntimeError, match="await the async API instead"):
        run_sync(nested())


def test_errors_propagate_and_a_fresh_loop_starts_after_fork() -> None:
    loop = _BackgroundLoop()

    async def fail() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        loop.run(fail())
    loop._forget()  # what a forked child does
    assert loop.run(_answer()) == 42
