"""The one path a turn takes from any transport to the agent.

Each transport (chat, OpenAI-compatible, A2A) parses its protocol, decides the tenant, then
hands a `TurnRequest` to `run_turn` (one reply) or `start_stream` (text deltas, then the
reply). What must hold for every turn, whatever protocol asked for it, is written once here:
its metrics (turns, model requests and tokens, refusals over budget) and idempotency keys
(`TurnRequest.idempotency_key`, from each protocol's own request id: the chat and
OpenAI-compatible routes' `Idempotency-Key` header, A2A's messageId). Budgets are checked
before the model is called, and usage counted in the turn's commit, by the agent itself
(`Agent.arun` raises BudgetExceeded), so a script's turns are held to them too; a replayed
turn was counted when it ran, so its usage is not counted again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from tenantry.server.errors import ShuttingDown
from tenantry.server.state import ServerState
from tenantry.tenancy import Scope
from tenantry.types import RunOutput

TurnEvent = str | RunOutput
"""What a streamed turn gives: text deltas (str), then the finished turn (RunOutput)."""


class _Started:
    """Queued by a streamed turn once it was admitted, as its model is about to be called."""


STARTED = _Started()
_Item = TurnEvent | _Started | Exception

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
"""The request header that names a turn for retries (chat and OpenAI-compatible routes)."""
REPLAYED_HEADER = "Idempotent-Replayed"
"""The response header ("true") of a reply that was stored before: a retry's."""


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One turn a transport asks for: whose (scope), what the user said, and which transport
    asked (the `transport` label of the turn metrics: chat, stream, openai, a2a)."""

    transport: str
    scope: Scope
    text: str
    idempotency_key: str | None = None
    """The client's id of this turn: a retry with it gets the stored reply (see `Agent.arun`)."""


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """Give the request's `Idempotency-Key` header, or None when it has none."""
    return headers.get(IDEMPOTENCY_KEY_HEADER.lower())


def _every_turn(state: ServerState, turn: TurnRequest) -> AbstractAsyncContextManager[None]:
    """What wraps every turn, plain or streamed, of every transport (`async with`): its
    metrics (a class, not a generator: this runs on every request)."""
    return state.metrics.turn(turn.transport, turn.scope)


async def run_turn(state: ServerState, turn: TurnRequest) -> RunOutput:
    """Run one turn and give its output."""
    async with _every_turn(state, turn):
        output = await state.agent.arun(
            turn.text,
            user_id=turn.scope.user_id,
            session_id=turn.scope.session_id,
            idempotency_key=turn.idempotency_key,
        )
    if not output.replayed:
        state.metrics.count_usage(turn.transport, output.usage)
    return output


async def _produce(
    state: ServerState, turn: TurnRequest, queue: asyncio.Queue[_Item], early: bool = False
) -> None:
    """Stream the turn into `queue`: its events (after STARTED when `early`), or the exception
    that ended it."""
    try:
        async with _every_turn(state, turn):
            async for event in state.agent.astream(
                turn.text,
                user_id=turn.scope.user_id,
                session_id=turn.scope.session_id,
                idempotency_key=turn.idempotency_key,
                on_start=(lambda: queue.put_nowait(STARTED)) if early else None,
            ):
                if isinstance(event, RunOutput) and not event.replayed:
                    state.metrics.count_usage(turn.transport, event.usage)
                queue.put_nowait(event)
    except Exception as exc:
        queue.put_nowait(exc)
    except asyncio.CancelledError:  # shutdown's grace period ran out: tell the client
        queue.put_nowait(
            ShuttingDown(
                "the server stopped before this turn was acknowledged; retry it (with its "
                "Idempotency-Key, a retry never stores it twice)"
            )
        )
        raise


class TurnStream:
    """A streamed turn running in its own task. Iterating gives its events up to and
    including the RunOutput; a failure after the first event is raised from the iteration."""

    def __init__(self, first: TurnEvent | _Started, queue: asyncio.Queue[_Item]) -> None:
        self._first = first
        self._queue = queue

    async def __aiter__(self) -> AsyncIterator[TurnEvent]:
        event = self._first
        while True:
            if not isinstance(event, _Started):
                yield event
                if isinstance(event, RunOutput):
                    return
            item = await self._queue.get()
            if isinstance(item, Exception):
                raise item
            event = item


async def start_stream(state: ServerState, turn: TurnRequest, *, early: bool = False) -> TurnStream:
    """Start a streamed turn in its own task, so a client that goes away does not cut it
    short and shutdown waits for it; give the stream once its first event is there.

    An error before the first event (busy scope, store down, over budget, model refused) is
    raised here, so the transport can still answer with a plain error instead of a broken
    stream. With `early`, the stream is given as soon as the turn was admitted, before its
    model is called (`Agent.astream`'s `on_start`), for a transport that tells its client at
    once that the turn started and can report a model's failure in the stream (A2A's task):
    only the refusals before the model are raised here then."""
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    state.spawn(_produce(state, turn, queue, early))
    first = await queue.get()
    if isinstance(first, Exception):
        raise first
    return TurnStream(first, queue)


__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REPLAYED_HEADER",
    "TurnEvent",
    "TurnRequest",
    "TurnStream",
    "idempotency_key",
    "run_turn",
    "start_stream",
]
