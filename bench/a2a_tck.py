"""The official A2A TCK against `tenantry serve`: `python -m bench.a2a_tck [TCK_DIR]`.

The A2A Technology Compatibility Kit (github.com/a2aproject/a2a-tck, branch `1.0-dev`) is not
on PyPI, and CI cannot reach GitHub, so this is neither part of `python -m bench` nor of CI.
Point it at a checkout (the argument, or `A2A_TCK_DIR`); without one it says so and exits 0.

1. The TCK runs from its checkout, in its own virtualenv (`<checkout>/.venv`, or `--venv`):
   when that lacks one of the TCK's dependencies (its pyproject.toml's, all on PyPI), they
   are installed into it with pip. The TCK itself is never installed or built.
2. `tenantry serve` on a free loopback port (offline model, in-memory store, no rate limit),
   first in open mode, then with one API key (auth mode).
3. `run_tck.py --transport jsonrpc --level must|should|may` against each, with a pytest
   plugin this script writes into a temporary directory (`SHIM`): every request the TCK
   sends must go to loopback, and in auth mode carries the key (the TCK has no option for
   credentials).
4. Per mode and level: pytest's counts (from the TCK's JUnit report), the failing tests, and
   the TCK's own count per requirement of that level (its compatibility.json), written to
   bench/results/a2a_tck.md and .json (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.common import RESULTS, Config, Report, table, write
from tenantry.server.auth import hash_api_key, new_api_key
from tests.support.servers import spawn_server

LEVELS = ("must", "should", "may")
RUN_TIMEOUT = 900
"""Seconds one level may take (each takes a few seconds on a laptop)."""

SHIM = '''"""pytest plugin written by tenantry's bench/a2a_tck.py (not part of the TCK): every HTTP
request of the TCK must go to loopback, and carries X-API-Key when TENANTRY_TCK_API_KEY is set."""

import os

import httpx

LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEY = os.environ.get("TENANTRY_TCK_API_KEY", "")


def _checked(request):
    if request.url.host not in LOOPBACK:
        raise httpx.ConnectError(f"refused: {request.url.host} is not loopback", request=request)
    if KEY and "x-api-key" not in request.headers:
        request.headers["X-API-Key"] = KEY
    return request


_sync = httpx.HTTPTransport.handle_request
_async = httpx.AsyncHTTPTransport.handle_async_request


def handle_request(self, request):
    return _sync(self, _checked(request))


async def handle_async_request(self, request):
    return await _async(self, _checked(request))


httpx.HTTPTransport.handle_request = handle_request
httpx.AsyncHTTPTransport.handle_async_request = handle_async_request
'''


def tck_dependencies(checkout: Path) -> list[str]:
    """The TCK's runtime requirements, as its pyproject.toml lists them."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text(encoding="utf-8"))
    return list(project["project"]["dependencies"])


