"""The background job machinery: serialised per user, parallel across users, bounded, and a
failure never escapes a job."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tenantry.errors import InvalidInput
from tenantry.memory.jobs import BackgroundJobs, Job


class Probe:
    """Jobs that record when they start and end, and wait for a gate if given one."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.running = 0
        self.most_running = 0

    def job(self, name: str, gate: asyncio.Event | None = None, fail: bool = False) -> Job:
        async def run() -> None:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.events.append(f"start {name}")
            try:
                if gate is not None:
                    await gate.wait()
                else:
                    await asyncio.sleep(0)
                if fail:
                    raise RuntimeError(f"{name} broke")
            finally:
                self.events.append(f"end {name}")
                self.running -= 1

        return run


async def test_jobs_of_one_user_run_one_at_a_time_in_order() -> None:
    jobs, probe = BackgroundJobs(), Probe()
    for n in range(5):
        jobs.submit("alice", "learn", probe.job(f"a{n}"))
    await jobs.flush()
    assert probe.most_running == 1
    assert probe.events == [f"{edge} a{n}" for n in range(5) for edge in ("start", "end")]
    assert jobs.counts.get("learn", "done") == 5


async def test_nothing_of_a_user_is_kept_once_its_jobs_are_done() -> None:
    jobs, probe = BackgroundJobs(), Probe()
    gate = asyncio.Event()
    for user in ("alice", "bob"):
        jobs.submit(user, "learn", probe.job(user, gate))
    assert jobs.users() == 2
    gate.set()
    await jobs.flush()
    assert jobs.users() == 0
    assert jobs.pending() == 0


async def test_jobs_of_different_users_run_in_parallel() -> None:
    jobs, probe = BackgroundJobs(), Probe()
    gate = asyncio.Event()
    for user in ("alice", "bob", "carol"):
        jobs.submit(user, "learn", probe.job(user, gate))
    await asyncio.sleep(0)  # let the workers start: all three wait on the gate at once
    assert probe.running == 3
    gate.set()
    await jobs.flush()
    assert jobs.pending() == 0


async def test_a_full_queue_drops_the_new_job_and_counts_it() -> None:
    jobs, probe = BackgroundJobs(max_pending=2), Probe()
    gate = asyncio.Event()
    assert jobs.submit("alice", "learn", probe.job("first", gate))
    assert jobs.submit("bob", "summary", probe.job("second", gate))
    assert not jobs.submit("carol", "learn", probe.job("third", gate))
    assert jobs.counts.get("learn", "dropped") == 1
    gate.set()
    await jobs.flush()
    assert "start third" not in probe.events
    assert jobs.submit("carol", "learn", probe.job("fourth"))  # room again
    await jobs.flush()


async def test_a_failing_job_is_counted_and_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs, probe = BackgroundJobs(), Probe()
    jobs.submit("alice", "learn", probe.job("bad", fail=True))
    jobs.submit("alice", "learn", probe.job("good"))
    with caplog.at_level(logging.WARNING, logger="tenantry.memory"):
        await jobs.flush()
    assert jobs.counts.get("learn", "failed") == 1
    assert jobs.counts.get("learn", "done") == 1
    assert "end good" in probe.events
    assert "RuntimeError: bad broke" in caplog.text


async def test_a_flush_cut_short_leaves_the_job_running() -> None:
    jobs, probe = BackgroundJobs(), Probe()
    gate = asyncio.Event()
    jobs.submit("alice", "learn", probe.job("slow", gate))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await jobs.flush()
    assert jobs.pending() == 1
    gate.set()
    await jobs.flush()
    assert probe.events == ["start slow", "end slow"]


def test_jobs_left_when_a_loop_ends_are_cancelled_and_counted_as_dropped() -> None:
    jobs = BackgroundJobs()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        jobs.submit("alice", "learn", forever)
        jobs.submit("alice", "learn", forever)
        await asyncio.sleep(0)

    asyncio.run(main())  # asyncio.run cancels the tasks still pending when main returns
    assert jobs.counts.get("learn", "dropped") == 2


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="max_pending"):
        BackgroundJobs(max_pending=0)
