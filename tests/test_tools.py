from __future__ import annotations

import json
import threading
from enum import Enum
from typing import Literal

import pytest

from tenantry import ModelRetry, RunContext, Scope, Tool, tool
from tenantry.errors import ToolDefinitionError, ToolError


def _ctx(user: str = "alice") -> RunContext:
    return RunContext(scope=Scope(user, "s1"), run_id="run-1", state={})


class Size(Enum):
    SMALL = "small"
    LARGE = "large"


@tool
def order_pizza(
    ctx: RunContext, topping: str, size: Size = Size.SMALL, count: int = 1, note: str | None = None
) -> str:
    """Order pizzas for the user.

    More details that are not part of the summary.

    Args:
        topping: What goes on top.
        size: How big.
        count: How many
            pizzas, at least one.
    """
    ctx.state.setdefault("orders", []).append([topping, size.value, count])
    return f"{count} {size.value} {topping} for {ctx.user_id}"


def test_the_schema_comes_from_type_hints_and_docstring() -> None:
    assert order_pizza.name == "order_pizza"
    assert order_pizza.description == "Order pizzas for the user."
    schema = order_pizza.parameters
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"topping", "size", "count", "note"}
    assert schema["required"] == ["topping"]
    assert schema["properties"]["topping"] == {"type": "string", "description": "What goes on top."}
    assert schema["properties"]["count"]["description"] == "How many pizzas, at least one."
    assert "ctx" not in json.dumps(schema)
    assert order_pizza.spec.name == "order_pizza"


async def test_a_tool_reads_and_changes_the_run_context() -> None:
    ctx = _ctx("bob")
    result = await order_pizza.run('{"topping": "olives", "size": "large", "count": 2}', ctx)
    assert result == "2 large olives for bob"
    assert ctx.state == {"orders": [["olives", "large", 2]]}


async def test_bad_arguments_go_back_to_the_model() -> None:
    result = await order_pizza.run('{"size": "huge", "extra": 1}', _ctx())
    assert result.startswith("Invalid arguments for tool 'order_pizza'")
    assert "topping" in result
    assert "size" in result
    assert "extra" in result
    assert "Invalid arguments" in await order_pizza.run("not json", _ctx())


async def test_model_retry_sends_its_message_back() -> None:
    @tool
    def pick(color: Literal["red", "blue"]) -> str:
        """Pick a color."""
        raise ModelRetry("blue is sold out, pick red")

    assert await pick.run('{"color": "blue"}', _ctx()) == "blue is sold out, pick red"


async def test_an_exception_in_a_tool_is_a_tool_error() -> None:
    @tool
    async def broken() -> str:
        raise RuntimeError("database on fire")

    with pytest.raises(ToolError, match=r"broken.*database on fire") as caught:
        await broken.run("{}", _ctx())
    assert caught.value.tool_name == "broken"


async def test_sync_tools_run_off_the_event_loop_and_results_become_json() -> None:
    loop_thread = threading.get_ident()

    @tool(name="where", description="Say where it ran.")
    def where_am_i(n: int) -> dict[str, object]:
        return {"off_loop": threading.get_ident() != loop_thread, "n": n}

    assert where_am_i.name == "where"
    assert where_am_i.description == "Say where it ran."
    assert json.loads(await where_am_i.run('{"n": 3}', _ctx())) == {"off_loop": True, "n": 3}


def test_a_tool_is_still_a_plain_function() -> None:
    assert order_pizza(_ctx(), "ham") == "1 small ham for alice"
    assert repr(order_pizza) == "Tool('order_pizza')"


def test_functions_that_cannot_be_tools_are_refused() -> None:
    def no_hints(x):  # type: ignore[no-untyped-def]
        return x

    def var_args(*names: str) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="needs a type hint"):
        tool(no_hints)
    with pytest.raises(ToolDefinitionError, match=r"\*names"):
        tool(var_args)
    with pytest.raises(ToolDefinitionError, match="tool name"):
        tool(name="has spaces")(lambda: "x")
    with pytest.raises(ToolDefinitionError, match="must be a function"):
        Tool(42)  # type: ignore[arg-type]

    def bad_ref(x: NotDefined) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    with pytest.raises(ToolDefinitionError, match="type hints"):
        tool(bad_ref)
