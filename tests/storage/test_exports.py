"""The networked stores are part of the public API, and their drivers load only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tenantry
from tenantry import storage


def test_importing_tenantry_loads_no_database_driver() -> None:
    check = (
        "import sys, tenantry, tenantry.storage; "
        "assert not {'psycopg', 'psycopg_pool', 'redis'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_the_stores_are_exported_from_tenantry_and_tenantry_storage() -> None:
    from tenantry.storage.postgres import PostgresStore
    from tenantry.storage.redis import RedisStore

    assert tenantry.PostgresStore is storage.PostgresStore is PostgresStore
    assert tenantry.RedisStore is storage.RedisStore is RedisStore
    assert {"PostgresStore", "RedisStore"} <= set(tenantry.__all__) & set(storage.__all__)
    with pytest.raises(AttributeError, match="no attribute 'MongoStore'"):
        _ = storage.MongoStore
