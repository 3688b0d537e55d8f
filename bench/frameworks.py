"""tenantry against agno, the OpenAI Agents SDK and LangGraph: framework overhead per turn,
and how the next turn's time grows with stored history and with the number of tenants.

Every framework runs its own agent API on its own SQLite storage (a fresh temporary file per
measurement; WAL and synchronous=NORMAL for all four) with a deterministic in-process fake
model that answers a fixed text, so what is timed is the framework: reading the conversation,
building the model input, writing the turn. Each framework is measured in a fresh process of
its own (no shared heap, threads or caches), one after the other, by
`bench.peers.workloads.measure`; the adapters are in `bench.peers`.

Targets: tenantry's per-turn overhead at most 1/3 of each peer's (sequential mean); its next
turn at 10 000 stored turns at most 1.2 × the one at 10; with 100 000 other tenants at most
1.1 × the one with 10.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

from bench.common import Config, Report, table
from bench.peers import PEERS, REPLY
from bench.peers.workloads import LANGGRAPH_CAP, Sizes, measure

TARGET_OVERHEAD = 1 / 3
TARGET_HISTORY = 1.2
TARGET_TENANTS = 1.1
BASE = "tenantry"
CONCURRENT_COLUMNS = ("wall_per_turn_ms", "turns_per_s", "p50_ms", "p99_ms", "cpu_per_turn_ms")

Results = dict[str, dict[str, Any]]


def sizes_of(config: Config) -> Sizes:
    """The counts for this run: full, or tiny for --smoke."""
    return Sizes(
        users=config.pick(100, 5),
        rounds=config.pick(20, 2),
        history=config.pick((10, 100, 1_000, 10_000), (10, 100)),
        tenants=config.pick((10, 1_000, 100_000), (10,)),
        warmup=config.pick(2, 1),
        timed=config.pick(20, 3),
        timed_max=config.pick(100, 3),
        timed_budget=config.pick(10.0, 0.0),
    )


def run(config: Config) -> list[Report]:
    """Measure every framework in a fresh process of its own; give the report.

    The full run measures one framework at a time; --smoke runs them side by side, since its
    figures are not for quoting and most of its time is the peers' imports."""
    sizes = sizes_of(config)
    workers = len(PEERS) if config.smoke else 1
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(measure, name, sizes) for name in PEERS}
        measured = {name: _outcome(name, future) for name, future in futures.items()}
    return [_report(measured, sizes, config)]


