"""Fixtures shared by every test: a store factory parametrised over every backend.

A backend is one entry in BACKENDS: a function that, given a per-test namespace (a tmp dir,
a schema name, a key prefix ...), gives a new store over that namespace. Calling `make_store`
twice in one test gives two stores over the same data, which is how reopening is tested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tenantry.storage.base import BaseStore
from tenantry.storage.memory import InMemoryStore
from tenantry.storage.sqlite import SQLiteStore

MakeStore = Callable[..., BaseStore]


class FakeClock:
    """An injectable clock: time moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _memory(namespace: Path, **options: Any) -> BaseStore:
    return InMemoryStore(**options)


def _sqlite(namespace: Path, **options: Any) -> BaseStore:
    return SQLiteStore(namespace / "tenantry.db", **options)


BACKENDS: dict[str, Callable[..., BaseStore]] = {"memory": _memory, "sqlite": _sqlite}
PERSISTENT = {"sqlite"}
"""Backends whose data outlives the store object (a second `make_store()` sees it)."""


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(backend: str, tmp_path: Path) -> AsyncIterator[MakeStore]:
    created: list[BaseStore] = []

    def make(**options: Any) -> BaseStore:
        store = BACKENDS[backend](tmp_path, **options)
        created.append(store)
        return store

    yield make
    for store in created:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> BaseStore:
    return make_store()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
