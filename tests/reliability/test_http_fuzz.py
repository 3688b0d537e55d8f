"""Fuzz every HTTP endpoint with hostile ids (unicode, separators, very long, control
characters, SQL, Redis-pattern and URL metacharacters, ids shaped like a path to another
user's data), hostile messages and hostile credentials, in open mode and with auth on.

Whatever is sent: never a 5xx, never a stack trace or an internal path in a body, every 4xx
in the documented `{"error": {"type", "message"}}` shape (A2A: a JSON-RPC error), nothing
stored or deleted for a rejected request, and an accepted request changes only the scope it
names (a canary user and a second session of the same user stay as they were)."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tenantry import Agent, InMemoryStore, Message, Scope
from tenantry._runner import run_sync
from tenantry.errors import InvalidScope
from tenantry.server import ServerSettings, create_app
from tenantry.tenancy import DEFAULT_SESSION_ID, tenant_id
from tests.server.conftest import JWT_SECRET, make_tenants, open_settings
from tests.support.reliability.http_checks import (
    Contents,
    changed_scopes,
    contents_of,
    describe_change,
    error_shape_problem,
    leaked_internals,
)
from tests.support.reliability.strategies import header_texts, http_ids, message_texts

EXAMPLES = 20
"""Hypothesis examples per endpoint and principal (15 endpoints, 6 principals)."""
CANARY_USER, CANARY_SESSION = "canary-user-☃", "canary-session"
CANARY_SECRET = "canary-secret-7f3a"
OTHER_SESSION = "other-session-☃"
ALICE = "alice"
ADMIN = "ops"
_tenants = make_tenants([ALICE])
_requests: Counter[str] = Counter()
"""Requests sent, per principal and endpoint: the figure the run prints at the end."""


@dataclass
class Served:
    client: TestClient
    store: InMemoryStore


@contextlib.contextmanager
def _serve(server_settings: ServerSettings) -> Iterator[Served]:
    store = InMemoryStore()
    app = create_app(Agent(name="fuzzed", store=store), server_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Served(client, store)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Served]]:
    """One app in open mode and one with API keys and JWT on, each on its own store."""
    with _serve(open_settings()) as open_server, _serve(_tenants.settings()) as auth_server:
        yield {"open": open_server, "auth": auth_server}
    print(f"\nHTTP fuzz: {sum(_requests.values())} requests: {dict(sorted(_requests.items()))}")


# --- who calls ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A principal: which server it calls, with what credential, and what it may do."""

    name: str
    server: str
    credential_user: str | None = None  # the credential's user; None: open mode or no credential
    admin: bool = False
    authenticated: bool = True

    def may_act_on(self, user: str) -> bool:
        return self.server == "open" or self.admin or user == self.credential_user


def _tenant_of_sub(sub: str) -> str | None:
    """The tenant a JWT with this `sub` (and no org claim) is, or None if it is refused."""
    try:
        return tenant_id(sub)
    except InvalidScope:
        return None


def _valid_user(user: str) -> bool:
    try:
        Scope(user, DEFAULT_SESSION_ID)
    except InvalidScope:
        return False
    return True


def _caller(name: str, user: str, forged: str) -> tuple[Caller, dict[str, Any]]:
    """Give the principal `name` for a request about `user`, and its headers."""
    if name == "open":
        return Caller(name, "open"), {}
    if name == "admin":
        return Caller(name, "auth", ADMIN, admin=True), {"X-API-Key": _tenants.admin_key}
    if name == "other":
        return Caller(name, "auth", ALICE), _tenants.headers(ALICE)
    if name == "self":  # a JWT whose subject is the very id under test
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")
        tenant = _tenant_of_sub(user)  # the id itself, unless it holds "%" or ":"
        caller = Caller(name, "auth", tenant, authenticated=tenant is not None)
        return caller, {"Authorization": f"Bearer {token}"}
    if name == "anonymous":
        return Caller(name, "auth", authenticated=False), {}
    header = "X-API-Key" if len(forged) % 2 else "Authorization"
    value = forged if header == "X-API-Key" else f"Bearer {forged}"
    return Caller(name, "auth", authenticated=False), {header: value.encode("latin-1")}


# --- what is sent ---------------------------------------------------------------------------


