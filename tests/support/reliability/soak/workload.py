"""The soak's traffic: mixed requests from many tenants, each checked as it comes back.

The traffic is paced (a fixed offered rate, at most `concurrency` requests in flight): chat,
streamed chat, OpenAI-compatible chat, session lists, message reads, session and user
deletes, over `tenants` users. Every message a tenant sends carries the tenant's token, and
every read is checked for another tenant's token. Some chats open a session that is never
used again, so TTL pruning has something to delete; at the end the run checks that every
such session old enough is gone and that recently used ones are still there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from tenantry.tenancy import split_tenant_id
from tests.support.reliability.soak.config import JWT_SECRET, Record, SoakConfig

OPERATIONS = {
    "chat": 30,
    "stream": 12,
    "completions": 5,
    "sessions": 15,
    "messages": 28,
    "delete_session": 7,
    "delete_user": 3,
}
"""Relative weights of the request kinds."""
EPHEMERAL_SHARE = 0.2
"""Share of chats that open a session never used again (for pruning to delete)."""
HOT_SHARE, HOT_TRAFFIC = 0.1, 0.5
"""10 % of the tenants get half of the traffic; the rest share the other half."""


class Tenants:
    """Tenant ids (with ':' and unicode), their secret tokens and their JWTs."""

    def __init__(self, count: int, seed: int) -> None:
        self.ids = [f"soak:{i:05d}-ü" for i in range(count)]
        self.hot = self.ids[: max(1, int(count * HOT_SHARE))]
        self._seed = seed
        self._tokens: dict[str, str] = {}
        self._jwts: dict[str, str] = {}

    def token(self, tenant: str) -> str:
        if tenant not in self._tokens:
            digest = hashlib.blake2b(f"{self._seed}/{tenant}".encode(), digest_size=6)
            self._tokens[tenant] = "T" + digest.hexdigest()
        return self._tokens[tenant]

    def headers(self, tenant: str) -> dict[str, str]:
        if tenant not in self._jwts:
            org, user = split_tenant_id(tenant)  # "soak:00001-ü" is user "00001-ü" of org "soak"
            claims = {"org": org, "sub": user, "exp": int(time.time()) + 86_400}
            self._jwts[tenant] = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {self._jwts[tenant]}"}

    def pick(self, rng: random.Random) -> str:
        return rng.choice(self.hot if rng.random() < HOT_TRAFFIC else self.ids)


@dataclass
class Ledger:
    """What the traffic did that the end checks need: sessions opened once, chats, deletes."""

    ephemeral: list[tuple[float, str, str]] = field(default_factory=list)
    last_chat: dict[tuple[str, str], float] = field(default_factory=dict)
    deleted_user_at: dict[str, float] = field(default_factory=dict)
    deleted_session_at: dict[tuple[str, str], float] = field(default_factory=dict)


def _done_user(events: str) -> str | None:
    """Give the user id of a chat stream's `done` event (None if there is none)."""
    _, found, rest = events.partition("event: done\ndata: ")
    return json.loads(rest.split("\n", 1)[0])["user_id"] if found else None


