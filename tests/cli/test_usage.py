"""`tenantry usage` and `tenantry budget` as an operator runs them, against a SQLite file."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantry import Budget, SQLiteStore, SyncStore
from tenantry.cli import app
from tenantry.storage.usage import usage_day
from tenantry.types import Usage

runner = CliRunner()
TODAY = usage_day(time.time())


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store whose alice used 150 tokens today and 50 a year ago, and bob 40 today."""
    path = tmp_path / "usage.db"
    with SyncStore(SQLiteStore(path)) as store:
        store.add_usage(Usage(requests=2, input_tokens=100, output_tokens=50), user_id="alice")
        year_ago = time.time() - 365 * 86400
        store.add_usage(Usage(requests=1, input_tokens=50), user_id="alice", now=year_ago)
        store.add_usage(Usage(requests=1, input_tokens=30, output_tokens=10), user_id="bob")
    return f"sqlite:///{path}"


def _rows(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines()]


def test_usage_of_a_user_prints_its_days_and_the_total(db: str) -> None:
    result = runner.invoke(app, ["usage", "alice", "--store", db, "--plain"])
    assert result.exit_code == 0, result.output
    header, *rows = _rows(result.stdout)
    assert header[:5] == ["day", "requests", "input_tokens", "output_tokens", "total_tokens"]
    assert [row[:5] for row in rows] == [
        [TODAY.isoformat(), "2", "100", "50", "150"],
        ["total", "2", "100", "50", "150"],
    ]
    start = (TODAY - timedelta(days=366)).isoformat()
    result = runner.invoke(app, ["usage", "alice", "--from", start, "--store", db, "--plain"])
    assert _rows(result.stdout)[-1][:2] == ["total", "3"]


def test_usage_without_a_user_prints_the_heaviest_users(db: str) -> None:
    result = runner.invoke(app, ["usage", "--top", "1", "--store", db, "--plain"])
    assert result.exit_code == 0, result.output
    assert [row[:5] for row in _rows(result.stdout)[1:]] == [["alice", "2", "100", "50", "150"]]
    table = runner.invoke(app, ["usage", "--store", db, "--table"])
    assert "heaviest users" in table.stdout
    assert "bob" in table.stdout


def test_a_bad_day_or_a_reversed_period_is_exit_code_2(db: str) -> None:
    assert runner.invoke(app, ["usage", "alice", "--from", "yesterday", "--store", db]).exit_code
    reversed_period = ["usage", "alice", "--from", "2026-02-01", "--to", "2026-01-01"]
    assert runner.invoke(app, [*reversed_period, "--store", db]).exit_code == 2


def test_budget_set_show_and_clear(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_BUDGET_REQUESTS_PER_DAY", "5")
    shown = runner.invoke(app, ["budget", "show", "alice", "--store", db])
    assert shown.exit_code == 0, shown.output
    assert "the default (settings)" in shown.stdout
    assert "requests_per_day: 5 (used 2)" in shown.stdout
    set_ = runner.invoke(app, ["budget", "set", "alice", "--tokens-per-day", "1000", "--store", db])
    assert set_.exit_code == 0, set_.output
    assert "the user's own" in set_.stdout
    assert "tokens_per_day: 1000 (used 150)" in set_.stdout
    assert "requests_per_day: no limit (used 2)" in set_.stdout
    with SyncStore(SQLiteStore(db.removeprefix("sqlite:///"))) as store:
        assert store.get_budget("alice") == Budget(tokens_per_day=1000)
    cleared = runner.invoke(app, ["budget", "clear", "alice", "--store", db])
    assert "the default (settings)" in cleared.stdout
    assert runner.invoke(app, ["budget", "set", "alice", "--tokens-per-day", "-1"]).exit_code == 2
