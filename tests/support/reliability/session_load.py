"""Many users, each sending several turns at once to one session, through a balancer over
replicas of `tenantry serve` (the default agent, on the offline model), while a replica may
be killed; and the check of what got stored.

Each user has an API key and `turns` turns, texts `"lb-u07 turn 13 <token>"`, sent by
`concurrency` workers of its own, all to session `SESSION`, so up to `concurrency` turns of
one scope are in flight at once, on different replicas, and must be serialised by the
store's turn lock. The offline model answers each text with an echo of it, so a stored
reply names the turn it belongs to.

A turn is sent until it is acknowledged (200). A 409 with Retry-After (its scope stayed busy
too long) stored nothing, so it is sent again after that wait. A request that died with its
replica (the balancer's 502, or a closed connection) leaves its turn IN DOUBT: it may have
been committed before the replica died. Without idempotency keys a client cannot resend it
without risking a second copy, so then it is not resent; with them (`SessionLoad(resend=
resend_with_key)`: every request carries its turn's `Idempotency-Key`) it is resent until
acknowledged, and a turn that had been committed is answered with its stored reply.

What `check_histories` proves, reading through the balancer with each user's own key:

- every turn was acknowledged at most once; a turn is in doubt only if its request was in
  flight when the replica died (started before the process was gone);
- every stored session is whole ordered pairs: the user's text, then the model's echo of that
  very text, with the reply its client got for an acknowledged turn;
- no message names another user (no foreign marker), and no unknown user or session exists;
- acknowledged ⊆ stored ⊆ acknowledged ∪ in doubt, and no turn is stored twice: so
  stored = acknowledged + at most the in-doubt turns.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tenantry import Message
from tenantry.models.offline import reply_to

SESSION = "lb"
USER_PREFIX = "lb-u"
MAX_BUSY_RETRIES = 10
"""How often one turn may be refused with 409 before the test gives up on it."""
MAX_RESENDS = 10
"""How often one in-doubt turn is resent before the test gives up on it."""
_USER_ID = re.compile(rf"{USER_PREFIX}\d+")


def user_ids(count: int) -> list[str]:
    return [f"{USER_PREFIX}{u:02d}" for u in range(count)]


@dataclass
class Turn:
    """One turn and what came of it."""

    user: str
    index: int
    text: str
    key: str
    """The turn's idempotency key: unique, the same for every resend of the turn; sent with
    each request when the load resends (see EXTENSION POINT)."""
    started: float = 0.0
    """When the current (or last) request of the turn started."""
    ended: float | None = None
    """When it ended; None while it is in flight."""
    acknowledged: int = 0
    replayed: int = 0
    """Acknowledgements that were the stored reply of an earlier attempt (the server said
    `Idempotent-Replayed: true`): the attempt that died had been committed."""
    reply: str | None = None
    failures: list[str] = field(default_factory=list)
    """What each request that died with its replica got (502, or the transport error)."""
    failed_windows: list[tuple[float, float]] = field(default_factory=list)
    """(started, ended) of each request in `failures`."""

    @property
    def body(self) -> dict[str, str]:
        return {"message": self.text, "session_id": SESSION}

    @property
    def in_doubt(self) -> bool:
        return self.acknowledged == 0 and bool(self.failures)


Resend = Callable[[httpx.AsyncClient, Turn, Mapping[str, str]], Awaitable[httpx.Response]]
"""Sends an in-doubt turn again (the client, the turn, its auth headers)."""

# --- EXTENSION POINT: idempotent turns (issue 15, item 4) -----------------------------------
# Without a `Resend`, a turn whose request died with its replica stays in doubt, and the check
# allows it to be stored or not (stored = acknowledged + at most the in-doubt turns). With
# `SessionLoad(resend=resend_with_key)`, every request carries `{"Idempotency-Key": turn.key}`
# (the first one too) and the load resends every in-doubt turn until it is acknowledged, so
# no turn stays in doubt, and the same check then demands stored = acknowledged exactly, each
# turn once, with the reply the retry got equal to the stored one.
# ---------------------------------------------------------------------------------------------


async def resend_with_key(
    http: httpx.AsyncClient, turn: Turn, headers: Mapping[str, str]
) -> httpx.Response:
    """POST the turn to /v1/chat again, with its idempotency key."""
    return await http.post(
        "/v1/chat", json=turn.body, headers={**headers, "Idempotency-Key": turn.key}
    )


@dataclass
class SessionLoad:
    """`turns_per_user` turns for each user of `keys` (user → API key), `concurrency` at once
    per user, all to session SESSION."""

    http: httpx.AsyncClient
    keys: Mapping[str, str]
    turns_per_user: int
    concurrency: int
    resend: Resend | None = None
    turns: list[Turn] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.turns = [
            Turn(user, i, f"{user} turn {i:02d} {uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
            for user in self.keys
            for i in range(self.turns_per_user)
        ]

    def acknowledged(self) -> list[Turn]:
        return [t for t in self.turns if t.acknowledged]

    def in_doubt(self) -> list[Turn]:
        return [t for t in self.turns if t.in_doubt]

    def in_flight(self) -> list[Turn]:
        return [t for t in self.turns if t.started and t.ended is None]

    async def run(self) -> None:
        await asyncio.gather(*(self._user(user) for user in self.keys))

    async def _user(self, user: str) -> None:
        queue = [t for t in self.turns if t.user == user]
        queue.reverse()  # pop() takes them in order

        async def worker() -> None:
            while queue:
                await self._send(queue.pop())

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _post(
        self, http: httpx.AsyncClient, turn: Turn, headers: Mapping[str, str]
    ) -> httpx.Response:
        if self.resend is not None:  # resends are safe only if the first attempt had the key
            headers = {**headers, "Idempotency-Key": turn.key}
        return await http.post("/v1/chat", json=turn.body, headers=headers)

    async def _send(self, turn: Turn) -> None:
        headers = {"X-API-Key": self.keys[turn.user]}
        send = self._post
        busy = 0
        while True:
            turn.started, turn.ended = time.monotonic(), None
            try:
                response = await send(self.http, turn, headers)
            except httpx.TransportError as exc:
                turn.ended = time.monotonic()
                turn.failures.append(f"no response: {exc!r}")
                turn.failed_windows.append((turn.started, turn.ended))
            else:
                turn.ended = time.monotonic()
                status = response.status_code
                if status == 200:
                    self._acknowledge(turn, response)
                    return
                retry_after = response.headers.get("Retry-After")
                if status == 409 and retry_after is not None and busy < MAX_BUSY_RETRIES:
                    busy += 1  # the scope stayed busy: nothing was stored, send it again
                    await asyncio.sleep(float(retry_after))
                    continue
                turn.failures.append(f"{status} {response.text[:200]}")
                turn.failed_windows.append((turn.started, turn.ended))
                if status != 502:
                    self.problems.append(f"{turn.text!r}: refused: {turn.failures[-1]}")
                    return
            if self.resend is None:
                return  # in doubt: see EXTENSION POINT
            if len(turn.failures) > MAX_RESENDS:
                self.problems.append(f"{turn.text!r}: still failing after resends: {turn.failures}")
                return
            send = self.resend

    def _acknowledge(self, turn: Turn, response: httpx.Response) -> None:
        body: Any = response.json()
        turn.acknowledged += 1
        turn.replayed += response.headers.get("Idempotent-Replayed") == "true"
        turn.reply = body["reply"]
        if (body["user_id"], body["session_id"]) != (turn.user, SESSION):
            self.problems.append(f"{turn.text!r}: answered for another scope: {body}")


def expected_reply(text: str) -> str:
    """What the offline model answers to `text` (it echoes any text that is not about names)."""
    return reply_to([Message.user(text)])


@dataclass
class HistoryCheck:
    problems: list[str] = field(default_factory=list)
    stored: int = 0
    acknowledged: int = 0
    in_doubt: int = 0
    in_doubt_stored: int = 0
    """In-doubt turns that had in fact been committed before their replica died."""
    resent: int = 0
    """Turns acknowledged after a request of theirs died (resent with their key)."""
    replayed: int = 0
    """Of those, the ones answered with the stored reply: the request that died had in fact
    been committed, and its resend did not store it again."""


async def check_histories(
    http: httpx.AsyncClient,
    load: SessionLoad,
    admin_key: str,
    deaths: Sequence[tuple[float, float]],
    also_users: Sequence[str] = (),
) -> HistoryCheck:
    """Check what the replicas stored against what the load sent (see the module docstring).
    `deaths`: (killed, gone) for each killed replica, the monotonic times of its SIGKILL and
    of its process being reaped; `also_users`: other users the store may hold (the seed
    session's)."""
    result = HistoryCheck(problems=list(load.problems))
    problems = result.problems
    result.acknowledged = len(load.acknowledged())
    result.in_doubt = len(load.in_doubt())
    for turn in load.turns:
        if turn.acknowledged > 1:
            problems.append(f"{turn.text!r} acknowledged {turn.acknowledged} times")
        if turn.failures and turn.acknowledged:
            result.resent += 1
            result.replayed += turn.replayed
        windows = turn.failed_windows or [(turn.started, turn.ended or 0)]
        if turn.failures and not all(
            any(started < gone and ended >= killed for killed, gone in deaths)
            for started, ended in windows
        ):
            problems.append(f"{turn.text!r} failed outside a replica's death: {turn.failures}")
        if not turn.acknowledged and not turn.in_doubt:
            problems.append(f"{turn.text!r} was never acknowledged: {turn.failures}")

    listed = await http.get("/v1/users", headers={"X-API-Key": admin_key})
    listed.raise_for_status()
    known = set(load.keys) | set(also_users)
    strangers = set(listed.json()["users"]) - known
    if strangers:
        problems.append(f"users nobody sent a turn for: {sorted(strangers)[:5]}")

    by_user: dict[str, list[Turn]] = {}
    for turn in load.turns:
        by_user.setdefault(turn.user, []).append(turn)
    for user, turns in by_user.items():
        response = await http.get(
            f"/v1/users/{user}/export", headers={"X-API-Key": load.keys[user]}
        )
        if response.status_code == 404 and not any(t.acknowledged for t in turns):
            continue  # nothing stored, and nothing acknowledged
        response.raise_for_status()
        sessions = response.json()["sessions"]
        if [s["session_id"] for s in sessions] != [SESSION]:
            problems.append(f"{user}: sessions {[s['session_id'] for s in sessions]}")
            continue
        stored = _pairs(user, sessions[0]["messages"], problems)
        result.stored += len(stored)
        _compare(user, turns, stored, problems, result)
    return result


def _pairs(user: str, messages: Sequence[Mapping[str, Any]], problems: list[str]) -> list[str]:
    """Give the texts of the session's stored turns; note every message that is not part of a
    whole (user text, echo of that text) pair, and every message naming another user."""
    texts = []
    for message in messages:
        foreign = set(_USER_ID.findall(str(message.get("content")))) - {user}
        if foreign:
            problems.append(f"{user}: a foreign marker {sorted(foreign)} in {message}")
    for start in range(0, len(messages), 2):
        pair = messages[start : start + 2]
        roles = [m.get("role") for m in pair]
        if roles != ["user", "assistant"] or pair[1]["content"] != expected_reply(
            pair[0]["content"]
        ):
            problems.append(f"{user}: not a whole ordered pair at message {start}: {pair}")
            return texts
        texts.append(pair[0]["content"])
    return texts


def _compare(
    user: str,
    turns: Sequence[Turn],
    stored: Sequence[str],
    problems: list[str],
    result: HistoryCheck,
) -> None:
    twice = [text for text, n in Counter(stored).items() if n > 1]
    if twice:
        problems.append(f"{user}: turns stored twice: {twice[:5]}")
    by_text = {t.text: t for t in turns}
    strays = [text for text in stored if text not in by_text]
    if strays:
        problems.append(f"{user}: stored turns nobody sent: {strays[:5]}")
    kept = set(stored)
    for turn in turns:
        if turn.acknowledged and turn.text not in kept:
            problems.append(f"{user}: acknowledged turn lost: {turn.text!r}")
        elif turn.acknowledged and turn.reply != expected_reply(turn.text):
            problems.append(f"{user}: {turn.text!r} was answered {turn.reply!r}")
        elif not turn.acknowledged and turn.text in kept:
            if turn.in_doubt:
                result.in_doubt_stored += 1
            else:
                problems.append(f"{user}: a refused turn was stored: {turn.text!r}")
