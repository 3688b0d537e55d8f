"""Property-based API testing: schemathesis generates valid and invalid requests for every
operation of the app's OpenAPI schema, with auth off and on. None may get a 5xx, show a
stack trace or an internal path, or answer an error in another shape than
`{"error": {"type", "message"}}`; and a rejected request (4xx) stores and deletes nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tenantry import Agent, InMemoryStore, Message
from tenantry._runner import run_sync
from tenantry.server import create_app
from tests.server.conftest import make_tenants, open_settings
from tests.support.reliability.http_checks import (
    Contents,
    changed_scopes,
    contents_of,
    error_shape_problem,
    leaked_internals,
)

EXAMPLES = 30
_tenants = make_tenants(["alice"])


class StoreWitness:
    """What an app's store held just before the request under test."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.before: Contents | None = None

    def look(self) -> None:
        self.before = contents_of(self.store)


_witnesses: dict[int, StoreWitness] = {}
"""The witness of each app under test, by the app's id."""


def _app(settings_: Any) -> Any:
    store = InMemoryStore()
    # Data for the generated paths to find: a user "alice" with a session "default".
    run_sync(store.add(Message.user("hello"), user_id="alice"))
    app = create_app(Agent(name="fuzzed", store=store), settings_)
    _witnesses[id(app)] = StoreWitness(store)
    return app


def _sent(case: schemathesis.Case) -> str:
    return repr((case.path_parameters, case.query, case.headers, case.body))


@schemathesis.check
def no_stack_trace_in_body(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """The body holds no traceback, no source file reference and no internal path."""
    leak = leaked_internals(response.text, _sent(case))
    if leak is not None:
        raise AssertionError(f"the body shows internals ({leak!r}): {response.text[:300]}")


@schemathesis.check
def errors_have_the_documented_shape(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """A 4xx or 5xx body is JSON `{"error": {"type": str, "message": str}}`."""
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    problem = error_shape_problem(response.status_code, content_type, response.content)
    if problem is not None:
        raise AssertionError(problem)


@schemathesis.check
def nothing_stored_for_a_rejected_request(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """A 4xx leaves the store exactly as it was before the request."""
    witness = _witnesses[id(case.operation.app)]
    assert witness.before is not None, "look at the store before each request"
    if not 400 <= response.status_code < 500:
        return
    changed = changed_scopes(witness.before, contents_of(witness.store))
    if changed:
        raise AssertionError(
            f"a request refused with {response.status_code} changed {sorted(changed)[:3]}"
        )


CHECKS = [
    not_a_server_error,
    no_stack_trace_in_body,
    errors_have_the_documented_shape,
    nothing_stored_for_a_rejected_request,
]
_open_app = _app(open_settings(max_body_bytes=4096))
_auth_app = _app(_tenants.settings(max_body_bytes=4096))
open_schema = schemathesis.openapi.from_asgi("/openapi.json", _open_app)
auth_schema = schemathesis.openapi.from_asgi("/openapi.json", _auth_app)
_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


_cases: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {sum(_cases.values())} cases over {len(_cases)} operations")


def _call(case: schemathesis.Case, app: Any, headers: dict[str, str] | None = None) -> None:
    _witnesses[id(app)].look()
    _cases[case.operation.label] += 1
    case.call_and_validate(headers=headers, checks=CHECKS)


@open_schema.parametrize()
@_settings
def test_open_mode_never_answers_5xx(case: schemathesis.Case) -> None:
    _call(case, _open_app)


@auth_schema.parametrize()
@_settings
def test_auth_mode_never_answers_5xx_for_a_user(case: schemathesis.Case) -> None:
    _call(case, _auth_app, _tenants.headers("alice"))


@auth_schema.parametrize()
@_settings
def test_auth_mode_never_answers_5xx_for_an_admin(case: schemathesis.Case) -> None:
    _call(case, _auth_app, {"X-API-Key": _tenants.admin_key})


@auth_schema.parametrize()
@settings(_settings, max_examples=10)  # every answer but /v1/info's is a 401
def test_auth_mode_never_answers_5xx_without_a_credential(case: schemathesis.Case) -> None:
    _call(case, _auth_app)


def test_the_checks_catch_what_they_are_for() -> None:
    """The custom checks fail on what they look for (so a green run means something)."""
    assert leaked_internals('Traceback (most recent call last):\n  File "x.py", line 3')
    assert leaked_internals("oops at /usr/lib/python3/site-packages/x.py")
    assert leaked_internals("echo of site-packages", sent="site-packages") is None
    assert error_shape_problem(404, "text/plain", b"Not Found")
    assert error_shape_problem(422, "application/json", b'{"detail": []}')
    assert error_shape_problem(401, "application/json", b'{"error": {"type": "X"}}')
    assert (
        error_shape_problem(403, "application/json", b'{"error":{"type":"F","message":"m"}}')
        is None
    )
    jsonrpc = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"m","data":[%s]}}'
    typed = b'{"metadata":{"type":"Unauthorized"}}'
    assert error_shape_problem(401, "application/json", jsonrpc % typed, jsonrpc=True) is None
    assert error_shape_problem(401, "application/json", jsonrpc % b"", jsonrpc=True)
    assert error_shape_problem(
        401, "application/json", b'{"error":{"type":"F","message":"m"}}', jsonrpc=True
    )
    before = {("a", "s"): ((("user", "x"),), "{}")}
    assert changed_scopes(before, {}) == {("a", "s")}
    assert changed_scopes(before, dict(before)) == set()