def tck_python(checkout: Path, venv: Path) -> Path:
    """Give the Python of the TCK's virtualenv, made and filled with its requirements first
    when it lacks any of them."""
    python = venv / "bin" / "python"
    requirements = tck_dependencies(checkout)
    if not python.exists():
        print(f"making the TCK's virtualenv {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = "import importlib.metadata as m, sys; [m.version(n) for n in sys.argv[1:]]"
    names = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements]
    if subprocess.run([str(python), "-c", check, *names], capture_output=True).returncode:
        print(f"installing the TCK's requirements: {', '.join(requirements)}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    return python


def _commit(checkout: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return found.stdout.strip() or "unknown"


def junit_outcomes(path: Path) -> list[tuple[str, str, str]]:
    """(test id, outcome, message) of every test case of a JUnit report."""
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname', '').split('.')[-1]}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = " ".join((child.get("message") or "").split())[:200]
        outcomes.append((test, outcome, message))
    return outcomes


def _why(errors: list[str]) -> str:
    """The first reason the TCK gives for a failed requirement, on one short line."""
    text = " ".join(str(errors[0]).split()) if errors else ""
    skipped = re.search(r"Skipped: (.*?)['\"]?\)?$", text)
    return (f"skipped in setup: {skipped.group(1)}" if skipped else text)[:160]


def run_level(python: Path, checkout: Path, url: str, level: str, env: dict[str, str]) -> Any:
    """Run one level of the TCK against `url`; give its counts and failures."""
    command = [
        str(python),
        "run_tck.py",
        "--sut-host",
        url,
        "--transport",
        "jsonrpc",
        "--level",
        level,
        "--",
        "-p",
        "tenantry_tck_shim",
    ]
    done = subprocess.run(
        command, cwd=checkout, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    reports = checkout / "reports"
    outcomes = junit_outcomes(reports / "junitreport.xml")
    counts = collections.Counter(outcome for _, outcome, _ in outcomes)
    compatibility = json.loads((reports / "compatibility.json").read_text(encoding="utf-8"))
    of_level = {
        rid: entry
        for rid, entry in compatibility["per_requirement"].items()
        if entry["level"] == level.upper()
    }
    requirements = {rid: entry["status"] for rid, entry in of_level.items()}
    return {
        "exit_code": done.returncode,
        "pytest": {k: counts.get(k, 0) for k in ("passed", "failed", "error", "skipped")},
        "not_passed": [
            {"test": test, "outcome": outcome, "message": message}
            for test, outcome, message in outcomes
            if outcome in ("failed", "error")
        ],
        "requirements": dict(collections.Counter(requirements.values())),
        "failed_requirements": {
            rid: _why(entry["errors"])
            for rid, entry in sorted(of_level.items())
            if entry["status"] == "FAIL"
        },
        "compatibility": compatibility["summary"].get(f"{level}_compatibility", ""),
    }


def run_mode(python: Path, checkout: Path, shim: Path, mode: str) -> dict[str, Any]:
    """Serve tenantry in `mode` (open or auth) and run every level against it."""
    key = new_api_key()
    serve_env = {"TENANTRY_RATE_LIMIT_PER_MINUTE": "0", "TENANTRY_MODEL": "offline"}
    tck_env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{checkout}"}
    if mode == "auth":
        serve_env["TENANTRY_API_KEYS"] = json.dumps({hash_api_key(key): "tck"})
        tck_env["TENANTRY_TCK_API_KEY"] = key
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="tenantry-tck-serve-") as cwd,
        spawn_server(Path(cwd), "--store", "memory://", env=serve_env) as server,
    ):
        for level in LEVELS:
            print(f"== {mode} {level}", flush=True)
            results[level] = run_level(python, checkout, server.url, level, tck_env)
            print(f"   {results[level]['pytest']}", flush=True)
    return results


def report(checkout: Path, results: dict[str, dict[str, Any]]) -> Report:
    commit = _commit(checkout)
    rows = []
    for mode, levels in results.items():
        for level, found in levels.items():
            counts, needs = found["pytest"], found["requirements"]
            rows.append(
                [
                    mode,
                    level,
                    counts["passed"],
                    counts["failed"] + counts["error"],
                    counts["skipped"],
                    needs.get("PASS", 0),
                    needs.get("FAIL", 0),
                    needs.get("SKIPPED", 0) + needs.get("NOT TESTED", 0),
                    found["compatibility"],
                ]
            )
    lines = [
        f"The A2A TCK (a2aproject/a2a-tck, commit `{commit[:12]}`), JSON-RPC transport, against "
        "`tenantry serve` (offline model, in-memory store, no rate limit) in open mode and with "
        "an API key. Skipped tests are mostly the gRPC and HTTP+JSON variants (the card "
        "declares JSON-RPC only). Requirements: the TCK's own count of that level's "
        "requirements (its compatibility.json); it counts a test that skips in its setup as a "
        "FAIL.",
        "",
        *table(
            [
                "mode",
                "level",
                "passed",
                "failed",
                "skipped",
                "requirements passed",
                "failed",
                "skipped or not tested",
                "TCK compatibility",
            ],
            rows,
        ),
        "",
        "Tests that did not pass (each once, with the first mode it failed in):",
        "",
    ]
    seen: set[tuple[str, str]] = set()
    for mode, levels in results.items():
        for level, found in levels.items():
            for failed in found["not_passed"]:
                if (failed["test"], level) in seen:
                    continue
                seen.add((failed["test"], level))
                lines.append(f"- {level}, {mode}: `{failed['test']}`: {failed['message']}")
    lines += ["", "Requirements the TCK reports as FAIL (each once, with the first mode):", ""]
    listed: set[str] = set()
    for mode, levels in results.items():
        for level, found in levels.items():
            for rid, why in found["failed_requirements"].items():
                if rid not in listed:
                    listed.add(rid)
                    lines.append(f"- {level}, {mode}: {rid}: {why}")
    workload = {"tck_commit": commit, "transport": "jsonrpc", "levels": list(LEVELS)}
    return Report("a2a_tck", "The A2A TCK against tenantry serve", workload, results, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.a2a_tck", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("checkout", nargs="?", type=Path, default=os.environ.get("A2A_TCK_DIR"))
    parser.add_argument("--venv", type=Path, help="the TCK's virtualenv (<checkout>/.venv)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    checkout = Path(args.checkout).resolve() if args.checkout else None
    if checkout is None or not (checkout / "run_tck.py").is_file():
        where = f" ({checkout} has no run_tck.py)" if checkout else ""
        print(
            f"skipped: no A2A TCK checkout given{where}. Clone "
            "https://github.com/a2aproject/a2a-tck (branch 1.0-dev) and pass its path, or set "
            "A2A_TCK_DIR.",
            flush=True,
        )
        return 0
    python = tck_python(checkout, args.venv or checkout / ".venv")
    with tempfile.TemporaryDirectory(prefix="tenantry-tck-shim-") as shim:
        (Path(shim) / "tenantry_tck_shim.py").write_text(SHIM, encoding="utf-8")
        results = {mode: run_mode(python, checkout, Path(shim), mode) for mode in ("open", "auth")}
    path = write(report(checkout, results), Config(out=args.out))
    print(path.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
