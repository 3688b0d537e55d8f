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


def _run(snippet: str, tmp_path: Path) -> list[str]:
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
    assert _run(snippet, tmp_path) == promised
    assert promised[:2] == ["Your name is Alice.", "Your name is Bob."]


def test_the_memory_snippet_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    snippet = next(b for b in _python_blocks() if "add_memory" in b and "asyncio.run" in b)
    assert _run(snippet, tmp_path) == [
        '["The user\'s name is Alice"]',
        "stale version: read it again",
        "[]",
    ]
    assert 'It prints `["The user\'s name is Alice"]`, `stale version' in README.read_text()
