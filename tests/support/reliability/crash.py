"""Kill -9 a real `tenantry serve` under load, restart it on the same store, and check that
everything it acknowledged is stored whole, and nothing else but turns in flight at the kill.

Shared by the CI tests (`test_crash_durability.py`, `test_faults.py`) and the soak run, which
calls `crash_rounds` with bigger counts. The server is `counting_server`: `tenantry serve`
with an agent whose tool counts the session's turns in its state, so each stored turn is four
messages (user, tool call, tool result, reply "turn {n}: {message}") and the state must equal
the number of stored turns.

What `check_stored` proves, per scope, against a ledger of what earlier checks found:

- what was stored before is still there, in the same order (a prefix of what is stored now);
- every acknowledged turn (HTTP 200) is stored, with the very reply its client got;
- every other new turn was one that may have been committed without an answer (in flight at
  the kill, or refused with a retryable 503): acknowledged ⊆ new ⊆ acknowledged ∪ maybe;
- every stored turn is whole: its four messages in order, its count = its position;
- the session state equals the number of stored turns (state and messages were written in
  the same atomic commit, or not at all);
- each client's turns are stored in the order it sent them, and no unknown user or session
  exists in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.env import clean_environ, with_checkout_on_path
from tests.support.reliability.counting_server import STATE_KEY, TOOL_NAME, reply_text
from tests.support.servers import Spawned, spawn

START_TIMEOUT = 60.0
"""Seconds a server gets to answer /readyz after it starts."""

Scope = tuple[str, str]
_TEXT = re.compile(r"r(?P<round>\d+)-c(?P<client>\d+)-(?P<seq>\d+) .*")


# --- the server process ---------------------------------------------------------------------


@contextlib.contextmanager
def counting_server(
    store_url: str, cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[Spawned]:
    """Run `tenantry serve` (with the counting agent) on a free loopback port, store
    `store_url`, until the block ends; give it once uvicorn listens (see `spawn`)."""
    command = [sys.executable, "-m", "tests.support.reliability.counting_server"]
    command += ["--port", "0", "--store", store_url, "--rate-limit", "0", *args]
    with spawn(command, cwd, with_checkout_on_path(clean_environ(env))) as spawned:
        yield spawned


async def wait_ready(http: httpx.AsyncClient, within: float = START_TIMEOUT) -> float:
    """Poll /readyz until it answers 200; give the seconds it took (at most `within`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    last = ""
    while loop.time() - started < within:
        try:
            response = await http.get("/readyz", timeout=10)
            if response.status_code == 200:
                return loop.time() - started
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz did not answer 200 within {within:g}s; last: {last}")


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Wait until `condition()` holds (polling, while other tasks run), at most `within`
    seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.02)


# --- load -----------------------------------------------------------------------------------


@dataclass
class Sent:
    """One chat request and what came of it."""

    client: int
    scope: Scope
    text: str
    started: float
    ended: float | None = None
    status: int | None = None
    """The HTTP status; None while in flight, or when no response ever came."""
    reply: str | None = None
    retry_after: str | None = None
    error: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.status == 200

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def make_scopes(users: int, sessions_per_user: int, *, prefix: str = "") -> list[Scope]:
    """Give users × sessions scopes; ids carry ':' and unicode, as real ones may."""
    return [
        (f"{prefix}user:{u:04d}-ü", f"session/{s}")
        for u in range(users)
        for s in range(sessions_per_user)
    ]


