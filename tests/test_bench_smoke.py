"""The benchmarks' smoke mode: `python -m bench --smoke` runs every suite with tiny counts and
writes every result file, so the harness that README's figures come from keeps working.

The figures of a smoke run mean nothing; only that each suite ran, measured every framework
and backend it should, and wrote its JSON and Markdown is checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITES = (
    "frameworks",
    "stores",
    "http",
    "memory",
    "tracing",
    "tenants",
    "memories",
    "memory_overhead",
)


@pytest.mark.slow
def test_python_m_bench_smoke_writes_every_result(tmp_path: Path) -> None:
    pytest.importorskip(
        "agno", reason="the peers come with the bench extra: pip install -e '.[bench]'"
    )
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for suite in SUITES:
        document = json.loads((tmp_path / f"{suite}.json").read_text())
        assert document["smoke"] is True
        assert document["results"], f"{suite} measured nothing"
        markdown = (tmp_path / f"{suite}.md").read_text()
        assert "Smoke run" in markdown
        for plot in document["plots"]:
            assert (tmp_path / Path(plot).name).stat().st_size > 0

    frameworks = json.loads((tmp_path / "frameworks.json").read_text())["results"]
    assert set(frameworks["frameworks"]) == {"tenantry", "agno", "openai-agents", "langgraph"}
    for name, measured in frameworks["frameworks"].items():
        assert measured["available"] is True, name
        assert measured["reads_history"], f"{name} did not show the model its history"
    stores = json.loads((tmp_path / "stores.json").read_text())["results"]
    expected = {"memory", "sqlite"}
    if os.environ.get("TENANTRY_TEST_POSTGRES_URL"):
        expected.add("postgres")
    if os.environ.get("TENANTRY_TEST_REDIS_URL"):
        expected.add("redis")
    assert expected <= set(stores)
    tracing = json.loads((tmp_path / "tracing.json").read_text())["results"]
    assert tracing["absent"]["opentelemetry_importable"] is False
    assert [tracing[m]["traced"] for m in ("absent", "unset", "noop", "sdk")] == [
        False,
        False,
        False,
        True,
    ]
    tenants = json.loads((tmp_path / "tenants.json").read_text())["results"]["backends"]
    measured = {name for name, result in tenants.items() if result.get("available")}
    assert measured == {"sqlite", "postgres"} & expected, tenants
    for name in measured:
        assert "failed" not in tenants[name], tenants[name]
        assert [p["tenants"] for p in tenants[name]["tenants"]] == [10, 100]
    memories = json.loads((tmp_path / "memories.json").read_text())["results"]
    for backend in expected:
        assert "skipped" not in memories["backends"][backend], backend
    assert all("skipped" not in peer for peer in memories["peers"].values())
    overhead = json.loads((tmp_path / "memory_overhead.json").read_text())["results"]
    for backend in expected:
        assert overhead[backend]["prompts_with_facts"] == overhead[backend]["turns_with_memory"]
