"""`Agent`: one immutable instance that serves every tenant.

The tenant is an argument of each run, never an attribute set per request (two concurrent
requests would swap tenants); `default_user_id` only names the tenant of runs that name none.
A turn:

1. takes the scope's turn lock (turns of one scope never overlap; other scopes run in parallel),
2. reads the newest `history_window` messages and the session state in one snapshot,
3. calls the model, runs the tools it asks for, up to `max_loops` model calls,
4. writes the user message, tool messages, the reply, the changed state and the turn's usage
   in ONE atomic `add_many`, after the model answered. A failure anywhere before that stores
   nothing, and counts nothing; once the write started, cancelling the run lets it finish
   first (`replay.committed`).

With accounting on (the default), step 2 also reads the user's usage and budget
(`Store.read_admission`) and refuses the turn with `BudgetExceeded` before the model is
called when a limit is reached (`tenantry.usage.Budgets`); a refused turn stores nothing.

With `idempotency_key=`, step 1 is followed by a look-up of the key: a turn already stored
with it (and the same session and message) is given back as it was, with no model call and
no budget check (`RunOutput.replayed`: it was counted when it ran); the same key with another
request is IdempotencyKeyReused. The key is stored with the turn in step 4's write, for
`idempotency_ttl` (see `tenantry.replay`).

With `memory=` on (`tenantry.memory`), step 2 also recalls the user's memories (and the
session summary) into the system prompt, and once the turn is stored its learning and summary
jobs are queued in the background: the reply never waits for them (`aflush()` does).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta
from typing import Any, NoReturn

from tenantry._checks import check_int
from tenantry._runner import run_sync
from tenantry.agent_steps import call_model, opening_window, run_tools, stream_model
from tenantry.errors import InvalidInput, InvalidMessage, MaxLoopsExceeded
from tenantry.memory.config import MemoryConfig, memory_config
from tenantry.memory.jobs import BackgroundJobs
from tenantry.memory.runtime import AgentMemory
from tenantry.memory.tools import is_memory_tool, memory_tools
from tenantry.models.base import Model, ModelResponse
from tenantry.replay import TurnKey, store_turn, stored_reply
from tenantry.storage.base import DEFAULT_LOCK_TIMEOUT, Snapshot, Store
from tenantry.storage.idempotency import (
    DEFAULT_IDEMPOTENCY_TTL,
    check_idempotency_key,
    check_ttl,
    request_hash,
)
from tenantry.tenancy import DEFAULT_USER_ID, Scope, validate_user_id
from tenantry.tools import RunContext, Tool, ToolFunction, as_tool
from tenantry.toolsets import Toolset, tools_for_turn
from tenantry.tracing import DEFAULT_TRACING, NO_TRACE, NoTrace, Tracing
from tenantry.types import Message, RunOutput, Usage, new_id
from tenantry.usage import Budgets, admit, admitted_snapshot


def _renamed_user_id(user_id: str, default_user_id: str, where: str) -> str:
    """Give the default user id named by the deprecated `user_id` keyword, warning about it."""
    if default_user_id != DEFAULT_USER_ID:
        raise TypeError(f"{where}() got default_user_id and its old name user_id; drop user_id")
    warnings.warn(
        f"{where}(user_id=...) is deprecated; use default_user_id=... (the tenant of runs "
        "that name none), and pass user_id=... to run()/arun() for each tenant",
        DeprecationWarning,
        stacklevel=3,
    )
    return user_id


def _toolsets(toolsets: Iterable[Toolset]) -> tuple[Toolset, ...]:
    found = tuple(toolsets)
    for item in found:
        if not isinstance(item, Toolset):
            raise InvalidInput(f"a toolset needs a list_tools(ctx) method, got {item!r}")
    return found


def _with_memory_tools(tools: tuple[Tool, ...], config: MemoryConfig | None) -> tuple[Tool, ...]:
    """Give `tools` with the memory tools if `config` asks for them, and without otherwise
    (so `replace(memory=...)` adds or drops them)."""
    own = tuple(t for t in tools if not is_memory_tool(t))
    return own + memory_tools() if config is not None and config.tools else own


class Agent:
    """One agent for many users. Immutable: derive a variant with `agent.replace(...)`."""

    __slots__ = (
        "_memory",
        "accounting",
        "budgets",
        "default_user_id",
        "history_window",
        "idempotency_ttl",
        "instructions",
        "lock_timeout",
        "max_loops",
        "memory",
        "model",
        "name",
        "store",
        "tools",
        "toolsets",
        "tracing",
    )

    name: str
    model: Model
    store: Store
    instructions: str
    tools: tuple[Tool, ...]
    toolsets: tuple[Toolset, ...]
    tracing: Tracing
    max_loops: int
    history_window: int
    default_user_id: str
    """The tenant of runs that name none (for scripts); a server passes user_id= to each run."""
    lock_timeout: float
    idempotency_ttl: float
    """Seconds a turn run with an idempotency key keeps its key (and reply) for retries."""
    memory: MemoryConfig | None
    """Long-term memory per user (None: off); see `tenantry.memory.MemoryConfig`."""
    accounting: bool
    """Whether turns count their usage (in their commit) and are checked against budgets."""
    budgets: Budgets
    """The budget policy: every user's default budget (an admin's override replaces it)."""
    _memory: AgentMemory | None

    def __init__(
        self,
        name: str = "agent",
        model: Model | None = None,
        store: Store | None = None,
        instructions: str = "",
        tools: Iterable[Tool | ToolFunction] = (),
        max_loops: int = 10,
        history_window: int = 50,
        default_user_id: str = DEFAULT_USER_ID,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        toolsets: Iterable[Toolset] = (),
        tracing: Tracing = DEFAULT_TRACING,
        memory: bool | MemoryConfig = False,
        idempotency_ttl: timedelta | float = DEFAULT_IDEMPOTENCY_TTL,
        accounting: bool = True,
        budgets: Budgets | None = None,
        user_id: str | None = None,
    ) -> None:
        if user_id is not None:
            default_user_id = _renamed_user_id(user_id, default_user_id, "Agent")
        if model is None:
            from tenantry.models import model_from_settings

            model = model_from_settings()
        if store is None:
            from tenantry.storage.memory import InMemoryStore

            store = InMemoryStore()
        config = memory_config(memory)
        converted = _with_memory_tools(tuple(as_tool(t) for t in tools), config)
        names = [t.name for t in converted]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInput(f"two tools share the name(s) {', '.join(duplicates)}")
        values: dict[str, Any] = {
            "name": name,
            "model": model,
            "store": store,
            "instructions": instructions,
            "tools": converted,
            "max_loops": check_int("max_loops", max_loops),
            "history_window": check_int("history_window", history_window, minimum=0),
            "default_user_id": validate_user_id(default_user_id),
            "lock_timeout": float(lock_timeout),
            "idempotency_ttl": check_ttl(idempotency_ttl),
            "toolsets": _toolsets(toolsets),
            "tracing": tracing,
            "memory": config,
            "accounting": bool(accounting),
            "budgets": budgets if budgets is not None else Budgets.from_settings(),
            "_memory": (
                AgentMemory(config, history_window, metered=bool(accounting))
                if config is not None
                else None
            ),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> NoReturn:
        tenant = key in ("default_user_id", "user_id")
        hint = " pass user_id=... to run()/arun() instead" if tenant else ""
        raise AttributeError(
            f"Agent is immutable, so one instance can serve many users safely: cannot set "
            f"{key!r};{hint or ' use agent.replace(' + key + '=...) to derive a new agent'}"
        )

    def replace(self, **changes: Any) -> Agent:
        """Give a new agent with some settings changed."""
        if "user_id" in changes:
            given = changes.get("default_user_id", DEFAULT_USER_ID)
            renamed = _renamed_user_id(changes.pop("user_id"), given, "Agent.replace")
            changes["default_user_id"] = renamed
        current = {key: getattr(self, key) for key in self.__slots__ if key[0] != "_"}
        current.update(changes)
        return Agent(**current)

    @property
    def user_id(self) -> str:
        """Deprecated: `default_user_id`."""
        warnings.warn(
            "Agent.user_id is deprecated; read Agent.default_user_id",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.default_user_id

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model.name!r}, tools={len(self.tools)})"

    # --- running ------------------------------------------------------------------------------

    async def arun(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        deps: Any = None,
        idempotency_key: str | None = None,
    ) -> RunOutput:
        """Run one turn for the scope and give its output.

        With `idempotency_key` (any string of 1-255 characters, unique per turn of the user),
        a retry of a turn already stored with that key and the same session and message gives
        the stored output (`replayed=True`) without calling the model again; one still running
        is waited for. The same key with another message or session is IdempotencyKeyReused.
        """
        output: RunOutput | None = None
        trace = self.tracing.turn(self.name, self.model)
        turn = self._turn(
            message, user_id, session_id, deps, streaming=False, trace=trace, key=idempotency_key
        )
        async for item in trace.wrap(turn):
            if isinstance(item, RunOutput):
                output = item
        assert output is not None
        return output

    def run(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        deps: Any = None,
        idempotency_key: str | None = None,
    ) -> RunOutput:
        """Blocking `arun`, for scripts and notebooks; safe to call from many threads."""
        return run_sync(
            self.arun(
                message,
                user_id=user_id,
                session_id=session_id,
                deps=deps,
                idempotency_key=idempotency_key,
            )
        )

    async def astream(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        deps: Any = None,
        idempotency_key: str | None = None,
        on_start: Callable[[], object] | None = None,
    ) -> AsyncIterator[str | RunOutput]:
        """Run one turn, yielding text deltas as the model produces them, then the RunOutput.

        The turn holds its scope's lock until the generator finishes or is closed. With
        `idempotency_key` (see `arun`), a retry of a stored turn yields its stored reply as one
        delta, then the stored RunOutput (`replayed=True`).

        `on_start`, if given, is called once the turn was admitted (its lock held, its budget
        checked, its history read), just before the model is first called, so that a caller
        can show that the turn has started while the model thinks; it is not called for a
        replay nor for a turn refused before the model.
        """
        trace = self.tracing.turn(self.name, self.model)
        turn = self._turn(
            message,
            user_id,
            session_id,
            deps,
            streaming=True,
            trace=trace,
            key=idempotency_key,
            on_start=on_start,
        )
        async for item in trace.wrap(turn):
            yield item

    # --- background memory jobs ---------------------------------------------------------------

    async def aflush(self) -> None:
        """Wait until the memory jobs (learning, summaries) queued by this agent's turns on
        the running event loop are done. For tests, scripts and graceful shutdown."""
        if self._memory is not None:
            await self._memory.jobs.flush()

    def flush(self) -> None:
        """Blocking `aflush`, for the jobs of turns run with `run()`."""
        run_sync(self.aflush())

    @property
    def memory_jobs(self) -> BackgroundJobs | None:
        """The background jobs of memory (their counts, for metrics); None with memory off."""
        return self._memory.jobs if self._memory is not None else None

    # --- the turn -----------------------------------------------------------------------------

    def _scope(self, user_id: str | None, session_id: str | None) -> Scope:
        return Scope.of(self.default_user_id if user_id is None else user_id, session_id)

    async def _turn(
        self,
        text: str,
        user_id: str | None,
        session_id: str | None,
        deps: Any,
        *,
        streaming: bool,
        trace: NoTrace = NO_TRACE,
        key: str | None = None,
        on_start: Callable[[], object] | None = None,
    ) -> AsyncIterator[str | RunOutput]:
        if not isinstance(text, str):
            raise InvalidMessage(f"the message must be a str, got {type(text).__name__}")
        if not text.strip():
            raise InvalidMessage("the message must not be empty")
        scope = self._scope(user_id, session_id)
        key = None if key is None else check_idempotency_key(key)
        fingerprint = "" if key is None else request_hash(scope.session_id, text)
        trace.scope(scope)
        store, memory = self.store, self._memory
        async with store.lock(scope.user_id, scope.session_id, timeout=self.lock_timeout):
            if key is not None:  # a retry of a stored turn: its reply, no model call
                replay = await stored_reply(store, scope, key, fingerprint)
                if replay is not None:
                    if streaming and replay.content:
                        yield replay.content
                    yield replay
                    return
            run_id = new_id()
            turn_memory = None
            if memory is None:
                snapshot = await self._admitted_snapshot(scope)
            else:  # the history read and recall together (tenantry.memory)
                await self._admit(scope.user_id)
                snapshot, turn_memory = await memory.begin(store, scope, run_id, text)
            ctx = RunContext(
                scope=scope, run_id=run_id, state=snapshot.state, deps=deps, memory=turn_memory
            )
            # Tools may change nested values, so compare against a deep copy; most sessions
            # have no state, and an empty dict has nothing to copy.
            loaded_state = copy.deepcopy(snapshot.state) if snapshot.state else {}
            system = (
                turn_memory.system_prompt(self.instructions) if turn_memory else self.instructions
            )
            prompt = [Message.system(system)] if system else []
            prompt.extend(opening_window(snapshot.messages))
            turn = [Message.user(text)]
            usage = Usage()
            tools = await tools_for_turn(self.tools, self.toolsets, ctx)
            specs = [t.spec for t in tools.values()]
            if on_start is not None:
                on_start()
            for _ in range(self.max_loops):
                response: ModelResponse | None = None
                with trace.chat(attach=not streaming) as call:  # never current across a yield
                    if streaming:
                        async for item in stream_model(self.model, prompt + turn, specs):
                            if isinstance(item, str):
                                yield item
                            else:
                                response = item
                    else:
                        response = await call_model(self.model, prompt + turn, specs)
                    assert response is not None
                    call.done(response)
                usage += response.usage
                turn.append(Message.assistant(response.content, response.tool_calls))
                if not response.tool_calls:
                    break
                turn.extend(await run_tools(response, ctx, tools, trace))
                usage += Usage(tool_calls=len(response.tool_calls))
            else:
                raise MaxLoopsExceeded(
                    f"the model still asked for tools after {self.max_loops} calls "
                    f"(max_loops={self.max_loops}); nothing of this turn was stored"
                )
            changed = ctx.state != loaded_state
            output = RunOutput(
                content=turn[-1].content,
                user_id=scope.user_id,
                session_id=scope.session_id,
                run_id=ctx.run_id,
                messages=tuple(turn),
                usage=usage,
                state=dict(ctx.state),
            )
            state = ctx.state if changed else None
            keyed = None if key is None else TurnKey(key, fingerprint, self.idempotency_ttl)
            counted = usage if self.accounting else None
            given = await store_turn(store, output, state, keyed, usage=counted)
        if given is output and memory is not None and turn_memory is not None:
            memory.after_turn(turn_memory, self.model, turn)  # learning, now the turn is stored
        yield given

    async def _admitted_snapshot(self, scope: Scope) -> Snapshot:
        """Give the scope's snapshot once the user's budget admitted the turn."""
        if not self.accounting:
            return await self.store.snapshot(
                scope.user_id, scope.session_id, limit=self.history_window
            )
        return await admitted_snapshot(self.store, self.budgets, scope, self.history_window)

    async def _admit(self, user_id: str) -> None:
        """Refuse the turn (BudgetExceeded) when the user's usage reached its budget."""
        if self.accounting:
            await admit(self.store, self.budgets, user_id)


__all__ = ["Agent"]
