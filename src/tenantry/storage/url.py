"""`open_store(url)`: pick a backend by URL.

    memory://                          InMemoryStore
    sqlite:///tenantry.db              SQLiteStore, path relative to the working directory
    sqlite:////var/lib/tenantry.db     SQLiteStore, absolute path
    sqlite:///:memory:                 SQLiteStore in memory (tests)
    postgresql://user@host:5432/db     PostgresStore (also postgres://), tenantry[postgres]
    redis://host:6379/0                RedisStore (rediss:// for TLS), tenantry[redis]
    redis+cluster://h1:7000,h2:7001/   RedisStore on Redis Cluster (rediss+cluster:// for TLS;
                                       the same as redis://h1:7000,h2:7001/?cluster=true):
                                       one or more seed nodes, database 0 only

Options go in the query string (`sqlite:///t.db?max_messages=100&max_memories=500`) or as
keyword arguments, which win over the query string. For PostgreSQL and Redis, query
parameters that are not tenantry's (`sslmode`, `application_name`, `socket_timeout` ...) are
passed on to the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from tenantry.errors import InvalidStoreURL
from tenantry.storage.base import Store

DEFAULT_STORE_URL = "sqlite:///tenantry.db"

_INT_OPTIONS = frozenset(
    {"max_messages", "max_memories", "usage_retention_days", "readers", "pool_size"}
    | {"window_cache"}
    | {"wait_replicas"}
)
_FLOAT_OPTIONS = frozenset(
    {"busy_timeout", "lock_ttl", "connect_timeout", "pool_timeout", "wait_timeout"}
)
_BOOL_OPTIONS = frozenset({"rls", "cluster"})
_BOOLS = {"true": True, "on": True, "1": True, "yes": True}
_BOOLS |= {"false": False, "off": False, "0": False, "no": False}
_COMMON_OPTIONS = frozenset({"max_messages", "max_memories", "usage_retention_days", "clock"})
_POSTGRES_OPTIONS = _COMMON_OPTIONS | {
    "schema",
    "pool_size",
    "pool_timeout",
    "connect_timeout",
    "rls",
    "tenant_role",
}
_REDIS_OPTIONS = _COMMON_OPTIONS | {
    "prefix",
    "pool_size",
    "lock_ttl",
    "cluster",
    "wait_replicas",
    "wait_timeout",
}


def _coerce(name: str, value: str) -> Any:
    try:
        if name in _INT_OPTIONS:
            return None if value.lower() in ("", "none") else int(value)
        if name in _FLOAT_OPTIONS:
            return float(value)
    except ValueError:
        raise InvalidStoreURL(f"store option {name} must be a number, got {value!r}") from None
    if name in _BOOL_OPTIONS:
        if value.lower() not in _BOOLS:
            raise InvalidStoreURL(f"store option {name} must be true or false, got {value!r}")
        return _BOOLS[value.lower()]
    return value


def _options(query: str, overrides: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    options = {
        name: _coerce(name, value) for name, value in parse_qsl(query, keep_blank_values=True)
    }
    options.update(overrides)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidStoreURL(
            f"unknown store option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return options


def _memory(url: str, overrides: dict[str, Any]) -> Store:
    from tenantry.storage.memory import InMemoryStore

    parts = urlsplit(url)
    return InMemoryStore(**_options(parts.query, overrides, _COMMON_OPTIONS))


def _sqlite(url: str, overrides: dict[str, Any]) -> Store:
    from tenantry.storage.sqlite import SQLiteStore

    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidStoreURL(
            f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////absolute.db, "
            f"got {url!r}"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or ":memory:"
    allowed = _COMMON_OPTIONS | {"readers", "synchronous", "busy_timeout", "window_cache"}
    options = _options(parts.query, overrides, allowed)
    if "synchronous" in options:
        options["synchronous"] = str(options["synchronous"]).upper()
    return SQLiteStore(path, **options)


def _split(url: str, ours: frozenset[str], scheme: str) -> tuple[str, str]:
    """Give (the URL for the driver, with `scheme` and without tenantry's options, and the
    query string of tenantry's options)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    driver = urlencode([(k, v) for k, v in pairs if k not in ours])
    tenantry = urlencode([(k, v) for k, v in pairs if k in ours])
    return urlunsplit(parts._replace(scheme=scheme, query=driver)), tenantry


def _postgres(url: str, overrides: dict[str, Any]) -> Store:
    from tenantry.storage.postgres import PostgresStore

    driver_url, query = _split(url, _POSTGRES_OPTIONS, "postgresql")
    return PostgresStore(driver_url, **_options(query, overrides, _POSTGRES_OPTIONS))


def _redis(url: str, overrides: dict[str, Any]) -> Store:
    from tenantry.storage.redis import RedisStore

    scheme, _, variant = urlsplit(url).scheme.lower().partition("+")
    if variant not in ("", "cluster"):
        raise InvalidStoreURL(f"unknown Redis URL scheme {scheme}+{variant}; use {scheme}+cluster")
    driver_url, query = _split(url, _REDIS_OPTIONS, scheme)
    options = _options(query, overrides, _REDIS_OPTIONS)
    if variant:
        options.setdefault("cluster", True)
    return RedisStore(driver_url, **options)


_BACKENDS: dict[str, Callable[[str, dict[str, Any]], Store]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
    "redis": _redis,
    "rediss": _redis,
}


def open_store(url: str = DEFAULT_STORE_URL, **options: Any) -> Store:
    """Give a store for `url`; no connection is made until the first call."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidStoreURL(
            f"store URL must look like scheme://..., one of {', '.join(_schemes())}; got {url!r}"
        )
    scheme = url.split("://", 1)[0].lower()
    factory = _BACKENDS.get(scheme.split("+", 1)[0])
    if factory is None:
        raise InvalidStoreURL(
            f"no store backend for scheme {scheme!r}; known: {', '.join(_schemes())}"
        )
    return factory(url, options)


def _schemes() -> list[str]:
    return [f"{name}://" for name in _BACKENDS]


__all__ = ["DEFAULT_STORE_URL", "open_store"]
