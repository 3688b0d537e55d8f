"""`MCPTools`: an MCP server's tools as agent tools, called as the tenant whose turn it is.

    crm = MCPTools(url="https://crm.example.com/mcp",
                   headers=lambda ctx: {"Authorization": f"Bearer {token_for(ctx.user_id)}"})
    agent = Agent(toolsets=[crm])                       # or MCPTools(command=["crm-mcp"])

Through the official `mcp` SDK (`tenantry[mcp]`): a streamable-HTTP server (`url=`) or a local
server over stdio (`command=`). The server's tools are offered to the model with their JSON
schemas as the server gives them; their results come back as text.

Tenancy. `headers(ctx)` (`env(ctx)` for stdio) receives the turn's `RunContext` and gives the
headers (the environment) that turn's calls carry, e.g. a per-tenant token. The tenant comes
from the run context, never from a tool argument: the tools a turn gets are bound to that
turn's identity, and a call made with another run's context is refused.

Pooling: per tenant identity, bounded. A connection (an MCP client with its own HTTP client,
or its own server process for stdio) belongs to one identity: the run's user id together with
the exact headers (or environment) the hook gave. Only turns with that same identity use it, so
a connection is never shared between tenants, nor between two credentials of one tenant. At
most `max_connections` are open per event loop; when the pool is full the least recently used
idle connection is closed (if every one is busy, the call waits up to `timeout`), and one idle
for `idle_timeout` seconds is closed the next time the pool is used; an identity whose
connection could not be opened is not tried again for `RETRY_AFTER` (5) seconds. Each
identity's tool list is cached on its connection for `list_ttl` seconds (servers may show each
user other tools). A listing that fails on a broken connection is tried once more on a new one;
a tool call is not (the server may have run it).

Failures never fail a turn: a server that cannot be reached when the turn starts gives no
tools for that turn (logged); a call that fails, times out or returns `isError` gives the model
a tool error text to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import re
import ssl
import time
import weakref
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

from tenantry.errors import InvalidInput, MissingDependency, ToolsetUnavailable
from tenantry.tools import RunContext
from tenantry.types import ToolSpec

logger = logging.getLogger("tenantry.mcp")

Values = Mapping[str, str]
ValuesHook = Callable[[RunContext], Values | Awaitable[Values]]
_MAX_PAGES = 100
RETRY_AFTER = 5.0
"""Seconds an identity whose connection could not be opened waits before the next try: a server
that is down costs the turns meanwhile nothing (no tools), not a connect timeout each."""


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who a connection calls as: the run's user and the headers (or env) its hook gave."""

    user_id: str
    values: tuple[tuple[str, str], ...]
    key: tuple[str, str]

    @classmethod
    def of(cls, user_id: str, values: Values) -> _Identity:
        pairs = tuple(sorted((str(k), str(v)) for k, v in values.items()))
        digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
        return cls(user_id, pairs, (user_id, digest))


@dataclass(frozen=True, slots=True)
class _RemoteTool:
    remote_name: str
    spec: ToolSpec


