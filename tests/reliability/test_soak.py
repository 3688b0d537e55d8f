"""Soak, CI's smoke variant: one real `tenantry serve` (SQLite, JWT auth, TTL pruning every 5 s
of sessions idle for 15 s) takes two minutes of mixed traffic over 10 000 tenants. Its RSS,
open descriptors and TCP connections stay flat, its p99 latency stays within 1.5x of the first
window after warm-up (given up to two more windows if other processes slowed the
machine down), no answer is a 5xx or shows another tenant's data, and pruning deletes
idle sessions but not active ones. `bench/soak.py` runs the same code for 30 minutes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from tenantry import Agent, InMemoryStore, Message
from tenantry.server import ServerSettings, create_app
from tests.conftest import FakeClock
from tests.support.reliability.soak import Sample, SoakConfig, SoakResult, judge, run_soak

SMOKE = SoakConfig(
    seconds=120,
    warmup=25,  # pruning is under way from 15 + 5 s: both windows carry the same work
    window=40,
    tenants=10_000,
    rate=25,
    concurrency=16,
    sample_every=2,
    prune_inactive_seconds=15,
    prune_interval_seconds=5,
    extra_windows=2,
)


@pytest.mark.slow
async def test_two_minutes_of_mixed_traffic_leave_the_server_flat(tmp_path: Path) -> None:
    result = await run_soak(SMOKE, tmp_path)
    figures = judge(result)
    print("\nsoak smoke:", json.dumps({k: v for k, v in figures.items() if k != "by_kind"}))
    failed = [name for name, ok in figures["verdicts"].items() if not ok]
    assert not failed, json.dumps({"failed": failed, **figures}, indent=1)
    assert figures["requests"] > 0.9 * SMOKE.rate * SMOKE.seconds  # the load was really offered
    assert set(figures["by_kind"]) == {
        "chat",
        "stream",
        "completions",
        "sessions",
        "messages",
        "delete_session",
        "delete_user",
    }


def _synthetic(rss_growth: float, fd_growth: int, slow_down: float) -> SoakResult:
    """A made-up run whose RSS, descriptors and latency grow by the given amounts."""
    config = SoakConfig(seconds=120, warmup=20, window=40, prune_inactive_seconds=15)
    result = SoakResult(config, prune_checked=1, recent_checked=1, exit_code=0, seconds=120)
    result.log_tail = ["INFO uvicorn.error Application shutdown complete."]
    for t in range(0, 121, 2):
        share = t / 120
        result.samples.append(
            Sample(t, 100 + rss_growth * share, 30 + round(fd_growth * share), 5, 4, t / 10, 1.0)
        )
    for n in range(120 * 25):
        t = n / 25
        latency = 0.02 * (1 + slow_down * t / 120) * (3 if n % 100 == 0 else 1)
        result.requests.append((t, "chat", latency, 200))
    return result


def test_the_verdicts_pass_a_flat_run_and_fail_a_leaking_or_slowing_one() -> None:
    def failed(result: SoakResult) -> set[str]:
        return {name for name, ok in judge(result)["verdicts"].items() if not ok}

    assert failed(_synthetic(rss_growth=2, fd_growth=1, slow_down=0.1)) == set()
    assert failed(_synthetic(rss_growth=80, fd_growth=0, slow_down=0)) == {"rss_flat"}
    assert failed(_synthetic(rss_growth=0, fd_growth=40, slow_down=0)) == {"fds_flat"}
    assert failed(_synthetic(rss_growth=0, fd_growth=0, slow_down=1.5)) == {"p99_within_factor"}
    spiky = _synthetic(rss_growth=0, fd_growth=0, slow_down=0)
    spiky.requests = [  # 5 s of stolen CPU in the last window do not fail the run
        (t, k, s * 20 if 100 <= t < 105 else s, c) for t, k, s, c in spiky.requests
    ]
    assert failed(spiky) == set()
    spiky.requests.append((110.0, "chat", 1.0, 503))
    assert failed(spiky) == {"no_5xx_or_failed_request"}


class _CountingPrunes(InMemoryStore):
    def __init__(self, clock: FakeClock, wanted: int) -> None:
        super().__init__(clock=clock)
        self.prunes = 0
        self.wanted = wanted
        self.enough = asyncio.Event()

    async def prune_inactive(self, older_than: timedelta) -> int:
        deleted = await super().prune_inactive(older_than)
        self.prunes += 1
        if self.prunes >= self.wanted:
            self.enough.set()
        return deleted


async def test_idle_sessions_are_pruned_every_interval() -> None:
    clock = FakeClock()
    store = _CountingPrunes(clock, wanted=3)
    await store.add(Message.user("idle"), user_id="idle")
    clock.advance(31)
    await store.add(Message.user("active"), user_id="active")
    settings = ServerSettings(
        _env_file=None, prune_inactive_hours=30 / 3600, prune_interval_seconds=0.01
    )
    app = create_app(Agent(store=store), settings)
    async with app.router.lifespan_context(app), asyncio.timeout(10):
        await store.enough.wait()  # with the hourly default, only one prune would run
    assert await store.list_users() == ["active"]


def test_the_prune_interval_defaults_to_an_hour_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ServerSettings(_env_file=None).prune_interval_seconds == 3600
    monkeypatch.setenv("TENANTRY_PRUNE_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("TENANTRY_PRUNE_INACTIVE_HOURS", "0.01")
    settings = ServerSettings(_env_file=None)
    assert (settings.prune_interval_seconds, settings.prune_inactive_hours) == (2.5, 0.01)
    with pytest.raises(ValueError, match="greater than 0"):
        ServerSettings(_env_file=None, prune_interval_seconds=0)
