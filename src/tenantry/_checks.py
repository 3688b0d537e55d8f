"""`check_int`: the one check of a whole-number setting or argument (counts, sizes, limits).

Low in the layers (it imports only `errors`), so the stores and the agent check their
numbers the same way and say the same thing about a bad one.
"""

from __future__ import annotations

from typing import Literal, overload

from tenantry.errors import InvalidInput


@overload
def check_int(name: str, value: int, *, minimum: int = 1) -> int: ...


@overload
def check_int(
    name: str, value: int | None, *, minimum: int = 1, or_none: Literal[True]
) -> int | None: ...


def check_int(
    name: str, value: int | None, *, minimum: int = 1, or_none: bool = False
) -> int | None:
    """Give `value` if it is an int of at least `minimum` (or None, with `or_none`), or raise
    InvalidInput naming `name`, what it must be and what it got. A bool is not an int here:
    `max_loops=True` is a mistake, not 1."""
    if value is None and or_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{name} must be {_wanted(minimum, or_none)}, got {value!r}")
    return value


def _wanted(minimum: int, or_none: bool) -> str:
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )
    return f"{kind} or None" if or_none else kind


__all__ = ["check_int"]
