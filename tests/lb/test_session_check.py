"""The balancer test's check is not vacuous: each kind of damage it looks for is reported.

An in-process server (auth on, the offline model, an in-memory store) takes a small load;
then turns are damaged behind its back, or the record of what the load got is altered."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tenantry import Agent, InMemoryStore, Message, OfflineModel
from tenantry.server import create_app
from tests.server.conftest import make_tenants
from tests.support.reliability.session_load import (
    SESSION,
    SessionLoad,
    Turn,
    check_histories,
    expected_reply,
    resend_with_key,
    user_ids,
)
from tests.support.servers import serve

USERS = user_ids(2)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[SessionLoad, InMemoryStore, str]]:
    """A finished load of 2 users x 3 turns (2 at once per user), its store, the admin key."""
    store = InMemoryStore()
    tenants = make_tenants(USERS)
    app = create_app(Agent(model=OfflineModel(), store=store), tenants.settings())
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            load = SessionLoad(http, tenants.keys, turns_per_user=3, concurrency=2)
            await load.run()
            yield load, store, tenants.admin_key


async def _pair(store: InMemoryStore, user: str, text: str) -> None:
    pair = [Message.user(text), Message.assistant(expected_reply(text))]
    await store.add_many(pair, user_id=user, session_id=SESSION)


async def test_a_clean_load_passes(served: tuple[SessionLoad, InMemoryStore, str]) -> None:
    load, _, admin = served
    check = await check_histories(load.http, load, admin, [])
    assert check.problems == []
    assert (check.acknowledged, check.stored, check.in_doubt) == (6, 6, 0)


async def test_lost_doubled_foreign_and_half_turns_are_reported(
    served: tuple[SessionLoad, InMemoryStore, str],
) -> None:
    load, store, admin = served
    ghost = Turn(USERS[1], 9, f"{USERS[1]} turn 09 ghost", "k", acknowledged=1)
    ghost.reply = expected_reply(ghost.text)
    load.turns.append(ghost)  # acknowledged, never stored
    await _pair(store, USERS[0], load.turns[0].text)  # stored twice
    await _pair(store, USERS[0], f"{USERS[0]} quoting {USERS[1]}")  # a foreign marker
    await store.add(Message.user(f"{USERS[1]} half"), user_id=USERS[1], session_id=SESSION)
    problems = "\n".join((await check_histories(load.http, load, admin, [])).problems)
    assert "acknowledged turn lost" in problems
    assert "turns stored twice" in problems
    assert f"a foreign marker ['{USERS[1]}']" in problems
    assert "stored turns nobody sent" in problems
    assert "not a whole ordered pair at message 6" in problems


async def test_a_turn_in_doubt_is_allowed_only_if_it_was_in_flight_at_a_death(
    served: tuple[SessionLoad, InMemoryStore, str],
) -> None:
    load, _, admin = served
    first = load.turns[0]
    load.turns[0] = dataclasses.replace(
        first, acknowledged=0, reply=None, failures=["502 Bad Gateway"], started=1.0, ended=2.0
    )  # the turn was stored, but its client got a 502
    explained = await check_histories(load.http, load, admin, [(1.5, 1.6)])
    assert explained.problems == []
    assert (explained.in_doubt, explained.in_doubt_stored, explained.stored) == (1, 1, 6)
    unexplained = await check_histories(load.http, load, admin, [(5.0, 5.1)])
    assert any("failed outside a replica's death" in p for p in unexplained.problems)


class LostAnswers(httpx.AsyncBaseTransport):
    """Forwards every request to the server; the answer to the first request of every
    second turn is lost (a 502 instead): the turn was committed, its client never heard."""

    def __init__(self, url: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.url = url
        self.seen: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        key = request.headers.get("Idempotency-Key")
        body = request.content.decode()
        if (
            key is not None
            and key not in self.seen
            and any(f"turn {i:02d} " in body for i in (0, 2))
        ):
            self.seen.add(key)
            await response.aread()
            return httpx.Response(502, text="Bad Gateway (the answer was lost)")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_turns_whose_answer_was_lost_are_resent_with_their_key_and_stored_once() -> None:
    store = InMemoryStore()
    tenants = make_tenants(USERS)
    app = create_app(Agent(model=OfflineModel(), store=store), tenants.settings())
    with serve(app) as url:
        transport = LostAnswers(url)
        async with httpx.AsyncClient(base_url=url, timeout=30, transport=transport) as http:
            load = SessionLoad(
                http, tenants.keys, turns_per_user=3, concurrency=2, resend=resend_with_key
            )
            await load.run()
            check = await check_histories(http, load, tenants.admin_key, [(0.0, float("inf"))])
    assert check.problems == []
    assert (check.acknowledged, check.stored, check.in_doubt) == (6, 6, 0)
    assert (check.resent, check.replayed) == (4, 4)  # turns 0 and 2 of each user
    assert sum(len(t.failures) for t in load.turns) == 4
