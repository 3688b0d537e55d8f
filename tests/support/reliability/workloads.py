"""Workloads that try hard to break isolation; shared by the CI tests and `bench/soak.py`.

Every scope owns a secret token. Everything written to a scope carries that token (message
text, session state, even the session ids carry the user's token), and every memory carries
its user's token, so any read that returns data of another scope or user is caught: after
every read we check that only the reader's own token appears. Every memory says the same
words ("tea", "green" ...), so a search that crossed users would find foreign memories; and
callers try other users' memory ids, which must be "not found". Usage carries its user's
mark too: every usage a user records has `cache_write_tokens == tool_calls * unit`, with a
unit of its own per user (`usage_unit`), so a read that summed in another user's usage breaks
the ratio; a budget override holds the unit as its monthly token limit. The same code runs in
CI with small counts and in soak mode with big ones.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tenantry import (
    Agent,
    Budget,
    FunctionModel,
    IdempotencyKeyReused,
    MemoryConflict,
    MemoryNotFound,
    Message,
    Usage,
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
USAGE_KINDS = (
    "counted_turn",
    "add_usage",
    "get_usage",
    "read_admission",
    "set_budget",
    "get_budget",
    "top_usage",
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


def usage_unit(scope: TokenScope) -> int:
    """Give the unit of the user's usage mark (see the module's docstring): its own per user."""
    return int(scope.user_token[:8], 16) + 1


def usage_mark(scope: TokenScope, calls: int) -> Usage:
    """Give a usage that carries the user's mark. Agent turns record usage too, but with no
    tool calls and no cache writes here, so they keep the ratio."""
    return Usage(requests=calls, cache_write_tokens=calls * usage_unit(scope), tool_calls=calls)


def check_usage(report: IsolationReport, scope: TokenScope, usage: Usage, where: str) -> None:
    """Record a violation if `usage` does not carry `scope`'s user's mark."""
    report.reads_checked += 1
    if usage.cache_write_tokens != usage.tool_calls * usage_unit(scope):
        report.violations.append(f"{where} of {scope.user_id}: foreign usage {usage}")


def check_budget(
    report: IsolationReport, scope: TokenScope, budget: Budget | None, where: str
) -> None:
    report.reads_checked += 1
    if budget is not None and budget != Budget(tokens_per_month=usage_unit(scope)):
        report.violations.append(f"{where} of {scope.user_id}: foreign budget {budget}")


def _today() -> Any:
    return datetime.now(UTC).date()


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
    start, end = _today() - timedelta(days=2), _today() + timedelta(days=1)
    for user_id, scope in first_of_user.items():
        check_memories(report, scope, await store.list_memories(user_id=user_id), "final")
        total = await store.usage_total(user_id, start=start, end=end)
        check_usage(report, scope, total, "final usage")
        check_budget(report, scope, await store.get_budget(user_id), "final budget")
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
    usage_share: float = 0.1,
    final_scan: bool = True,
    known_users: Collection[str] | None = None,
) -> IsolationReport:
    """Run `operations` random store calls and agent turns over `scopes` from `concurrency`
    tasks, `usage_share` of them usage calls and `memory_share` of the rest memory calls;
    check every read for foreign tokens and marks. Give the report (violations must be
    empty); with `final_scan`, each user's stored usage must also hold exactly the tool
    calls this run recorded for it.

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
    recorded: dict[str, int] = {}  # tool calls of the acknowledged usage writes, per user

    async def one(scope: TokenScope) -> None:
        if rng.random() < usage_share:
            await usage_call(scope)
            return
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

    async def usage_call(scope: TokenScope) -> None:
        kind, u = rng.random(), scope.user_id
        calls = rng.randint(1, 3)
        start, end = _today() - timedelta(days=1), _today() + timedelta(days=1)
        if kind < 0.35:
            batch = [Message.user(f"{scope.token}|counted {calls}")]
            mark = usage_mark(scope, calls)
            await store.add_many(batch, user_id=u, session_id=scope.session_id, usage=mark)
            recorded[u] = recorded.get(u, 0) + calls
            report.count("counted_turn")
        elif kind < 0.5:
            await store.add_usage(usage_mark(scope, calls), user_id=u)
            recorded[u] = recorded.get(u, 0) + calls
            report.count("add_usage")
        elif kind < 0.7:
            for day in await store.get_usage(u, start=start, end=end):
                check_usage(report, scope, day.usage, "get_usage")
            report.count("get_usage")
        elif kind < 0.8:
            admission = await store.read_admission(u)
            check_usage(report, scope, admission.day, "admission day")
            check_usage(report, scope, admission.month, "admission month")
            check_budget(report, scope, admission.budget, "admission")
            report.count("read_admission")
        elif kind < 0.88:
            budget = Budget(tokens_per_month=usage_unit(scope)) if rng.random() < 0.7 else None
            await store.set_budget(u, budget)
            report.count("set_budget")
        elif kind < 0.95:
            check_budget(report, scope, await store.get_budget(u), "get_budget")
            report.count("get_budget")
        else:
            for user, usage in await store.top_usage(start=start, end=end, limit=5):
                owner = by_user.get(user)
                if owner is None:
                    if user not in known_users:
                        report.violations.append(f"top_usage gave unknown user {user!r}")
                    continue
                check_usage(report, owner[0], usage, "top_usage")
            report.count("top_usage")

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
        start, end = _today() - timedelta(days=2), _today() + timedelta(days=1)
        for user, calls in recorded.items():
            stored = (await store.usage_total(user, start=start, end=end)).tool_calls
            report.reads_checked += 1
            if stored != calls:
                report.violations.append(f"{user} recorded {calls} tool calls, stored {stored}")
    return report