@dataclass
class Call:
    """One request and what it would act on if accepted."""

    endpoint: str
    method: str
    url: str
    kind: str  # turn, read, delete_session, delete_user
    scope: tuple[str, str | None] | None  # (user, session or None for the whole user)
    body: Any = None
    headers: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # the message of a turn
    admin_only: bool = False


def _segment(value: str) -> str:
    """Percent-encode an id as one path segment (dots too, so no client folds `..`)."""
    return quote(value, safe="").replace(".", "%2E")


def _a2a(method: str, text: str, context_id: str, version_1: bool) -> tuple[dict[str, Any], Any]:
    if version_1:
        message = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": text}]}
        headers = {"A2A-Version": "1.0"}
    else:
        message = {"kind": "message", "messageId": "m-1", "role": "user"}
        message["parts"] = [{"kind": "text", "text": text}]
        headers = {}
    message["contextId"] = context_id
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}
    return headers, body


def _call(endpoint: str, caller: Caller, user: str, session: str, text: str, flag: bool) -> Call:
    u, s = _segment(user), _segment(session)
    chat = {"message": text, "user_id": user, "session_id": session}
    if endpoint in ("chat", "chat_stream"):
        path = "/v1/chat" if endpoint == "chat" else "/v1/chat/stream"
        return Call(endpoint, "POST", path, "turn", (user, session), chat, text=text)
    if endpoint == "seed_chat":
        body = {"user_id": user, "message": text}
        return Call(endpoint, "POST", "/chat", "turn", (user, DEFAULT_SESSION_ID), body, text=text)
    if endpoint in ("completions", "completions_stream"):
        body: dict[str, Any] = {"model": "any", "messages": [{"role": "user", "content": text}]}
        body["user"] = user
        body["stream"] = endpoint == "completions_stream"
        headers = {}
        if flag and session.isascii() and session.isprintable():
            headers["X-Session-ID"] = session
        else:
            body["metadata"] = {"session_id": session}
        call = Call(endpoint, "POST", "/v1/chat/completions", "turn", (user, session), body)
        call.headers, call.text = headers, text
        return call
    if endpoint in ("a2a", "a2a_0_3", "a2a_stream"):
        names = {"a2a": "SendMessage", "a2a_0_3": "message/send"}
        method = names.get(endpoint, "SendStreamingMessage")
        if caller.server == "open":  # contextId is the user, as in the seed
            scope: tuple[str, str | None] = (user, DEFAULT_SESSION_ID)
            context_id = user
        else:  # the credential's user; contextId is the session
            scope = (caller.credential_user or "", session)
            context_id = session
        headers, body = _a2a(method, text, context_id, endpoint != "a2a_0_3")
        return Call(endpoint, "POST", "/a2a/jsonrpc", "turn", scope, body, headers, text)
    if endpoint == "sessions":
        return Call(endpoint, "GET", f"/v1/users/{u}/sessions", "read", (user, None))
    if endpoint == "messages":
        url = f"/v1/users/{u}/sessions/{s}/messages?limit={50 if flag else 1}"
        return Call(endpoint, "GET", url, "read", (user, session))
    if endpoint == "export":
        return Call(endpoint, "GET", f"/v1/users/{u}/export", "read", (user, None))
    if endpoint == "delete_session":
        url = f"/v1/users/{u}/sessions/{s}"
        return Call(endpoint, "DELETE", url, "delete_session", (user, session))
    if endpoint == "delete_user":
        return Call(endpoint, "DELETE", f"/v1/users/{u}", "delete_user", (user, None))
    if endpoint == "users":
        return Call(endpoint, "GET", "/v1/users", "read", None, admin_only=True)
    assert endpoint == "me"
    return Call(endpoint, "GET", "/v1/me", "read", None)


PRINCIPALS = ["open", "admin", "self", "other", "anonymous", "forged"]
ENDPOINTS = [
    "chat",
    "chat_stream",
    "seed_chat",
    "completions",
    "completions_stream",
    "a2a",
    "a2a_0_3",
    "a2a_stream",
    "sessions",
    "messages",
    "export",
    "delete_session",
    "delete_user",
    "users",
    "me",
]


# --- what must hold -------------------------------------------------------------------------


def _scope_valid(scope: tuple[str, str | None] | None) -> bool:
    if scope is None:
        return True
    try:
        Scope(scope[0], DEFAULT_SESSION_ID if scope[1] is None else scope[1])
    except InvalidScope:
        return False
    return True


