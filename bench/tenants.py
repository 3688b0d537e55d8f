"""tenantry's next turn against the number of other tenants in the store, to 1,000,000, on
SQLite and on PostgreSQL.

The same measurement as the "other tenants" series of `bench/frameworks.py` (which compares
the peers, up to 100 000): `bench.peers.workloads.measure_tenants`, in a fresh process per
backend. For each count one database (a SQLite file; a PostgreSQL schema) holds the measured
user ("probe", 10 turns, created first: an old tenant) and that many others with one turn
each, bulk-loaded (one real turn, its rows cloned per tenant); every database is open at
once and the timed turns go round-robin over them, largest first.

Target: the next turn with 1,000,000 other tenants at most 1.1 x the one with 10, on each
backend.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.common import Config, Report, table
from bench.peers.tenantry_postgres_peer import adapter as postgres_adapter
from bench.peers.workloads import Sizes, measure_tenants

TARGET = 1.1
BACKENDS = ("sqlite", "postgres")


def sizes_of(config: Config) -> Sizes:
    """The counts for this run: full, or tiny for --smoke."""
    return Sizes(
        users=0,
        rounds=0,
        history=(),
        tenants=config.pick((10, 1_000, 100_000, 1_000_000), (10, 100)),
        warmup=config.pick(2, 1),
        timed=config.pick(50, 3),
        timed_max=config.pick(300, 3),
        timed_budget=config.pick(20.0, 0.0),
    )


def run(config: Config) -> list[Report]:
    """Measure each backend in a fresh process of its own, one after the other."""
    sizes = sizes_of(config)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    measured: dict[str, dict[str, Any]] = {}
    spawn = multiprocessing.get_context("spawn")
    for backend in BACKENDS:
        if backend == "postgres" and not config.postgres_url:
            measured[backend] = {
                "available": False,
                "reason": "set TENANTRY_BENCH_POSTGRES_URL (or TENANTRY_TEST_POSTGRES_URL)",
            }
            continue
        make = (
            functools.partial(postgres_adapter, config.postgres_url)
            if backend == "postgres"
            else None
        )
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            future = pool.submit(measure_tenants, "tenantry", sizes, make)
            try:
                measured[backend] = future.result()
            except Exception as exc:  # one backend failing must not hide the other's figures
                print(f"  {backend} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                measured[backend] = {"available": True, "failed": f"{type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - started, 1)
    return [_report(measured, sizes, config, load_before, seconds)]


def _p50(point: dict[str, Any], metric: str = "next_turn") -> float:
    return float(point[metric]["p50_ms"])


def _ratio(points: list[dict[str, Any]], metric: str = "next_turn") -> float | None:
    """The median next turn at the largest count over the one at the smallest."""
    if len(points) < 2:
        return None
    return round(_p50(points[-1], metric) / _p50(points[0], metric), 3)


def _report(
    measured: dict[str, dict[str, Any]],
    sizes: Sizes,
    config: Config,
    load_before: list[float],
    seconds: float,
) -> Report:
    low, high = sizes.tenants[0], sizes.tenants[-1]
    targets, rows, notes = [], [], []
    for backend, result in measured.items():
        if not result.get("available") or "failed" in result:
            notes.append(f"- {backend}: not measured: {result.get('reason') or result['failed']}")
            continue
        points = result["tenants"]
        span, cpu = _ratio(points), _ratio(points, "next_turn_cpu")
        targets.append(
            {
                "target": f"{backend}: next turn at {high:,} other tenants ÷ at {low:,} ≤ {TARGET}",
                "measured": f"{span:.2f} (CPU time: {cpu:.2f})",
                "ratio": span,
                "cpu_ratio": cpu,
                "met": span is not None and span <= TARGET,
            }
        )
        for point in points:
            rows.append(
                [
                    backend,
                    point["tenants"],
                    point["prefill_s"],
                    round(point["db_bytes"] / 1e6, 2),
                    _p50(point),
                    point["next_turn"]["p99_ms"],
                    _p50(point, "next_turn_cpu"),
                    point["next_turn"]["n"],
                ]
            )
        notes.append(f"- {backend}: {result['settings']['storage']}; {result['seconds']} s.")
    counts = ", ".join(f"{n:,}" for n in sizes.tenants)
    lines = [
        f"tenantry's next turn for one user ({sizes.probe_turns} turns stored) with {counts} "
        "other tenants in the store, each holding one turn, bulk-loaded (one real turn, its rows "
        "cloned per tenant with the ids rewritten). One database per count, all open at once; "
        "the timed turns go round-robin over them, largest first, so the shared machine's load "
        "weighs on every count alike. Medians of wall-clock and CPU time.",
        "",
        f"Load average at the start {', '.join(map(str, load_before))}; the whole run took "
        f"{seconds} s.",
        "",
        "## Where we stand",
        "",
        *table(
            ["target", "measured", "met"],
            [[t["target"], t["measured"], "yes" if t["met"] else "**no**"] for t in targets],
        ),
        "",
        "## The next turn by other tenants in the store",
        "",
        *table(
            [
                "backend",
                "other tenants",
                "bulk load s",
                "database MB",
                "next turn p50 ms",
                "p99 ms",
                "CPU p50 ms",
                "turns timed",
            ],
            rows,
        ),
        "",
        "## Notes",
        "",
        *notes,
    ]
    return Report(
        name="tenants",
        title="tenantry's next turn with up to 1,000,000 other tenants",
        workload={
            "tenants": list(sizes.tenants),
            "probe": f"one user with {sizes.probe_turns} turns, created before the others",
            "timed": f"{sizes.timed} to {sizes.timed_max} turns per count "
            f"(rounds go on while under {sizes.timed_budget:g} s)",
            "load_average_at_start": load_before,
            "seconds": seconds,
        },
        results={"targets": targets, "backends": measured},
        lines=lines,
        plots=_plot(measured, config),
    )


def _plot(measured: dict[str, dict[str, Any]], config: Config) -> list[str]:
    ok = {b: r for b, r in measured.items() if r.get("available") and "failed" not in r}
    if not ok:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config.out.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for backend, result in ok.items():
        points = result["tenants"]
        axes.plot(
            [p["tenants"] for p in points], [_p50(p) for p in points], marker="o", label=backend
        )
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("other tenants in the store (log)")
    axes.set_ylabel("next turn, median (ms)")
    axes.set_title("tenantry: next turn vs other tenants")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    path = config.out / "tenants.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path.name]


__all__ = ["run", "sizes_of"]
