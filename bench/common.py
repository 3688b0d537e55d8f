"""What every benchmark shares: the run configuration, timing statistics, the machine's facts
and writing a result as JSON and Markdown under bench/results/."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

PACKAGES = (
    "tenantry",
    "agno",
    "openai-agents",
    "langgraph",
    "langgraph-checkpoint-sqlite",
    "fastapi",
    "uvicorn",
    "psycopg",
    "redis",
    "aiosqlite",
    "sqlalchemy",
)


@dataclass(frozen=True)
class Config:
    """How big a run is. `smoke` shrinks every count so the whole suite takes about 30 s."""

    smoke: bool = False
    out: Path = RESULTS
    postgres_url: str | None = None
    redis_url: str | None = None

    def pick(self, full: Any, smoke: Any) -> Any:
        """The full-run value, or the smoke-run one."""
        return smoke if self.smoke else full


@dataclass
class Report:
    """One benchmark's outcome: `results` goes to <name>.json, `lines` to <name>.md."""

    name: str
    title: str
    workload: dict[str, Any]
    results: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """Mean, median and 99th percentile of durations in seconds, as milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
    }


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that are installed."""
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures: platform, CPUs, load, Python, versions."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": versions(),
    }


def command_line() -> str:
    """The command that is running, as `python -m <module> <args>`, without `--out DIR`:
    where the files went is not how they were measured, and a directory outside the
    checkout is a path of one machine."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None else "bench"
    args, kept = iter(sys.argv[1:]), []
    for arg in args:
        if arg == "--out":
            next(args, None)
        elif not arg.startswith("--out="):
            kept.append(arg)
    return " ".join(["python -m", module, *kept])


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table; numbers right-aligned, floats with thousands separators."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    rows = [list(row) for row in rows]
    align = [
        "---:" if rows and all(isinstance(row[i], int | float) for row in rows) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def write(report: Report, config: Config) -> Path:
    """Write <name>.json and <name>.md under config.out; give the Markdown file's path."""
    config.out.mkdir(parents=True, exist_ok=True)
    facts = machine()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    document = {
        "title": report.title,
        "date": stamp,
        "command": command_line(),
        "smoke": config.smoke,
        "machine": facts,
        "workload": report.workload,
        "results": report.results,
        "plots": report.plots,
    }
    (config.out / f"{report.name}.json").write_text(json.dumps(document, indent=2) + "\n")
    version_text = ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
    header = [
        f"# {report.title}",
        "",
        f"Measured {stamp} with `{document['command']}` on {facts['platform']}, "
        f"{facts['cpus']} CPUs, Python {facts['python']}; load average at the end "
        f"{', '.join(str(x) for x in facts['load_average'])}. Versions: {version_text}.",
        "",
    ]
    if config.smoke:
        header += ["**Smoke run: counts shrunk to check the harness; not figures to quote.**", ""]
    plots = [f"![{Path(p).stem}]({Path(p).name})" for p in report.plots]
    path = config.out / f"{report.name}.md"
    path.write_text("\n".join(header + report.lines + (["", *plots] if plots else [])) + "\n")
    return path
