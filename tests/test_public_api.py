"""`tenantry.__all__` is the public API, complete (as httpx tests its own): every public name
of the package is listed, every listed name resolves, and every error a user may catch and
every type a user needs is importable from `tenantry` itself."""

from __future__ import annotations

import inspect
import types

import pytest

import tenantry
from tenantry import errors, memory, models, storage, tenancy, tools
from tenantry import types as data_types

LAZY = {"AnthropicModel", "OpenAIChatModel", "PostgresStore", "RedisStore"}
"""Exported, but imported on first use (their drivers come with extras)."""
KEPT_IN_SUBPACKAGE = {
    "DEFAULT_STORE_URL": "a setting's default, for tenantry.storage users",
    "DEFAULT_SESSION_ID": "the default the runs apply; read it from tenantry.tenancy",
    "DEFAULT_USER_ID": "the default the runs apply; read it from tenantry.tenancy",
    "MAX_ID_LENGTH": "a limit InvalidUserId and InvalidSessionId explain",
    "id_problem": "the rule every id obeys; for integrators (tenantry.tenancy)",
    "StreamItem": "what a Model's stream yields, for those who write one (tenantry.models)",
    "model_from_settings": "how the CLI and the server pick a model (tenantry.models)",
    "validate_session_id": "the check Scope applies; for integrators (tenantry.tenancy)",
    "validate_user_id": "the check Scope applies; for integrators (tenantry.tenancy)",
    "tenant_id": "how credentials name a tenant (org, user); for integrators (tenantry.tenancy)",
    "split_tenant_id": "the inverse of tenant_id; for integrators (tenantry.tenancy)",
    "BackgroundJobs": "the type of Agent.memory_jobs, for metrics (tenantry.memory)",
    "TurnMemory": "the type of RunContext.memory, for tool authors (tenantry.memory)",
}
"""Public names of a subpackage that are deliberately not re-exported from `tenantry`."""


def test_every_name_in_all_resolves_including_the_lazy_ones() -> None:
    for name in tenantry.__all__:
        assert getattr(tenantry, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from tenantry import *", namespace)
    assert set(tenantry.__all__) <= set(namespace)


def test_all_lists_exactly_the_public_names_of_the_package_sorted() -> None:
    public = {
        name
        for name, value in vars(tenantry).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(tenantry.__all__) == public | LAZY | {"__version__"}
    assert tenantry.__all__ == sorted(tenantry.__all__)
    assert len(set(tenantry.__all__)) == len(tenantry.__all__)


def test_every_public_error_type_is_exported() -> None:
    defined = [
        value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
        and not name.startswith("_")
    ]
    assert {"ToolError", "MaxLoopsExceeded", "StoreUnavailable"} <= {e.__name__ for e in defined}
    for error in defined:
        assert error.__name__ in tenantry.__all__, f"{error.__name__} is not exported"
        assert getattr(tenantry, error.__name__) is error


@pytest.mark.parametrize(
    "module", [memory, models, storage, tenancy, tools], ids=lambda m: m.__name__
)
def test_the_public_names_of_the_subpackages_are_exported_or_kept_on_purpose(
    module: types.ModuleType,
) -> None:
    for name in module.__all__:
        if name in KEPT_IN_SUBPACKAGE:
            continue
        assert name in tenantry.__all__, f"{module.__name__}.{name} is not exported"
        assert getattr(tenantry, name) is getattr(module, name)


def test_every_public_data_type_is_exported() -> None:
    classes = [
        value
        for name, value in vars(data_types).items()
        if inspect.isclass(value)
        and value.__module__ == data_types.__name__
        and not name.startswith("_")
    ]
    assert classes
    for cls in classes:
        assert getattr(tenantry, cls.__name__, None) is cls, f"{cls.__name__} is not exported"
