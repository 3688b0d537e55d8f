"""One check for every whole-number setting: a bad value is refused with a message that
names the setting, says what it must be and shows what it got."""

from __future__ import annotations

import pytest

from tenantry._checks import check_int
from tenantry.errors import InvalidInput


@pytest.mark.parametrize(
    ("value", "minimum", "or_none", "says"),
    [
        (0, 1, False, "pool_size must be a positive integer, got 0"),
        (True, 1, False, "pool_size must be a positive integer, got True"),
        ("3", 1, False, "pool_size must be a positive integer, got '3'"),
        (2.0, 1, False, "pool_size must be a positive integer, got 2.0"),
        (None, 1, False, "pool_size must be a positive integer, got None"),
        (-1, 0, True, "pool_size must be a non-negative integer or None, got -1"),
        (4, 5, False, "pool_size must be an integer >= 5, got 4"),
    ],
)
def test_a_bad_number_is_refused_saying_what_it_must_be(
    value: object, minimum: int, or_none: bool, says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_int("pool_size", value, minimum=minimum, or_none=or_none)  # type: ignore[call-overload]
    assert str(refused.value) == says


def test_a_good_number_comes_back_unchanged() -> None:
    assert check_int("max_loops", 1) == 1
    assert check_int("limit", 0, minimum=0, or_none=True) == 0
    assert check_int("limit", None, minimum=0, or_none=True) is None
