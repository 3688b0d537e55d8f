"""Workloads that try hard to break isolation; shared by the CI tests and `bench/soak.py`.

Every scope owns a secret token. Everything written to a scope carries that token (message
text, session state, even the session ids carry the user's token), and every memory carries
its user's token, so any read that returns data of another scope or user is caught: after
every read we check that only the reader's own token appears. Every memory says the same
words ("tea", "green" ...), so a search that crossed users would find foreign memories; and
callers try other users' memory ids, which must be "not found". The same code runs in CI
with small counts and in soak mode with big ones.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tenantry import (
    Agent,
    FunctionModel,
    IdempotencyKeyReused,
    MemoryConflict,
    MemoryNotFound,
    Message,
)
from tenantry.storage.base import Store
from tenantry.types import Memory, ToolSpec

MEMORY_KINDS = (
    "add_memory",
    "search_memories",
    "list_memories",
    "update_memory",
    "get_memory",
    "foreign_memory",
    "delete_memory",
    "clear_memories",
)
KNOWN_IDS = 8
"""Memory ids remembered per user (the newest), for updates and for foreign attempts."""


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


def check_memories(
    report: IsolationReport, scope: TokenScope, memories: Sequence[Memory], where: str
) -> None:
    """Record a violation for every memory that is not `scope`'s user's."""
    report.reads_checked += 1
    for memory in memories:
        if memory.user_id != scope.user_id or _token_of(memory.text) != scope.user_token:
            report.violations.append(
                f"{where} of {scope.user_id}: {memory.user_id!r} {memory.text[:80]!r}"
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
    first_of_user: dict[str, TokenScope] = {}
    for scope in scopes:
        messages = await store.get_messages(scope.user_id, scope.session_id)
        check_messages(report, scope, messages, "final")
        check_state(report, scope, await store.get_state(scope.user_id, scope.session_id), "final")
        first_of_user.setdefault(scope.user_id, scope)
    for user_id, scope in first_of_user.items():
        check_memories(report, scope, await store.list_memories(user_id=user_id), "final")
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
    memory_share: float = 0.25,
    final_scan: bool = True,
    known_users: Collection[str] | None = None,
) -> IsolationReport:
    """Run `operations` random store calls and agent turns over `scopes` from `concurrency`
    tasks, `memory_share` of them memory calls; check every read for foreign tokens. Give
    the report (violations must be empty).

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
    memory_ids: dict[str, list[str]] = {}

    async def one(scope: TokenScope) -> None:
        if rng.random() < memory_share:
            await memory_call(scope)
            return
        kind = rng.random()
        u, s = scope.user_id, scope.session_id
        n = rng.randrange(1_000_000)
        if kind < turn_share / 2:
            output = await agent.arun(f"{scope.token}|turn {n}", user_id=u, session_id=s)
            check_messages(report, scope, output.messages, "turn")
            report.turns += 1
            report.count("turn")
        elif kind < turn_share:
            await keyed_turn(scope, n)
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

    async def keyed_turn(scope: TokenScope, n: int) -> None:
        """A turn with an idempotency key from a few names every user uses, sent twice: the
        second is its replay (unless a clear came in between), and neither may ever be
        another user's turn of the same key."""
        u, s, text = scope.user_id, scope.session_id, f"{scope.token}|keyed {n}"
        key = f"shared-key-{rng.randrange(20)}"
        try:
            output = await agent.arun(text, user_id=u, session_id=s, idempotency_key=key)
        except IdempotencyKeyReused:  # this user used that name for another turn
            report.count("keyed_turn_refused")
            return
        try:
            again = await agent.arun(text, user_id=u, session_id=s, idempotency_key=key)
        except IdempotencyKeyReused:  # a clear came in between, then another turn took it
            report.count("keyed_turn_refused")
            return
        for got in (output, again):
            check_messages(report, scope, got.messages, "keyed_turn")
        if again.replayed and again.messages != output.messages:
            report.violations.append(f"{u}/{s}: the replay of {key!r} is another turn")
        report.turns += 1
        report.count("keyed_turn")

    def remember(memory: Memory) -> None:
        ids = memory_ids.setdefault(memory.user_id, [])
        if memory.id not in ids:
            ids.append(memory.id)
            del ids[:-KNOWN_IDS]

    async def memory_call(scope: TokenScope) -> None:
        kind = rng.random()
        u, n = scope.user_id, rng.randrange(1_000_000)
        mine = memory_ids.get(u, [])
        vector = [1.0, (n % 7) / 7, 0.5] if rng.random() < 0.2 else None
        text = f"{scope.user_token}|fact {n}: likes tea, green gardens and {n % 13} cats"
        try:
            if kind < 0.3:
                memory = await store.add_memory(
                    text, user_id=u, session_id=scope.session_id, embedding=vector
                )
                check_memories(report, scope, [memory], "add_memory")
                remember(memory)
                report.count("add_memory")
            elif kind < 0.55:
                query = rng.choice(["tea green", "cats", "gardens fact", f"{n % 13} cats"])
                found = await store.search_memories(
                    query, user_id=u, limit=rng.choice([1, 5, 20]), embedding=vector
                )
                check_memories(report, scope, found, "search_memories")
                report.count("search_memories")
            elif kind < 0.7:
                found = await store.list_memories(user_id=u, limit=rng.choice([None, 3]))
                check_memories(report, scope, found, "list_memories")
                report.count("list_memories")
            elif kind < 0.8:
                report.count("update_memory")
                if mine:
                    old = await store.get_memory(rng.choice(mine), user_id=u)
                    check_memories(report, scope, [old], "get_memory")
                    new = await store.update_memory(
                        old.id, text, user_id=u, expected_version=old.version, embedding=vector
                    )
                    check_memories(report, scope, [new], "update_memory")
            elif kind < 0.85:
                report.count("get_memory")
                if mine:
                    got = await store.get_memory(rng.choice(mine), user_id=u)
                    check_memories(report, scope, [got], "get_memory")
            elif kind < 0.95:
                report.count("foreign_memory")
                await foreign(scope)
            elif kind < 0.98:
                report.count("delete_memory")
                if mine:
                    await store.delete_memory(mine.pop(rng.randrange(len(mine))), user_id=u)
            else:
                await store.clear_memories(user_id=u)
                mine.clear()
                report.count("clear_memories")
        except (MemoryNotFound, MemoryConflict):
            pass  # dropped by the cap or changed by a concurrent caller: not a violation

    async def foreign(scope: TokenScope) -> None:
        """Try another user's memory id as `scope`'s user: every call must be not found."""
        others = [user for user in memory_ids if user != scope.user_id and memory_ids[user]]
        if not others:
            return
        target, u = rng.choice(memory_ids[rng.choice(others)]), scope.user_id
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get_memory(target, user_id=u),
            lambda: store.update_memory(target, f"{scope.user_token}|hijack", user_id=u),
            lambda: store.delete_memory(target, user_id=u),
        ]
        for attempt in attempts:
            report.reads_checked += 1
            try:
                got = await attempt()
            except MemoryNotFound:
                continue
            report.violations.append(f"{scope.user_id} reached memory {target}: {got!r:.80}")

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(rng.choice(scopes))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if final_scan:  # a last full read of every scope, after everything settled
        await scan_scopes(store, scopes, report)
    return report
