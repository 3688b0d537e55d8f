"""Long reliability runs: the harness of tests/reliability/ (tests/support/reliability/) with
bigger counts; results in bench/results/soak.json, soak.md and soak_*.png.

1. isolation: the randomised isolation workload (every store call, memory call and agent
   turn, tokens checked after every read, other users' memory ids tried) over 2000 scopes of
   1000 users, 1 000 000 operations per backend: memory in one process; SQLite (a file),
   PostgreSQL and Redis from several processes at once, each followed by a full scan of
   every scope and every user's memories (`tests/support/reliability/isolation_processes.py`);
2. crash: kill -9 a real `tenantry serve` under load at least 100 times per persistent
   backend, restarting it on the same store and checking everything acknowledged is stored
   whole (`tests/support/reliability/crash.py`, `crash_rounds`);
3. server: one `tenantry serve` (SQLite, JWT auth, TTL pruning) under 30 minutes of mixed
   traffic over 10 000 tenants; RSS, open descriptors, TCP connections and p99 latency over
   time, with the verdicts of `tests/support/reliability/soak/`.

    .venv/bin/python -m bench.soak                 # everything, full counts (about 1.5 h)
    .venv/bin/python -m bench.soak --smoke         # tiny counts: check the harness (~5 min)
    .venv/bin/python -m bench.soak --only server --minutes 10
    .venv/bin/python -m bench.soak --only isolation --ops 100000 --backends sqlite,redis

PostgreSQL and Redis use TENANTRY_BENCH_POSTGRES_URL / TENANTRY_BENCH_REDIS_URL (falling back
to the TENANTRY_TEST_* variables) and are skipped, saying so, when neither is set; each run
uses its own schema / key prefix and drops it afterwards. `--smoke` writes to a temporary
directory unless `--out` is given, so committed figures are never replaced by smoke figures.
The exit code is 1 if any run found a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS, Config, Report, table, write

PARTS = ("isolation", "crash", "server")
BACKENDS = ("memory", "sqlite", "postgres", "redis")
USERS, SESSIONS_PER_USER = 1000, 2
"""2000 scopes of 1000 users."""
MAX_MEMORIES = 5
"""Per user: small, so that the cap drops memories while other callers read them."""


def _url(name: str) -> str | None:
    return os.environ.get(f"TENANTRY_BENCH_{name}_URL") or os.environ.get(
        f"TENANTRY_TEST_{name}_URL"
    )


def _query(url: str) -> str:
    return url + ("&" if "?" in url else "?")


async def _drop_namespace(backend: str, base_url: str, name: str) -> None:
    if backend == "postgres":
        import psycopg

        conn = await psycopg.AsyncConnection.connect(base_url, autocommit=True)
        async with conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    elif backend == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(base_url)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"{name}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])


def _store_url(backend: str, config: Config, workdir: Path, name: str) -> str | None:
    """A fresh store URL for `backend` (None when its server is not configured)."""
    cap = f"max_memories={MAX_MEMORIES}"
    if backend == "memory":
        return f"memory://?{cap}"
    if backend == "sqlite":
        return f"sqlite:///{workdir / (name + '.db')}?{cap}"
    base = config.postgres_url if backend == "postgres" else config.redis_url
    if base is None:
        return None
    option = "schema" if backend == "postgres" else "prefix"
    return f"{_query(base)}{option}={name}&{cap}"


def _base_url(backend: str, config: Config) -> str:
    url = config.postgres_url if backend == "postgres" else config.redis_url
    assert url is not None
    return url


# --- 1. isolation ---------------------------------------------------------------------------


async def _isolation_one(backend: str, url: str, operations: int, processes: int) -> dict[str, Any]:
    from tenantry import open_store
    from tests.support.reliability.isolation_processes import Plan, ProcessesReport, run_processes
    from tests.support.reliability.workloads import make_scopes, random_isolation, scan_scopes

    plan = Plan(url, USERS, SESSIONS_PER_USER, operations, concurrency=32, seed=5)
    if backend == "memory":  # one process: the store lives in it
        started = time.perf_counter()
        store = open_store(url)
        scopes = make_scopes(USERS, SESSIONS_PER_USER, seed=plan.scope_seed)
        report = await random_isolation(
            store, scopes, operations=operations, concurrency=64, seed=5, final_scan=False
        )
        result = ProcessesReport(workers=[report], seconds=time.perf_counter() - started)
        await scan_scopes(store, scopes, result.final)
    else:
        result = await run_processes(plan, processes=processes, timeout=6 * 3600)
    return result.to_dict()


def isolation(config: Config, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    operations = args.ops or config.pick(1_000_000, 20_000)
    results: dict[str, Any] = {}
    for backend in args.backends:
        name = f"tenantry_soak_{uuid.uuid4().hex[:8]}"
        url = _store_url(backend, config, workdir, name)
        if url is None:
            results[backend] = {"skipped": f"set TENANTRY_BENCH_{backend.upper()}_URL"}
            print(f"isolation {backend}: skipped (no server configured)", flush=True)
            continue
        print(f"isolation {backend}: {operations:,} operations ...", flush=True)
        try:
            results[backend] = asyncio.run(_isolation_one(backend, url, operations, args.processes))
        finally:
            if backend in ("postgres", "redis"):
                asyncio.run(_drop_namespace(backend, _base_url(backend, config), name))
        print(f"isolation {backend}: {results[backend]}", flush=True)
    return results


def _isolation_lines(results: dict[str, Any]) -> list[str]:
    from tests.support.reliability.workloads import MEMORY_KINDS

    rows = []
    for backend, r in results.items():
        if "skipped" in r:
            rows.append([backend, "skipped", "", "", "", "", "", r["skipped"]])
            continue
        rows.append(
            [
                backend,
                r["operations"],
                sum(r["by_kind"].get(kind, 0) for kind in MEMORY_KINDS),
                r["processes"],
                r["turns"],
                r["reads_checked"],
                r["operations_per_second"],
                "none" if not r["violations"] else f"{len(r['violations'])}: {r['violations'][0]}",
            ]
        )
    header = ["backend", "operations", "memory calls", "processes", "turns", "reads checked"]
    header.append("ops/s")
    return [
        "## Randomised isolation",
        "",
        f"{USERS * SESSIONS_PER_USER} scopes ({USERS} users x {SESSIONS_PER_USER} sessions), "
        "shared by every process; every message and state carries its scope's token, every "
        f"memory its user's (at most {MAX_MEMORIES} per user, so the cap drops memories under "
        "load); every read is checked, other users' memory ids are tried (they must be not "
        "found), then every scope and every user's memories are read once more after all "
        "processes finished.",
        "",
        *table([*header, "foreign tokens found"], rows),
    ]


# --- 2. crash -------------------------------------------------------------------------------


def crash(config: Config, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.reliability.crash import crash_rounds

    kills = args.kills or config.pick(100, 2)
    results: dict[str, Any] = {}
    for backend in [b for b in args.backends if b != "memory"]:  # memory dies with the process
        name = f"tenantry_crash_{uuid.uuid4().hex[:8]}"
        url = _store_url(backend, config, workdir, name)
        if url is None:
            results[backend] = {"skipped": f"set TENANTRY_BENCH_{backend.upper()}_URL"}
            continue
        print(f"crash {backend}: {kills} kills ...", flush=True)
        started = time.perf_counter()
        try:
            report = asyncio.run(crash_rounds(url, workdir, kills=kills, seed=3))
        finally:
            if backend in ("postgres", "redis"):
                asyncio.run(_drop_namespace(backend, _base_url(backend, config), name))
        results[backend] = {
            "kills": report.kills,
            "acknowledged": report.acknowledged,
            "turns_stored": report.turns_stored,
            "problems": report.problems[:20],
            "seconds": round(time.perf_counter() - started, 1),
            "summary": report.summary(),
        }
        print(f"crash {backend}: {report.kills} kills, problems {report.problems[:3]}", flush=True)
    if "memory" in args.backends:
        results["memory"] = {"skipped": "an in-memory store does not outlive its process"}
    return results


def _crash_lines(results: dict[str, Any]) -> list[str]:
    rows = []
    for backend, r in results.items():
        if "skipped" in r:
            rows.append([backend, "skipped", "", "", r["skipped"]])
        else:
            problems = "none" if not r["problems"] else f"{len(r['problems'])}: {r['problems'][0]}"
            rows.append([backend, r["kills"], r["acknowledged"], r["turns_stored"], problems])
    return [
        "## Crash loop",
        "",
        "kill -9 of `tenantry serve` under load, restart on the same store, check that every "
        "acknowledged turn is stored whole and nothing else but turns in flight at the kill.",
        "",
        *table(["backend", "kills", "turns acknowledged", "turns stored", "problems"], rows),
    ]


# --- 3. server soak -------------------------------------------------------------------------


def server(config: Config, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.reliability.soak import SoakConfig, per_window, run_soak, to_json

    minutes = args.minutes or config.pick(30.0, 2.0)
    seconds = minutes * 60
    long_run = seconds >= 600
    # Sessions idle for `ttl` are pruned every `every` seconds; the warm-up lasts until
    # pruning is under way, so that the first window and the last carry the same work.
    ttl, every = (120.0, 15.0) if long_run else (15.0, 5.0)
    warmup = ttl + every + (45.0 if long_run else 5.0)
    soak_config = SoakConfig(
        seconds=seconds,
        warmup=warmup,
        window=60.0 if long_run else min(40.0, (seconds - warmup) / 2),
        tenants=args.tenants or 10_000,
        rate=args.rate,
        concurrency=16,
        sample_every=5.0 if long_run else 2.0,
        prune_inactive_seconds=ttl,
        prune_interval_seconds=every,
        extra_windows=2,
    )
    print(f"server: {minutes:g} minutes, {soak_config.tenants:,} tenants ...", flush=True)
    result = asyncio.run(run_soak(soak_config, workdir))
    document = to_json(result)
    document["minutes"] = per_window(result, 60.0)
    print(f"server: {document['figures']['verdicts']}", flush=True)
    return document


def _server_lines(document: dict[str, Any]) -> list[str]:
    config, figures = document["config"], document["figures"]
    rss, p99 = figures["rss_mb"], figures["p99_ms"]
    verdicts = ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in figures["verdicts"].items())
    rows = [
        [
            int(m["start_s"] // 60),
            m["requests"],
            m["p99_ms"],
            m["robust_p99_ms"],
            m["rss_mb"],
            m["fds"],
            m["connections"],
            m["store_mb"],
        ]
        for m in document["minutes"]
    ]
    return [
        "## Server soak",
        "",
        f"One `tenantry serve` (SQLite, JWT auth, sessions idle "
        f"{config['prune_inactive_seconds']:g} s pruned every "
        f"{config['prune_interval_seconds']:g} s), {config['seconds'] / 60:g} minutes, "
        f"{config['tenants']:,} tenants, {config['rate']:g} requests/s offered with at most "
        f"{config['concurrency']} in flight: {figures['requests']:,} requests "
        f"({figures['statuses']}); {figures['pruned_by_server']:,} idle sessions pruned.",
        "",
        f"- RSS: {rss['first_window']} MB in the first window after the {config['warmup']:g} s "
        f"warm-up, {rss['last_window']} MB in the last (allowed {rss['allowed']}); slope "
        f"{rss['slope_mb_per_hour']} MB/h.",
        f"- Open descriptors: {figures['fds']['first_window']} then "
        f"{figures['fds']['last_window']}; TCP connections: "
        f"{figures['connections']['first_window']} then {figures['connections']['last_window']}.",
        f"- p99 latency, first and last {config['window']:g} s window: "
        f"{p99['first_window_robust']} ms and {p99['last_window_robust']} ms (median of 10 s "
        f"slices; ratio {p99['ratio_robust']}), plain {p99['first_window_plain']} ms and "
        f"{p99['last_window_plain']} ms (ratio {p99['ratio_plain']}); extra windows run "
        f"because of a high ratio: {figures['extra_windows_run']} (ratios "
        f"{figures['p99_ratio_history']}).",
        f"- Verdicts: {verdicts}.",
        "",
        *table(
            [
                "minute",
                "requests",
                "p99 ms",
                "robust p99 ms",
                "RSS MB",
                "fds",
                "connections",
                "store MB",
            ],
            rows,
        ),
    ]


def plot(document: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = document["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    for ax, key, label in zip(
        axes,
        ["rss_mb", "fds", "connections", "store_mb"],
        ["RSS (MB)", "open descriptors", "TCP connections", "SQLite files (MB)"],
        strict=True,
    ):
        ax.plot(minutes, [s[key] for s in samples], lw=1)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.axvline(document["config"]["warmup"] / 60, ls="--", c="grey", lw=0.8)
    axes[-1].set_xlabel("minutes")
    axes[0].set_title("tenantry serve under mixed traffic (dashed: end of warm-up)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    resources = out / "soak_resources.png"
    fig.savefig(resources, dpi=100)
    plt.close(fig)

    per_minute = document["minutes"]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = [m["start_s"] / 60 for m in per_minute]
    ax.plot(x, [m["p99_ms"] for m in per_minute], marker="o", label="p99 per minute")
    ax.plot(x, [m["robust_p99_ms"] for m in per_minute], marker="s", label="median of 10 s p99s")
    ax.set_xlabel("minute")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("p99 request latency per minute")
    fig.tight_layout()
    latency = out / "soak_latency.png"
    fig.savefig(latency, dpi=100)
    plt.close(fig)
    return [resources.name, latency.name]  # beside the report: no machine's path in it


# --- the run --------------------------------------------------------------------------------


def problems_of(results: dict[str, Any]) -> list[str]:
    """Give every problem the runs found (empty when all is well)."""
    found = []
    for backend, r in results.get("isolation", {}).items():
        found += [f"isolation {backend}: {v}" for v in r.get("violations", [])]
    for backend, r in results.get("crash", {}).items():
        if isinstance(r, dict):
            found += [f"crash {backend}: {p}" for p in r.get("problems", [])]
    server_run = results.get("server")
    if server_run:
        verdicts = server_run["figures"]["verdicts"]
        found += [f"server: {name} failed" for name, ok in verdicts.items() if not ok]
    return found


def run(config: Config, args: argparse.Namespace | None = None) -> list[Report]:
    args = args or parse([])
    results: dict[str, Any] = {}
    lines: list[str] = []
    plots: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tenantry-soak-") as tmp:
        workdir = Path(tmp)
        if "isolation" in args.only:
            results["isolation"] = isolation(config, workdir, args)
            lines += [*_isolation_lines(results["isolation"]), ""]
        if "crash" in args.only:
            results["crash"] = crash(config, workdir, args)
            lines += [*_crash_lines(results["crash"]), ""]
        if "server" in args.only:
            results["server"] = server(config, workdir, args)
            lines += _server_lines(results["server"])
            plots = plot(results["server"], config.out)
    problems = problems_of(results)
    results["problems"] = problems
    lines += [
        "",
        f"Problems found: {len(problems)}." + (f" First: {problems[0]}" if problems else ""),
    ]
    workload = {
        "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
        "parts": list(args.only),
        "backends": list(args.backends),
        "isolation_operations_per_backend": args.ops or config.pick(1_000_000, 20_000),
        "isolation_scopes": USERS * SESSIONS_PER_USER,
        "isolation_processes": args.processes,
        "crash_kills_per_backend": args.kills or config.pick(100, 2),
        "server_minutes": args.minutes or config.pick(30.0, 2.0),
        "server_tenants": args.tenants or 10_000,
        "server_rate_per_second": args.rate,
    }
    return [
        Report(
            name="soak",
            title="Soak: isolation, crashes and a long-running server",
            workload=workload,
            results=results,
            lines=lines,
            plots=plots,
        )
    ]


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check the harness")
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="for isolation and crash")
    parser.add_argument("--ops", type=int, default=None, help="isolation operations per backend")
    parser.add_argument("--processes", type=int, default=3, help="isolation processes")
    parser.add_argument("--kills", type=int, default=None, help="crash kills per backend")
    parser.add_argument("--minutes", type=float, default=None, help="server soak length")
    parser.add_argument("--tenants", type=int, default=None, help="server soak tenants")
    parser.add_argument("--rate", type=float, default=25.0, help="server requests per second")
    parser.add_argument("--out", type=Path, default=None, help="where results go")
    args = parser.parse_args(argv)
    args.only = _names(args.only, PARTS, "part")
    args.backends = _names(args.backends, BACKENDS, "backend")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="tenantry-soak-")) if args.smoke else RESULTS)
    config = Config(
        smoke=args.smoke, out=out, postgres_url=_url("POSTGRES"), redis_url=_url("REDIS")
    )
    started = time.perf_counter()
    (report,) = run(config, args)
    path = write(report, config)
    print(path.read_text(), flush=True)
    print(f"results in {out} ({(time.perf_counter() - started) / 60:.1f} minutes)")
    return 1 if report.results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
