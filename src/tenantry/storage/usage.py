"""The usage half of the store contract: what each user used per UTC day, their budget
override, and the rate limit shared by replicas.

`UsageContract` is a base of `base.Store`, so every store has these methods; like the rest of
the contract they are written once, here, with their checks, on top of a few backend
primitives (`_add_usage`, `_usage_days`, ...). Semantics shared by every backend:

- Counters per user per UTC day: one row (hash, dict entry) per user per day that has usage,
  holding the sums of `Usage`'s counts (`types.USAGE_COUNTS`) and whether any part of them was
  estimated. A month is the sum of its days, on read.
- A turn's usage (`add_many(..., usage=...)`, `TurnWrite.usage`) is added to the counters of
  the UTC day of the write IN THE SAME atomic step as the turn's messages: a stored turn is
  always counted, a failed one never. `add_usage` adds usage without a turn (work done after
  the turn was acknowledged, such as learning memories).
- `user_id` is required: None is refused, never taken as the default user, so a call that
  forgot its user fails loudly. Usage with every count 0 records nothing.
- A budget override is stored per user (`set_budget`; None removes it); the defaults for
  users without one live in the settings, not in the store.
- `clear(user_id)` keeps the user's usage and budget (they are billing records, and deleting
  a user's conversations must not reset their spending); `clear_all` deletes them.
  `prune_inactive` deletes usage rows older than `usage_retention_days` (default 400, so a
  year and its month are always complete), whatever the user's activity.
- The rate limit shared by replicas (`rate_limit_hit`) is a token bucket per user in the
  store, with the semantics of the server's in-process one: a burst of up to `per_minute`
  requests, refilled at `per_minute / 60` per second. Only stores that several processes
  share offer it (`shares_rate_limit`: PostgreSQL and Redis); the others raise
  RateLimitNotShared and the server keeps its in-process bucket.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import date, datetime, timedelta

from tenantry._checks import check_int
from tenantry.errors import InvalidInput, InvalidUserId, RateLimitNotShared
from tenantry.tenancy import validate_user_id
from tenantry.types import USAGE_COUNTS, Admission, Budget, Usage, UsageDay

DEFAULT_USAGE_RETENTION_DAYS = 400
"""Days of usage a store keeps unless told otherwise (`usage_retention_days`)."""

MAX_USAGE_DAYS = 3_700
"""The most days one usage read may span (about ten years)."""

MAX_TOP_USERS = 1_000
"""The most users one `top_usage` call may give."""

_MAX_COUNT = 2**62
"""One above the largest count one usage may add (sums stay far below 2**63)."""


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_SECONDS = 86_400


def usage_day(now: float) -> date:
    """Give the UTC day of the time `now` (seconds since the epoch, which counts every day
    as exactly 86,400 seconds)."""
    return date.fromordinal(_EPOCH_ORDINAL + int(now // _DAY_SECONDS))


def month_start(day: date) -> date:
    """Give the first day of `day`'s month."""
    return day.replace(day=1)


def check_usage(usage: Usage) -> Usage:
    """Give `usage` if it is a `Usage` of non-negative whole counts, or raise InvalidInput."""
    if not isinstance(usage, Usage):
        raise InvalidInput(f"usage must be a Usage, got {type(usage).__name__}")
    counts = (
        usage.requests,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.tool_calls,
    )  # every turn passes here: one pass over plain ints, the messages only when one is bad
    if all(type(n) is int and 0 <= n < _MAX_COUNT for n in counts):
        if type(usage.estimated) is not bool:
            raise InvalidInput(f"usage.estimated must be a bool, got {usage.estimated!r}")
        return usage
    for name in USAGE_COUNTS:
        check_int(f"usage.{name}", getattr(usage, name), minimum=0)
    raise InvalidInput(f"a usage count is too large (at most 2**62 - 1): {usage}")


def check_day(name: str, value: date) -> date:
    """Give `value` if it is a date (not a datetime), or raise InvalidInput naming `name`."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidInput(f"{name} must be a datetime.date (a UTC day), got {value!r}")
    return value


def check_range(start: date, end: date) -> tuple[date, date]:
    """Give (start, end) if they are days with start <= end at most MAX_USAGE_DAYS apart."""
    check_day("start", start)
    check_day("end", end)
    if end < start:
        raise InvalidInput(f"end ({end}) is before start ({start})")
    if (end - start).days >= MAX_USAGE_DAYS:
        raise InvalidInput(f"a usage read spans at most {MAX_USAGE_DAYS} days, got {start}..{end}")
    return start, end


def check_budget(budget: Budget | None) -> Budget | None:
    if budget is not None and not isinstance(budget, Budget):
        raise InvalidInput(f"budget must be a Budget or None, got {type(budget).__name__}")
    return budget


def total(days: list[UsageDay]) -> Usage:
    """Give the sum of the days' usage."""
    summed = Usage()
    for one in days:
        summed = summed + one.usage
    return summed


UNREAD_ADMISSION = Admission(Usage(), Usage(), None)
"""The admission of a user without a budget override when its usage was not needed (see
`Store.snapshot_and_admission`'s `budgeted_only`)."""


def admission_of(days: list[UsageDay], today: date, budget: Budget | None) -> Admission:
    """Give the admission of a user whose days of this month (through `today`) are `days`."""
    day = next((one.usage for one in days if one.day == today), Usage())
    return Admission(day, total(days), budget)


