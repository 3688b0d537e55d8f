"""`SyncStore` is the whole store contract without `await`: every public method of `Store` has
a blocking twin with the same parameters, so a method added to the contract cannot be
missing from the facade."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tenantry import InMemoryStore, Message, SyncStore
from tenantry.errors import StoreClosed
from tenantry.storage.base import Store

ASYNC_ONLY = {
    "lock": "a turn lock belongs to the task that holds it (the turn's write is fenced "
    "through a context variable), and a blocking caller has no task of its own",
}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _parameters(function: Any) -> list[tuple[str, Any, Any, Any]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()] + [
        ("return", None, None, signature.return_annotation)
    ]


def test_every_public_method_of_the_contract_has_a_blocking_twin() -> None:
    assert _public(Store) - _public(SyncStore) == set(ASYNC_ONLY)
    assert hasattr(SyncStore, "__enter__")
    assert hasattr(SyncStore, "__exit__")


@pytest.mark.parametrize("name", sorted(_public(Store) - set(ASYNC_ONLY)))
def test_each_twin_takes_the_same_parameters(name: str) -> None:
    contract = inspect.getattr_static(Store, name)
    twin = inspect.getattr_static(SyncStore, name)
    if isinstance(contract, property):
        assert isinstance(twin, property)
        return
    assert inspect.iscoroutinefunction(contract)
    assert not inspect.iscoroutinefunction(twin)
    assert _parameters(twin) == _parameters(contract)


def test_the_facade_pings_and_tells_when_it_was_closed() -> None:
    with SyncStore(InMemoryStore()) as store:
        store.ping()
        store.add(Message.user("hi"), user_id="u")
        assert not store.closed
    assert store.closed
    with pytest.raises(StoreClosed):
        store.ping()
