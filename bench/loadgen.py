"""HTTP load generator for `bench.http`, run in its own process:

    python -m bench.loadgen URL --concurrency 100 --requests 5000 --seconds 10 [--client raw]
    python -m bench.loadgen --jobs - < jobs.json    # a JSON list of jobs, run one by one

`concurrency` clients, each on its own keep-alive connection, send `POST /v1/chat`-shaped
JSON bodies one after the other (a closed loop: a client sends its next request when the
previous reply arrived) until `requests` replies arrived or `seconds` passed, after `warmup`
requests that are not counted. Request i speaks for user `user-{i % users}`. Prints one JSON
object per job (a list with --jobs): replies, errors, seconds, requests/s, latency percentiles.

Two clients, the same for every server measured:

- `raw` (default): HTTP/1.1 written and parsed by hand on asyncio streams (uvloop when
  installed). It costs a few tens of microseconds per request, so on a shared 2-core machine
  more of the CPU goes to the server under test;
- `httpx`: `httpx.AsyncClient` with a connection limit equal to the concurrency; several times
  more CPU per request, so it caps what a fast server can show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Send = Callable[[bytes], Awaitable[int]]
"""Sends one request body; gives the response's status code."""


@dataclass
class Phase:
    """Hands out request numbers until `count` were handed out or `seconds` passed since
    `begin()`; collects the latencies of the replies."""

    count: int
    seconds: float
    start: int = 0
    handed: int = 0
    began: float = 0.0
    ended: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def begin(self) -> None:
        self.began = time.perf_counter()

    def finish(self) -> None:
        self.ended = time.perf_counter()

    def next(self) -> int | None:
        if self.handed >= self.count or time.perf_counter() - self.began >= self.seconds:
            return None
        self.handed += 1
        return self.start + self.handed - 1


def body(i: int, users: int) -> bytes:
    text = f"hello, this is request {i}"
    return json.dumps({"message": text, "user_id": f"user-{i % users}"}).encode()


async def client_loop(send: Send, phase: Phase, users: int) -> None:
    while (i := phase.next()) is not None:
        started = time.perf_counter()
        try:
            status = await send(body(i, users))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            phase.errors[type(exc).__name__] = phase.errors.get(type(exc).__name__, 0) + 1
            return
        if status == 200:
            phase.latencies.append(time.perf_counter() - started)
        else:
            phase.errors[str(status)] = phase.errors.get(str(status), 0) + 1


class RawConnection:
    """One keep-alive HTTP/1.1 connection; requests with Content-Length, no pipelining."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def send(self, payload: bytes) -> int:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.head + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_raw(url: str, concurrency: int, phases: list[Phase], users: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conns = [RawConnection(host, port, parts.path or "/") for _ in range(concurrency)]
    await asyncio.gather(*(conn.open() for conn in conns))
    try:
        for phase in phases:
            phase.begin()
            await asyncio.gather(*(client_loop(conn.send, phase, users) for conn in conns))
            phase.finish()
    finally:
        for conn in conns:
            await conn.close()


async def run_httpx(url: str, concurrency: int, phases: list[Phase], users: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def send(payload: bytes) -> int:
            response = await client.post(url, content=payload, headers=headers)
            return response.status_code

        for phase in phases:
            phase.begin()
            await asyncio.gather(*(client_loop(send, phase, users) for _ in range(concurrency)))
            phase.finish()


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def summary(phase: Phase) -> dict[str, object]:
    ordered = sorted(phase.latencies)
    seconds = phase.ended - phase.began
    return {
        "replies": len(ordered),
        "errors": phase.errors,
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(ordered) / seconds, 1) if seconds > 0 else 0.0,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else 0.0,
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
    }


@dataclass(frozen=True)
class Job:
    """One measurement: `concurrency` clients against `url`."""

    url: str
    concurrency: int = 1
    requests: int = 1000
    seconds: float = 10.0
    warmup: int = 100
    users: int = 10_000
    client: str = "raw"


async def generate(job: Job) -> dict[str, object]:
    """Warm up (connections opened, caches filled), then measure, on the same connections."""
    warmup = Phase(job.warmup, seconds=max(job.seconds, 10.0))
    measured = Phase(job.requests, seconds=job.seconds, start=job.warmup)
    runner = run_raw if job.client == "raw" else run_httpx
    await runner(job.url, job.concurrency, [warmup, measured], job.users)
    return summary(measured)


async def generate_all(jobs: list[Job]) -> list[dict[str, object]]:
    results = []
    for n, job in enumerate(jobs, 1):
        print(f"loadgen {n}/{len(jobs)}: {job.concurrency} clients, {job.url}", file=sys.stderr)
        results.append(await generate(job))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("url", nargs="?", help="one job against this URL")
    parser.add_argument("--jobs", help="instead: a JSON list of Job fields ('-': stdin)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    args = parser.parse_args(argv)
    if args.jobs:
        text = sys.stdin.read() if args.jobs == "-" else args.jobs
        jobs = [Job(**fields) for fields in json.loads(text)]
    elif args.url:
        options = vars(args)
        jobs = [Job(**{k: options[k] for k in Job.__dataclass_fields__})]
    else:
        parser.error("give a URL or --jobs")
    try:
        import uvloop
    except ImportError:
        results = asyncio.run(generate_all(jobs))
    else:
        results = uvloop.run(generate_all(jobs))
    print(json.dumps(results if args.jobs else results[0]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
