"""`tenantry chat`: one message or an interactive session, on any store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantry.cli import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_chat_remembers_across_invocations_on_one_store(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    first = runner.invoke(app, ["chat", "-u", "alice", "-m", "My name is Alice", "--store", url])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["chat", "-u", "alice", "-m", "What's my name?", "--store", url])
    assert again.output.strip() == "Your name is Alice."
    other = runner.invoke(app, ["chat", "-u", "bob", "-m", "What's my name?", "--store", url])
    assert "don't know your name" in other.output


def test_interactive_chat_streams_replies_until_end_of_input(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["chat", "--store", "memory://"], input="My name is Eve\n\nWhat's my name?\n"
    )
    assert result.exit_code == 0, result.output
    assert "Your name is Eve." in result.output


def test_bad_input_is_a_clear_error_not_a_traceback(runner: CliRunner) -> None:
    result = runner.invoke(app, ["chat", "-u", "", "-m", "hi", "--store", "memory://"])
    assert result.exit_code == 1
    assert "user id '' must not be empty" in result.output
    assert "Traceback" not in result.output
    bad_url = runner.invoke(app, ["chat", "-m", "hi", "--store", "mysql://x"])
    assert bad_url.exit_code == 1
    assert "no store backend" in bad_url.output
