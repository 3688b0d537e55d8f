"""`POST /v1/chat` under `wrk`: bare FastAPI against `tenantry serve`, side by side in one run.

`wrk` (a C load generator, Debian package `wrk`) costs the servers far less CPU than any
Python client, so on a small machine more of it goes to the server measured. Three servers
run at once, each one uvicorn process on 127.0.0.1 (idle ones cost nothing):

- bare: FastAPI, one `POST /v1/chat` route with the same request and response models as
  tenantry's and no work (`python -m bench.http_server bare`): the ceiling;
- `tenantry serve --store memory://` and `tenantry serve` on a SQLite file in a temporary
  directory (the default deployment): the real command with its defaults (offline model,
  open mode, info log level with its access log to a file), but `--rate-limit 0`, since 1,000
  users at thousands of requests per second would otherwise measure the 429 path.

`bench/wrk_chat.lua` sends the chat requests, the users in turn. Each (server, connections)
pair is measured `runs` times after a warm-up, the order of servers rotating from run to run;
the median run is reported. Without `wrk` on PATH the suite is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.children import clean_env
from bench.common import Config, Report, table
from bench.http import wait_listening

SCRIPT = Path(__file__).with_name("wrk_chat.lua")
USERS = 1000
THREADS = 2
TARGETS = {"tenantry serve, memory": 0.70, "tenantry serve, SQLite": 0.50}
MISSING = (
    "skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk; macOS: brew install "
    "wrk); the Python-generator view of the same servers is the `http` suite"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _server(command: list[str], cwd: Path, log: Path) -> Iterator[int]:
    """Run one server until the block ends; give its port."""
    port = free_port()
    with log.open("w") as errors:
        process = subprocess.Popen(
            [arg.replace("{port}", str(port)) for arg in command],
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            if "{port}" not in " ".join(command):  # bench.http_server picks and says its port
                assert process.stdout is not None
                line = process.stdout.readline()
                if not line.startswith("PORT "):
                    raise RuntimeError(f"{command} failed: {log.read_text()[-2000:]}")
                port = int(line.split()[1])
            try:
                wait_listening(port, process)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}: {log.read_text()[-2000:]}") from None
            yield port
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def commands(tmp: Path) -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("tenantry")  # the console script of this venv
    tenantry = [str(script), "serve", "--port", "{port}", "--rate-limit", "0"]
    return {
        "bare FastAPI": [sys.executable, "-m", "bench.http_server", "bare"],
        "tenantry serve, memory": [*tenantry, "--store", "memory://"],
        "tenantry serve, SQLite": [*tenantry, "--store", f"sqlite:///{tmp / 'bench.db'}"],
    }


@contextmanager
def servers(tmp: Path) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        urls = {}
        for name, command in commands(tmp).items():
            log = tmp / f"{name.replace(' ', '_').replace(',', '')}.log"
            port = stack.enter_context(_server(command, tmp, log))
            urls[name] = f"http://127.0.0.1:{port}/v1/chat"
        yield urls


def wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run; give its summary (requests/s, latency percentiles in ms, errors)."""
    command = [
        "wrk",
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(USERS),
        str(min(THREADS, connections)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds_taken = raw["duration_us"] / 1e6
    errors = {k: v for k, v in raw["errors"].items() if v}
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds_taken, 3),
        "requests_per_s": round(raw["requests"] / seconds_taken, 1) if seconds_taken else 0.0,
        "errors": errors,
        "mean_ms": round(latency["mean"] / 1000, 3),
        "p50_ms": round(latency["p50"] / 1000, 3),
        "p90_ms": round(latency["p90"] / 1000, 3),
        "p99_ms": round(latency["p99"] / 1000, 3),
        "max_ms": round(latency["max"] / 1000, 3),
    }


