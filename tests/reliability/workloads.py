"""Workloads that try hard to break isolation; shared by the CI tests and `bench/soak.py`.

Every scope owns a secret token. Everything written to a scope carries that token (message
text, session state, even the session ids carry the user's token), so any read that returns
data of another scope is caught: after every read we check that only the reader's own token
appears. The same code runs in CI with small counts and in soak mode with big ones.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from tenantry import Agent, FunctionModel, Message
from tenantry.storage.base import Store
from tenantry.types import ToolSpec


@dataclass(frozen=True)
class TokenScope:
    user_id: str
    session_id: str
    token: str
    user_token: str


@dataclass
class IsolationReport:
    operations: int = 0
    reads_checked: int = 0
    turns: int = 0
    violations: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.operations += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


def make_scopes(users: int, sessions_per_user: int, *, prefix: str = "") -> list[TokenScope]:
    """Give users × sessions scopes with secret tokens; ids include separators and unicode."""
    scopes = []
    for u in range(users):
        user_token = secrets.token_hex(6)
        user_id = f"{prefix}user:{u}{{ü}}*{user_token}"
        for s in range(sessions_per_user):
            scopes.append(
                TokenScope(user_id, f"s{s}:{user_token}", secrets.token_hex(8), user_token)
            )
    return scopes


def _token_of(text: str) -> str:
    return text.split("|", 1)[0]


async def _token_model(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
    """A model that answers with the token of the turn's user message, so every stored
    assistant message carries its scope's token too."""
    await asyncio.sleep(0)
    current = next(m.content for m in reversed(messages) if m.role == "user")
    token = _token_of(current)
    foreign = {_token_of(m.content) for m in messages if m.role in ("user", "assistant")} - {token}
    if foreign:
        return f"{token}|FOREIGN {sorted(foreign)}"
    return f"{token}|ok {len(messages)}"


async def random_isolation(
    store: Store,
    scopes: Sequence[TokenScope],
    *,
    operations: int,
    concurrency: int = 64,
    seed: int = 0,
    turn_share: float = 0.1,
) -> IsolationReport:
    """Run `operations` random store calls and agent turns over `scopes` from `concurrency`
    tasks; check every read for foreign tokens. Give the report (violations must be empty)."""
    rng = random.Random(seed)
    report = IsolationReport()
    agent = Agent(model=FunctionModel(_token_model), store=store, history_window=20)
    by_user: dict[str, list[TokenScope]] = {}
    for scope in scopes:
        by_user.setdefault(scope.user_id, []).append(scope)
    known_users = set(by_user)
    remaining = operations

    def check_messages(scope: TokenScope, messages: Sequence[Message], where: str) -> None:
        report.reads_checked += 1
        for message in messages:
            if _token_of(message.content) != scope.token or "FOREIGN" in message.content:
                report.violations.append(
                    f"{where} of {scope.user_id}/{scope.session_id}: {message.content[:80]!r}"
                )

    def check_state(scope: TokenScope, state: dict[str, object], where: str) -> None:
        report.reads_checked += 1
        if state and state.get("token") != scope.token:
            report.violations.append(f"{where} of {scope.user_id}/{scope.session_id}: {state}")

    async def one(scope: TokenScope) -> None:
        kind = rng.random()
        u, s = scope.user_id, scope.session_id
        n = rng.randrange(1_000_000)
        if kind < turn_share:
            output = await agent.arun(f"{scope.token}|turn {n}", user_id=u, session_id=s)
            check_messages(scope, output.messages, "turn")
            report.turns += 1
            report.count("turn")
        elif kind < 0.35:
            await store.add(Message.user(f"{scope.token}|add {n}"), user_id=u, session_id=s)
            report.count("add")
        elif kind < 0.45:
            batch = [Message.user(f"{scope.token}|batch {n}.{i}") for i in range(rng.randint(1, 4))]
            state = {"token": scope.token, "n": n}
            await store.add_many(batch, user_id=u, session_id=s, state=state)
            report.count("add_many")
        elif kind < 0.65:
            limit = rng.choice([None, 1, 5, 50])
            check_messages(scope, await store.get_messages(u, s, limit=limit), "get_messages")
            report.count("get_messages")
        elif kind < 0.72:
            snapshot = await store.snapshot(u, s, limit=10)
            check_messages(scope, snapshot.messages, "snapshot")
            check_state(scope, snapshot.state, "snapshot")
            report.count("snapshot")
        elif kind < 0.78:
            await store.set_state({"token": scope.token, "n": n}, user_id=u, session_id=s)
            report.count("set_state")
        elif kind < 0.84:
            check_state(scope, await store.get_state(u, s), "get_state")
            report.count("get_state")
        elif kind < 0.89:
            size = await store.size(u, s)
            if size < 0:
                report.violations.append(f"size of {u}/{s} is {size}")
            report.count("size")
        elif kind < 0.94:
            sessions = await store.list_sessions(u)
            report.reads_checked += 1
            strangers = [x for x in sessions if not x.endswith(scope.user_token)]
            if strangers:
                report.violations.append(f"list_sessions({u!r}) gave {strangers}")
            report.count("list_sessions")
        elif kind < 0.98:
            await store.clear(u, s)
            report.count("clear_session")
        elif kind < 0.99:
            await store.clear(u)
            report.count("clear_user")
        else:
            users = await store.list_users()
            report.reads_checked += 1
            strangers = [x for x in users if x not in known_users]
            if strangers:
                report.violations.append(f"list_users gave unknown ids {strangers[:3]}")
            report.count("list_users")

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(rng.choice(scopes))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    # A last full read of every scope, after everything settled.
    for scope in scopes:
        check_messages(scope, await store.get_messages(scope.user_id, scope.session_id), "final")
        check_state(scope, await store.get_state(scope.user_id, scope.session_id), "final")
    return report
