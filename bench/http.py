"""`POST /v1/chat` requests/s and latency, against a bare FastAPI endpoint (the ceiling).

Three servers, each in its own process with the same uvicorn settings (`bench.http_server`):
bare FastAPI (same JSON in and out, no work), tenantry with an in-memory store and tenantry
with SQLite in a temporary directory (open mode, rate limit off, a model that answers at
once). A separate process (`bench.loadgen`) drives each over loopback with 1, 100 and 1000
concurrent keep-alive clients, spreading requests over 10 000 users, after a warm-up, bounded
in requests and seconds. Servers and the generator share the machine's cores; the servers
are measured in rotating order, the same generator for all.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.children import ROOT, clean_env
from bench.common import Config, Report, table

TARGET_RATIO = 0.50
TARGET_CLIENTS = 100
USERS = 10_000


def wait_listening(port: int, process: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {seconds:g}s")


@contextmanager
def servers(specs: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """Run `python -m bench.http_server ARGS` for every spec at once until the block ends;
    give each one's chat URL."""
    with ExitStack() as stack:
        started = {name: stack.enter_context(_process(args)) for name, args in specs.items()}
        yield {name: _url_of(process, errors) for name, (process, errors) in started.items()}


@contextmanager
def _process(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], Any]]:
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.http_server", *args],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            yield process, errors
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _url_of(process: subprocess.Popen[str], errors: Any) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.wait(15)
        errors.seek(0)
        raise RuntimeError(f"bench.http_server failed: {errors.read()}")
    port = int(line.split()[1])
    wait_listening(port, process)
    return f"http://127.0.0.1:{port}/v1/chat"