class _Connection:
    """One MCP client, opened and closed by its own task (the SDK's transports must be left
    in the task that entered them); any task of the loop may call through it."""

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.client: Any = None
        self.error: BaseException | None = None
        self.opened = asyncio.Event()
        self.closing = asyncio.Event()
        self.dead = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.in_use = 0
        self.last_used = time.monotonic()
        self.tools: tuple[_RemoteTool, ...] | None = None
        self.listed_at = 0.0
        self.listing = asyncio.Lock()

    async def ready(self) -> None:
        await self.opened.wait()
        if self.error is not None:
            raise ToolsetUnavailable(f"cannot connect: {_reason(self.error)}") from self.error

    async def call(self, name: str, arguments: dict[str, Any], seconds: float) -> Any:
        """Call a tool; fail at once if the connection breaks meanwhile."""
        call = asyncio.ensure_future(
            self.client.call_tool(name, arguments, read_timeout_seconds=seconds)
        )
        broken = asyncio.ensure_future(self.dead.wait())
        try:
            done, _ = await asyncio.wait(
                {call, broken}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            broken.cancel()
            if not call.done():
                call.cancel()
        if call in done:
            return call.result()
        if broken in done:
            raise ConnectionError(f"the connection broke: {_reason(self.error)}")
        raise TimeoutError(f"no answer within {seconds:g} s")


class _Pool:
    """The open connections of one MCPTools on one event loop, by identity, LRU-ordered."""

    def __init__(self, size: int, idle_timeout: float) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self.connections: OrderedDict[tuple[str, str], _Connection] = OrderedDict()
        self.failed: OrderedDict[tuple[str, str], float] = OrderedDict()
        """Identities whose connection could not be opened, and when they may try again."""
        self.changed = asyncio.Condition()

    async def acquire(
        self, key: tuple[str, str], start: Callable[[_Connection], Coroutine[Any, Any, None]]
    ) -> _Connection:
        retry = self.failed.get(key)
        if retry is not None:
            if time.monotonic() < retry:
                raise ToolsetUnavailable("could not connect a moment ago; not retried yet")
            del self.failed[key]
        async with self.changed:
            while True:
                self._close_idle()
                conn = self.connections.get(key)
                if conn is not None and conn.dead.is_set():
                    self.close(conn)
                    conn = None
                if conn is None and len(self.connections) >= self.size:
                    idle = next((c for c in self.connections.values() if not c.in_use), None)
                    if idle is None:
                        await self.changed.wait()
                        continue
                    self.close(idle)
                if conn is None:
                    conn = _Connection(key)
                    conn.task = asyncio.create_task(start(conn), name="tenantry-mcp-connection")
                    self.connections[key] = conn
                conn.in_use += 1
                conn.last_used = time.monotonic()
                self.connections.move_to_end(key)
                return conn

    async def release(self, conn: _Connection) -> None:
        conn.in_use -= 1
        conn.last_used = time.monotonic()
        async with self.changed:
            if conn.dead.is_set():
                if conn.client is None:  # it never opened
                    self.failed[conn.key] = time.monotonic() + RETRY_AFTER
                    while len(self.failed) > 4 * self.size:
                        self.failed.popitem(last=False)
                self.close(conn)
            self.changed.notify_all()

    def close(self, conn: _Connection) -> None:
        """Take `conn` out of the pool and let its task close it."""
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
        conn.closing.set()

    def _close_idle(self) -> None:
        expired = time.monotonic() - self.idle_timeout
        for conn in [c for c in self.connections.values() if not c.in_use]:
            if conn.last_used < expired:
                self.close(conn)

    async def aclose(self) -> None:
        tasks = [c.task for c in self.connections.values() if c.task is not None]
        for conn in list(self.connections.values()):
            self.close(conn)
        await asyncio.gather(*tasks, return_exceptions=True)


class MCPTools:
    """The tools of one MCP server, for every tenant of an agent (see the module docstring)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        command: Sequence[str] | None = None,
        headers: Values | ValuesHook | None = None,
        env: Values | ValuesHook | None = None,
        cwd: str | None = None,
        name: str = "mcp",
        prefix: str = "",
        allowed_tools: Iterable[str] | None = None,
        max_connections: int = 64,
        idle_timeout: float = 300.0,
        list_ttl: float = 60.0,
        timeout: float = 30.0,
    ) -> None:
        try:
            import mcp  # noqa: F401
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise MissingDependency("mcp", "mcp") from exc
        if (url is None) == (command is None):
            raise InvalidInput("give MCPTools either url=... (streamable HTTP) or command=[...]")
        if command is not None and (isinstance(command, str) or not command):
            raise InvalidInput("command must be a non-empty list: the program and its arguments")
        if max_connections < 1:
            raise InvalidInput(f"max_connections must be >= 1, got {max_connections!r}")
        self.url = url
        self.command = tuple(command or ())
        self.name = name
        self.prefix = prefix
        self.allowed_tools = frozenset(allowed_tools) if allowed_tools is not None else None
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.list_ttl = list_ttl
        self.timeout = timeout
        self.cwd = cwd
        self._values = headers if url is not None else env
        self._tls: ssl.SSLContext | None = None
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        where = self.url or " ".join(self.command)
        return f"MCPTools({self.name!r}, {where!r})"

    # --- the toolset protocol ---------------------------------------------------------------

    async def list_tools(self, ctx: RunContext) -> list[MCPTool]:
        """Give this turn's tools, bound to the turn's identity."""
        identity = await self._identity(ctx)
        for attempt in (1, 2):
            try:
                tools = await self._list_once(identity)
                break
            except ToolsetUnavailable:
                raise
            except Exception as exc:
                if attempt == 1 and _broken(exc):  # listing is safe to repeat: once, afresh
                    continue
                message = f"{self!r} cannot list its tools: {_reason(exc)}"
                raise ToolsetUnavailable(message) from exc
        return [MCPTool(self, tool, identity, ctx.run_id) for tool in tools]

    async def aclose(self) -> None:
        """Close every connection this toolset opened on the running loop."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()

    async def __aenter__(self) -> MCPTools:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals ------------------------------------------------------------------------

    async def _identity(self, ctx: RunContext) -> _Identity:
        values = self._values
        if callable(values):
            given = values(ctx)
            values = await given if inspect.isawaitable(given) else given
        return _Identity.of(ctx.user_id, values or {})

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self.max_connections, self.idle_timeout)
        return pool

    @contextlib.asynccontextmanager
    async def _lease(self, identity: _Identity) -> AsyncIterator[_Connection]:
        pool = self._pool()

        async def start(conn: _Connection) -> None:
            await self._keep_open(conn, identity)

        async with asyncio.timeout(self.timeout):
            conn = await pool.acquire(identity.key, start)
        try:
            async with asyncio.timeout(self.timeout):
                await conn.ready()
            yield conn
        finally:
            await pool.release(conn)

    async def _keep_open(self, conn: _Connection, identity: _Identity) -> None:
        """The connection's task: open the client, hold it until told to close, close it."""
        try:
            async with self._client(identity) as client:
                conn.client = client
                conn.opened.set()
                await conn.closing.wait()
        except (Exception, BaseExceptionGroup) as exc:  # a broken transport ends up here
            conn.error = exc
            if conn.opened.is_set():
                logger.warning("%r: a connection broke: %s", self, _reason(exc))
        finally:
            conn.opened.set()
            conn.dead.set()

    @contextlib.asynccontextmanager
    async def _client(self, identity: _Identity) -> AsyncIterator[Any]:
        from mcp import Client, StdioServerParameters

        options: dict[str, Any] = {"read_timeout_seconds": self.timeout, "cache": None}
        if self.url is None:
            program, *arguments = self.command
            server = StdioServerParameters(
                command=program, args=arguments, env=dict(identity.values), cwd=self.cwd
            )
            async with Client(server, **options) as client:
                yield client
            return
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # The SDK's default timeouts: a server may hold a response stream open for long. One
        # TLS context for every connection: loading the CA bundle costs ~40 ms of CPU each time.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        http = httpx2.AsyncClient(
            headers=dict(identity.values),
            timeout=httpx2.Timeout(30.0, read=300.0),
            verify=self._tls,
        )
        async with http, Client(streamable_http_client(self.url, http_client=http), **options) as c:
            yield c

    async def _list_once(self, identity: _Identity) -> tuple[_RemoteTool, ...]:
        async with self._lease(identity) as conn:
            try:
                return await self._listed(conn)
            except Exception as exc:
                if _broken(exc):
                    self._pool().close(conn)  # the next lease opens a new connection
                raise

    async def _listed(self, conn: _Connection) -> tuple[_RemoteTool, ...]:
        async with conn.listing:
            fresh = time.monotonic() - conn.listed_at < self.list_ttl
            if conn.tools is None or not fresh:
                conn.tools = self._tools_of(await self._list_all(conn))
                conn.listed_at = time.monotonic()
            return conn.tools

    async def _list_all(self, conn: _Connection) -> list[Any]:
        found: list[Any] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await conn.client.list_tools(cursor=cursor)
            found.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return found

    def _tools_of(self, listed: Sequence[Any]) -> tuple[_RemoteTool, ...]:
        tools: dict[str, _RemoteTool] = {}
        for item in listed:
            if self.allowed_tools is not None and item.name not in self.allowed_tools:
                continue
            name = re.sub(r"[^A-Za-z0-9_-]", "_", self.prefix + item.name)[:64]
            if name in tools:
                logger.warning("%r: tool %r clashes with another as %r; skipped", self, item, name)
                continue
            schema = dict(item.input_schema or {"type": "object", "properties": {}})
            spec = ToolSpec(name, item.description or "", schema)
            tools[name] = _RemoteTool(item.name, spec)
        return tuple(tools.values())

    async def _call(self, tool: MCPTool, arguments: dict[str, Any]) -> str:
        try:
            async with self._lease(tool.identity) as conn:
                try:
                    result = await conn.call(tool.remote_name, arguments, self.timeout)
                except Exception as exc:
                    if _broken(exc):  # the next call reconnects; this one is not repeated,
                        self._pool().close(conn)  # since the server may have run it
                    raise
        except Exception as exc:
            logger.warning("%r: tool %r failed: %s", self, tool.remote_name, _reason(exc))
            return (
                f"Tool {tool.name!r} failed: the MCP server {self.name!r} did not answer "
                f"({_reason(exc)}). Tell the user the tool is unavailable, or try again later."
            )
        return _result_text(tool.name, result)


