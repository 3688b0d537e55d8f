"""Tools: plain Python functions the model may call, and the run context they may ask for.

    @tool
    def add_to_cart(ctx: RunContext, item: str, quantity: int = 1) -> str:
        \"\"\"Put an item in the user's cart.

        Args:
            item: What to add.
            quantity: How many.
        \"\"\"
        ctx.state.setdefault("cart", []).append([item, quantity])
        return f"{quantity} x {item} added"

The JSON schema comes from the type hints (through pydantic), the description from the
docstring. A parameter annotated `RunContext` receives the turn's context: the scope and the
session state of the tenant whose turn it is. It is passed per call, never global, so a tool
cannot see another tenant's data. Sync functions run on a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

from tenantry.errors import ModelRetry, ToolDefinitionError, ToolError
from tenantry.tenancy import Scope
from tenantry.types import ToolSpec


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a tool may know about the turn it runs in. `state` is the scope's session state:
    change it in place and the change is stored with the turn's messages, atomically."""

    scope: Scope
    run_id: str
    state: dict[str, Any]
    deps: Any = None
    memory: Any = None
    """With memory on: the turn user's long-term memory (`tenantry.memory.TurnMemory`), which
    the memory tools use; None otherwise."""

    @property
    def user_id(self) -> str:
        return self.scope.user_id

    @property
    def session_id(self) -> str:
        return self.scope.session_id


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Give the summary paragraph and the per-argument descriptions of a Google-style docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary.append(line.strip())
    described: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if not in_args:
            continue
        if line.strip() and not line.startswith((" ", "\t")):
            break  # the next section
        match = _ARG_LINE.match(line)
        if match:
            current = match.group(1).lstrip("*")
            described[current] = match.group(2).strip()
        elif current and line.strip():
            described[current] += " " + line.strip()
    return " ".join(summary), described


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


class Tool:
    """A function the model may call. Calling the Tool itself calls the plain function."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        from pydantic import BaseModel, ConfigDict, Field, create_model

        if not callable(function):
            raise ToolDefinitionError(f"a tool must be a function, got {type(function).__name__}")
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", ""))
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'"
            )
        summary, arg_docs = _parse_docstring(function.__doc__)
        self.description = description if description is not None else summary
        self.is_async = inspect.iscoroutinefunction(function)
        try:
            hints = get_type_hints(function)
        except Exception as exc:
            raise ToolDefinitionError(
                f"cannot read the type hints of tool {self.name!r}: {exc}"
            ) from exc
        self.context_param: str | None = None
        fields: dict[str, Any] = {}
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r} cannot take *{param.name}; give each argument a name"
                )
            hint = hints.get(param.name)
            if hint is RunContext:
                self.context_param = param.name
                continue
            if hint is None:
                raise ToolDefinitionError(
                    f"parameter {param.name!r} of tool {self.name!r} needs a type hint"
                )
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hint, Field(default, description=arg_docs.get(param.name)))
        self._arguments: type[BaseModel] = create_model(
            f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        schema = _strip_titles(self._arguments.model_json_schema())
        schema.setdefault("properties", {})
        self.parameters: dict[str, Any] = schema
        self.spec = ToolSpec(self.name, self.description, self.parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    async def run(self, arguments: str, ctx: RunContext) -> str:
        """Run the tool with the model's JSON arguments and give its result as text.

        Bad arguments and `ModelRetry` give a message for the model to correct itself; any other
        exception from the function raises `ToolError`.
        """
        from pydantic import ValidationError
        from pydantic_core import to_json

        try:
            parsed = self._arguments.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors()
            )
            return f"Invalid arguments for tool {self.name!r}: {problems}. Fix them and call again."
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        try:
            if self.is_async:
                result = await self.function(**kwargs)
            else:
                result = await asyncio.to_thread(self.function, **kwargs)
        except ModelRetry as retry:
            return str(retry)
        except Exception as exc:
            raise ToolError(self.name, exc) from exc
        return result if isinstance(result, str) else to_json(result).decode()


ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]


@overload
def tool(function: ToolFunction, /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[ToolFunction], Tool]: ...


def tool(
    function: ToolFunction | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[ToolFunction], Tool]:
    """Turn a function into a `Tool`: `@tool` or `@tool(name=..., description=...)`."""
    if function is not None:
        return Tool(function, name=name, description=description)

    def decorate(fn: ToolFunction) -> Tool:
        return Tool(fn, name=name, description=description)

    return decorate


def as_tool(item: Tool | ToolFunction) -> Tool:
    """Give `item` as a Tool (plain functions are converted)."""
    return item if isinstance(item, Tool) else Tool(item)


__all__ = ["ModelRetry", "RunContext", "Tool", "tool"]