def _outcome(name: str, future: Future[dict[str, Any]]) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # a failed adapter must not hide the others' figures
        print(f"  {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return {"available": True, "failed": f"{type(exc).__name__}: {exc}"}


# --- figures out of the results ---------------------------------------------------------------


def _ok(measured: Results) -> dict[str, dict[str, Any]]:
    """The frameworks that were measured (installed, and their adapter passed its checks)."""
    return {n: r for n, r in measured.items() if r.get("available") and "failed" not in r}


def _median(point: dict[str, Any], metric: str = "next_turn") -> float | None:
    """The point's median wall-clock time (or CPU time, metric="next_turn_cpu"), in ms."""
    return None if "skipped" in point else float(point[metric]["p50_ms"])


def _growth(points: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The measured (x, median ms) pairs of a growth series."""
    pairs = [(p[key], _median(p)) for p in points if _median(p) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs if y is not None]


def _span_ratio(
    points: list[dict[str, Any]], key: str, low: int, high: int, metric: str = "next_turn"
) -> float | None:
    """The median at `high` over the one at `low`, when both were measured."""
    by_x = {p[key]: _median(p, metric) for p in points}
    a, b = by_x.get(low), by_x.get(high)
    return None if a is None or b is None else round(b / a, 3)


def _share(ratio: float) -> str:
    """A ratio as "1/4.2" when below one, "1.3×" above."""
    return f"1/{1 / ratio:.1f}" if ratio <= 1 else f"{ratio:.1f}×"


def _targets(ok: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets, what was measured against each, and whether it is met."""
    if BASE not in ok:
        return [{"target": "all", "measured": "tenantry was not measured", "met": None}]
    base = ok[BASE]
    mean = base["sequential"]["mean_ms"]
    rows: list[dict[str, Any]] = []
    for name, result in ok.items():
        if name == BASE:
            continue
        peer = result["sequential"]["mean_ms"]
        cpu = base["sequential"]["cpu"]["mean_ms"] / result["sequential"]["cpu"]["mean_ms"]
        rows.append(
            {
                "target": f"per-turn overhead ≤ 1/3 of {name}'s (workload 1, sequential mean)",
                "measured": f"{mean:.2f} ms vs {peer:.2f} ms = {_share(mean / peer)} "
                f"(CPU time: {_share(cpu)})",
                "ratio": round(mean / peer, 3),
                "cpu_ratio": round(cpu, 3),
                "met": mean / peer <= TARGET_OVERHEAD,
            }
        )
    for key, series, low, high, limit, what in (
        ("turns", "history", 10, 10_000, TARGET_HISTORY, "session of 10 000 turns / of 10"),
        ("tenants", "tenants", 10, 100_000, TARGET_TENANTS, "100 000 other tenants / 10"),
    ):
        span = _span_ratio(base[series], key, low, high)
        cpu_span = _span_ratio(base[series], key, low, high, "next_turn_cpu")
        rows.append(
            {
                "target": f"next turn flat: {what} ≤ {limit}",
                "measured": "not measured in this run"
                if span is None
                else f"{span:.2f} (CPU time: {cpu_span:.2f})",
                "ratio": span,
                "cpu_ratio": cpu_span,
                "met": None if span is None else span <= limit,
            }
        )
    return rows


# --- the report ---------------------------------------------------------------------------------


def _report(measured: Results, sizes: Sizes, config: Config) -> Report:
    ok = _ok(measured)
    targets = _targets(ok)
    plots = _plots(ok, sizes, config)
    lines = [
        "Each framework runs its own agent API on its own SQLite file (WAL, synchronous=NORMAL "
        f"for all four) with an in-process fake model that answers {REPLY!r}: the time is the "
        "framework's (read the conversation, build the model input, store the turn). Each "
        "framework runs in a fresh process of its own; every adapter first proves that the "
        "model sees the previous turn, and that pre-filled history and cloned tenants are read "
        "back. Medians and means are of wall-clock times on a shared 2-core machine.",
        "",
        "## Where we stand",
        "",
        *table(
            ["target", "measured", "met"],
            [[t["target"], t["measured"], _yes_no(t["met"])] for t in targets],
        ),
        "",
        *_peer_spans(ok, sizes),
        *_overhead_lines(ok, sizes),
        *_growth_lines(ok, sizes),
        *_storage_lines(ok, sizes),
        *_setup_lines(ok),
        *_notes(measured, ok),
    ]
    workload = {
        "overhead": f"{sizes.users} users × {sizes.rounds} turns, round-robin over users, "
        "sequential and concurrent (each round under asyncio.gather)",
        "history": f"next turn of a session holding {', '.join(map(str, sizes.history))} turns "
        f"(LangGraph up to {LANGGRAPH_CAP}); {sizes.warmup} warm-up turns, then the median of "
        f"{_samples(sizes)}",
        "tenants": f"next turn of a {sizes.probe_turns}-turn user with "
        f"{', '.join(map(str, sizes.tenants))} other tenants (one turn each) in the store",
        "storage": "SQLite file per framework: WAL, synchronous=NORMAL",
        "fake model": f"answers {REPLY!r}, in-process, deterministic",
        "sizes": asdict(sizes),
    }
    return Report(
        name="frameworks",
        title="tenantry against agno, the OpenAI Agents SDK and LangGraph",
        workload=workload,
        results={"targets": targets, "frameworks": measured},
        lines=lines,
        plots=plots,
    )


def _peer_spans(ok: dict[str, dict[str, Any]], sizes: Sizes) -> list[str]:
    """One line: the peers' growth ratios, for comparison with tenantry's flat ones."""
    parts = []
    for name, result in ok.items():
        if name == BASE:
            continue
        spans = []
        for series, key, unit in (("history", "turns", "turns"), ("tenants", "tenants", "tenants")):
            measured = [p for p in result[series] if "skipped" not in p]
            if len(measured) > 1:
                low, high = measured[0][key], measured[-1][key]
                span = _span_ratio(measured, key, low, high)
                spans.append(f"{span:.2f} ({high:,} ÷ {low:,} {unit})")
        if spans:
            parts.append(f"{name} {', '.join(spans)}")
    if not parts:
        return []
    return [f"The peers' next turn, largest size ÷ smallest: {'; '.join(parts)}.", ""]


def _yes_no(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def _sequential_row(name: str, figures: dict[str, Any], times: str) -> list[Any]:
    walls = [figures[k] for k in ("mean_ms", "p50_ms", "p99_ms")]
    return [name, *walls, times, figures["cpu"]["mean_ms"]]


def _overhead_lines(ok: dict[str, dict[str, Any]], sizes: Sizes) -> list[str]:
    base = ok.get(BASE, {}).get("sequential", {}).get("mean_ms")

    def times(name: str) -> str:
        mean = ok[name]["sequential"]["mean_ms"]
        return "1" if base is None or name == BASE else f"{mean / base:.1f}"

    return [
        f"## 1. Framework overhead per turn: {sizes.users} users × {sizes.rounds} "
        "interleaved turns",
        "",
        "Sequential: one turn at a time, round-robin over the users. CPU ms: the CPU time the "
        "process spent on the turn in all its threads, which the machine's other load barely "
        "changes (wall-clock time on a busy machine includes waiting for a core).",
        "",
        *table(
            ["framework", "mean ms", "p50 ms", "p99 ms", "× tenantry's mean", "CPU ms, mean"],
            [_sequential_row(n, r["sequential"], times(n)) for n, r in ok.items()],
        ),
        "",
        f"Concurrent: each round's {sizes.users} turns (one per user) arrive at once, under "
        "asyncio.gather. Wall time per turn is the rounds' wall time over their turns; a "
        "turn's latency counts from its round's start to its reply, so it includes waiting "
        "for the turns ahead of it.",
        "",
        *table(
            [
                "framework",
                "wall per turn ms",
                "turns/s",
                "latency p50 ms",
                "latency p99 ms",
                "CPU ms per turn",
            ],
            [[n, *(r["concurrent"][k] for k in CONCURRENT_COLUMNS)] for n, r in ok.items()],
        ),
        "",
        *[f"- {n}: {r['settings'].get('concurrency', '')}" for n, r in ok.items()],
        "",
    ]


def _cell(point: dict[str, Any] | None, metric: str) -> Any:
    if point is None:
        return "—"
    median = _median(point, metric)
    return "skipped" if median is None else median


def _span_cell(
    measured: list[dict[str, Any]], key: str, points: tuple[int, ...], metric: str
) -> str:
    """The largest measured size's median over the smallest's, saying which sizes those are
    when the largest was not measured."""
    if len(measured) < 2:
        return "—"
    low, high = measured[0][key], measured[-1][key]
    span = _span_ratio(measured, key, low, high, metric)
    exact = (low, high) == (points[0], points[-1])
    return f"{span:.2f}" if exact else f"{span:.2f} ({high:,} ÷ {low:,})"


def _growth_table(
    ok: dict[str, dict[str, Any]], series: str, key: str, points: tuple[int, ...], metric: str
) -> list[str]:
    header = ["framework", *(f"{x:,}" for x in points)]
    if len(points) > 1:
        header.append(f"{points[-1]:,} ÷ {points[0]:,}")
    inputs_column = series == "history" and metric == "next_turn"
    if inputs_column:
        header.append("model input at the largest")
    rows = []
    for name, result in ok.items():
        by_x = {p[key]: p for p in result[series]}
        row = [name, *(_cell(by_x.get(x), metric) for x in points)]
        measured = [p for p in result[series] if "skipped" not in p]
        if len(points) > 1:
            row.append(_span_cell(measured, key, points, metric))
        if inputs_column:
            inputs = measured[-1]["model_input_messages"] if measured else None
            row.append("—" if inputs is None else f"{inputs:,} messages")
        rows.append(row)
    return table(header, rows)


def _samples(sizes: Sizes) -> str:
    if sizes.timed_max <= sizes.timed:
        return f"{sizes.timed} turns"
    return (
        f"{sizes.timed} to {sizes.timed_max} turns per size: rounds go on past {sizes.timed} "
        f"while they took under {sizes.timed_budget:g} s; n per size in the JSON"
    )


def _growth_lines(ok: dict[str, dict[str, Any]], sizes: Sizes) -> list[str]:
    lines = [
        f"## 2. Growth: the next turn's time (median ms of {_samples(sizes)})",
        "",
        "The timed turns go round-robin over the sizes (one turn of each size per round, "
        "largest first), so the load of the shared machine weighs on every size alike.",
        "",
    ]
    for series, key, points, label in (
        ("history", "turns", sizes.history, "turns stored in the session"),
        ("tenants", "tenants", sizes.tenants, "other tenants in the store"),
    ):
        lines += [
            f"By {label}, wall-clock time:",
            "",
            *_growth_table(ok, series, key, points, "next_turn"),
            "",
            f"By {label}, CPU time of the process (all threads):",
            "",
            *_growth_table(ok, series, key, points, "next_turn_cpu"),
            "",
        ]
    skipped = [
        f"- {name} at {p['turns']:,} turns: {p['skipped']}"
        for name, result in ok.items()
        for p in result["history"]
        if "skipped" in p
    ]
    lines += [
        "History is pre-filled through each framework's storage, exactly as it stores a real "
        "turn (LangGraph: one `update_state` checkpoint holding every message, which is what "
        "its next turn reads); the first turn after each pre-fill must show the newest "
        "pre-filled message to the model, and the stored turn count must match. Other "
        "tenants: one real turn, its rows cloned per tenant with the ids rewritten.",
        "",
        *skipped,
        *([""] if skipped else []),
    ]
    return lines


def _storage_lines(ok: dict[str, dict[str, Any]], sizes: Sizes) -> list[str]:
    def added(result: dict[str, Any], x: int) -> Any:
        point = next((p for p in result["history"] if p["turns"] == x), None)
        return "—" if point is None or "skipped" in point else int(point["bytes_added_per_turn"])

    def history_db(name: str, result: dict[str, Any]) -> Any:
        point = next((p for p in result["history"] if "database" in p), None)
        if point is None or name == "langgraph":
            return "—"
        return round(point["database"]["db_bytes"] / point["database"]["turns"])

    rows = [
        [
            name,
            int(r["sequential"]["bytes_per_turn"]),
            history_db(name, r),
            *(added(r, x) for x in sizes.history),
        ]
        for name, r in ok.items()
    ]
    turns = sizes.users * sizes.rounds
    return [
        "## 3. Storage",
        "",
        *table(
            [
                "framework",
                f"bytes per stored turn, {sizes.users} sessions × {sizes.rounds} turns",
                "bytes per stored turn, growth database",
                *(f"one more turn adds, at {x:,} turns" for x in sizes.history),
            ],
            rows,
        ),
        "",
        "Bytes per stored turn: the database's size (pages × page size: the file's size once "
        f"the WAL is checkpointed) over the turns it holds: workload 1's {turns:,} real turns, "
        f"and the growth database (sessions of {', '.join(f'{x:,}' for x in sizes.history)} "
        "turns, pre-filled as each framework stores a turn; not for LangGraph, whose pre-fill "
        "is one checkpoint instead of ~3 per turn). One more turn adds: the bytes the "
        f"database's pages use (SQLite's dbstat) after {sizes.warmup} turns at that size minus "
        "before, per turn.",
        "",
    ]


def _setup_lines(ok: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## How each framework is set up", ""]
    for name, result in ok.items():
        settings = result["settings"]
        described = "; ".join(f"{k}: {v}" for k, v in settings.items() if k != "concurrency")
        lines.append(f"- **{name}**: {described}.")
    return [*lines, ""]


def _notes(measured: Results, ok: dict[str, dict[str, Any]]) -> list[str]:
    notes = [
        f"- {name}: not measured: {r['reason']}"
        for name, r in measured.items()
        if not r.get("available")
    ]
    notes += [f"- {name}: FAILED: {r['failed']}" for name, r in measured.items() if "failed" in r]
    refused = {n: r.get("network_connections_refused", 0) for n, r in ok.items()}
    notes.append(
        "- Network: the measuring processes refuse every non-loopback connection; refused "
        f"attempts: {', '.join(f'{n} {c}' for n, c in refused.items())}."
    )
    return ["## Notes", "", *notes]


# --- plots ----------------------------------------------------------------------------------------


def _plots(ok: dict[str, dict[str, Any]], sizes: Sizes, config: Config) -> list[str]:
    if not ok:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config.out.mkdir(parents=True, exist_ok=True)
    written = []
    for series, key, label in (
        ("history", "turns", "turns stored in the session"),
        ("tenants", "tenants", "other tenants in the store"),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, result in ok.items():
            xs, ys = _growth(result[series], key)
            cap = sizes.caps.get(name) if series == "history" else None
            capped = cap is not None and max(sizes.history) > cap
            axes.plot(xs, ys, marker="o", label=f"{name} (≤ {cap:,} turns)" if capped else name)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel(f"{label} (log)")
        axes.set_ylabel("next turn, median (ms, log)")
        axes.set_title(f"Next turn's time vs {label}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        path = config.out / f"frameworks_{series}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    written.append(_overhead_plot(plt, ok, sizes, config))
    return written


def _overhead_plot(plt: Any, ok: dict[str, dict[str, Any]], sizes: Sizes, config: Config) -> str:
    names = list(ok)
    figure, axes = plt.subplots(figsize=(7, 4))
    positions = range(len(names))
    sequential = [ok[n]["sequential"]["mean_ms"] for n in names]
    concurrent = [ok[n]["concurrent"]["wall_per_turn_ms"] for n in names]
    axes.bar(
        [p - 0.2 for p in positions],
        sequential,
        width=0.4,
        label="sequential: mean per turn",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        concurrent,
        width=0.4,
        label="concurrent: wall time per turn",
    )
    axes.set_xticks(list(positions), names)
    axes.set_ylabel("ms per turn")
    axes.set_title(f"Framework overhead, {sizes.users} users × {sizes.rounds} turns")
    axes.set_ylim(0, max(sequential + concurrent) * 1.35)  # room for the legend above the bars
    axes.legend(loc="upper left")
    axes.grid(True, axis="y", alpha=0.3)
    path = config.out / "frameworks_overhead.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


__all__ = ["run", "sizes_of"]