def _text_valid(text: str | None) -> bool:
    if text is None:
        return True
    try:
        Message.user(text)
    except ValueError:
        return False
    return bool(text.strip())


def _accepted(call: Call, caller: Caller) -> bool:
    """Tell whether the server must carry out `call` (else it must refuse it)."""
    if not caller.authenticated:
        return False
    if call.admin_only and caller.server == "auth" and not caller.admin:
        return False
    if call.scope is not None and not caller.may_act_on(call.scope[0]):
        return False
    return _scope_valid(call.scope) and _text_valid(call.text)


def _seed(store: InMemoryStore, user: str, session: str) -> None:
    """Give the user under test a message in the session under test and in another one, and
    store a canary user, so reads, deletes and turns have something to get wrong."""

    async def seed() -> None:
        await store.clear_all()
        canary = Message.user(f"{CANARY_SECRET} canary")
        await store.add(canary, user_id=CANARY_USER, session_id=CANARY_SESSION)
        if _valid_user(user):
            await store.add(Message.user("seed other"), user_id=user, session_id=OTHER_SESSION)
            if _scope_valid((user, session)):
                await store.add(Message.user("seed"), user_id=user, session_id=session)

    run_sync(seed())


def _expected_change(call: Call, before: Contents) -> set[tuple[str, str]]:
    assert call.scope is not None or call.kind == "read"
    if call.kind == "read" or call.scope is None:
        return set()
    user, session = call.scope
    if call.kind == "delete_user":
        return {key for key in before if key[0] == user}
    return {(user, DEFAULT_SESSION_ID if session is None else session)}


def _check_accepted(call: Call, response: Any, before: Contents, after: Contents) -> None:
    status, text = response.status_code, response.text
    assert status in (200, 204), f"{call.endpoint} refused with {status}: {text[:300]}"
    changed = changed_scopes(before, after)
    assert changed == _expected_change(call, before), describe_change(before, after)
    if call.endpoint.startswith("a2a"):
        assert '"error"' not in text, text[:300]
        finished = "TASK_STATE_COMPLETED" if call.endpoint == "a2a_stream" else '"result"'
        assert finished in text, text[-300:]
    scope = call.scope
    if scope is None:
        return
    user, session = scope
    key = (user, DEFAULT_SESSION_ID if session is None else session)
    if call.kind == "turn":
        added = after[key][0][len(before.get(key, ((), ""))[0]) :]
        assert [role for role, _ in added] == ["user", "assistant"], added
        assert added[0][1] == call.text
    elif call.kind in ("delete_session", "delete_user"):
        assert not changed & after.keys()
    if call.endpoint in ("chat", "seed_chat"):
        assert response.json()["user_id"] == user
    if call.endpoint == "chat":
        assert response.json()["session_id"] == session
    if call.endpoint == "chat_stream":
        done = text.split("event: done\ndata: ", 1)[1].split("\n", 1)[0]
        assert (json.loads(done)["user_id"], json.loads(done)["session_id"]) == key
    if call.endpoint == "sessions":
        assert response.json() == {
            "user_id": user,
            "sessions": sorted(s for u, s in before if u == user),
        }
    if call.endpoint == "messages":
        page = response.json()
        assert (page["user_id"], page["session_id"]) == key
        assert [m["content"] for m in page["messages"]] == [c for _, c in before[key][0]][-50:]
    if call.endpoint == "export":
        exported = response.json()
        assert exported["user_id"] == user
        assert {s["session_id"] for s in exported["sessions"]} == {
            s for u, s in before if u == user
        }
    if call.endpoint == "delete_user":
        assert response.json()["deleted_sessions"] == len(changed)


def _check_refused(call: Call, caller: Caller, response: Any, changed: set[Any]) -> None:
    status, text = response.status_code, response.text
    assert not changed, f"a refused {call.endpoint} ({status}) changed the store: {changed}"
    if not caller.authenticated:
        assert status == 401, f"{call.endpoint} answered {status} to {caller.name}: {text[:200]}"
        challenges = response.headers.get_list("WWW-Authenticate")
        # A2A names the schemes its card declares; the other routes keep the one challenge
        names = ["ApiKey", "Bearer"] if call.endpoint.startswith("a2a") else ["Bearer"]
        assert [c.split()[0] for c in challenges] == names, challenges
    elif call.endpoint.startswith("a2a"):  # a JSON-RPC error (a stream's last event)
        assert status == 200, f"{status} {text[:300]}"
        assert '"error"' in text, text[-300:]
        finished = "TASK_STATE_COMPLETED" if call.endpoint == "a2a_stream" else '"result"'
        assert finished not in text, text[-300:]
    else:
        assert 400 <= status < 500, f"{call.endpoint} accepted a bad request: {status} {text[:300]}"