def measure(
    urls: dict[str, str], levels: tuple[int, ...], seconds: float, warmup: float, runs: int
) -> dict[str, dict[str, Any]]:
    names = list(urls)
    for name in names:  # scopes created, code paths warm, connections' first costs paid
        wrk(urls[name], max(levels), warmup)
    collected: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {level: [] for level in levels} for name in names
    }
    for run in range(runs):
        order = names[run % len(names) :] + names[: run % len(names)]
        for level in levels:
            for name in order:
                print(f"wrk: run {run + 1}/{runs}, {level} connections, {name}", flush=True)
                collected[name][level].append(wrk(urls[name], level, seconds))
    results: dict[str, dict[str, Any]] = {}
    bare = collected[names[0]]
    for name, by_level in collected.items():
        results[name] = {}
        for level, measured in by_level.items():
            ordered = sorted(measured, key=lambda r: r["requests_per_s"])
            chosen = dict(ordered[(len(ordered) - 1) // 2])
            chosen["runs_requests_per_s"] = [r["requests_per_s"] for r in measured]
            # each run's rate against bare's in the same round: the machine's drift (other
            # work on shared cores) hits both sides of one ratio alike
            ratios = [
                ratio(r["requests_per_s"], b["requests_per_s"])
                for r, b in zip(measured, bare[level], strict=True)
            ]
            chosen["runs_vs_bare"] = ratios
            chosen["vs_bare"] = statistics.median(ratios)
            results[name][str(level)] = chosen
    return results


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def verdicts(results: dict[str, Any], levels: tuple[int, ...]) -> list[dict[str, Any]]:
    found = []
    for name, target in TARGETS.items():
        for level in levels:
            got = results[name][str(level)]["vs_bare"]
            found.append(
                {
                    "server": name,
                    "connections": level,
                    "target": target,
                    "ratio": got,
                    "met": got >= target,
                }
            )
    return found


def markdown(
    results: dict[str, Any], levels: tuple[int, ...], seconds: float, runs: int
) -> list[str]:
    lines = [
        f"`POST /v1/chat` driven by `wrk -t{THREADS}` ({USERS:,} users in turn, "
        f"`bench/wrk_chat.lua`), {seconds:g} s per run, {runs} run(s) in rounds (each round "
        "every server once, in rotating order, after a warm-up). requests/s and latencies: "
        "the median run; **vs bare**: the median over rounds of the server's rate divided by "
        "bare FastAPI's in the same round. bare FastAPI: one route, the same request and "
        "response models as tenantry's, no work. `tenantry serve` is the real command with its "
        "defaults (offline model, open mode, log level info with the access log written to a "
        "file), `--rate-limit 0`, over `--store memory://` and over a SQLite file (the default "
        "store). Every server is one uvicorn process on 127.0.0.1, sharing the machine's "
        "cores with wrk (and, on a shared machine, with whatever else runs).",
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
                    f"{r['vs_bare']:.0%}",
                    r["p50_ms"],
                    r["p99_ms"],
                    sum(r["errors"].values()),
                    ", ".join(f"{x:,.0f}" for x in r["runs_requests_per_s"]),
                    ", ".join(f"{x:.0%}" for x in r["runs_vs_bare"]),
                ]
            )
    lines += table(
        [
            "server",
            "connections",
            "requests/s",
            "vs bare",
            "p50 ms",
            "p99 ms",
            "errors",
            "runs (req/s)",
            "runs vs bare",
        ],
        rows,
    )
    lines += ["", "## Where we stand", ""]
    lines += table(
        ["target", "measured", "met"],
        [
            [
                f"{v['server']} ≥ {v['target']:.0%} of bare at {v['connections']:,} connections",
                f"{v['ratio']:.0%}",
                "yes" if v["met"] else "no",
            ]
            for v in verdicts(results, levels)
        ],
    )
    return lines


def run(config: Config) -> list[Report]:
    levels: tuple[int, ...] = config.pick((100, 1000), (10, 100))
    seconds: float = config.pick(10.0, 1.0)
    warmup: float = config.pick(5.0, 1.0)
    runs: int = config.pick(3, 1)
    workload = {
        "levels": list(levels),
        "users": USERS,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "runs": runs,
        "wrk_threads": THREADS,
        "script": "bench/wrk_chat.lua",
    }
    workload["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if shutil.which("wrk") is None:
        print(f"wrk: {MISSING}", flush=True)
        results: dict[str, Any] = {"skipped": MISSING}
        return [Report("wrk", "HTTP under wrk: POST /v1/chat", workload, results, [MISSING])]
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    workload["wrk"] = (version.stdout or version.stderr).splitlines()[0].strip()
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp, servers(Path(tmp)) as urls:
        measured = measure(urls, levels, seconds, warmup, runs)
    results = {"servers": measured, "verdicts": verdicts(measured, levels)}
    return [
        Report(
            name="wrk",
            title="HTTP under wrk: POST /v1/chat against bare FastAPI",
            workload=workload,
            results=results,
            lines=markdown(measured, levels, seconds, runs),
        )
    ]


__all__ = ["MISSING", "run"]
