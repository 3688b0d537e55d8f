from __future__ import annotations

from pathlib import Path

import pytest

from tenantry import InMemoryStore, Message, SQLiteStore, open_store
from tenantry.errors import InvalidStoreURL


async def test_memory_url_gives_an_in_memory_store_with_options() -> None:
    store = open_store("memory://?max_messages=3")
    assert isinstance(store, InMemoryStore)
    assert store.max_messages == 3
    await store.close()


async def test_sqlite_urls_give_paths_like_sqlalchemy(tmp_path: Path) -> None:
    absolute = open_store(f"sqlite:///{tmp_path}/a.db?synchronous=full&readers=3")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == f"{tmp_path}/a.db"
    await absolute.add(Message.user("x"), user_id="u")
    assert (tmp_path / "a.db").exists()
    await absolute.close()
    relative = open_store("sqlite:///relative.db?window_cache=0")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == "relative.db"
    assert relative._windows is None
    await relative.close()
    in_memory = open_store("sqlite://", max_messages=2)
    assert isinstance(in_memory, SQLiteStore)
    assert in_memory.path == ":memory:"
    await in_memory.add_many([Message.user(str(i)) for i in range(5)], user_id="u")
    assert [m.content for m in await in_memory.get_messages("u")] == ["3", "4"]
    await in_memory.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tenantry.db", "must look like scheme://"),
        ("mysql://localhost/db", "no store backend for scheme 'mysql'"),
        ("sqlite://host/file.db", "has no host"),
        ("memory://?max_messages=lots", "must be a number"),
        ("memory://?colour=blue", "unknown store option(s) colour"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous must be"),
        ("sqlite:///x.db?readers=0", "readers must be at least 1"),
        ("sqlite:///x.db?window_cache=-1", "window_cache must be"),
        ("memory://?max_messages=0", "max_messages must be a positive integer"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidStoreURL if "store" in says or "scheme" in says else Exception) as e:
        open_store(url)
    assert says in str(e.value)


def test_max_messages_none_means_unbounded() -> None:
    assert open_store("memory://?max_messages=none").max_messages is None


@pytest.mark.parametrize(
    "url",
    [
        "memory://?max_memories=7",
        "sqlite://?max_memories=7",
        "postgresql://localhost/db?max_memories=7",
        "redis://localhost:6379/0?max_memories=7",
    ],
)
def test_every_backend_takes_the_max_memories_option(url: str) -> None:
    assert open_store(url).max_memories == 7
    assert open_store(url.replace("7", "none")).max_memories is None
    assert open_store(url.split("?")[0]).max_memories == 1000


def test_a_bad_max_memories_says_so() -> None:
    with pytest.raises(Exception, match="max_memories must be a positive integer"):
        open_store("memory://?max_memories=0")


def test_a_redis_cluster_url_names_its_seed_nodes() -> None:
    from tenantry.storage.redis import RedisStore

    store = open_store("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/?prefix=app&wait_replicas=1")
    assert isinstance(store, RedisStore)
    assert (store.cluster, store.prefix, store.wait_replicas) == (True, "app", 1)
    same = open_store("redis://127.0.0.1:7000/?cluster=true")
    assert isinstance(same, RedisStore)
    assert same.cluster
    assert not open_store("redis://127.0.0.1:6379/0").cluster  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:1/", r"use redis\+cluster"),
        ("redis+cluster://h:1/?cluster=maybe", "cluster must be true or false"),
        ("redis+cluster://h:1/?wait_replicas=-1", "wait_replicas must be 0-100"),
    ],
)
def test_bad_redis_cluster_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(Exception, match=says):
        open_store(url)
