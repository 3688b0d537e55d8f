"""How long a streamed turn's first delta takes from the model to the client, per transport.

A fake model (`StampedModel`) waits FIRST_DELAY (50 ms, a model thinking) before its first
token, then gives a few more, GAP apart. Its first delta's text is the monotonic clock at the
moment it yields it (`t<nanoseconds> `). The client, in another process on the same machine
(CLOCK_MONOTONIC is system-wide), reads the stream as raw bytes and notes the clock when the
bytes holding that stamp arrive: the difference is what the server adds between the model
producing the first token and the user receiving it (the agent, the turn task, the
transport's encoding, uvicorn, the socket), the client's reading included.

Three transports of one `create_app` server (`python -m bench.http_server tenantry --model
stamped`, SQLite in a temporary directory): `POST /v1/chat/stream` (SSE), the
OpenAI-compatible `POST /v1/chat/completions` with `stream: true`, and A2A's
`SendStreamingMessage`; at 1 and 100 concurrent streams, each client opening its next stream
when the last one ended. p50 and p99 against the target of 2 ms.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import Config, Report, summary_ms, table
from bench.http import servers
from tenantry.models.base import ModelBase, ModelResponse, StreamItem
from tenantry.types import Message, ToolSpec

FIRST_DELAY = 0.050
GAP = 0.010
TOKENS = ("one ", "two ", "three ")
TARGET_MS = 2.0
STAMP = re.compile(rb"t(\d{6,}) ")


class StampedModel(ModelBase):
    """Streams `t<monotonic ns> ` FIRST_DELAY after it is called, then TOKENS, GAP apart."""

    name = "stamped"

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        await asyncio.sleep(FIRST_DELAY)
        return ModelResponse(content=f"t{time.monotonic_ns()} " + "".join(TOKENS))

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        await asyncio.sleep(FIRST_DELAY)
        first = f"t{time.monotonic_ns()} "
        yield first
        for token in TOKENS:
            await asyncio.sleep(GAP)
            yield token
        yield ModelResponse(content=first + "".join(TOKENS))


def request_body(transport: str, user: str) -> tuple[str, dict[str, str], bytes]:
    """The path, extra headers and body of one streamed turn of `user` on `transport`."""
    text = "tell me something"
    if transport == "chat":
        body: dict[str, Any] = {"message": text, "user_id": user}
        return "/v1/chat/stream", {}, json.dumps(body).encode()
    if transport == "openai":
        body = {"model": "x", "messages": [{"role": "user", "content": text}], "stream": True}
        return "/v1/chat/completions", {}, json.dumps({**body, "user": user}).encode()
    message = {
        "role": "ROLE_USER",
        "messageId": uuid.uuid4().hex,
        "contextId": user,  # open mode: the context is the tenant
        "parts": [{"text": text}],
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {}}
    body["params"] = {"message": message}
    return "/a2a/jsonrpc", {"A2A-Version": "1.0"}, json.dumps(body).encode()


async def one_stream(host: str, port: int, transport: str, user: str) -> tuple[float, float]:
    """Run one streamed turn; give (first delta: model to client, request to first delta),
    in seconds."""
    path, headers, body = request_body(transport, user)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        sent = time.monotonic_ns()
        writer.write(head + body)
        seen = b""
        latency = None
        while chunk := await reader.read(65536):
            arrived = time.monotonic_ns()
            if latency is None:
                seen += chunk
                found = STAMP.search(seen)
                if found is not None:
                    latency = (arrived - int(found.group(1))) / 1e9, (arrived - sent) / 1e9
        if not seen.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{transport}: {seen[:300]!r}")
        if latency is None:
            raise RuntimeError(f"{transport}: no stamped delta in {seen[:500]!r}")
        return latency
    finally:
        writer.close()


async def measure_level(url: str, transport: str, clients: int, each: int) -> dict[str, Any]:
    host, port = "127.0.0.1", int(url.split(":")[2].split("/")[0])
    firsts: list[float] = []
    ttfts: list[float] = []

    async def client(n: int) -> None:
        for i in range(each):
            first, ttft = await one_stream(host, port, transport, f"ft-{transport}-{n}-{i % 3}")
            firsts.append(first)
            ttfts.append(ttft)

    await one_stream(host, port, transport, "ft-warm")
    await asyncio.gather(*(client(n) for n in range(clients)))
    return {"first_delta": summary_ms(firsts), "request_to_first_delta": summary_ms(ttfts)}


async def measure(url: str, levels: dict[int, int]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for transport in ("chat", "openai", "a2a"):
        results[transport] = {}
        for clients, each in levels.items():
            print(f"first_token: {transport}, {clients} stream(s)", flush=True)
            results[transport][str(clients)] = await measure_level(url, transport, clients, each)
    return results


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for transport, by_level in results.items():
        for clients, r in by_level.items():
            p50, p99 = r["first_delta"]["p50_ms"], r["first_delta"]["p99_ms"]
            found.append(
                {
                    "transport": transport,
                    "streams": int(clients),
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "met": p50 <= TARGET_MS and p99 <= TARGET_MS,
                }
            )
    return found


NAMES = {
    "chat": "/v1/chat/stream",
    "openai": "/v1/chat/completions (stream)",
    "a2a": "A2A SendStreamingMessage",
}


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        f"A fake model waits {FIRST_DELAY * 1000:g} ms, then streams its first delta (stamped "
        f"with the monotonic clock as it yields it) and {len(TOKENS)} more, "
        f"{GAP * 1000:g} ms apart. **first delta** is the time from that yield to the client "
        "(another process, raw HTTP/1.1 on asyncio) receiving the bytes that hold it: what "
        "the server adds, the client's reading included. **request to first delta** is from "
        "the client sending its request (the model's wait included). Each client opens its "
        "next stream when the last ended; one `create_app` server (SQLite, open mode, rate "
        "limit off) on 127.0.0.1.",
        "",
        "## First delta: model to client",
        "",
    ]
    rows = []
    for transport, by_level in results.items():
        for clients, r in by_level.items():
            first, ttft = r["first_delta"], r["request_to_first_delta"]
            rows.append(
                [
                    NAMES[transport],
                    int(clients),
                    first["n"],
                    first["p50_ms"],
                    first["p99_ms"],
                    ttft["p50_ms"],
                    ttft["p99_ms"],
                ]
            )
    lines += table(
        [
            "transport",
            "streams",
            "n",
            "first delta p50 ms",
            "p99 ms",
            "request to first delta p50 ms",
            "p99 ms",
        ],
        rows,
    )
    lines += ["", "## Where we stand", ""]
    lines += table(
        ["target", "measured p50 / p99", "met"],
        [
            [
                f"{NAMES[v['transport']]}, {v['streams']} stream(s): first delta ≤ "
                f"{TARGET_MS:g} ms at p50 and p99",
                f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f} ms",
                "yes" if v["met"] else "no",
            ]
            for v in verdicts(results)
        ],
    )
    return lines


def _run_loop(work: Any) -> Any:
    """Run the client on uvloop when installed (as bench.loadgen does): less client time in
    what is measured."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def run(config: Config) -> list[Report]:
    levels: dict[int, int] = config.pick({1: 200, 100: 10}, {1: 5, 10: 2})
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'bench.db'}"
        specs = {"stamped": ["tenantry", "--store", store, "--model", "stamped"]}
        with servers(specs) as urls:
            results = _run_loop(measure(urls["stamped"], levels))
    workload = {
        "streams_per_client": {str(k): v for k, v in levels.items()},
        "first_delay_ms": FIRST_DELAY * 1000,
        "gap_ms": GAP * 1000,
        "tokens": 1 + len(TOKENS),
        "target_ms": TARGET_MS,
        "server": "bench.http_server tenantry --model stamped (SQLite, open mode)",
    }
    return [
        Report(
            name="first_token",
            title="Streaming: first delta from the model to the client",
            workload=workload,
            results={"transports": results, "verdicts": verdicts(results)},
            lines=markdown(results),
        )
    ]


__all__ = ["FIRST_DELAY", "StampedModel", "run"]
