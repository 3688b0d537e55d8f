"""Three `tenantry serve` replicas behind a real load balancer (Debian's HAProxy: round robin,
no stickiness, health check on /readyz), on PostgreSQL, on Redis and on Redis Cluster, with
API-key auth.

Through the balancer: the seed's curl session, byte for byte; then 50 users x 20 turns, 8
turns of each user at once on the same session, while one replica is killed with SIGKILL
and started again. Nothing acknowledged is lost, the balancer routes around the dead
replica, marks it up again once it answers /readyz, and sends it requests again. Every
request carries its turn's `Idempotency-Key`, and a request that died with the replica (502
or a closed connection) is resent with it until acknowledged: so no turn stays in doubt,
every turn is stored exactly once, and a resent turn that had in fact been committed is
answered with its stored reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    CLEANUPS,
    CLUSTER_BACKEND,
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    namespace_name,
    server_url,
)
from tests.server.conftest import Tenants, make_tenants
from tests.support.env import ROOT
from tests.support.haproxy import Balancer, haproxy
from tests.support.reliability.crash import until
from tests.support.reliability.session_load import (
    SessionLoad,
    check_histories,
    resend_with_key,
    user_ids,
)
from tests.support.replica_set import ReplicaSet, replica_set

pytestmark = pytest.mark.slow

REPLICAS = 3
USERS = 50
TURNS_PER_USER = 20
CONCURRENT_PER_USER = 8
KILL_AFTER_ACKNOWLEDGED = 200
"""The kill comes once this many turns were acknowledged: the load is flowing by then."""
VICTIM = "r1"
LOAD_TIMEOUT = 240.0
LOCK_TTL = 2.0
"""Seconds a Redis turn lock of the killed replica outlives it."""
SEED_USERS = ("user-a", "user-b")


@pytest.fixture(params=["postgres", "redis", CLUSTER_BACKEND])
async def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL on the shared test server (or the session's Redis Cluster), in a schema /
    key prefix of this test's own."""
    backend = str(request.param)
    name = namespace_name(tmp_path)
    if backend == "postgres":
        url = server_url(POSTGRES_URL_VARIABLE)
        yield f"{url}{'&' if '?' in url else '?'}schema={name}"
    elif backend == CLUSTER_BACKEND:
        url = request.getfixturevalue("redis_cluster_url")
        yield f"{url}/?prefix={name}&lock_ttl={LOCK_TTL:g}"
    else:
        url = server_url(REDIS_URL_VARIABLE)
        yield f"{url}{'&' if '?' in url else '?'}prefix={name}&lock_ttl={LOCK_TTL:g}"
    await CLEANUPS[backend](tmp_path)


