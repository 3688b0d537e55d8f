"""The README's quickstart runs as written and prints what it says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_quickstart_runs_and_gives_the_seed_answers(tmp_path: Path) -> None:
    quickstart = next(b for b in _python_blocks() if "user-b" in b and "agent.run" in b)
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
