"""Where `RedisStore` keeps its keys: one layout for one Redis server, one for Redis Cluster.

Every per-user key is built by `KeyLayout.user_key` and every index key by
`KeyLayout.index_key` / `KeyLayout.index_keys`, so a key added later follows the layout by
itself. Ids are percent-encoded (`encode_id`), so an id holds no ':' '{' '}' '*'.

One Redis server (`cluster=False`; the key names of every earlier release, so existing data
stays where it is):

    {prefix}:{kind}:{user}[:{session}]   a user's key (messages, state, lock, memories ...)
    {prefix}:{index}                     an index over every tenant: users, activity,
                                         memory_users — one key each

Redis Cluster (`cluster=True`): the user is the key's hash tag, so all of one user's keys —
every session's messages, state, summary and lock, the sessions set, the memories — live in
one hash slot, and a turn stays one Lua script:

    {prefix}:{kind}:{{user}}[:{session}]

and each index is split into one bucket per hash slot (16384), the bucket of a user being
the one in the user's slot: `{prefix}:{index}:{{TAG}}` where TAG is a short string that
hashes to that slot (`slot_tag`). So a turn's script, which adds its user to the users and
activity indexes, still touches one slot; and so does deleting or pruning a user's scopes.
Reading an index (list_users, prune_inactive, clear_all) reads every bucket, by one script
per primary over the buckets of the slots it serves — a cost that does not grow with the
number of tenants.
"""

from __future__ import annotations

from binascii import crc_hqx
from functools import cache
from urllib.parse import quote

SLOTS = 16384
"""Redis Cluster's hash slots."""


def encode_id(value: str) -> str:
    """Give an id as it appears in a key: percent-encoded, so it holds no ':' '{' '}' '*'."""
    return quote(value, safe="")


def key_slot(tag: str) -> int:
    """Give the hash slot of a key whose hash tag is `tag` (CRC16/XMODEM mod 16384)."""
    return crc_hqx(tag.encode(), 0) % SLOTS


@cache
def _slot_tags() -> tuple[str, ...]:
    """One short tag per slot: tags[s] hashes to slot s (found once, in about 0.1 s)."""
    tags: list[str | None] = [None] * SLOTS
    missing, i = SLOTS, 0
    while missing:
        tag = format(i, "x")
        slot = key_slot(tag)
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(slot: int) -> str:
    """Give a tag that hashes to `slot`."""
    return _slot_tags()[slot]


def slot_tags(first: int, last: int) -> tuple[str, ...]:
    """Give the tags of slots `first` to `last`, both included."""
    return _slot_tags()[first : last + 1]


class KeyLayout:
    """The key names of one store: `KeyLayout("tenantry", cluster=True)`."""

    def __init__(self, prefix: str, *, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster

    def user_key(self, kind: str, user_id: str, *rest: str) -> str:
        """Give the key of `kind` for the user (and `rest`, e.g. the session id)."""
        user = encode_id(user_id)
        tagged = f"{{{user}}}" if self.cluster else user
        head = f"{self.prefix}:{kind}:{tagged}"
        return ":".join([head, *(encode_id(part) for part in rest)])

    def index_key(self, index: str, user_id: str) -> str:
        """Give the key of the `index` bucket the user is listed in."""
        if not self.cluster:
            return f"{self.prefix}:{index}"
        return f"{self.prefix}:{index}:{{{slot_tag(key_slot(encode_id(user_id)))}}}"

    def bucket_head(self, index: str) -> str:
        """Give what the names of the `index` buckets start with, before their tag."""
        return f"{self.prefix}:{index}:"


__all__ = ["SLOTS", "KeyLayout", "encode_id", "key_slot", "slot_tag", "slot_tags"]
