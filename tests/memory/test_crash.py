"""A crash after the ack loses no turn: a process killed (SIGKILL) while its learning job is
blocked leaves the turn stored whole; the memory is simply not learned."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tenantry import Agent, OfflineModel
from tenantry.storage.url import open_store
from tests.conftest import (
    CLEANUPS,
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    namespace_name,
    server_url,
)
from tests.support.env import ROOT, clean_environ, with_checkout_on_path


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    backend = str(request.param)
    name = namespace_name(tmp_path)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    if backend == "postgres":
        yield f"{server_url(POSTGRES_URL_VARIABLE)}?schema={name}"
    else:
        yield f"{server_url(REDIS_URL_VARIABLE)}?prefix={name}&lock_ttl=1"
    await CLEANUPS[backend](tmp_path)


def _kill_while_learning(store_url: str) -> None:
    """Run the child until its turn is acknowledged and its learning job has begun; SIGKILL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.memory_crash", store_url],
        cwd=ROOT,
        env=with_checkout_on_path(clean_environ()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline().strip(), child.stdout.readline().strip()]
        ack = "acked Nice to meet you, Alice! I'll remember your name."
        if lines != [ack, "learning"]:
            child.kill()
            pytest.fail(f"the child said {lines}; stderr: {child.communicate()[1][-2000:]}")
        child.send_signal(signal.SIGKILL)  # inside the extraction, after the ack
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_a_kill_during_learning_keeps_the_acknowledged_turn(store_url: str) -> None:
    await asyncio.to_thread(_kill_while_learning, store_url)
    async with open_store(store_url) as store:
        messages = await store.get_messages("alice", "s1")
        assert [(m.role, m.content) for m in messages] == [
            ("user", "My name is Alice"),
            ("assistant", "Nice to meet you, Alice! I'll remember your name."),
        ]
        assert await store.list_memories(user_id="alice") == []
        agent = Agent(model=OfflineModel(), store=store, memory=True)
        reply = await agent.arun("What's my name?", user_id="alice", session_id="s1")
        assert reply.content == "Your name is Alice."
        await agent.aflush()
