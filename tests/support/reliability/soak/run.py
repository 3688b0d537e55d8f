"""One soak run: start the server, offer the traffic while sampling, check pruning at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil

from tests.support.reliability.soak.config import SoakConfig, SoakResult
from tests.support.reliability.soak.report import judge, p99_ratio
from tests.support.reliability.soak.sampling import keep_sampling, running_server, sample
from tests.support.reliability.soak.workload import Traffic


async def _check_pruning(
    client: httpx.AsyncClient, traffic: Traffic, result: SoakResult, end: float
) -> None:
    """Every session opened once and idle for longer than the TTL plus a prune interval (and
    a margin) is gone; every session chatted in during the last third of the TTL is there."""
    config = traffic.config
    ledger = traffic.ledger
    old_enough = end - config.prune_inactive_seconds - config.prune_interval_seconds - 5.0
    candidates = [(t, u, s) for t, u, s in ledger.ephemeral if t < old_enough]
    for _, tenant, session in candidates[:200]:
        result.prune_checked += 1
        path = f"/v1/users/{quote(tenant, safe='')}/sessions/{quote(session, safe='')}/messages"
        response = await client.get(path, headers=traffic.tenants.headers(tenant))
        if response.status_code != 404:
            result.prune_survivors.append(f"{tenant}/{session}: {response.status_code}")
    recent_after = end - config.prune_inactive_seconds / 3
    recent = [
        (key, t)
        for key, t in ledger.last_chat.items()
        if t > recent_after
        and ledger.deleted_user_at.get(key[0], -1.0) < t
        and ledger.deleted_session_at.get(key, -1.0) < t
    ]
    for (tenant, session), _ in recent[:200]:
        result.recent_checked += 1
        path = f"/v1/users/{quote(tenant, safe='')}/sessions/{quote(session, safe='')}/messages"
        response = await client.get(path, headers=traffic.tenants.headers(tenant))
        if response.status_code != 200:
            result.recent_missing.append(f"{tenant}/{session}: {response.status_code}")


async def run_soak(config: SoakConfig, workdir: Path) -> SoakResult:
    """Run one soak in `workdir` (the SQLite file goes there); give everything measured."""
    result = SoakResult(config)
    db = workdir / "soak.db"
    with running_server(f"sqlite:///{db}", workdir, config) as server:
        process = psutil.Process(server.process.pid)
        # Idle connections go before uvicorn's keep-alive timeout (5 s) closes them, so no
        # request is sent on a connection the server is closing.
        limits = httpx.Limits(
            max_connections=config.concurrency,
            max_keepalive_connections=config.concurrency,
            keepalive_expiry=2.0,
        )
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            started = time.monotonic()
            traffic = Traffic(client, config, started)
            sampler = asyncio.create_task(
                keep_sampling(process, started, db, config.sample_every, result.samples)
            )
            try:
                result.seconds = config.seconds
                await traffic.run(until=result.seconds)
                result.p99_ratios.append(p99_ratio(config, traffic.records, result.seconds))
                while (
                    result.p99_ratios[-1] > config.p99_factor
                    and len(result.p99_ratios) <= config.extra_windows
                ):
                    result.seconds += config.window
                    await traffic.run(until=result.seconds)
                    result.p99_ratios.append(p99_ratio(config, traffic.records, result.seconds))
                result.samples.append(await asyncio.to_thread(sample, process, started, db))
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            await _check_pruning(client, traffic, result, traffic.now())
        result.requests = traffic.records
        result.violations = traffic.violations
        result.exit_code = server.stop()
        result.pruned_by_server = server.pruned
        result.log_tail = list(server.tail)[-30:]
    return result


def main(argv: list[str]) -> None:
    """python -m tests.support.reliability.soak [SECONDS]: a quick run, figures as JSON."""
    import tempfile

    seconds = float(argv[0]) if argv else 120.0
    config = SoakConfig(
        seconds=seconds,
        warmup=20.0,
        window=(seconds - 20.0) / 2,
        prune_inactive_seconds=15.0,
        prune_interval_seconds=5.0,
    )
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(run_soak(config, Path(workdir)))
    print(json.dumps(judge(result), indent=2))