class Traffic:
    def __init__(self, client: httpx.AsyncClient, config: SoakConfig, started: float) -> None:
        self.client = client
        self.config = config
        self.started = started
        self.rng = random.Random(config.seed)
        self.tenants = Tenants(config.tenants, config.seed)
        self.ledger = Ledger()
        self.records: list[Record] = []
        self.violations: list[str] = []
        self.sequence = 0
        self.kinds = list(OPERATIONS)
        self.weights = list(OPERATIONS.values())

    def now(self) -> float:
        return time.monotonic() - self.started

    def _violation(self, text: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(text)

    def _session(self, tenant: str, ephemeral: bool) -> str:
        token = self.tenants.token(tenant)
        if ephemeral:
            self.sequence += 1
            return f"e{self.sequence}-{token}"
        return f"s{self.rng.randrange(3)}-{token}"

    def _check_contents(self, tenant: str, messages: Sequence[dict[str, Any]], where: str) -> None:
        token = self.tenants.token(tenant)
        for message in messages:
            if token not in message.get("content", ""):
                self._violation(f"{where} of {tenant}: {str(message.get('content'))[:80]!r}")

    async def one(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        tenant = self.tenants.pick(self.rng)
        ephemeral = kind == "chat" and self.rng.random() < EPHEMERAL_SHARE
        session = self._session(tenant, ephemeral)
        user_path = f"/v1/users/{quote(tenant, safe='')}"
        session_path = f"{user_path}/sessions/{quote(session, safe='')}"
        token = self.tenants.token(tenant)
        text = f"{token} says hello {self.sequence}"
        headers = self.tenants.headers(tenant)
        started = self.now()
        try:
            if kind == "chat":
                body = {"message": text, "session_id": session}
                response = await self.client.post("/v1/chat", json=body, headers=headers)
            elif kind == "stream":
                body = {"message": text, "session_id": session}
                response = await self.client.post("/v1/chat/stream", json=body, headers=headers)
            elif kind == "completions":
                body = {
                    "model": "tenantry",
                    "messages": [{"role": "user", "content": text}],
                    "metadata": {"session_id": session},
                }
                response = await self.client.post(
                    "/v1/chat/completions", json=body, headers=headers
                )
            elif kind == "sessions":
                response = await self.client.get(f"{user_path}/sessions", headers=headers)
            elif kind == "messages":
                url = f"{session_path}/messages?limit=20"
                response = await self.client.get(url, headers=headers)
            elif kind == "delete_session":
                response = await self.client.delete(session_path, headers=headers)
            else:
                response = await self.client.delete(user_path, headers=headers)
        except httpx.HTTPError as exc:
            self.records.append((started, kind, self.now() - started, 0))
            self._violation(f"{kind} failed: {type(exc).__name__}: {exc}")
            return
        finished = self.now()
        self.records.append((started, kind, finished - started, response.status_code))
        self._judge(kind, tenant, session, response, started, finished, ephemeral)

    def _judge(
        self,
        kind: str,
        tenant: str,
        session: str,
        response: httpx.Response,
        started: float,
        finished: float,
        ephemeral: bool,
    ) -> None:
        status = response.status_code
        token = self.tenants.token(tenant)
        if status >= 500 or status in (400, 401, 403, 422):
            self._violation(f"{kind} of {tenant} answered {status}: {response.text[:200]}")
            return
        if kind in ("chat", "stream", "completions"):
            if status == 200:
                self.ledger.last_chat[(tenant, session)] = finished
                if ephemeral:
                    self.ledger.ephemeral.append((finished, tenant, session))
            if kind == "chat" and status == 200 and response.json()["user_id"] != tenant:
                self._violation(f"chat of {tenant} answered for {response.json()['user_id']}")
            if kind == "stream" and status == 200 and _done_user(response.text) != tenant:
                self._violation(f"stream of {tenant} did not end as {tenant}")
            if status == 200 and token not in response.text:
                self._violation(f"{kind} of {tenant}: reply without the tenant's token")
        elif kind == "sessions" and status == 200:
            strangers = [s for s in response.json()["sessions"] if not s.endswith(token)]
            if strangers:
                self._violation(f"sessions of {tenant} listed {strangers[:3]}")
        elif kind == "messages" and status == 200:
            self._check_contents(tenant, response.json()["messages"], "messages")
        elif kind == "delete_session" and status in (204, 404):
            self.ledger.deleted_session_at[(tenant, session)] = started
        elif kind == "delete_user" and status in (200, 404):
            self.ledger.deleted_user_at[tenant] = started

    async def run(self, until: float) -> None:
        """Offer `config.rate` requests a second until `until` (seconds since the start)."""
        gate = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.config.rate
        next_at = self.now()

        async def bounded() -> None:
            try:
                await self.one()
            finally:
                gate.release()

        while next_at < until:
            delay = next_at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            task = asyncio.create_task(bounded())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at = max(next_at + interval, self.now() - 1.0)  # never a burst to catch up
        if tasks:
            await asyncio.gather(*tasks)
