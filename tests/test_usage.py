"""The budget policy: which limit refuses a turn, when it resets, what the error says."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tenantry.errors import BudgetExceeded, InvalidInput
from tenantry.models.base import estimate_tokens, estimated_usage
from tenantry.settings import Settings
from tenantry.types import Admission, Budget, Message, ToolCall, Usage
from tenantry.usage import Budgets, day_end, month_end, period

# 2026-12-31 18:00 UTC: six hours to the end of the day, of the month and of the year.
NOW = datetime(2026, 12, 31, 18, 0, tzinfo=UTC).timestamp()


def admission(day_tokens: int = 0, month_tokens: int = 0, requests: int = 0) -> Admission:
    return Admission(
        day=Usage(requests=requests, input_tokens=day_tokens),
        month=Usage(requests=requests, input_tokens=max(day_tokens, month_tokens)),
    )


def test_windows_end_at_utc_midnight_and_the_first_of_next_month() -> None:
    assert day_end(NOW) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    mid_month = datetime(2026, 2, 10, 23, 59, 59, tzinfo=UTC).timestamp()
    assert day_end(mid_month) == datetime(2026, 2, 11, tzinfo=UTC).timestamp()
    assert month_end(mid_month) == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert month_end(NOW) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_under_every_limit_the_turn_is_admitted() -> None:
    budgets = Budgets(Budget(tokens_per_day=100, requests_per_day=5))
    budgets.check(admission(day_tokens=99, requests=4), NOW)


def test_a_reached_daily_limit_refuses_until_midnight() -> None:
    budgets = Budgets(Budget(tokens_per_day=100))
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()
    with pytest.raises(BudgetExceeded) as refused:
        budgets.check(admission(day_tokens=100), noon, user_id="alice")
    error = refused.value
    assert (error.limit, error.used, error.allowed) == ("tokens_per_day", 100, 100)
    assert error.retry_after == 12 * 3600
    assert error.resets_at == datetime(2026, 6, 2, tzinfo=UTC).timestamp()
    assert "100 tokens used of 100 allowed per day" in str(error)
    assert "2026-06-02T00:00:00Z" in str(error)
    assert "alice" in str(error)


def test_the_limit_reported_is_the_one_that_resets_last() -> None:
    budgets = Budgets(Budget(tokens_per_day=10, tokens_per_month=50))
    mid = datetime(2026, 6, 10, tzinfo=UTC).timestamp()
    with pytest.raises(BudgetExceeded) as refused:
        budgets.check(admission(day_tokens=20, month_tokens=60), mid)
    assert refused.value.limit == "tokens_per_month"
    assert refused.value.resets_at == datetime(2026, 7, 1, tzinfo=UTC).timestamp()


def test_requests_count_model_requests() -> None:
    budgets = Budgets(Budget(requests_per_month=3))
    budgets.check(admission(requests=2), NOW)
    with pytest.raises(BudgetExceeded) as refused:
        budgets.check(admission(requests=3), NOW)
    assert refused.value.limit == "requests_per_month"


def test_a_users_own_budget_replaces_the_default_as_a_whole() -> None:
    budgets = Budgets(Budget(tokens_per_day=10, requests_per_day=1))
    own = Admission(day=Usage(requests=5, input_tokens=50), month=Usage(), budget=Budget(100))
    budgets.check(own, NOW)  # no request limit of its own: the default's is gone too
    with pytest.raises(BudgetExceeded):
        budgets.check(Admission(own.day, own.month, Budget(tokens_per_day=50)), NOW)


def test_only_a_default_without_limits_is_unlimited() -> None:
    """What lets a turn skip reading the usage of a user with no budget of its own."""
    assert Budgets().default_unlimited
    for name in ("tokens_per_day", "requests_per_day", "tokens_per_month", "requests_per_month"):
        assert not Budgets(Budget(**{name: 0})).default_unlimited


def test_a_zero_limit_refuses_every_turn() -> None:
    with pytest.raises(BudgetExceeded):
        Budgets(Budget(requests_per_day=0)).check(admission(), NOW)


def test_the_default_budget_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_BUDGET_TOKENS_PER_DAY", "1000")
    monkeypatch.setenv("TENANTRY_BUDGET_REQUESTS_PER_MONTH", "20")
    assert Budgets.from_settings().default == Budget(tokens_per_day=1000, requests_per_month=20)
    assert Budgets.from_settings(Settings(budget_tokens_per_month=5)).default == Budget(
        tokens_per_day=1000, tokens_per_month=5, requests_per_month=20
    )


def test_a_period_defaults_to_this_month_so_far() -> None:
    assert period(None, None, now=NOW) == (date(2026, 12, 1), date(2026, 12, 31))
    assert period(date(2026, 1, 5), date(2026, 1, 9), now=NOW) == (
        date(2026, 1, 5),
        date(2026, 1, 9),
    )
    with pytest.raises(InvalidInput):
        period(date(2026, 2, 1), date(2026, 1, 1), now=NOW)


def test_an_estimate_is_characters_over_four_rounded_up_and_says_so() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    sent = [Message.system("x" * 8), Message.user("y" * 5)]
    call = ToolCall(id="c1", name="lookup", arguments='{"q": 1}')
    usage = estimated_usage(sent, "z" * 9, [call])
    assert usage == Usage(requests=1, input_tokens=2 + 2, output_tokens=3 + 2 + 2, estimated=True)
