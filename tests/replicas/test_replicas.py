"""Several replicas of one agent share PostgreSQL, Redis or a Redis Cluster: each is a
separate process with its own Agent and its own store connection (see `worker.py`)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tenantry import Agent, OfflineModel, open_store
from tenantry.errors import ScopeBusy
from tenantry.storage.base import Store
from tests.conftest import (
    CLEANUPS,
    CLUSTER_BACKEND,
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    namespace_name,
    server_url,
)

ROOT = Path(__file__).resolve().parents[2]
USERS = 20
TURNS_PER_REPLICA = 5  # per user: 2 replicas x 20 users x 5 = 200 turns
LOCK_TTL = 1.0
"""Seconds a Redis lock outlives a killed holder."""


@pytest.fixture(params=["postgres", "redis", CLUSTER_BACKEND])
async def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    backend = str(request.param)
    name = namespace_name(tmp_path)
    if backend == "postgres":
        url = f"{_with_query(server_url(POSTGRES_URL_VARIABLE))}schema={name}"
    elif backend == CLUSTER_BACKEND:
        cluster = request.getfixturevalue("redis_cluster_url")
        url = f"{_with_query(cluster)}prefix={name}&lock_ttl={LOCK_TTL}"
    else:
        url = f"{_with_query(server_url(REDIS_URL_VARIABLE))}prefix={name}&lock_ttl={LOCK_TTL}"
    yield url
    await CLEANUPS[backend](tmp_path)


def _with_query(url: str) -> str:
    return url + ("&" if "?" in url else "?")


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.replicas.worker",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _expect(process: asyncio.subprocess.Process, word: str) -> None:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert line.decode().strip() == word, f"replica said {line!r}, expected {word!r}"


async def _history_is_whole_and_serial(store: Store, user: str) -> None:
    history = await store.get_messages(user)
    assert len(history) == 2 * 2 * TURNS_PER_REPLICA, f"{user} lost turns"
    asked = []
    for turn, (question, answer) in enumerate(zip(history[::2], history[1::2], strict=True)):
        assert (question.role, answer.role) == ("user", "assistant")
        assert question.content.startswith(f"{user} "), f"another user's turn in {user}"
        # Each turn was shown every earlier turn of its user, so turns ran one at a time.
        assert re.fullmatch(rf"[AB] saw {turn} before {question.content}", answer.content)
        asked.append(question.content)
    expected = {f"{user} {replica}{k}" for replica in "AB" for k in range(TURNS_PER_REPLICA)}
    assert set(asked) == expected


async def test_two_replicas_never_interleave_or_lose_a_conversation(shared_url: str) -> None:
    replicas = [
        await _spawn("turns", shared_url, name, str(USERS), str(TURNS_PER_REPLICA)) for name in "AB"
    ]
    try:
        for replica in replicas:
            await _expect(replica, "ready")
        for replica in replicas:  # both start together, so their turns contend
            assert replica.stdin is not None
            replica.stdin.write(b"go\n")
            await replica.stdin.drain()
        for replica in replicas:
            await _expect(replica, "done")
            assert await asyncio.wait_for(replica.wait(), timeout=30) == 0
    finally:
        for replica in replicas:
            if replica.returncode is None:
                replica.kill()
                await replica.wait()
    async with open_store(shared_url) as store:
        assert await store.list_users() == sorted(f"user-{u}" for u in range(USERS))
        for u in range(USERS):
            await _history_is_whole_and_serial(store, f"user-{u}")


async def test_a_killed_replica_frees_its_scope_and_leaves_no_half_turn(
    shared_url: str,
) -> None:
    async with open_store(shared_url) as store:
        agent = Agent(model=OfflineModel(), store=store, lock_timeout=10)
        await agent.arun("My name is Alice", user_id="victim")
        replica = await _spawn("hold", shared_url, "victim")
        try:
            await _expect(replica, "holding")
            with pytest.raises(ScopeBusy):
                async with store.lock("victim", timeout=0.05):
                    pass
        finally:
            replica.send_signal(signal.SIGKILL)
            await asyncio.wait_for(replica.wait(), timeout=30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with store.lock("victim", timeout=10):
            waited = loop.time() - started
        assert waited < LOCK_TTL + 2, f"the dead replica's lock lingered {waited:.1f}s"
        assert [m.content for m in await store.get_messages("victim")] == [
            "My name is Alice",
            "Nice to meet you, Alice! I'll remember your name.",
        ]
        output = await agent.arun("What's my name?", user_id="victim")
        assert output.content == "Your name is Alice."
