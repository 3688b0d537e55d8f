"""Toolsets: tools an agent discovers at run time, for the tenant whose turn it is.

`Agent(toolsets=[...])` takes objects with one method, `list_tools(ctx)`, called once per turn
with that turn's `RunContext`; the tools it gives are offered to the model for that turn only
(an MCP server's tools, see `tenantry.mcp`). A toolset that fails to list gives no tools for
that turn, logged, and never fails the turn. The agent's own tools win a name clash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from tenantry.tools import RunContext, Tool
from tenantry.types import ToolSpec

logger = logging.getLogger("tenantry.toolsets")


@runtime_checkable
class RunTool(Protocol):
    """What the agent needs of a tool: its name, its spec for the model, and a way to run it
    with the model's JSON arguments. `tenantry.Tool` is one."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> ToolSpec: ...

    async def run(self, arguments: str, ctx: RunContext) -> str: ...


@runtime_checkable
class Toolset(Protocol):
    """Gives the tools one turn may use; called once per turn with the turn's context."""

    async def list_tools(self, ctx: RunContext) -> Sequence[RunTool]: ...


async def tools_for_turn(
    tools: Sequence[Tool], toolsets: Sequence[Toolset], ctx: RunContext
) -> Mapping[str, RunTool]:
    """Give the turn's tools by name: the agent's own, then each toolset's (listed together)."""
    by_name: dict[str, RunTool] = {t.name: t for t in tools}
    if not toolsets:  # most agents: nothing to list, no gather
        return by_name
    listed = await asyncio.gather(*(t.list_tools(ctx) for t in toolsets), return_exceptions=True)
    for toolset, found in zip(toolsets, listed, strict=True):
        if isinstance(found, BaseException):
            if not isinstance(found, Exception):
                raise found  # cancellation and the like are not the toolset's failure
            logger.warning(
                "toolset %r gave no tools for run %s: %s: %s",
                toolset,
                ctx.run_id,
                type(found).__name__,
                found,
            )
            continue
        for item in found:
            if item.name in by_name:
                logger.warning("toolset %r: tool %r exists already; skipped", toolset, item.name)
                continue
            by_name[item.name] = item
    return by_name


__all__ = ["RunTool", "Toolset", "tools_for_turn"]