@dataclass
class Load:
    """`clients` concurrent chat clients, each sending one turn after another to its own
    scope (client i uses scope i mod len(scopes), so some scopes have several clients)."""

    http: httpx.AsyncClient
    scopes: Sequence[Scope]
    clients: int
    round: int
    stop_on_transport_error: bool = True
    """True when the server is expected to die: a client whose request got no response stops.
    False when the server must stay up: such a request is recorded and the client goes on."""
    pause_after_error: float = 0.0
    """Seconds a client waits after a failed request before its next one."""
    sent: list[Sent] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    killed_after: float = 0.0
    """Seconds from the start of the load to the kill, if the server was killed."""

    def stop(self) -> None:
        self.stopped.set()

    def in_flight(self) -> list[Sent]:
        return [s for s in self.sent if s.status is None and s.ended is None]

    def acknowledged(self) -> list[Sent]:
        return [s for s in self.sent if s.acknowledged]

    async def run(self) -> None:
        self.started = time.monotonic()
        await asyncio.gather(*(self._client(c) for c in range(self.clients)))

    async def _client(self, client: int) -> None:
        user, session = scope = self.scopes[client % len(self.scopes)]
        seq = 0
        while not self.stopped.is_set():
            sent = Sent(client, scope, f"r{self.round}-c{client}-{seq} ü", time.monotonic())
            seq += 1
            self.sent.append(sent)
            body = {"user_id": user, "session_id": session, "message": sent.text}
            try:
                response = await self.http.post("/v1/chat", json=body)
            except httpx.TransportError as exc:
                sent.ended, sent.error = time.monotonic(), repr(exc)
                if self.stop_on_transport_error:
                    return
                await asyncio.sleep(self.pause_after_error)
                continue
            sent.ended, sent.status = time.monotonic(), response.status_code
            sent.retry_after = response.headers.get("Retry-After")
            if response.status_code == 200:
                reply = response.json()
                if (reply["user_id"], reply["session_id"]) != scope:
                    sent.error = f"answered for another scope: {reply}"
                sent.reply = reply["reply"]
            else:
                sent.error = response.text[:300]
                await asyncio.sleep(self.pause_after_error)


# --- the check ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What earlier checks found stored: per scope, the texts of its turns in order."""

    stored: dict[Scope, list[str]] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return sum(len(texts) for texts in self.stored.values())


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    new_turns: int = 0
    acknowledged: int = 0
    committed_unacknowledged: int = 0
    """Turns stored although their client never got a 200 (committed, then the answer was
    lost to the kill or the outage)."""


def _turns_of(
    scope: Scope, messages: Sequence[Mapping[str, Any]], problems: list[str]
) -> list[str]:
    """Give the texts of the scope's stored turns; note every message that is not part of a
    whole turn (user, tool call, tool result, reply) with the right count."""
    texts: list[str] = []
    for start in range(0, len(messages), 4):
        turn = list(messages[start : start + 4])
        count = start // 4 + 1
        shape = [m.get("role") for m in turn]
        if shape != ["user", "assistant", "tool", "assistant"]:
            problems.append(f"{scope}: half or broken turn at message {start}: {shape}")
            return texts
        asked, call, result, reply = turn
        calls = call.get("tool_calls") or []
        if (
            len(calls) != 1
            or calls[0]["name"] != TOOL_NAME
            or result.get("tool_call_id") != calls[0]["id"]
            or result["content"] != str(count)
            or reply["content"] != reply_text(count, asked["content"])
        ):
            problems.append(f"{scope}: turn {count} is not whole or not in order: {turn}")
            return texts
        texts.append(asked["content"])
    return texts


def _order_problems(scope: Scope, texts: Sequence[str]) -> list[str]:
    """Each client's turns must be stored in the order it sent them."""
    last: dict[int, tuple[int, int]] = {}
    problems = []
    for text in texts:
        found = _TEXT.fullmatch(text)
        if found is None:
            problems.append(f"{scope}: a turn no client sent: {text!r}")
            continue
        client, key = int(found["client"]), (int(found["round"]), int(found["seq"]))
        if client in last and last[client] >= key:
            problems.append(f"{scope}: client {client}'s turn {text!r} stored out of order")
        last[client] = key
    return problems


