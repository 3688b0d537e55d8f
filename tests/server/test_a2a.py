"""A2A with the SDK's own client against a real running server: the seed's Alice/Bob
exchange over two contexts, streaming and not, with auth on and in open mode."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_message_text
from a2a.types import Message, Part, Role, SendMessageRequest, StreamResponse, TaskState
from a2a.utils.errors import A2AError

from tenantry import Agent
from tests.server.conftest import Tenants


def request(text: str, context_id: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            context_id=context_id,
            parts=[Part(text=text)],
        )
    )


class Caller:
    """An SDK client for one caller (credential headers or none), streaming or not."""

    def __init__(self, url: str, headers: dict[str, str], streaming: bool) -> None:
        self.url, self.headers, self.streaming = url, headers, streaming

    async def __aenter__(self) -> Caller:
        async with httpx.AsyncClient() as public:  # the card is public
            card = await A2ACardResolver(public, self.url).get_agent_card()
        self.http = httpx.AsyncClient(headers=self.headers, timeout=30)
        config = ClientConfig(streaming=self.streaming, httpx_client=self.http)
        self.client = ClientFactory(config).create(card)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.http.aclose()

    async def events(self, text: str, context_id: str) -> AsyncIterator[StreamResponse]:
        async for event in self.client.send_message(request(text, context_id)):
            yield event

    async def ask(self, text: str, context_id: str) -> str:
        """Give the reply text, checking the answer's shape: one completed task, or a
        stream whose chunks add up to the reply."""
        events = [event async for event in self.events(text, context_id)]
        if not self.streaming:
            assert [e.WhichOneof("payload") for e in events] == ["task"]
            task = events[0].task
            assert task.context_id == context_id
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            whole = get_message_text(task.status.message)
            # the reply once more, as the task's one artifact of one part
            assert [(a.name, [p.text for p in a.parts]) for a in task.artifacts] == [
                ("reply", [whole])
            ]
            assert [(m.role, get_message_text(m)) for m in task.history] == [(Role.ROLE_USER, text)]
            return whole
        kinds = [e.WhichOneof("payload") for e in events]
        assert kinds[0] == "task"
        chunks = "".join(
            part.text
            for e in events
            if e.HasField("artifact_update")
            for part in e.artifact_update.artifact.parts
        )
        final = events[-1].status_update
        assert final.status.state == TaskState.TASK_STATE_COMPLETED
        whole = get_message_text(final.status.message)
        assert chunks == whole
        assert kinds.count("artifact_update") >= 2
        return whole


async def _seed_exchange(alice: Caller, bob: Caller, ctx_a: str, ctx_b: str) -> None:
    await alice.ask("My name is Alice", ctx_a)
    assert await alice.ask("What is my name?", ctx_a) == "Your name is Alice."
    await bob.ask("My name is Bob", ctx_b)
    assert await bob.ask("What is my name?", ctx_b) == "Your name is Bob."
    assert await alice.ask("What is my name?", ctx_a) == "Your name is Alice."


@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
async def test_seed_exchange_in_open_mode_context_is_the_user(
    live_open: str, agent: Agent, streaming: bool
) -> None:
    async with Caller(live_open, {}, streaming) as caller:
        await _seed_exchange(caller, caller, "user-a", "user-b")
    assert await agent.store.list_users() == ["user-a", "user-b"]
    assert await agent.store.list_sessions("user-a") == ["default"]


@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
async def test_seed_exchange_with_auth_user_from_credential_context_is_session(
    live_auth: str, agent: Agent, tenants: Tenants, streaming: bool
) -> None:
    async with (
        Caller(live_auth, tenants.headers("alice"), streaming) as alice,
        Caller(live_auth, {"Authorization": f"Bearer {tenants.keys['bob']}"}, streaming) as bob,
    ):
        # Both use the SAME contextId: identity comes from the credential, not the payload.
        await _seed_exchange(alice, bob, "chat-1", "chat-1")
        assert "don't know" in await alice.ask("What is my name?", "chat-2")
    assert await agent.store.list_users() == ["alice", "bob"]
    assert await agent.store.list_sessions("alice") == ["chat-1", "chat-2"]


async def test_the_card_declares_the_schemes_in_force(live_auth: str, live_open: str) -> None:
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, live_auth).get_agent_card()
        assert set(card.security_schemes) == {"apiKey", "bearer"}
        assert card.security_schemes["apiKey"].api_key_security_scheme.name == "X-API-Key"
        assert len(card.security_requirements) == 2
        assert card.capabilities.streaming
        assert card.supported_interfaces[0].url == f"{live_auth}/a2a/jsonrpc"
        assert card.supported_interfaces[0].protocol_version == "1.0"
        open_card = await A2ACardResolver(http, live_open).get_agent_card()
        assert not open_card.security_schemes
        assert not open_card.security_requirements


async def test_unauthenticated_a2a_calls_are_rejected(live_auth: str) -> None:
    async with Caller(live_auth, {}, streaming=False) as anonymous:
        with pytest.raises(A2AError, match="401"):
            await anonymous.ask("hi", "ctx")
    async with Caller(live_auth, {"X-API-Key": "tnt_wrong"}, streaming=True) as forged:
        with pytest.raises(A2AError, match="401"):
            await forged.ask("hi", "ctx")


async def test_bad_ids_and_messages_are_invalid_params(live_open: str, agent: Agent) -> None:
    async with Caller(live_open, {}, streaming=False) as caller:
        with pytest.raises(A2AError, match="must not contain control characters"):
            await caller.ask("hi", "bad\u0001id")
        with pytest.raises(A2AError, match="at most 255"):
            await caller.ask("hi", "x" * 300)
        with pytest.raises(A2AError, match="must not be empty"):
            await caller.ask("   ", "ok")
    assert await agent.store.list_users() == []


async def test_a_0_3_client_is_served_through_the_compat_layer(live_open: str) -> None:
    call: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "role": "user",
                "messageId": "m-1",
                "contextId": "old-client",
                "parts": [{"kind": "text", "text": "My name is Ada"}],
            }
        },
    }
    async with httpx.AsyncClient(base_url=live_open) as http:
        first = (await http.post("/a2a/jsonrpc", json=call)).json()["result"]
        assert first["kind"] == "task"  # in 0.3's shape
        assert first["status"]["state"] == "completed"
        assert first["status"]["message"]["parts"][0]["text"].startswith("Nice to meet you")
        call["params"]["message"]["parts"][0]["text"] = "What is my name?"
        second = (await http.post("/a2a/jsonrpc", json=call)).json()["result"]
        assert second["artifacts"][0]["parts"] == [{"kind": "text", "text": "Your name is Ada."}]
        # the card is 1.0 only (test_a2a_card.py): 0.3 clients are served at the URL they know
        card = (await http.get("/.well-known/agent-card.json")).json()
        assert card["supportedInterfaces"][0]["url"] == f"{live_open}/a2a/jsonrpc"


def test_store_and_rate_errors_reach_a2a_clients_with_their_type() -> None:
    from a2a.utils.errors import InternalError, InvalidParamsError

    from tenantry.errors import InvalidUserId, StoreUnavailable
    from tenantry.server.a2a import a2a_error
    from tenantry.server.errors import RateLimited

    down = a2a_error(StoreUnavailable("the database is unreachable"))
    assert isinstance(down, InternalError)
    assert down.data == {"type": "StoreUnavailable", "retry_after": 1}
    limited = a2a_error(RateLimited("slow down", retry_after=2.5))
    assert limited.data == {"type": "RateLimited", "retry_after": 3}
    bad = a2a_error(InvalidUserId("user id '' must not be empty"))
    assert isinstance(bad, InvalidParamsError)
    assert bad.message == "user id '' must not be empty"


async def test_streamed_tasks_are_kept_in_bounded_memory_per_owner() -> None:
    from a2a.auth.user import User
    from a2a.server.context import ServerCallContext
    from a2a.types import ListTasksRequest, Task

    from tenantry.server.a2a import BoundedTaskStore

    class Named(User):
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def is_authenticated(self) -> bool:
            return True

        @property
        def user_name(self) -> str:
            return self.name

    alice, bob = ServerCallContext(user=Named("alice")), ServerCallContext(user=Named("bob"))
    store = BoundedTaskStore(max_tasks=3)
    for n in range(5):
        await store.save(Task(id=f"t{n}", context_id="c"), alice)
    await store.save(Task(id="t4", context_id="c"), alice)  # saving again is not a new task
    assert await store.get("t0", alice) is None
    assert await store.get("t4", alice) is not None
    assert await store.get("t4", bob) is None
    listed = await store.list(ListTasksRequest(), alice)
    assert sorted(t.id for t in listed.tasks) == ["t2", "t3", "t4"]
    await store.delete("t4", alice)
    assert await store.get("t4", alice) is None
