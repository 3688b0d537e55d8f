"""README.md is true to the letter: its python programs and curl sessions run as written
against a real `tenantry serve` and print what their comments say, and the ways it gives to
change the port work through make.

Conventions the README keeps so this can check it: a `# comment` on a `print(...)` line is
exactly what that print writes; a `# comment` line after a curl command is exactly its
output. The only change made before running is the server's address (the tests' server
listens on a free port, not 8080)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Spawned, spawn_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SERVER = "http://localhost:8080"
_PRINT_COMMENT = re.compile(r"^\s*print\(.*\)\s+# (.*)$")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _python_blocks() -> list[str]:
    return _blocks("python")


DEDICATED = ("AnthropicModel(", "MCPTools(", "ConsoleSpanExporter", "OpenTelemetryMiddleware")
"""Programs that need a fake provider API or print spans: tests of their own run them."""


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a new user's shell: no TENANTRY_* or OPENAI_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    return {**env, "HOME": str(home)}


def _run_python(block: str, cwd: Path, url: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", block.replace(SERVER, url)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(cwd),
        timeout=120,
    )
    assert result.returncode == 0, f"{block}\n{result.stderr}"
    return result.stdout.splitlines()


def _curl_session(block: str) -> list[tuple[str, str]]:
    """Give the (command, expected output) pairs of a block of curl commands."""
    pairs, command = [], []
    for line in block.splitlines():
        if line.startswith("# "):
            pairs.append(("\n".join(command), line[2:]))
            command = []
        elif line.strip():
            command.append(line)
    assert not command, f"a curl command without its output: {command}"
    return pairs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    """A real `tenantry serve` with no configuration (SQLite in its own directory)."""
    with spawn_server(tmp_path_factory.mktemp("server")) as spawned:
        yield spawned


def test_the_quickstart_runs_and_gives_the_seed_answers(tmp_path: Path) -> None:
    quickstart = next(b for b in _blocks("python") if "user-b" in b and "agent.run" in b)
    assert len(quickstart.strip().splitlines()) <= 15
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", quickstart],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[1] == "Your name is Alice."
    assert lines[3] == "Your name is Bob."
    assert lines[4] == "Your name is Alice."


def test_every_curl_session_gives_the_answers_it_shows(server: Spawned) -> None:
    sessions = [b for b in _blocks("bash") if b.lstrip().startswith("curl ")]
    assert sessions, "README has no curl session"
    for block in sessions:
        pairs = _curl_session(block)
        assert all(command.startswith("curl ") for command, _ in pairs), block
        for command, expected in pairs:
            result = subprocess.run(
                ["bash", "-c", command.replace(SERVER, server.url)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == expected, command


def test_every_python_program_runs_and_prints_what_its_comments_say(
    server: Spawned, tmp_path: Path
) -> None:
    # The seed's session first, so the OpenAI and A2A clients have user-a's history to ask.
    for user, text in [("user-a", "My name is Alice"), ("user-b", "My name is Bob")]:
        httpx.post(f"{server.url}/chat", json={"user_id": user, "message": text}).raise_for_status()
    blocks = [b for b in _blocks("python") if not any(marker in b for marker in DEDICATED)]
    assert len(blocks) >= 6
    for block in blocks:
        lines = _run_python(block, tmp_path, server.url)
        prints = [line for line in block.splitlines() if line.lstrip().startswith("print(")]
        assert len(lines) == len(prints), f"{block}\nprinted {lines}"
        for said, line in zip(lines, prints, strict=True):
            expected = _PRINT_COMMENT.match(line)
            if expected:
                assert said == expected.group(1), f"{line}\nprinted {said!r}"
    assert any(SERVER in b for b in blocks), "no README program talks to the server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_serve(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Run `make serve ARGS` in the checkout with this interpreter's virtualenv (the
    install step skipped: -o treats its stamp as up to date)."""
    venv = Path(sys.prefix)
    make = shutil.which("make") or "make"
    return subprocess.Popen(
        [make, "-s", "-o", f"{venv}/.installed-server", "serve", f"VENV={venv}", *args],
        cwd=ROOT,
        env={**env, "TENANTRY_STORE_URL": "memory://"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _listening_on(process: subprocess.Popen[str], port: int) -> list[str]:
    """Read the server's output until it listens on `port` (or ends); stop it; give the
    output."""
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if f"Uvicorn running on http://127.0.0.1:{port}" in line:
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(60), lines
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        reader.join(10)
    return lines


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_the_readme_ways_to_change_the_port_work_through_make(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    port = _free_port()
    _listening_on(_make_serve(f"SERVE_ARGS=--port {port}", env=env), port)
    port = _free_port()
    _listening_on(_make_serve(env={**env, "TENANTRY_PORT": str(port)}), port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _make_serve(f"SERVE_ARGS=--port {port}", env=env)
        output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert output.splitlines()[0] == (
        f"error: port {port} on 127.0.0.1 is in use; pick another with --port or TENANTRY_PORT"
    )
    assert "Errno" not in output


def _block(marker: str) -> str:
    return next(b for b in _python_blocks() if marker in b)


def _run(code: str, tmp_path: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_quickstart_runs_unchanged_on_anthropic_with_one_setting(tmp_path: Path) -> None:
    from tests.support.fake_anthropic import AnthropicReply, FakeAnthropic
    from tests.support.servers import serve

    api = FakeAnthropic(replies=[AnthropicReply(text=f"claude says {n}") for n in range(5)])
    quickstart = next(b for b in _python_blocks() if "user-b" in b and "agent.run" in b)
    with serve(api.app()) as url:
        out = _run(
            quickstart,
            tmp_path,
            TENANTRY_MODEL="anthropic:claude-test",  # the one setting
            ANTHROPIC_API_KEY="sk-ant-test",
            ANTHROPIC_BASE_URL=url,
        )
    assert out.splitlines() == [f"claude says {n}" for n in range(5)]
    assert {r["model"] for r in api.requests} == {"claude-test"}
    assert api.requests[0]["system"] == "You are a helpful customer service agent."
    # the last turn is user-a's: Claude is shown user-a's history and nothing of user-b's
    last = api.requests[4]["messages"]
    texts = [block["text"] for turn in last for block in turn["content"]]
    assert texts == [
        "My name is Alice",
        "claude says 0",
        "What's my name?",
        "claude says 1",
        "What's my name?",
    ]


def test_the_anthropic_example_runs(tmp_path: Path) -> None:
    from tests.support.fake_anthropic import AnthropicReply, FakeAnthropic
    from tests.support.servers import serve

    api = FakeAnthropic(replies=[AnthropicReply(text="Hello Alice!")])
    with serve(api.app()) as url:
        out = _run(
            _block("AnthropicModel("),
            tmp_path,
            ANTHROPIC_API_KEY="sk-ant-test",
            ANTHROPIC_BASE_URL=url,
        )
    assert out.strip() == "Hello Alice!"
    assert api.requests[0]["max_tokens"] == 1024


def test_the_mcp_and_tracing_examples_run(tmp_path: Path) -> None:
    _run(_block("MCPTools("), tmp_path)
    printed = _run(_block("ConsoleSpanExporter"), tmp_path)
    assert '"name": "invoke_agent agent"' in printed
    assert '"name": "chat offline"' in printed
    assert '"user.hash"' in printed
    assert "user-a" not in printed
    _run(_block("OpenTelemetryMiddleware"), tmp_path)


def _run_lines(snippet: str, tmp_path: Path) -> list[str]:
    """Run a README snippet in a clean environment; give the lines it printed."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_memory_quickstart_knows_each_user_in_a_new_session(tmp_path: Path) -> None:
    snippet = next(b for b in _python_blocks() if "memory=True" in b and "flush()" in b)
    promised = [line.removeprefix("# ") for line in snippet.splitlines() if line.startswith("# ")]
    assert _run_lines(snippet, tmp_path) == promised
    assert promised[:2] == ["Your name is Alice.", "Your name is Bob."]


def test_the_memory_snippet_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    snippet = next(b for b in _python_blocks() if "add_memory" in b and "asyncio.run" in b)
    assert _run_lines(snippet, tmp_path) == [
        '["The user\'s name is Alice"]',
        "stale version: read it again",
        "[]",
    ]
    assert 'It prints `["The user\'s name is Alice"]`, `stale version' in README.read_text()
