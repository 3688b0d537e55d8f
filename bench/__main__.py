"""Run every benchmark (or some) and write bench/results/: `python -m bench [--smoke]`.

Suites, one module each, each exposing `run(config) -> list[Report]`:

- `frameworks`: per-turn overhead, multi-tenant, against agno, the OpenAI Agents SDK and
  LangGraph; and the growth of the next turn's time with stored history and tenant count;
- `stores`: store appends and reads per backend against the raw driver doing the same work;
- `http`: `POST /v1/chat` against a bare FastAPI endpoint on the same uvicorn settings;
- `wrk`: the same under `wrk` (skipped, saying so, when it is not installed), bare FastAPI
  against `tenantry serve` on the in-memory store and on SQLite, at 100 and 1000 connections;
- `first_token`: a streamed turn's first delta from the model to the client, on
  /v1/chat/stream, the OpenAI-compatible stream and A2A's, at 1 and 100 streams;
- `turn_raw`: the in-process turn on SQLite against the raw sqlite3 work it does, in time and
  (with valgrind installed; `turn_instructions`) in instructions, which noise cannot move;
- `memory`: RSS and bytes per stored message of one agent serving many tenants;
- `tracing`: a turn's cost with OpenTelemetry absent, unconfigured, no-op and recording;
- `tenants`: tenantry's next turn with up to 1,000,000 other tenants, on SQLite and
  PostgreSQL;
- `memories`: `search_memories` latency per backend against the number of other users'
  memories, beside agno's and LangGraph's memory read paths.
- `memory_overhead`: a turn with long-term memory on (recall included) against off, per backend.
- `accounting`: a turn with usage accounting and budgets on against off, per backend.

`--smoke` shrinks every count (the whole run takes about 30 s) and writes to a temporary
directory unless `--out` is given, so committed figures are never replaced by smoke figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, Config, write

SUITES = (
    "frameworks",
    "stores",
    "http",
    "wrk",
    "first_token",
    "turn_raw",
    "memory",
    "tracing",
    "tenants",
    "memories",
    "memory_overhead",
    "accounting",
)


def _url(name: str) -> str | None:
    return os.environ.get(f"TENANTRY_BENCH_{name}_URL") or os.environ.get(
        f"TENANTRY_TEST_{name}_URL"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check the harness")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--out", type=Path, default=None, help="where results go")
    args = parser.parse_args(argv)
    suites = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    out = args.out or (Path(tempfile.mkdtemp(prefix="tenantry-bench-")) if args.smoke else RESULTS)
    config = Config(
        smoke=args.smoke, out=out, postgres_url=_url("POSTGRES"), redis_url=_url("REDIS")
    )
    for name in suites:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        for report in module.run(config):
            path = write(report, config)
            print(path.read_text(), flush=True)
        print(f"== {name}: {time.perf_counter() - started:.1f} s", flush=True)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
