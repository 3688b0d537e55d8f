"""One background event loop on a daemon thread, for the synchronous facades.

Scripts, notebooks and threads call `run_sync(coro)`; the coroutine runs on this loop, so every
synchronous caller in the process shares one loop and the per-scope locks keep working across
threads. It holds no tenant data. Works inside a running loop too (Jupyter): the caller's
thread just waits for the result.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _BackgroundLoop:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tenantry-sync-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a synchronous tenantry call was made from inside tenantry's own event loop "
                "(for example from an async tool); await the async API instead"
            )
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _forget(self) -> None:
        """After fork the child has no loop thread: start afresh on the next call."""
        self._guard = threading.Lock()
        self._loop = None
        self._thread = None


_LOOP = _BackgroundLoop()
os.register_at_fork(after_in_child=_LOOP._forget)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the shared background loop and give its result."""
    return _LOOP.run(coro)