async def check_stored(
    http: httpx.AsyncClient,
    ledger: Ledger,
    scopes: Sequence[Scope],
    acknowledged: Sequence[Sent],
    maybe: Sequence[Sent],
) -> CheckResult:
    """Check what the server now stores against the ledger and the turns sent since the last
    check (see the module docstring); update the ledger. Reads through the server's API."""
    result = CheckResult(acknowledged=len(acknowledged))
    problems = result.problems
    acked: dict[Scope, dict[str, Sent]] = {}
    for sent in acknowledged:
        acked.setdefault(sent.scope, {})[sent.text] = sent
        if sent.error:
            problems.append(f"{sent.scope}: {sent.text!r}: {sent.error}")
    maybes: dict[Scope, set[str]] = {}
    for sent in maybe:
        maybes.setdefault(sent.scope, set()).add(sent.text)

    users = sorted({user for user, _ in scopes})
    response = await http.get("/v1/users")
    response.raise_for_status()
    listed = set(response.json()["users"])
    expected_users = {user for (user, _), texts in ledger.stored.items() if texts}
    expected_users |= {user for user, _ in acked}
    if not expected_users <= listed or not listed <= set(users):
        problems.append(
            f"users listed {sorted(listed)[:5]}..., expected {sorted(expected_users)[:5]}..."
        )

    known = set(scopes)
    for user in sorted(listed & set(users)):
        response = await http.get(f"/v1/users/{user}/export")
        response.raise_for_status()
        for session in response.json()["sessions"]:
            scope = (user, session["session_id"])
            if scope not in known:
                problems.append(f"{scope}: a session no client used")
                continue
            texts = _turns_of(scope, session["messages"], problems)
            if len(texts) * 4 != len(session["messages"]):
                continue  # already noted: a half turn
            if session["state"] != ({STATE_KEY: len(texts)} if texts else {}):
                problems.append(f"{scope}: state {session['state']} but {len(texts)} turns stored")
            before = ledger.stored.get(scope, [])
            if texts[: len(before)] != before:
                problems.append(f"{scope}: earlier turns lost or reordered")
                continue
            new = texts[len(before) :]
            problems += _order_problems(scope, new)
            mine, might = acked.pop(scope, {}), maybes.get(scope, set())
            missing = sorted(set(mine) - set(new))
            if missing:
                problems.append(f"{scope}: acknowledged turns not stored: {missing[:5]}")
            strays = sorted(set(new) - set(mine) - might)
            if strays:
                problems.append(f"{scope}: stored turns never sent or refused: {strays[:5]}")
            for count, text in enumerate(texts, start=1):
                if text in mine and mine[text].reply != reply_text(count, text):
                    problems.append(
                        f"{scope}: {text!r} was answered {mine[text].reply!r}, "
                        f"stored as turn {count}"
                    )
            result.new_turns += len(new)
            result.committed_unacknowledged += len(set(new) & might - set(mine))
            ledger.stored[scope] = texts
    for scope, mine in acked.items():  # scopes the export did not show at all
        problems.append(f"{scope}: {len(mine)} acknowledged turn(s) but no stored session")
    return result


# --- kill rounds ----------------------------------------------------------------------------


@dataclass
class RoundFigures:
    round: int
    kill_after: float
    acknowledged: int
    in_flight_at_kill: int
    committed_unacknowledged: int
    restart_seconds: float


@dataclass
class CrashReport:
    seed: int
    rounds: list[RoundFigures] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    turns_stored: int = 0
    scopes_checked: int = 0

    @property
    def kills(self) -> int:
        return len(self.rounds)

    @property
    def acknowledged(self) -> int:
        return sum(r.acknowledged for r in self.rounds)

    def summary(self) -> str:
        unacked = sum(r.committed_unacknowledged for r in self.rounds)
        in_flight = sum(r.in_flight_at_kill for r in self.rounds)
        restart = max((r.restart_seconds for r in self.rounds), default=0.0)
        return (
            f"{self.kills} kills (seed {self.seed}): {self.acknowledged} turns acknowledged, "
            f"{in_flight} in flight at the kills of which {unacked} were stored unacknowledged; "
            f"{self.turns_stored} turns in {self.scopes_checked} scopes checked after each "
            f"restart; slowest restart to ready {restart:.2f}s; per kill (seconds into the "
            f"load, turns acknowledged, in flight, stored unacknowledged): "
            + ", ".join(
                f"({r.kill_after:.2f}, {r.acknowledged}, {r.in_flight_at_kill}, "
                f"{r.committed_unacknowledged})"
                for r in self.rounds
            )
        )


def client_limits(clients: int) -> httpx.Limits:
    """Connection limits for `clients` concurrent clients. Idle connections are dropped
    before uvicorn's keep-alive timeout (5s) closes them, so that no request is ever sent on
    a connection the server is closing (which would fail without the server being at fault)."""
    return httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0
    )


