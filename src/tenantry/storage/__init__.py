"""Stores: where each scope's messages and session state live. See `base` for the contract."""

from tenantry.storage.base import BaseStore, Snapshot, Store
from tenantry.storage.memory import InMemoryStore
from tenantry.storage.sqlite import SQLiteStore
from tenantry.storage.sync import SyncStore
from tenantry.storage.url import DEFAULT_STORE_URL, open_store

__all__ = [
    "DEFAULT_STORE_URL",
    "BaseStore",
    "InMemoryStore",
    "SQLiteStore",
    "Snapshot",
    "Store",
    "SyncStore",
    "open_store",
]
