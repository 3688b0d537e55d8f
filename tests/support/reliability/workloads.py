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
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

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

    def merge(self, other: IsolationReport) -> None:
        """Add another report's counts and violations to this one."""
        self.operations += other.operations
        self.reads_checked += other.reads_checked
        self.turns += other.turns
        self.violations += other.violations
        for kind, n in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def to_dict(self, max_violations: int = 100) -> dict[str, Any]:
        """Give the report as JSON-ready data, with at most `max_violations` listed."""
        data = asdict(self)
        extra = len(self.violations) - max_violations
        if extra > 0:
            data["violations"] = [*self.violations[:max_violations], f"... and {extra} more"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsolationReport:
        return cls(**data)


def make_scopes(
    users: int, sessions_per_user: int, *, prefix: str = "", seed: int | None = None
) -> list[TokenScope]:
    """Give users × sessions scopes with secret tokens; ids include separators and unicode.

    With a `seed`, the same call gives the same scopes and tokens in every process, so
    several processes can work on one set of scopes."""
    rng = None if seed is None else random.Random(seed)

    def token(nbytes: int) -> str:
        return secrets.token_hex(nbytes) if rng is None else rng.randbytes(nbytes).hex()

    scopes = []
    for u in range(users):
        user_token = token(6)
        user_id = f"{prefix}user:{u}{{ü}}*{user_token}"
        for s in range(sessions_per_user):
            scopes.append(TokenScope(user_id, f"s{s}:{user_token}", token(8), user_token))
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


def check_messages(
    report: IsolationReport, scope: TokenScope, messages: Sequence[Message], where: str
) -> None:
    """Record a violation for every message that does not carry `scope`'s token."""
    report.reads_checked += 1
    for message in messages:
        if _token_of(message.content) != scope.token or "FOREIGN" in message.content:
            report.violations.append(
                f"{where} of {scope.user_id}/{scope.session_id}: {message.content[:80]!r}"
            )


def check_state(
    report: IsolationReport, scope: TokenScope, state: dict[str, object], where: str
) -> None:
    """Record a violation if a non-empty state does not carry `scope`'s token."""
    report.reads_checked += 1
    if state and state.get("token") != scope.token:
        report.violations.append(f"{where} of {scope.user_id}/{scope.session_id}: {state}")


async def scan_scopes(
    store: Store, scopes: Sequence[TokenScope], report: IsolationReport | None = None
) -> IsolationReport:
    """Read every message and the state of every scope once; give the report of the checks
    (added to `report` if given). Every user in the store must be one of the scopes' users."""
    report = report if report is not None else IsolationReport()
    for scope in scopes:
        messages = await store.get_messages(scope.user_id, scope.session_id)
        check_messages(report, scope, messages, "final")
        check_state(report, scope, await store.get_state(scope.user_id, scope.session_id), "final")
    known_users = {scope.user_id for scope in scopes}
    strangers = [user for user in await store.list_users() if user not in known_users]
    report.reads_checked += 1
    if strangers:
        report.violations.append(f"final list_users gave unknown ids {strangers[:3]}")
    return report


async def random_isolation(
    store: Store,
    scopes: Sequence[TokenScope],
    *,
    operations: int,
    concurrency: int = 64,
    seed: int = 0,
    turn_share: float = 0.1,
    final_scan: bool = True,
    known_users: Collection[str] | None = None,
) -> IsolationReport:
    """Run `operations` random store calls and agent turns over `scopes` from `concurrency`
    tasks; check every read for foreign tokens. Give the report (violations must be empty).

    `final_scan=False` leaves out the last full read of every scope (when several processes
    share the scopes, the parent does it once they all finished); `known_users` are the user
    ids `list_users` may give (default: the users of `scopes`)."""
    rng = random.Random(seed)
    report = IsolationReport()
    agent = Agent(model=FunctionModel(_token_model), store=store, history_window=20)
    by_user: dict[str, list[TokenScope]] = {}
    for scope in scopes:
        by_user.setdefault(scope.user_id, []).append(scope)
    known_users = set(by_user) if known_users is None else set(known_users)
    remaining = operations

    async def one(scope: TokenScope) -> None:
        kind = rng.random()
        u, s = scope.user_id, scope.session_id
        n = rng.randrange(1_000_000)
        if kind < turn_share:
            output = await agent.arun(f"{scope.token}|turn {n}", user_id=u, session_id=s)
            check_messages(report, scope, output.messages, "turn")
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
            check_messages(
                report, scope, await store.get_messages(u, s, limit=limit), "get_messages"
            )
            report.count("get_messages")
        elif kind < 0.72:
            snapshot = await store.snapshot(u, s, limit=10)
            check_messages(report, scope, snapshot.messages, "snapshot")
            check_state(report, scope, snapshot.state, "snapshot")
            report.count("snapshot")
        elif kind < 0.78:
            await store.set_state({"token": scope.token, "n": n}, user_id=u, session_id=s)
            report.count("set_state")
        elif kind < 0.84:
            check_state(report, scope, await store.get_state(u, s), "get_state")
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
    if final_scan:  # a last full read of every scope, after everything settled
        await scan_scopes(store, scopes, report)
    return report
