"""Stores: where each scope's messages, session state and summary live, and each user's
memories; `base.Store` is the contract (its long-term half in `memories`).

`PostgresStore` and `RedisStore` import their drivers only when used (extras
`tenantry[postgres]`, `tenantry[redis]`).
"""

from typing import TYPE_CHECKING, Any

from tenantry.storage.base import Snapshot, Store
from tenantry.storage.memory import InMemoryStore
from tenantry.storage.sqlite import SQLiteStore
from tenantry.storage.sync import SyncStore
from tenantry.storage.url import DEFAULT_STORE_URL, open_store

if TYPE_CHECKING:
    from tenantry.storage.postgres import PostgresStore
    from tenantry.storage.redis import RedisStore


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from tenantry.storage.postgres import PostgresStore

        return PostgresStore
    if name == "RedisStore":
        from tenantry.storage.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_STORE_URL",
    "InMemoryStore",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "Snapshot",
    "Store",
    "SyncStore",
    "open_store",
]
