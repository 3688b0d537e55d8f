"""A replica for the cross-process tests: its own process, its own Agent, its own store.

python -m tests.replicas.worker turns URL NAME USERS TURNS
    prints "ready", waits for a line on stdin, then runs TURNS turns for each of USERS
    users, all at once; each reply says how many earlier turns of its user the model saw.
python -m tests.replicas.worker hold URL USER
    starts one turn for USER whose model prints "holding" and then never answers, so the
    process sits inside the scope's lock until it is killed.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Sequence

from tenantry import Agent, FunctionModel, Message, open_store
from tenantry.types import ToolSpec


def reply(replica: str, messages: Sequence[Message]) -> str:
    """What the replicas' model answers: who answered, and how many earlier user turns of
    this conversation it was shown."""
    earlier = sum(1 for m in messages[:-1] if m.role == "user")
    return f"{replica} saw {earlier} before {messages[-1].content}"


async def turns(url: str, replica: str, users: int, per_user: int) -> None:
    async def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        for _ in range(3):  # give the other turns, and the other replica, a chance to run
            await asyncio.sleep(random.uniform(0, 0.002))
        return reply(replica, messages)

    async with open_store(url) as store:
        await store.ping()
        agent = Agent(model=FunctionModel(answer), store=store, history_window=200)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(
            *(
                agent.arun(f"user-{u} {replica}{k}", user_id=f"user-{u}")
                for k in range(per_user)
                for u in range(users)
            )
        )
    print("done", flush=True)


async def hold(url: str, user: str) -> None:
    async def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        print("holding", flush=True)
        await asyncio.Event().wait()
        return "never"

    async with open_store(url) as store:
        agent = Agent(model=FunctionModel(answer), store=store)
        await agent.arun("this turn will be killed", user_id=user)


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "turns":
        asyncio.run(turns(url, rest[0], int(rest[1]), int(rest[2])))
    else:
        asyncio.run(hold(url, rest[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
