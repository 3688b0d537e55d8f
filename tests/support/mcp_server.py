"""A real MCP server for the MCP tests, built with the official SDK: its `whoami` tool echoes the
caller identity it received (the `X-Tenant` header over HTTP, the `TENANT` variable over stdio).

In-process: `EchoServer().app()` is a streamable-HTTP ASGI app (serve it with
`tests.support.servers.serve`); it records every call and counts tool listings.
As a program, `python -m tests.support.mcp_server` serves the same tools over stdio, and with
`--http` over streamable HTTP on a free loopback port, printing `PORT <n>` once it listens
(`http_server_process` starts it: a server in its own process does not share the test's GIL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import Tool as MCPToolInfo
from starlette.applications import Starlette


class EchoServer(MCPServer):
    def __init__(self) -> None:
        super().__init__("tenantry-test-echo", log_level="WARNING")
        self.calls: list[tuple[str | None, str]] = []
        """(the identity the server received, the note the model sent) per whoami call."""
        self.listings = 0
        self.tool(description="Say who is calling, as the server sees it.")(self.whoami)
        self.tool(description="Always fails.")(self.fail)
        self.tool(description="Answer after a while.")(self.slow)

    async def list_tools(self) -> list[MCPToolInfo]:
        self.listings += 1
        return await super().list_tools()

    def app(self) -> Starlette:
        return self.streamable_http_app()

    async def whoami(self, ctx: Context[Any, Any], note: str = "") -> str:
        headers = ctx.headers
        identity = headers.get("x-tenant") if headers is not None else os.environ.get("TENANT")
        self.calls.append((identity, note))
        return f"{identity}|{note}|{os.getpid()}"

    def fail(self) -> str:
        raise RuntimeError("the CRM is on fire")

    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"


ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def http_server_process() -> Iterator[str]:
    """Run the echo server over HTTP in a child process; give its MCP endpoint URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_server", "--http"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the MCP test server did not start: {line!r}")
        yield f"http://127.0.0.1:{line.split()[1]}/mcp"
    finally:
        child.terminate()
        child.wait(timeout=10)


async def _serve_http() -> None:
    import uvicorn

    # keep-alive longer than any test: a connection the server closes while the client reuses
    # it fails that request (the SDK's transport then closes the whole connection)
    config = uvicorn.Config(
        EchoServer().app(),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        timeout_keep_alive=120,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            return
        await asyncio.sleep(0.01)
    print(f"PORT {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    await task


if __name__ == "__main__":
    if "--http" in sys.argv:
        asyncio.run(_serve_http())
    else:
        EchoServer().run("stdio")
