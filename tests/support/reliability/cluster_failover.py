"""A Redis Cluster fails over while `tenantry serve` runs under load (`tests/reliability/
test_cluster_failover.py`): the server answers 503 + Retry-After while a slot has no
primary, never a 500 or a hang, finds the new primary by itself, and loses no acknowledged
turn when each turn waits for a replica (`wait_replicas=1`).

`fail_over` runs one event (a kill -9 of a primary, or `CLUSTER FAILOVER` on a replica)
under `Load`, waits until the cluster is healthy and the server is ready again and more
turns were acknowledged, and gives the figures; `check_stored` then proves every
acknowledged turn is stored whole.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.support.redis_cluster import RedisCluster
from tests.support.reliability.crash import Load, Scope, Sent, until, wait_ready


@dataclass
class FailoverFigures:
    """What the clients saw around one failover."""

    event: str
    statuses: Counter[int | str] = field(default_factory=Counter)
    """Statuses of the chat requests started between the event and the healing."""
    healthy_after: float = 0.0
    """Seconds from the event to the cluster saying cluster_state:ok with 3 primaries."""
    ready_after: float = 0.0
    """Seconds from the event to the server's /readyz answering 200 again."""
    first_turn_after: float = 0.0
    """Seconds from the event until every scope had a turn acknowledged again (after the
    healing, which for a killed primary includes restarting it and its resync)."""
    slowest: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.event}: chat statuses meanwhile {dict(self.statuses)}; cluster healthy "
            f"after {self.healthy_after:.2f}s, /readyz 200 after {self.ready_after:.2f}s, "
            f"every scope served again after {self.first_turn_after:.2f}s; slowest request "
            f"{self.slowest:.2f}s"
        )


def check_requests(sent: list[Sent], request_bound: float) -> list[str]:
    """Every request got 200, or a retryable refusal with Retry-After (503: no primary for
    the slot; 409: the turn's lock was lost with the failed primary, nothing stored), within
    `request_bound` seconds."""
    problems = []
    for s in sent:
        if s.status is None:
            problems.append(f"{s.text!r}: no response: {s.error}")
        elif s.status not in (200, 409, 503):
            problems.append(f"{s.text!r}: {s.status} {s.error}")
        elif s.status != 200 and s.retry_after is None:
            problems.append(f"{s.text!r}: {s.status} without Retry-After")
        if s.seconds > request_bound:
            problems.append(f"{s.text!r} took {s.seconds:.1f}s ({s.status})")
    return problems


async def fail_over(
    http: httpx.AsyncClient,
    cluster: RedisCluster,
    load: Load,
    event: str,
    act: Callable[[], None],
    *,
    heal: Callable[[], None] = lambda: None,
    recovery_bound: float,
    server_log: Callable[[], str] = str,
) -> FailoverFigures:
    """Run `act()` (the failover) under `load`; wait, bounded, until the cluster is healthy
    and /readyz is 200, run `heal()` (e.g. restart a killed node), and wait until every
    scope of the load had a turn acknowledged that started after that; give the figures."""
    figures = FailoverFigures(event)
    sent_before = len(load.sent)
    started = time.monotonic()
    await asyncio.to_thread(act)
    await asyncio.to_thread(cluster.wait_healthy, recovery_bound)
    figures.healthy_after = time.monotonic() - started
    await wait_ready(http, recovery_bound)
    figures.ready_after = time.monotonic() - started
    await asyncio.to_thread(heal)
    healed = time.monotonic()
    scopes = {s.scope for s in load.sent}

    def every_scope_acknowledged() -> bool:
        return {s.scope for s in load.sent if s.acknowledged and s.started >= healed} >= scopes

    try:
        await until(every_scope_acknowledged, recovery_bound, "every scope to get a turn again")
    except AssertionError as exc:
        served = {s.scope for s in load.sent if s.acknowledged and s.started >= healed}
        raise AssertionError(
            f"{exc}\n{_unserved(load.sent[sent_before:], served, started, healed)}"
            f"\nthe server's warnings and errors:\n{_warnings(server_log())}"
        ) from None
    figures.first_turn_after = time.monotonic() - started
    for s in load.sent[sent_before:]:
        if s.ended is not None and s.started <= healed:
            figures.statuses[s.status if s.status is not None else "no response"] += 1
        figures.slowest = max(figures.slowest, s.seconds)
    return figures


def _unserved(sent: list[Sent], served: set[Scope], started: float, healed: float) -> str:
    """Every request since the event of the scopes not served again: when it started
    (seconds after the event), how long it took, what it got."""
    lines = [f"healed {healed - started:.2f}s after the event; requests of the scopes not served:"]
    for s in sent:
        if s.scope not in served:
            answer = "in flight" if s.ended is None else f"{s.status} {s.error[:200]}"
            lines.append(
                f"  {s.scope} at +{s.started - started:.2f}s for {s.seconds:.2f}s: {answer}"
            )
    return "\n".join(lines)


def _warnings(log: str) -> str:
    """The server log's lines at WARNING or above, and any traceback, the last 60."""
    words = ("WARNING", "ERROR", "CRITICAL", "Traceback")
    lines = [line for line in log.splitlines() if any(word in line for word in words)]
    return "\n".join(lines[-60:]) or "(none)"


async def lost_turns(http: httpx.AsyncClient, acknowledged: list[Sent]) -> list[str]:
    """Give the acknowledged turns that are not stored (read through the server's API)."""
    stored: set[tuple[tuple[str, str], str]] = set()
    for user in sorted({s.scope[0] for s in acknowledged}):
        response = await http.get(f"/v1/users/{user}/export")
        response.raise_for_status()
        for session in response.json()["sessions"]:
            scope = (user, session["session_id"])
            stored |= {(scope, m["content"]) for m in session["messages"] if m["role"] == "user"}
    return sorted(s.text for s in acknowledged if (s.scope, s.text) not in stored)


__all__ = ["FailoverFigures", "check_requests", "fail_over", "lost_turns"]
