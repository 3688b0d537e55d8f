"""`SQLiteStore`'s hot windows: a bounded per-process cache of scopes' newest messages.

A turn reads its scope's row (for the session state) and the scope's newest `history_window`
messages. The row also holds a `version` that every write of the scope's messages sets to a
new random 64-bit value, by any process (schema version 5). A cached window is given only
while the row still has the identity it was read with (`Identity`: scope id, version,
message count, time of the last write), so a write by another process, and a deletion of the
scope followed by its re-creation, are always seen: the window is read from the file again.
(The count and the time are checked too, for a process of an older tenantry that writes
without setting the version during an upgrade.) A turn's own write extends the window it
found, when the scope's row was as cached, so the next turn of a busy scope reads no
messages at all.

Entries are keyed by the exact (user_id, session_id), whose row gave the identity: one
tenant's window is never given for another's scope. A deletion in this process drops the
windows it deleted; one by another process leaves them until they are evicted or replaced,
never to be given again. The cache is bounded (`capacity` scopes, least recently used go
first) and safe to use from several threads.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from tenantry.types import Message

Identity = tuple[int, int, int, float]
"""A scope row's (scope_id, version, message_count, updated_at)."""
Key = tuple[str, str]
"""(user_id, session_id)."""
DEFAULT_WINDOW_CACHE = 1024
"""Scopes whose window `SQLiteStore` keeps by default (about 20 messages each)."""


def new_version() -> int:
    """A scope row's next version: a random signed 64-bit integer. (The random module's
    generator is seeded from the OS in every process, and again in a forked child, so
    processes do not draw the same sequence; os.urandom, a system call each time, cost a
    few per cent of the server's CPU.)"""
    return random.getrandbits(64) - (1 << 63)


@dataclass(frozen=True, slots=True)
class Window:
    """The newest `limit` messages of a scope (all of them when it has fewer), as the row
    with `identity` left them."""

    identity: Identity
    messages: tuple[Message, ...]
    limit: int


class WindowCache:
    """The windows of up to `capacity` scopes, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._windows: OrderedDict[Key, Window] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._windows)

    def holds(self, key: Key) -> bool:
        return key in self._windows

    def get(self, key: Key, identity: Identity, limit: int) -> list[Message] | None:
        """Give the newest `limit` (> 0) messages of the scope whose row has `identity`, or
        None when they are not cached as of that identity."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.identity != identity:
                return None
            if limit > window.limit and len(window.messages) < identity[2]:
                return None  # more asked for than was read
            self._windows.move_to_end(key)
        messages = window.messages
        return list(messages[-limit:] if limit < len(messages) else messages)

    def put(self, key: Key, window: Window) -> None:
        with self._lock:
            self._windows[key] = window
            self._windows.move_to_end(key)
            while len(self._windows) > self.capacity:
                self._windows.popitem(last=False)

    def extend(self, key: Key, before: Identity, after: Identity, added: Sequence[Message]) -> None:
        """After a committed write that appended `added` to the scope, finding its row at
        `before` and leaving it at `after`: extend the cached window, if it was the one of
        `before` (else drop it; it can never be given again)."""
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return
            if window.identity != before:
                del self._windows[key]
                return
            keep = min(window.limit, after[2])
            messages = (window.messages + tuple(added))[-keep:] if keep > 0 else ()
            self._windows[key] = Window(after, messages, window.limit)
            self._windows.move_to_end(key)

    def forget_user(self, user_id: str) -> None:
        with self._lock:
            for key in [k for k in self._windows if k[0] == user_id]:
                del self._windows[key]

    def forget(self, key: Key) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


__all__ = ["DEFAULT_WINDOW_CACHE", "Identity", "Key", "Window", "WindowCache", "new_version"]
