"""The randomised isolation workload from several processes sharing one store.

Every process derives the same scopes and tokens from one seed (`make_scopes(seed=...)`), so
all of them work on the same scopes at once, through their own store object and connections.
Each checks every read it makes for foreign tokens and reports its counts to the parent as one
line of JSON; once all are done, the parent reads every scope once more (`scan_scopes`).
Shared by `test_multiprocess_isolation.py` and `bench/soak.py`.

    python -m tests.support.reliability.isolation_processes '<plan as JSON>'

runs one worker: it opens the store, prints "ready", waits for a line on stdin (so that all
workers start together), runs its share of the operations and prints "report <JSON>".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tenantry import open_store
from tests.support.env import ROOT, with_checkout_on_path
from tests.support.reliability.workloads import (
    IsolationReport,
    TokenScope,
    make_scopes,
    random_isolation,
    scan_scopes,
)

START_TIMEOUT = 60.0
"""Seconds a worker gets to open its store and say it is ready."""


@dataclass(frozen=True)
class Plan:
    """What one worker does: its share of the operations over the shared scopes."""

    url: str
    users: int
    sessions_per_user: int
    operations: int
    concurrency: int = 32
    seed: int = 0
    scope_seed: int = 1

    def scopes(self) -> list[TokenScope]:
        return make_scopes(self.users, self.sessions_per_user, seed=self.scope_seed)


@dataclass
class ProcessesReport:
    """What the workers reported, one report each, and the parent's final scan."""

    workers: list[IsolationReport] = field(default_factory=list)
    final: IsolationReport = field(default_factory=IsolationReport)
    seconds: float = 0.0

    @property
    def total(self) -> IsolationReport:
        """Every worker's counts and violations together, and the final scan's violations."""
        total = IsolationReport()
        for report in self.workers:
            total.merge(report)
        total.violations += self.final.violations
        return total

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "processes": len(self.workers),
            "operations": total.operations,
            "turns": total.turns,
            "reads_checked": total.reads_checked + self.final.reads_checked,
            "final_scan_reads": self.final.reads_checked,
            "violations": total.to_dict()["violations"],
            "by_kind": total.by_kind,
            "seconds": round(self.seconds, 1),
            "operations_per_second": round(total.operations / self.seconds) if self.seconds else 0,
        }


def split(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` shares that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _spawn(plan: Plan) -> asyncio.subprocess.Process:
    env = with_checkout_on_path(os.environ)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.reliability.isolation_processes",
        json.dumps(asdict(plan)),
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**24,  # a report line can be long if there are violations
    )


async def _line(process: asyncio.subprocess.Process, timeout: float) -> str:  # noqa: ASYNC109
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    if not line:
        code = await asyncio.wait_for(process.wait(), 30)
        raise AssertionError(f"worker {process.pid} ended (exit code {code}) without reporting")
    return line.decode().strip()


async def run_processes(
    plan: Plan,
    *,
    processes: int,
    timeout: float = 600.0,  # noqa: ASYNC109 (it bounds several steps, not one await)
) -> ProcessesReport:
    """Run `plan.operations` operations split over `processes` workers that share the store at
    `plan.url` and the scopes; then read every scope from this process. Give the reports.

    Raises AssertionError if a worker does not start, report or exit in time (`timeout`
    seconds for the whole run); workers still running then are killed."""
    shares = split(plan.operations, processes)
    plans = [replace(plan, operations=n, seed=plan.seed * 1000 + i) for i, n in enumerate(shares)]
    workers = [await _spawn(p) for p in plans]
    result = ProcessesReport()
    try:
        for worker in workers:
            said = await _line(worker, START_TIMEOUT)
            assert said == "ready", f"worker {worker.pid} said {said!r}, expected 'ready'"
        started = time.perf_counter()
        for worker in workers:  # all at once, so their operations overlap
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        for worker in workers:
            said = await _line(worker, timeout)
            kind, _, body = said.partition(" ")
            assert kind == "report", f"worker {worker.pid} said {said[:200]!r}"
            result.workers.append(IsolationReport.from_dict(json.loads(body)))
            code = await asyncio.wait_for(worker.wait(), 60)
            assert code == 0, f"worker {worker.pid} exited with {code}"
        result.seconds = time.perf_counter() - started
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    async with open_store(plan.url) as store:
        await scan_scopes(store, plan.scopes(), result.final)
    return result


async def _work(plan: Plan) -> None:
    scopes = plan.scopes()
    async with open_store(plan.url) as store:
        await store.ping()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        report = await random_isolation(
            store,
            scopes,
            operations=plan.operations,
            concurrency=plan.concurrency,
            seed=plan.seed,
            final_scan=False,
        )
    print("report " + json.dumps(report.to_dict()), flush=True)


def main(argv: list[str]) -> None:
    (text,) = argv
    asyncio.run(_work(Plan(**json.loads(text))))


if __name__ == "__main__":
    main(sys.argv[1:])
