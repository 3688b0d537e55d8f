"""`HomeLoop`: keeps a networked store's connections on the one event loop that opened them.

Connection pools of asyncio drivers (psycopg, redis-py) belong to the event loop they were
created on. A store is often shared between loops all the same: the application's loop and
the background loop of `SyncStore` / `Agent.run`. The first loop that uses the store becomes
its home; a call made on any other loop is run on the home loop and awaited from there. In
the usual one-loop program this costs one identity check per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenantry.errors import StoreError

T = TypeVar("T")


class HomeLoop:
    """Runs coroutines on the loop that first asked, whichever loop asks later."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Give the result of `work()`, run on the home loop."""
        current = asyncio.get_running_loop()
        home = self._loop
        if home is None or home is current:
            self._loop = current
            return await work()
        if home.is_closed() or not home.is_running():
            raise StoreError(
                "this store's connections belong to an event loop that is no longer running; "
                "open one store per event loop, or close the store before its loop ends"
            )
        future = asyncio.run_coroutine_threadsafe(_call(work), home)
        return await asyncio.wrap_future(future)

    async def close(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` (closing connections) on the home loop, unless that loop is gone: then
        nothing can be awaited there, and the sockets were closed with it."""
        home = self._loop
        if home is not None and (home.is_closed() or not home.is_running()):
            return
        await self.run(work)


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


__all__ = ["HomeLoop"]