class MCPTool:
    """One MCP tool as one turn sees it: bound to the turn's identity and run id."""

    __slots__ = ("identity", "name", "remote_name", "run_id", "spec", "toolset")

    def __init__(
        self, toolset: MCPTools, tool: _RemoteTool, identity: _Identity, run_id: str
    ) -> None:
        self.toolset = toolset
        self.name = tool.spec.name
        self.spec = tool.spec
        self.remote_name = tool.remote_name
        self.identity = identity
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r})"

    async def run(self, arguments: str, ctx: RunContext) -> str:
        """Call the tool with the model's JSON arguments; give its result (or error) as text."""
        if ctx.run_id != self.run_id or ctx.user_id != self.identity.user_id:
            return f"Tool {self.name!r} belongs to another run and was not called."
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return f"Invalid arguments for tool {self.name!r}: give a JSON object. Call again."
        return await self.toolset._call(self, parsed)


def _result_text(name: str, result: Any) -> str:
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            label = getattr(block, "mime_type", None) or getattr(block, "uri", None) or ""
            parts.append(f"[{kind} {label}]".replace(" ]", "]"))
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    if result.is_error:
        return f"Tool {name!r} reported an error: {text or 'no details given'}"
    return text


def _broken(exc: BaseException) -> bool:
    """Whether `exc` says the connection failed (rather than the server answering an error,
    or a timeout): a closed connection, or an exception from the transport itself."""
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED

    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return not isinstance(exc, TimeoutError | ToolsetUnavailable)


def _reason(exc: BaseException | None) -> str:
    """A short cause: the innermost exception of a group, with its type."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "unknown error"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["MCPTool", "MCPTools"]
