"""A server that cannot be reached is a typed, retryable error, raised quickly."""

from __future__ import annotations

import pytest

from tenantry.errors import StoreUnavailable
from tenantry.storage.url import open_store

DOWN = [
    "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1",
    "redis://127.0.0.1:1/0",
]


@pytest.mark.parametrize("url", DOWN)
async def test_an_unreachable_server_raises_store_unavailable(url: str) -> None:
    store = open_store(url)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.size("u")
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()
