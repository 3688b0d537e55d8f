"""A2A (protocol 1.0, JSON-RPC binding, 0.3 clients too) through the official a2a-sdk.

- `POST /a2a/jsonrpc`: `SendMessage` (a completed Task: the reply is its one-part `reply`
  artifact and its status message) and `SendStreamingMessage` (a Task whose `reply` artifact
  grows by one chunk per text delta, then completes with the whole reply as its status
  message). 0.3's `message/send` and `message/stream` also work. `GetTask` and `ListTasks`
  show the caller's recent tasks; `CancelTask` is refused (see TenantryRequestHandler).
- `GET /.well-known/agent-card.json`: the card (`a2a_card`), declaring the security schemes
  in force.

Who the tenant is: with auth on, the credential's user (the spec: identity is never in the
payload), and `contextId` is the session. In open mode, as in the seed, `contextId` is the
user (session "default"). The SDK does not enforce the card's security requirements, so
`RequireCredentialMiddleware` answers 401 to unauthenticated calls before they get here.

Retries: a message's `messageId` is its sender's id for it, so it names the turn for retries
(`a2a_idempotency_key`), scoped to the tenant like every key: the same message sent again
(same messageId, context and text, after a lost answer) gets the stored reply as a new
completed task, without a second turn. The key is the messageId together with the session and
the text, because clients reuse messageIds for different messages (the A2A TCK sends one id
with several texts, and one message to several contexts): such a message is a new turn, not
a refused retry.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from typing import Any

from a2a.helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.jsonrpc_models import JSONRPCError
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import EXCEPTION_MAP
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types import (
    CancelTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Task,
    TaskState,
)
from a2a.utils.errors import (
    A2A_ERROR_MAPPING,
    A2A_ERROR_REASONS,
    JSON_RPC_ERROR_CODE_MAP,
    A2AError,
    ContentTypeNotSupportedError,
    ErrorMapping,
    InternalError,
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
)
from starlette.routing import BaseRoute, Route

from tenantry.errors import BudgetExceeded, InvalidInput, TenantryError
from tenantry.server.a2a_card import CARD_PATH, RPC_PATH, TEXT, agent_card
from tenantry.server.errors import budget_detail, public_message, retry_after
from tenantry.server.middleware import current_request_id
from tenantry.server.state import ServerState
from tenantry.server.turns import TurnRequest, run_turn, start_stream
from tenantry.tenancy import DEFAULT_SESSION_ID, Scope
from tenantry.types import RunOutput

STREAMING_METHODS = frozenset({"SendStreamingMessage", "message/stream"})
NOT_CANCELABLE = "a turn runs to completion once it started; it cannot be cancelled"
MAX_TASKS = 10_000
"""Tasks kept for GetTask and ListTasks (one per A2A turn); the oldest are forgotten first
(their turns stay stored)."""


class QuotaExceededError(A2AError):
    """The caller's usage reached its budget: come back after `data["retry_after"]` seconds.

    A2A 1.0 has no error for back-pressure, and none of its codes fits (-32004 "unsupported
    operation" would tell a client never to retry), so this is JSON-RPC's implementation-
    defined server error -32000, as tenantry's other refusals of A2A calls (`a2a_refusals`),
    with the google.rpc reason RESOURCE_EXHAUSTED (gRPC's status for a quota, HTTP 429 in A2A's
    REST binding). `data` holds the error type BudgetExceeded, `retry_after` and the budget
    (`errors.budget_detail`)."""

    message = "over budget"


# The SDK's tables, by error class: its code, its JSON-RPC error model, its reason.
JSON_RPC_ERROR_CODE_MAP[QuotaExceededError] = -32000
EXCEPTION_MAP[QuotaExceededError] = JSONRPCError
A2A_ERROR_MAPPING[QuotaExceededError] = ErrorMapping(
    429, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"
)
A2A_ERROR_REASONS[QuotaExceededError] = "RESOURCE_EXHAUSTED"

A2A_ERRORS: dict[type[BaseException], type[A2AError]] = {
    InvalidInput: InvalidParamsError,
    BudgetExceeded: QuotaExceededError,
}
"""The A2A error a failed turn's error becomes, by class (nearest ancestor); anything else is
InternalError. One entry per error class that A2A clients should tell apart."""


def a2a_error(exc: Exception) -> A2AError:
    """Give the A2A error for a failed turn (see `A2A_ERRORS`), with the error type and, when
    retrying helps, `retry_after` seconds in `data`; the message is `public_message`'s (the
    SDK would send the text of any other exception to the client)."""
    data: dict[str, Any] = {
        "type": type(exc).__name__ if isinstance(exc, TenantryError) else "InternalError"
    }
    seconds = retry_after(exc)
    if seconds is not None:
        data["retry_after"] = seconds
    if isinstance(exc, BudgetExceeded):
        data["budget"] = budget_detail(exc)
    kind = next((A2A_ERRORS[c] for c in type(exc).__mro__ if c in A2A_ERRORS), InternalError)
    return kind(message=public_message(exc, current_request_id()), data=data)


def user_text(message: Message | None) -> str:
    """Give what the user said: the message's text parts, and its raw parts of media type
    text/plain (UTF-8), one per line. Any other part (a file, a URL, data) is refused with
    ContentTypeNotSupportedError rather than dropped: this agent reads text only."""
    texts: list[str] = []
    for part in message.parts if message is not None else ():
        kind = part.WhichOneof("content")
        media = part.media_type.partition(";")[0].strip().lower()
        if kind == "text":
            texts.append(part.text)
        elif kind == "raw" and media == TEXT:
            try:
                texts.append(part.raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidParamsError(message="a text/plain raw part is not UTF-8") from None
        else:
            stated = f"media type {part.media_type}" if part.media_type else "no media type"
            raise ContentTypeNotSupportedError(
                message=f"this agent reads text only (text parts, or raw parts of media type "
                f"{TEXT}); got a {kind or 'empty'} part with {stated}"
            )
    return "\n".join(texts)


def a2a_idempotency_key(message: Message | None, scope: Scope, text: str) -> str | None:
    """Give the idempotency key of an A2A message with text `text` in `scope`: a hash of its
    messageId, session and text, prefixed so that it never matches a key sent by header;
    None without an id. (The tenant is not in it: every key is the tenant's already.)"""
    message_id = message.message_id if message is not None else ""
    if not message_id:
        return None
    named = json.dumps([message_id, scope.session_id, text], ensure_ascii=False)
    return "a2a:" + hashlib.sha256(named.encode("utf-8", "surrogatepass")).hexdigest()


class TenantryExecutor(AgentExecutor):
    """Runs one agent turn per A2A message, as the tenant the call context names."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def _scope(self, context: RequestContext) -> Scope:
        context_id = context.context_id or ""
        call = context.call_context
        if not self.state.auth:
            return Scope(context_id, DEFAULT_SESSION_ID)
        if call is None or not call.user.is_authenticated:  # the middleware already said 401
            raise InvalidParamsError(message="an authenticated caller is required")
        return Scope(call.user.user_name, context_id)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        try:
            scope = self._scope(context)
            text = user_text(context.message)
            key = a2a_idempotency_key(context.message, scope, text)
            turn = TurnRequest("a2a", scope, text, key)
            await self.state.limiter.acquire(scope.user_id)
            call = context.call_context
            method = call.state.get("method") if call is not None else None
            if method in STREAMING_METHODS:
                await self._stream(context, event_queue, turn)
                return
            output = await run_turn(self.state, turn)
            updater = await self._start_task(context, event_queue)
            await self._chunk(updater, output.content, 0, last=True)
            await updater.complete(updater.new_agent_message([new_text_part(output.content)]))
        except A2AError:
            raise
        except Exception as exc:  # every failure, a bug too, leaves through public_message
            self.state.metrics.count_error(exc)
            raise a2a_error(exc) from None

    @staticmethod
    async def _start_task(context: RequestContext, event_queue: EventQueue) -> TaskUpdater:
        """Create the task (submitted, the user's message its history), then start it."""
        task_id, context_id = context.task_id or "", context.context_id or ""
        history = [context.message] if context.message is not None else None
        await event_queue.enqueue_event(
            new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        return updater

    async def _stream(
        self, context: RequestContext, event_queue: EventQueue, turn: TurnRequest
    ) -> None:
        """Answer with a task whose `reply` artifact grows by one chunk per text delta, each
        sent as soon as the model gave it; an empty chunk marks the last one (holding each
        delta back until the next arrived, to mark the last one with it, would delay every
        delta by the model's time to the next).

        The task is created, and set working, once the turn was admitted and its model is
        called: the client sees it while the model thinks, and the first delta then travels
        alone through the SDK's queues (not behind the task's first two events). A refusal
        before the model (busy scope, over budget, store down, bad input) is a plain A2A
        error, not a stream; a model's failure, before or after its first delta, ends the
        started stream with an error. (Either way the SDK keeps the task as failed.)"""
        stream = await start_stream(self.state, turn, early=True)
        updater = await self._start_task(context, event_queue)
        chunks = 0
        async for event in stream:
            if isinstance(event, RunOutput):
                await self._chunk(updater, "", chunks, last=True)
                await updater.complete(updater.new_agent_message([new_text_part(event.content)]))
                return
            await self._chunk(updater, event, chunks, last=False)
            chunks += 1

    @staticmethod
    async def _chunk(updater: TaskUpdater, text: str, index: int, *, last: bool) -> None:
        await updater.add_artifact(
            [new_text_part(text)],
            artifact_id="reply",
            name="reply",
            append=index > 0,
            last_chunk=last,
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # Never reached: TenantryRequestHandler refuses every cancel before the SDK gets here
        # (the SDK marks a task FAILED when this raises).
        raise TaskNotCancelableError(message=NOT_CANCELABLE)


class TenantryRequestHandler(DefaultRequestHandler):
    """The SDK's request handler, but CancelTask is refused with TaskNotCancelableError
    (-32002) for every task the caller owns, running or finished.

    A turn cannot be stopped safely from here: cancelling its asyncio task while the store
    writes the turn could leave it stored although the task said CANCELED, and closing its
    stream would release the scope's lock in another task, late. Non-streamed tasks only
    appear once complete; a streamed one completes with its turn."""

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        assert isinstance(self.task_store, TaskStore)  # a BoundedTaskStore (a2a_handler)
        task = await self.task_store.get(params.id, context)  # owner-scoped
        if task is None:
            raise TaskNotFoundError
        state = TaskState.Name(task.status.state)
        raise TaskNotCancelableError(message=f"{NOT_CANCELABLE} (this task is {state})")


class BoundedTaskStore(TaskStore):
    """The SDK's in-memory, owner-scoped task store, forgetting the oldest tasks beyond
    `max_tasks`, so a long-running server's memory does not grow with every A2A turn."""

    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self._inner = InMemoryTaskStore()
        self._order: deque[tuple[str, ServerCallContext]] = deque()
        self._known: set[tuple[str, str]] = set()
        self.max_tasks = max_tasks

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self._inner.save(task, context)
        key = (context.user.user_name, task.id)
        if key not in self._known:
            self._known.add(key)
            self._order.append((task.id, context))
        while len(self._order) > self.max_tasks:
            old_id, old_context = self._order.popleft()
            self._known.discard((old_context.user.user_name, old_id))
            await self._inner.delete(old_id, old_context)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        return await self._inner.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self._inner.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self._inner.delete(task_id, context)


def a2a_handler(state: ServerState) -> TenantryRequestHandler:
    return TenantryRequestHandler(
        agent_executor=TenantryExecutor(state),
        task_store=BoundedTaskStore(),
        agent_card=agent_card(state, state.settings.public_url or "http://127.0.0.1"),
        validate_input_modes=True,  # a part of a media type the card does not declare: -32005
    )


def a2a_routes(handler: DefaultRequestHandler) -> list[BaseRoute]:
    """The JSON-RPC route, accepting 1.0 and 0.3 calls (told apart by their method names),
    at `RPC_PATH` and `RPC_PATH/`: clients that join "/" to the card's URL (the A2A TCK's
    does) reach it too, where a redirect would lose their POST on clients that do not
    follow one."""
    (route,) = create_jsonrpc_routes(handler, rpc_url=RPC_PATH, enable_v0_3_compat=True)
    assert isinstance(route, Route)
    return [route, Route(RPC_PATH + "/", route.endpoint, methods=["POST"])]


__all__ = [
    "A2A_ERRORS",
    "CARD_PATH",
    "RPC_PATH",
    "BoundedTaskStore",
    "QuotaExceededError",
    "TenantryExecutor",
    "TenantryRequestHandler",
    "a2a_error",
    "a2a_handler",
    "a2a_idempotency_key",
    "a2a_routes",
    "user_text",
]