def load(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the jobs one after the other in one load-generator process; give its summaries."""
    seconds = sum(job["seconds"] + 30 for job in jobs)
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--jobs", "-"],
        input=json.dumps(jobs),
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def job(url: str, clients: int, requests: int, seconds: float, client: str) -> dict[str, Any]:
    warmup = max(clients, requests // 10)
    return {
        "url": url,
        "concurrency": clients,
        "requests": requests,
        "seconds": seconds,
        "warmup": warmup,
        "users": USERS,
        "client": client,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median requests/s (its latencies go with it), and every run's rate."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_requests_per_s"] = [r["requests_per_s"] for r in runs]
    return chosen


def measure(
    urls: dict[str, str],
    levels: tuple[int, ...],
    requests: dict[int, int],
    seconds: float,
    runs: int,
    client: str = "raw",
) -> dict[str, dict[str, Any]]:
    """Every server at every level, `runs` times, the order of servers rotating; the median
    run of each."""
    names = list(urls)
    plan: list[tuple[str, int]] = []
    for run in range(runs):
        for level in levels:
            plan += [
                (name, level) for name in names[run % len(names) :] + names[: run % len(names)]
            ]
    summaries = load(
        [job(urls[name], level, requests[level], seconds, client) for name, level in plan]
    )
    collected: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {level: [] for level in levels} for name in names
    }
    for (name, level), summary in zip(plan, summaries, strict=True):
        collected[name][level].append(summary)
    return {
        name: {str(level): median_run(runs) for level, runs in by_level.items()}
        for name, by_level in collected.items()
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def markdown(
    results: dict[str, Any], levels: tuple[int, ...], cross_check: dict[str, Any] | None
) -> list[str]:
    bare = results["bare"]
    lines = [
        '`POST /v1/chat` with `{"message", "user_id"}` (10 000 users in turn), each client '
        "on its own keep-alive connection sending its next request when the reply arrived. "
        "Servers: bare FastAPI (one route, same request and response models, no work: the "
        "ceiling), tenantry's `create_app` (open mode, rate limit off, a `FunctionModel` that "
        'answers "ok" at once) over an in-memory store and over SQLite in a temporary '
        "directory. Each server is one uvicorn process with the same settings (uvloop, "
        "httptools, no access log) on 127.0.0.1. The load generator is a separate Python "
        "process (hand-written HTTP/1.1 on asyncio streams with uvloop) on the same 2 cores: "
        "it takes CPU the server could use, equally for every server, so the ceiling is that "
        "of this machine with this generator, not of FastAPI alone.",
        "",
        "## Requests/s and latency",
        "",
    ]
    rows = []
    for name, by_level in results.items():
        for level in levels:
            r = by_level[str(level)]
            rows.append(
                [
                    name,
                    level,
                    r["requests_per_s"],
                    r["p50_ms"],
                    r["p99_ms"],
                    sum(r["errors"].values()),
                    f"{ratio(r['requests_per_s'], bare[str(level)]['requests_per_s']):.0%}",
                    ", ".join(f"{x:,.0f}" for x in r["runs_requests_per_s"]),
                ]
            )
    lines += table(
        ["server", "clients", "requests/s", "p50 ms", "p99 ms", "errors", "vs bare", "runs"],
        rows,
    )
    if cross_check:
        lines += [
            "",
            "## The same with httpx as the generator",
            "",
            "`httpx.AsyncClient` (connection limit = clients) instead of the hand-written "
            "client, same servers, 2000 requests or 5 s. httpx spends far more CPU per "
            "request than the servers do, and with many requests in flight its own connection "
            "pool becomes the bottleneck, so these figures measure httpx more than the "
            "servers: this is why it is not the main generator.",
            "",
        ]
        rows = []
        for name, by_level in cross_check.items():
            for level, r in by_level.items():
                base = cross_check["bare"][level]["requests_per_s"]
                rows.append(
                    [
                        name,
                        int(level),
                        r["requests_per_s"],
                        r["p50_ms"],
                        r["p99_ms"],
                        f"{ratio(r['requests_per_s'], base):.0%}",
                    ]
                )
        lines += table(["server", "clients", "requests/s", "p50 ms", "p99 ms", "vs bare"], rows)
    lines += ["", "## Where we stand", ""]
    verdicts = []
    level = str(TARGET_CLIENTS if TARGET_CLIENTS in levels else max(levels))
    for name in results:
        if name == "bare":
            continue
        got = ratio(results[name][level]["requests_per_s"], bare[level]["requests_per_s"])
        verdicts.append(
            [
                f"{name}: ≥ 50 % of bare at {level} clients",
                f"{got:.0%}",
                "yes" if got >= TARGET_RATIO else "no",
            ]
        )
    lines += table(["target", "measured", "met"], verdicts)
    return lines


def plot(results: dict[str, Any], levels: tuple[int, ...], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(results)
    for i, (name, by_level) in enumerate(results.items()):
        xs = [x + i * width for x in range(len(levels))]
        left.bar(xs, [by_level[str(n)]["requests_per_s"] for n in levels], width, label=name)
        right.bar(xs, [by_level[str(n)]["p99_ms"] for n in levels], width, label=name)
    for ax, title in ((left, "requests/s"), (right, "p99 latency (ms)")):
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(levels))], [str(n) for n in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_yscale("log")
        ax.set_title(f"POST /v1/chat: {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "http.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def run(config: Config) -> list[Report]:
    levels: tuple[int, ...] = config.pick((1, 100, 1000), (1, 10, 50))
    requests: dict[int, int] = config.pick(
        {1: 2500, 100: 10_000, 1000: 15_000}, {1: 30, 10: 60, 50: 100}
    )
    seconds: float = config.pick(10.0, 1.0)
    runs: int = config.pick(2, 1)
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        specs = {
            "bare": ["bare"],
            "tenantry, memory": ["tenantry", "--store", "memory://"],
            "tenantry, SQLite": ["tenantry", "--store", f"sqlite:///{Path(tmp) / 'bench.db'}"],
        }
        if config.smoke:  # each tenantry server costs a second of start-up: one is enough
            del specs["tenantry, memory"]
        with servers(specs) as urls:
            print(f"http: measuring {', '.join(urls)} at {levels} clients", flush=True)
            results = measure(urls, levels, requests, seconds, runs)
            cross_check = None
            if not config.smoke:
                subset = {name: urls[name] for name in ("bare", "tenantry, memory")}
                cross_check = measure(subset, (1, 100), {1: 2000, 100: 2000}, 5.0, 1, "httpx")
    workload = {
        "levels": list(levels),
        "users": USERS,
        "requests_at_most": {str(k): v for k, v in requests.items()},
        "seconds_at_most": seconds,
        "warmup": "max(clients, requests / 10)",
        "runs": runs,
        "generator": "bench.loadgen, hand-written HTTP/1.1 on asyncio streams (uvloop)",
        "uvicorn": "one process, loop auto (uvloop), http auto (httptools), access log off",
    }
    return [
        Report(
            name="http",
            title="HTTP: POST /v1/chat against bare FastAPI",
            workload=workload,
            results={"generator": results, "httpx_generator": cross_check},
            lines=markdown(results, levels, cross_check),
            plots=[plot(results, levels, config.out)],
        )
    ]


__all__ = ["run"]
