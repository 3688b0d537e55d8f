"""The benchmarks' smoke mode: `python -m bench --smoke` runs every suite with tiny counts and
writes every result file, so the harness that README's figures come from keeps working.

The figures of a smoke run mean nothing; only that each suite ran, measured every framework
and backend it should, and wrote its JSON and Markdown is checked here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    wrk = json.loads((tmp_path / "wrk.json").read_text())["results"]
    if shutil.which("wrk") is None:
        assert wrk["skipped"].startswith("skipped: wrk is not installed"), wrk
    else:
        assert set(wrk["servers"]) == {
            "bare FastAPI",
            "tenantry serve, memory",
            "tenantry serve, SQLite",
        }
        for name, levels in wrk["servers"].items():
            for level, measured in levels.items():
                assert measured["requests"] > 0, (name, level)
                assert measured["errors"] == {}, (name, level, measured["errors"])
    streams = json.loads((tmp_path / "first_token.json").read_text())["results"]
    assert set(streams["transports"]) == {"chat", "openai", "a2a"}
    for by_level in streams["transports"].values():
        assert all(r["first_delta"]["n"] > 0 for r in by_level.values())
    turns = json.loads((tmp_path / "turn_raw.json").read_text())["results"]["sides"]
    assert set(turns) == {"tenantry", "raw sqlite3", "raw sqlite3 + usage"}
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
    accounting = json.loads((tmp_path / "accounting.json").read_text())["results"]
    for backend in expected:
        counted = accounting[backend]
        assert counted["counted_requests_user_0"] == counted["turns_with_accounting_user_0"]


def test_the_a2a_tck_run_skips_without_a_checkout_and_says_where_to_get_one(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "A2A_TCK_DIR"}
    for given in ([], [str(tmp_path)]):  # none, or a folder that is no TCK checkout
        run = subprocess.run(
            [sys.executable, "-m", "bench.a2a_tck", *given, "--out", str(tmp_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("skipped: no A2A TCK checkout given")
        assert "github.com/a2aproject/a2a-tck" in run.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_tck_shim_keeps_the_tck_on_loopback_and_sends_the_key(tmp_path: Path) -> None:
    from bench.a2a_tck import SHIM
    from tests.support.servers import serve

    (tmp_path / "tenantry_tck_shim.py").write_text(SHIM)
    code = (
        "import sys, httpx, tenantry_tck_shim\n"
        "print(httpx.get(sys.argv[1]).text)\n"
        "try:\n    httpx.get('http://example.com/')\nexcept httpx.ConnectError as e:\n"
        "    print(e)\n"
    )

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = dict(scope["headers"]).get(b"x-api-key", b"none")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": key})

    with serve(echo) as url:
        run = subprocess.run(
            [sys.executable, "-c", code, url],
            env={**os.environ, "PYTHONPATH": str(tmp_path), "TENANTRY_TCK_API_KEY": "tnt_k"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["tnt_k", "refused: example.com is not loopback"]
