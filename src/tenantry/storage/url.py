"""`open_store(url)`: pick a backend by URL.

    memory://                          InMemoryStore
    sqlite:///tenantry.db              SQLiteStore, path relative to the working directory
    sqlite:////var/lib/tenantry.db     SQLiteStore, absolute path
    sqlite:///:memory:                 SQLiteStore in memory (tests)

Options go in the query string (`sqlite:///t.db?max_messages=100&synchronous=FULL`) or as
keyword arguments, which win over the query string.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tenantry.errors import InvalidStoreURL
from tenantry.storage.base import BaseStore

DEFAULT_STORE_URL = "sqlite:///tenantry.db"

_INT_OPTIONS = frozenset({"max_messages", "readers", "pool_size", "prune_batch"})
_FLOAT_OPTIONS = frozenset({"busy_timeout", "lock_ttl", "connect_timeout"})


def _coerce(name: str, value: str) -> Any:
    try:
        if name in _INT_OPTIONS:
            return None if value.lower() in ("", "none") else int(value)
        if name in _FLOAT_OPTIONS:
            return float(value)
    except ValueError:
        raise InvalidStoreURL(f"store option {name} must be a number, got {value!r}") from None
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


def _memory(url: str, overrides: dict[str, Any]) -> BaseStore:
    from tenantry.storage.memory import InMemoryStore

    parts = urlsplit(url)
    return InMemoryStore(**_options(parts.query, overrides, frozenset({"max_messages", "clock"})))


def _sqlite(url: str, overrides: dict[str, Any]) -> BaseStore:
    from tenantry.storage.sqlite import SQLiteStore

    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidStoreURL(
            f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////absolute.db, "
            f"got {url!r}"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or ":memory:"
    allowed = frozenset({"max_messages", "clock", "readers", "synchronous", "busy_timeout"})
    options = _options(parts.query, overrides, allowed)
    if "synchronous" in options:
        options["synchronous"] = str(options["synchronous"]).upper()
    return SQLiteStore(path, **options)


_BACKENDS: dict[str, Callable[[str, dict[str, Any]], BaseStore]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}


def open_store(url: str = DEFAULT_STORE_URL, **options: Any) -> BaseStore:
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
