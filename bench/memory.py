"""Memory of one agent serving many tenants, against agno's two pictures.

Every figure comes from a fresh interpreter (`bench.memory_probe`), so nothing else is in its
heap: the RSS of one tenantry agent holding 10 000 tenants x 10 messages (written by real
turns, and by `add_many`), the bytes tracemalloc counts per stored message next to its text,
and for comparison 10 000 agno `Agent` instances (one agent per user, the reference's picture
without multi-tenancy) and one shared agno agent with the same 10 000 x 10 messages in agno's
`InMemoryDb` (written by real runs). The baselines are a bare interpreter and one that
imported tenantry (or agno).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.children import ROOT, clean_env
from bench.common import Config, Report, table

MB = 1_000_000
TARGET_OVERHEAD = 250
TARGET_RSS_MB = 50
BARE = (
    "import gc\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print('{\"rss\": %d}' % (int(line.split()[1]) * 1024))\n"
)


def probe(kind: str, tenants: int = 0, messages: int = 0) -> dict[str, Any]:
    """Run one `bench.memory_probe` measurement in a fresh interpreter; give its JSON."""
    if kind == "interpreter":
        command = [sys.executable, "-c", BARE]
    else:
        command = [sys.executable, "-m", "bench.memory_probe", kind]
        command += [f"--tenants={tenants}", f"--messages={messages}"]
    done = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {kind} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(tenants: int, messages: int, marginal: int) -> dict[str, dict[str, Any]]:
    """Every probe, two at a time (RSS does not depend on what runs beside), slowest first."""
    plan = {
        "agno-shared": ("agno-shared", tenants, messages),
        "tenantry-tracemalloc": ("tenantry-tracemalloc", tenants, messages),
        "tenantry-tracemalloc-marginal": ("tenantry-tracemalloc", 1, marginal),
        "tenantry-turns": ("tenantry-turns", tenants, messages),
        "tenantry-add-many": ("tenantry-add-many", tenants, messages),
        "agno-agents": ("agno-agents", tenants, messages),
        "tenantry-import": ("tenantry-import", 0, 0),
        "interpreter": ("interpreter", 0, 0),
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(probe, *args) for name, args in plan.items()}
        return {name: future.result() for name, future in futures.items()}


def mb(value: float) -> str:
    return f"{value / MB:,.1f}"


def per(value: float, count: int) -> int | str:
    return round(value / count) if count else "-"


def markdown(r: dict[str, Any], tenants: int, messages: int) -> list[str]:
    total = tenants * messages
    lines = [
        f"One agent serving {tenants:,} tenants x {messages} messages (user message and reply, "
        "about 75-80 characters each), each figure from a fresh interpreter after a full "
        "garbage collection. Models answer at once, without network. *Over baseline* is the "
        "RSS growth from just before the data was written (interpreter, imports and the "
        "agent(s) already there) to after; per message and per tenant divide it.",
        "",
        "## Resident memory",
        "",
    ]
    rows: list[list[Any]] = [
        ["bare interpreter", mb(r["interpreter"]["rss"]), "", "", ""],
        ["interpreter + `import tenantry` (baseline)", mb(r["tenantry-import"]["rss"]), "", "", ""],
    ]
    for key, label in (
        ("tenantry-turns", f"tenantry: 1 agent, {tenants:,} x {messages} by real turns"),
        ("tenantry-add-many", f"tenantry: 1 agent, {tenants:,} x {messages} by add_many"),
        ("agno-agents", f"agno: {tenants:,} Agent instances, no messages"),
        ("agno-shared", f"agno: 1 agent + InMemoryDb, {tenants:,} x {messages} by real runs"),
    ):
        p = r[key]
        grown = p["rss"] - p["rss_before"]
        rows.append([label, mb(p["rss"]), mb(grown), per(grown, tenants), per(grown, p["stored"])])
    rows.append(
        [
            "agno: interpreter + `import agno` (its baseline)",
            mb(r["agno-agents"]["rss_before"]),
            "",
            "",
            "",
        ]
    )
    lines += table(
        ["what", "RSS (MB)", "over baseline (MB)", "bytes per tenant", "bytes per message"],
        rows,
    )
    marginal, full = r["tenantry-tracemalloc-marginal"], r["tenantry-tracemalloc"]
    lines += [
        "",
        "## Bytes per stored message (tracemalloc)",
        "",
        "What tracemalloc counts for the store's content after `add_many`, divided by the "
        "messages stored: in one long scope (the cost of one more message) and over "
        f"{tenants:,} tenants x {messages} (with each scope's own structures).",
        "",
    ]
    rows = []
    for label, p in (("one scope", marginal), (f"{tenants:,} tenants x {messages}", full)):
        each, text = p["traced"] / p["stored"], p["text"] / p["stored"]
        rows.append([label, p["stored"], round(text, 1), round(each, 1), round(each - text, 1)])
    lines += table(
        ["case", "messages", "text bytes (mean)", "bytes per message", "over its text"], rows
    )
    overhead = marginal["traced"] / marginal["stored"] - marginal["text"] / marginal["stored"]
    overhead_all = full["traced"] / full["stored"] - full["text"] / full["stored"]
    turns = r["tenantry-turns"]
    lines += ["", "## Where we stand", ""]
    lines += table(
        ["target", "measured", "met"],
        [
            [
                f"a stored message costs ≤ its text + {TARGET_OVERHEAD} bytes (one more message "
                "in a scope)",
                f"text + {overhead:.1f}",
                "yes" if overhead <= TARGET_OVERHEAD else "no",
            ],
            [
                f"the same, counting each scope's structures ({messages} messages per scope)",
                f"text + {overhead_all:.1f}",
                "yes" if overhead_all <= TARGET_OVERHEAD else "no",
            ],
            [
                f"{tenants:,} idle tenants x {messages} messages on one agent < "
                f"{TARGET_RSS_MB} MB RSS: the whole process",
                f"{mb(turns['rss'])} MB",
                "yes" if turns["rss"] < TARGET_RSS_MB * MB else "no",
            ],
            [
                f"the same, over the {mb(turns['rss_before'])} MB of interpreter, tenantry "
                "and the agent",
                f"{mb(turns['rss'] - turns['rss_before'])} MB",
                "yes" if turns["rss"] - turns["rss_before"] < TARGET_RSS_MB * MB else "no",
            ],
        ],
    )
    assert total == turns["stored"], f"stored {turns['stored']} messages, expected {total}"
    return lines


def plot(r: dict[str, Any], tenants: int, messages: int, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = {
        "bare\ninterpreter": r["interpreter"]["rss"],
        "import\ntenantry": r["tenantry-import"]["rss"],
        f"tenantry\n1 agent\n{tenants:,} x {messages}": r["tenantry-turns"]["rss"],
        "import\nagno": r["agno-agents"]["rss_before"],
        f"agno\n{tenants:,} agents": r["agno-agents"]["rss"],
        f"agno\n1 agent\n{tenants:,} x {messages}": r["agno-shared"]["rss"],
    }
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(list(bars), [value / MB for value in bars.values()], color="tab:blue")
    ax.axhline(TARGET_RSS_MB, ls="--", c="grey", label=f"target {TARGET_RSS_MB} MB")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("Resident memory, each in a fresh interpreter")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "memory.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def run(config: Config) -> list[Report]:
    tenants: int = config.pick(10_000, 50)
    messages = 10
    marginal: int = config.pick(20_000, 300)
    results = measure(tenants, messages, marginal)
    workload = {
        "tenants": tenants,
        "messages_per_tenant": messages,
        "messages_in_one_scope_for_marginal_cost": marginal,
        "store": "InMemoryStore (tenantry), InMemoryDb (agno)",
        "model": "answers at once, no network (FunctionModel / a fake agno Model)",
        "rss_source": "/proc/self/status VmRSS after gc.collect(), fresh interpreter each",
    }
    return [
        Report(
            name="memory",
            title="Memory: one agent, many tenants",
            workload=workload,
            results=results,
            lines=markdown(results, tenants, messages),
            plots=[plot(results, tenants, messages, config.out)],
        )
    ]


__all__ = ["run"]