def _readme_curl_session() -> list[tuple[str, str]]:
    """The seed's curl session in README's first section: (body sent, answer shown)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    calls = re.findall(r"-d '(\{.*?\})'\n# (\{.*?\})\n", readme)
    assert len(calls) == 4, "README's curl session changed; update this test"
    return calls


async def _requests_per_replica(
    http: httpx.AsyncClient, balancer: Balancer, before: dict[str, int]
) -> dict[str, int]:
    """The requests each replica got since `before` (a snapshot of `_sessions`)."""
    now = await _sessions(http, balancer)
    return {name: now[name] - before.get(name, 0) for name in now}


async def _sessions(http: httpx.AsyncClient, balancer: Balancer) -> dict[str, int]:
    return {name: s.sessions for name, s in (await balancer.servers(http)).items()}


async def _seed_session(http: httpx.AsyncClient, balancer: Balancer, tenants: Tenants) -> None:
    """The README's four curl calls, each with its user's API key: the very bytes README
    shows, served by all three replicas in turn (round robin, no stickiness)."""
    before = await _sessions(http, balancer)
    for body, shown in _readme_curl_session():
        user = json.loads(body)["user_id"]
        headers = {"Content-Type": "application/json", **tenants.headers(user)}
        response = await http.post("/chat", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.content == shown.encode()
    spread = await _requests_per_replica(http, balancer, before)
    assert sorted(spread.values()) == [1, 1, 2], f"not round robin: {spread}"


async def _restarted_replica_serves(
    http: httpx.AsyncClient, balancer: Balancer, tenants: Tenants
) -> dict[str, int]:
    """Six seed questions after the load: every replica, the restarted one too, answers
    some of them, from the shared store."""
    before = await _sessions(http, balancer)
    for _ in range(2 * REPLICAS):
        response = await http.post(
            "/chat",
            json={"user_id": "user-a", "message": "What is my name?"},
            headers=tenants.headers("user-a"),
        )
        assert response.content == b'{"user_id":"user-a","reply":"Your name is Alice."}'
    spread = await _requests_per_replica(http, balancer, before)
    assert all(spread.values()), f"a replica got none of the requests: {spread}"
    return spread


async def _load_kill_restart(
    http: httpx.AsyncClient, balancer: Balancer, replicas: ReplicaSet, load: SessionLoad
) -> dict[str, float]:
    """Run the load; kill VICTIM mid-load, wait for HAProxy to mark it down, start it again
    on its port, wait for HAProxy to mark it up; wait for the load to end. Give the figures."""
    figures: dict[str, float] = {}
    running = asyncio.ensure_future(load.run())
    try:
        await until(
            lambda: len(load.acknowledged()) >= KILL_AFTER_ACKNOWLEDGED,
            LOAD_TIMEOUT,
            f"{KILL_AFTER_ACKNOWLEDGED} turns acknowledged",
        )
        assert not running.done(), "the load ended before the kill"
        figures["in_flight_at_kill"] = len(load.in_flight())
        killed, gone = await replicas.kill(VICTIM)
        figures["killed"], figures["gone"] = killed, gone
        await balancer.wait_status(http, VICTIM, "DOWN", 10)
        figures["down_after_s"] = time.monotonic() - killed
        restarted = time.monotonic()
        await replicas.start(VICTIM)
        figures["restart_listening_s"] = time.monotonic() - restarted
        await balancer.wait_status(http, VICTIM, "UP", 30)
        figures["up_after_restart_s"] = time.monotonic() - restarted
        figures["load_running_when_up"] = float(not running.done())
        served = (await _sessions(http, balancer))[VICTIM]
        await asyncio.wait_for(asyncio.shield(running), LOAD_TIMEOUT)
        figures["served_by_restarted_during_load"] = (await _sessions(http, balancer))[
            VICTIM
        ] - served
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
    return figures


async def test_three_replicas_behind_haproxy_lose_no_acknowledged_turn_when_one_is_killed(
    shared_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    users = user_ids(USERS)
    tenants = make_tenants([*users, *SEED_USERS])
    env = {"TENANTRY_STORE_URL": shared_url, "TENANTRY_MODEL": "offline", **tenants.env()}
    limits = httpx.Limits(
        max_connections=USERS * CONCURRENT_PER_USER + 10,
        max_keepalive_connections=USERS * CONCURRENT_PER_USER + 10,
        keepalive_expiry=2.0,  # well before HAProxy's keep-alive timeout closes them
    )
    with replica_set(REPLICAS, tmp_path, env, "--rate-limit", "0") as replicas:
        await replicas.start()
        with haproxy(replicas.servers, tmp_path) as balancer:
            async with httpx.AsyncClient(base_url=balancer.url, timeout=60, limits=limits) as http:
                for name, _ in replicas.servers:
                    await balancer.wait_status(http, name, "UP", 30)
                await _seed_session(http, balancer, tenants)
                load = SessionLoad(
                    http,
                    {u: tenants.keys[u] for u in users},
                    TURNS_PER_USER,
                    CONCURRENT_PER_USER,
                    resend=resend_with_key,
                )
                load_started = time.monotonic()
                figures = await _load_kill_restart(http, balancer, replicas, load)
                load_seconds = time.monotonic() - load_started
                spread = await _restarted_replica_serves(http, balancer, tenants)
                check = await check_histories(
                    http,
                    load,
                    tenants.admin_key,
                    [(figures["killed"], figures["gone"])],
                    also_users=SEED_USERS,
                )
    print(
        f"\n{shared_url.split(':', 1)[0]} behind HAProxy: {check.acknowledged} turns "
        f"acknowledged, {figures['in_flight_at_kill']:.0f} in flight at the kill, "
        f"{check.resent} failed with it (502 / closed) and were resent with their key, "
        f"{check.replayed} of them answered with the reply stored before the kill; "
        f"{check.in_doubt} left in doubt; {check.stored} stored. Marked down "
        f"{figures['down_after_s']:.2f}s "
        f"after the kill; restarted replica listening after "
        f"{figures['restart_listening_s']:.2f}s, up after {figures['up_after_restart_s']:.2f}s, "
        f"served {figures['served_by_restarted_during_load']:.0f} load requests; "
        f"after the load {spread}. Load {load_seconds:.1f}s, test "
        f"{time.monotonic() - started:.1f}s."
    )
    assert check.problems == [], "\n".join(check.problems[:30])
    assert check.in_doubt == 0
    assert check.acknowledged == check.stored == USERS * TURNS_PER_USER  # each turn once
    assert check.replayed <= check.resent
    assert figures["in_flight_at_kill"] > 0, "the kill fell outside the load"