class UsageContract(ABC):
    """Usage counters, budgets and the shared rate limit: methods every `Store` has."""

    _usage_retention_days: int
    _clock: Callable[[], float]

    @property
    def usage_retention_days(self) -> int:
        """How many days of usage `prune_inactive` keeps."""
        return self._usage_retention_days

    @property
    def shares_rate_limit(self) -> bool:
        """Whether `rate_limit_hit` keeps its buckets where every replica sees them."""
        return False

    async def add_usage(self, usage: Usage, *, user_id: str, now: float | None = None) -> None:
        """Add `usage` to the user's counters of the UTC day of `now` (default: the store's
        clock), without a turn."""
        user = self._usage_user(user_id)
        checked = check_usage(usage)
        if checked.empty:
            return
        await self._add_usage(user, usage_day(self._now(now)), checked)

    async def get_usage(self, user_id: str, *, start: date, end: date) -> list[UsageDay]:
        """Give the user's usage of each UTC day from `start` to `end` inclusive that has
        any, oldest first."""
        user = self._usage_user(user_id)
        first, last = check_range(start, end)
        return await self._usage_days(user, first, last)

    async def usage_total(self, user_id: str, *, start: date, end: date) -> Usage:
        """Give the sum of the user's usage from `start` to `end` inclusive."""
        return total(await self.get_usage(user_id, start=start, end=end))

    async def top_usage(
        self, *, start: date, end: date, limit: int = 10
    ) -> list[tuple[str, Usage]]:
        """Give the `limit` users with the most tokens from `start` to `end` inclusive, with
        their usage of the period, heaviest first (ties by user id)."""
        self._check_open()
        first, last = check_range(start, end)
        wanted = check_int("limit", limit)
        if wanted > MAX_TOP_USERS:
            raise InvalidInput(f"limit must be at most {MAX_TOP_USERS}, got {wanted}")
        return await self._top_usage(first, last, wanted)

    async def read_admission(self, user_id: str, *, now: float | None = None) -> Admission:
        """Give what admitting a turn of the user needs: today's usage, this month's (UTC
        days of `now`, default the store's clock) and the user's budget override."""
        user = self._usage_user(user_id)
        return await self._read_admission(user, usage_day(self._now(now)))

    async def get_budget(self, user_id: str) -> Budget | None:
        """Give the user's budget override, or None (the defaults apply)."""
        return await self._get_budget(self._usage_user(user_id))

    async def set_budget(self, user_id: str, budget: Budget | None) -> None:
        """Replace the user's budget override; None removes it."""
        user = self._usage_user(user_id)
        await self._set_budget(user, check_budget(budget))

    async def rate_limit_hit(
        self, user_id: str, *, per_minute: int, now: float | None = None
    ) -> float:
        """Take one request from the user's shared bucket: give 0.0 if admitted, otherwise
        the seconds until a request is (nothing is taken then). Raises RateLimitNotShared
        when the store is not shared (`shares_rate_limit` False)."""
        user = self._usage_user(user_id)
        rate = check_int("per_minute", per_minute)
        if not self.shares_rate_limit:
            raise self._not_shared()
        return await self._rate_limit_hit(user, rate, self._now(now))

    # --- shared helpers -----------------------------------------------------------------------

    def _usage_user(self, user_id: str) -> str:
        """Give the user id of a usage call: required (None is refused, not the default)."""
        self._check_open()
        if user_id is None:
            raise InvalidUserId("usage calls need an explicit user_id (there is no default)")
        return validate_user_id(user_id)

    def _now(self, now: float | None) -> float:
        if now is None:
            return self._clock()
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise InvalidInput(f"now must be seconds since the epoch, got {now!r}")
        return float(now)

    def _usage_cutoff(self, now: float) -> date:
        """Give the oldest day `prune_inactive` keeps at `now`."""
        return usage_day(now) - timedelta(days=self._usage_retention_days)

    async def _read_admission(self, user_id: str, day: date) -> Admission:
        """Default: two reads. Backends override it to read both in one round trip."""
        days = await self._usage_days(user_id, month_start(day), day)
        return admission_of(days, day, await self._get_budget(user_id))

    async def _rate_limit_hit(self, user_id: str, per_minute: int, now: float) -> float:
        """Take one request from the user's bucket (see the module's docstring); give 0.0,
        or the seconds until a request is allowed. Only stores that share it override it."""
        raise self._not_shared()

    def _not_shared(self) -> RateLimitNotShared:
        return RateLimitNotShared(
            f"{type(self).__name__} is not shared between processes; use an in-process rate limit"
        )

    @abstractmethod
    def _check_open(self) -> None: ...

    # --- backend primitives -------------------------------------------------------------------

    @abstractmethod
    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        """Atomically add `usage` to the user's counters of `day`."""

    @abstractmethod
    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        """Give the user's days from `start` to `end` inclusive that have usage, oldest first."""

    @abstractmethod
    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        """Give the `limit` users with the most total tokens from `start` to `end`, with
        their summed usage, heaviest first, ties by user id."""

    @abstractmethod
    async def _get_budget(self, user_id: str) -> Budget | None: ...

    @abstractmethod
    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        """Store the user's budget override, or delete it when None."""

    @abstractmethod
    async def _prune_usage(self, before: date) -> int:
        """Delete every user's usage of days before `before`; give how many rows."""


__all__ = [
    "DEFAULT_USAGE_RETENTION_DAYS",
    "MAX_TOP_USERS",
    "MAX_USAGE_DAYS",
    "UsageContract",
    "admission_of",
    "check_budget",
    "check_day",
    "check_range",
    "check_usage",
    "month_start",
    "total",
    "usage_day",
]