def _exercise(served: Served, caller: Caller, call: Call, extra: dict[str, Any]) -> None:
    headers = {**extra, **call.headers}
    content = None
    if call.body is not None:  # ASCII JSON: a lone surrogate travels as an escape
        content = json.dumps(call.body).encode()
        headers["Content-Type"] = "application/json"
    before = contents_of(served.store)
    response = served.client.request(call.method, call.url, content=content, headers=headers)
    after = contents_of(served.store)
    _requests[f"{caller.name}:{call.endpoint}"] += 1
    status = response.status_code
    sent = f"{call.url} {json.dumps(call.body)} {headers}"
    assert status < 500, f"{call.endpoint} answered {status}: {response.text[:500]}"
    leak = leaked_internals(response.text, sent)
    assert leak is None, f"{call.endpoint} leaked {leak!r}: {response.text[:500]}"
    problem = error_shape_problem(
        status,
        response.headers.get("content-type", ""),
        response.content,
        jsonrpc=call.endpoint.startswith("a2a"),
    )
    assert problem is None, f"{call.endpoint}: {problem}"
    assert CANARY_SECRET not in response.text, f"{call.endpoint} showed the canary's data"
    assert response.headers.get("X-Request-ID"), "every response carries a request id"
    if _accepted(call, caller):
        _check_accepted(call, response, before, after)
    else:
        _check_refused(call, caller, response, changed_scopes(before, after))


_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("principal", PRINCIPALS)
@_settings
@given(
    user=http_ids(CANARY_USER, CANARY_SESSION),
    session=http_ids(CANARY_USER, CANARY_SESSION),
    text=message_texts,
    flag=st.booleans(),
    forged=header_texts,
    request_id=st.one_of(st.none(), header_texts),
)
def test_every_endpoint_survives_hostile_input(
    servers: dict[str, Served],
    principal: str,
    endpoint: str,
    user: str,
    session: str,
    text: str,
    flag: bool,
    forged: str,
    request_id: str | None,
) -> None:
    assume(CANARY_USER not in (user, session) and session != OTHER_SESSION and user != ALICE)
    if endpoint.startswith("a2a"):
        assume(session != "" if principal != "open" else user != "")  # the SDK invents one
    caller, headers = _caller(principal, user, forged)
    if request_id is not None:
        headers["X-Request-ID"] = request_id.encode("latin-1")
    served = servers[caller.server]
    _seed(served.store, user, session)
    _exercise(served, caller, _call(endpoint, caller, user, session, text, flag), headers)


def test_an_id_holding_a_slash_names_one_user_in_every_path(servers: dict[str, Served]) -> None:
    """`DELETE /v1/users/x%2Fsessions%2Fs` deletes user "x/sessions/s", not session "s" of
    user "x" (the server decodes the path before routing; found by the fuzz above)."""
    served = servers["open"]
    victim, slashed = ("x", "s"), "x/sessions/s"
    _seed(served.store, slashed, "s")
    run_sync(served.store.add(Message.user("victim's"), user_id="x", session_id="s"))
    for method, path in [
        ("GET", f"/v1/users/{_segment(slashed)}/sessions"),
        ("GET", f"/v1/users/{_segment(slashed)}/sessions/{_segment('s')}/messages"),
        ("GET", f"/v1/users/{_segment(slashed)}/export"),
        ("DELETE", f"/v1/users/{_segment(slashed)}"),
    ]:
        response = served.client.request(method, path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["user_id"] == slashed
    assert set(contents_of(served.store)) == {victim, (CANARY_USER, CANARY_SESSION)}
    for literal in ("50%", "a%2Fb", "%25"):  # an escape in an id is kept as sent
        run_sync(served.store.add(Message.user("mine"), user_id=literal, session_id=literal))
        response = served.client.get(f"/v1/users/{_segment(literal)}/sessions")
        assert response.json() == {"user_id": literal, "sessions": [literal]}