async def crash_rounds(
    store_url: str,
    workdir: Path,
    *,
    kills: int = 5,
    clients: int = 200,
    users: int = 50,
    sessions_per_user: int = 3,
    kill_window: tuple[float, float] = (0.0, 1.0),
    acknowledged_before_kill: int = 5,
    seed: int = 0,
    deadline: float | None = None,
    min_kills: int = 0,
) -> CrashReport:
    """Kill -9 the server `kills` times under `clients` concurrent clients, each time at a
    random moment: once `acknowledged_before_kill` turns of the round were acknowledged (so
    the load is flowing), after a delay uniform in `kill_window` (seconds, seeded). Restart it
    on the same store and check everything after each restart. Once `min_kills` kills are
    done, stops early when the monotonic clock passes `deadline`. Give the figures and the
    problems."""
    rng = random.Random(seed)
    report = CrashReport(seed=seed)
    scopes = make_scopes(users, sessions_per_user)
    ledger = Ledger()
    pending: tuple[list[Sent], list[Sent]] = ([], [])
    for round_ in range(kills + 1):
        started = time.monotonic()
        with counting_server(store_url, workdir) as server:
            async with httpx.AsyncClient(
                base_url=server.url, limits=client_limits(clients), timeout=60
            ) as http:
                await wait_ready(http)
                restart = time.monotonic() - started
                check = await check_stored(http, ledger, scopes, *pending)
                report.problems += check.problems
                if report.rounds:
                    report.rounds[-1].committed_unacknowledged = check.committed_unacknowledged
                    report.rounds[-1].restart_seconds = restart
                too_late = (
                    deadline is not None
                    and time.monotonic() > deadline
                    and len(report.rounds) >= min_kills
                )
                if report.problems or round_ == kills or too_late:
                    break
                figures, pending, problems = await _load_and_kill(
                    http,
                    server,
                    Load(http, scopes, clients, round_),
                    acknowledged_before_kill,
                    rng.uniform(*kill_window),
                )
                report.rounds.append(figures)
                report.problems += problems
    report.turns_stored = ledger.turns
    report.scopes_checked = sum(1 for texts in ledger.stored.values() if texts)
    return report


async def _load_and_kill(
    http: httpx.AsyncClient,
    server: Spawned,
    load: Load,
    acknowledged_before_kill: int,
    kill_after: float,
) -> tuple[RoundFigures, tuple[list[Sent], list[Sent]], list[str]]:
    """Run the load; once `acknowledged_before_kill` turns were acknowledged, kill -9 the
    server `kill_after` seconds later; wait for every client to stop. Give the round's
    figures, (acknowledged, in flight at the kill), and problems. A turn refused with 409
    (its scope busy, or its lock lost) is allowed, and must not be stored."""
    round_ = load.round
    running = asyncio.ensure_future(load.run())
    try:
        await until(
            lambda: len(load.acknowledged()) >= acknowledged_before_kill,
            START_TIMEOUT,
            f"{acknowledged_before_kill} turns acknowledged in round {round_}",
        )
        await asyncio.sleep(kill_after)  # the random moment of the kill: the test's purpose
        in_flight = load.in_flight()
        load.killed_after = time.monotonic() - load.started
        server.process.kill()
        load.stop()  # in the same step as the kill: no request starts after it
        await asyncio.wait_for(asyncio.shield(running), timeout=120)
    finally:
        load.stop()
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
    await asyncio.to_thread(server.process.wait, 30)
    problems = []
    if server.process.returncode != -signal.SIGKILL:
        problems.append(f"round {round_}: the server ended with {server.process.returncode}")
    for sent in load.sent:
        busy = sent.status == 409 and sent.retry_after is not None
        if sent.status not in (None, 200) and not busy:
            problems.append(f"round {round_}: {sent.text!r} refused: {sent.status} {sent.error}")
    at_kill = {id(sent) for sent in in_flight}
    late = [s.text for s in load.sent if s.status is None and id(s) not in at_kill]
    if late:
        problems.append(f"round {round_}: no response, yet not in flight at the kill: {late[:5]}")
    figures = RoundFigures(
        round=round_,
        kill_after=load.killed_after,
        acknowledged=len(load.acknowledged()),
        in_flight_at_kill=len(in_flight),
        committed_unacknowledged=0,
        restart_seconds=0.0,
    )
    return figures, (load.acknowledged(), in_flight), problems[:20]
