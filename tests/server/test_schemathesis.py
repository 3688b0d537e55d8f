"""Property-based API testing: schemathesis generates valid and invalid requests for every
operation of the app's OpenAPI schema, with auth off and on; none may get a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tenantry import Agent, InMemoryStore, Message
from tenantry._runner import run_sync
from tenantry.server import create_app
from tests.server.conftest import make_tenants, open_settings

EXAMPLES = 30
_tenants = make_tenants(["alice"])


def _agent() -> Agent:
    store = InMemoryStore()
    # Data for the generated paths to find: a user "alice" with a session "default".
    run_sync(store.add(Message.user("hello"), user_id="alice"))
    return Agent(name="fuzzed", store=store)


open_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_agent(), open_settings(max_body_bytes=4096))
)
auth_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_agent(), _tenants.settings(max_body_bytes=4096))
)
_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@open_schema.parametrize()
@_settings
def test_open_mode_never_answers_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@auth_schema.parametrize()
@_settings
def test_auth_mode_never_answers_5xx_for_a_user(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=_tenants.headers("alice"), checks=[not_a_server_error])


@auth_schema.parametrize()
@_settings
def test_auth_mode_never_answers_5xx_for_an_admin(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-API-Key": _tenants.admin_key}, checks=[not_a_server_error])
