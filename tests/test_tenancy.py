from __future__ import annotations

import re

import pytest

from tenantry import InvalidSessionId, InvalidUserId, Scope, TenantryError
from tenantry.tenancy import (
    DEFAULT_SESSION_ID,
    DEFAULT_USER_ID,
    SCOPE_CACHE_SIZE,
    _validated,
    validate_user_id,
)


def test_omitted_ids_are_the_defaults() -> None:
    assert Scope.of() == Scope(DEFAULT_USER_ID, DEFAULT_SESSION_ID) == Scope("default", "default")
    assert Scope.of("alice") == Scope("alice", "default")
    assert validate_user_id(None) == "default"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("", "empty"),
        (" \t", "empty"),
        ("x" * 256, "at most 255"),
        ("a\x00b", "U+0000"),
        ("line\nbreak", "U+000A"),
        ("\x9b", "U+009B"),
        ("\udc80", "U+DC80"),
        (None, "must be a string"),
        (7, "must be a string"),
    ],
)
def test_bad_user_ids_say_what_is_wrong(bad: object, says: str) -> None:
    with pytest.raises(InvalidUserId, match=re.escape(says)) as caught:
        Scope(bad, "s")  # type: ignore[arg-type]
    assert isinstance(caught.value, TenantryError)
    assert isinstance(caught.value, ValueError)


def test_bad_session_ids_are_rejected_separately() -> None:
    with pytest.raises(InvalidSessionId, match="session id"):
        Scope.of("alice", "")
    with pytest.raises(InvalidSessionId):
        Scope("alice", "x" * 256)


def test_long_ids_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidUserId) as caught:
        Scope("y" * 300)
    assert len(str(caught.value)) < 140


@pytest.mark.parametrize(
    "good", ["x" * 255, "org-acme-user-001", "ユーザー", "a b", "emoji🙂‍👍", "a:b{c}*"]
)
def test_valid_ids_are_accepted_as_is(good: str) -> None:
    assert Scope(good, good).user_id == good


def test_scopes_are_values() -> None:
    assert {Scope("a", "s"), Scope("a", "s"), Scope("b", "s")} == {Scope("a", "s"), Scope("b", "s")}
    assert str(Scope("a", "s")) == "a/s"


class _Id(str):
    pass


def test_a_bad_id_is_rejected_every_time_even_after_good_ones_were_remembered() -> None:
    assert Scope.of("alice", "s") == Scope("alice", "s")
    for _ in range(2):
        with pytest.raises(InvalidUserId):
            Scope.of("a\x00b", "s")
        with pytest.raises(InvalidSessionId):
            Scope.of("alice", "")
        with pytest.raises(InvalidUserId, match="must be a string"):
            Scope.of(["alice"], "s")  # type: ignore[arg-type]  # unhashable: not remembered
    assert Scope.of(_Id("alice"), "s") == Scope("alice", "s")  # a str subclass is validated


def test_remembered_scopes_stay_bounded() -> None:
    for n in range(SCOPE_CACHE_SIZE + 10):
        assert Scope.of(f"user-{n}", "s").user_id == f"user-{n}"
    assert _validated.cache_info().currsize <= SCOPE_CACHE_SIZE
