"""`tenantry users ...` as an operator runs it: against a SQLite file, with typer's runner."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tenantry import Message, SQLiteStore, SyncStore
from tenantry.cli import app
from tenantry.cli.users import parse_duration
from tests.conftest import FakeClock

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store URL whose file holds alice (two sessions, with state) and bob."""
    path = tmp_path / "users.db"
    with SyncStore(SQLiteStore(path)) as store:
        store.add_many([Message.user("hi"), Message.assistant("hello alice")], user_id="alice")
        store.add_many([Message.user("cart?")], user_id="alice", session_id="shop", state={"n": 2})
        store.add(Message.user("bob here"), user_id="bob")
    return f"sqlite:///{path}"


def _users(url: str) -> list[str]:
    with SyncStore(SQLiteStore(url.removeprefix("sqlite:///"))) as store:
        return [f"{u}/{s}" for u in store.list_users() for s in store.list_sessions(u)]


def test_list_prints_one_user_per_line(db: str) -> None:
    result = runner.invoke(app, ["users", "list", "--store", db])
    assert result.exit_code == 0
    assert result.stdout == "alice\nbob\n"
    result = runner.invoke(app, ["users", "list", "--sessions", "--store", db])
    assert result.stdout == "alice\tdefault\nalice\tshop\nbob\tdefault\n"


def test_list_of_an_empty_store_says_so_on_stderr(tmp_path: Path) -> None:
    result = runner.invoke(app, ["users", "list", "--store", f"sqlite:///{tmp_path / 'e.db'}"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no users stored" in result.stderr


def test_the_store_defaults_to_the_settings(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_STORE_URL", db)
    assert runner.invoke(app, ["users", "list"]).stdout == "alice\nbob\n"


def test_delete_removes_every_session_of_one_user(db: str) -> None:
    result = runner.invoke(app, ["users", "delete", "alice", "--yes", "--store", db])
    assert result.exit_code == 0, result.output
    assert "deleted 2 session(s) of user 'alice'" in result.stdout
    assert _users(db) == ["bob/default"]


def test_delete_one_session_after_confirmation(db: str) -> None:
    declined = runner.invoke(app, ["users", "delete", "alice", "-s", "shop", "--store", db], "n\n")
    assert declined.exit_code == 1
    assert _users(db) == ["alice/default", "alice/shop", "bob/default"]
    agreed = runner.invoke(app, ["users", "delete", "alice", "-s", "shop", "--store", db], "y\n")
    assert agreed.exit_code == 0
    assert _users(db) == ["alice/default", "bob/default"]


@pytest.mark.parametrize("command", ["delete", "export"])
def test_an_unknown_user_or_session_is_exit_code_1(db: str, command: str) -> None:
    result = runner.invoke(app, ["users", command, "carol", "--store", db])
    assert result.exit_code == 1
    assert "user 'carol' has no stored sessions" in result.stderr
    result = runner.invoke(app, ["users", command, "alice", "--session", "nope", "--store", db])
    assert result.exit_code == 1
    assert "no session 'nope'" in result.stderr
    assert len(_users(db)) == 3


def test_export_writes_json_lines_with_sessions_and_state(db: str) -> None:
    result = runner.invoke(app, ["users", "export", "alice", "--store", db])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["type"], r["session_id"], r.get("content")) for r in lines] == [
        ("message", "default", "hi"),
        ("message", "default", "hello alice"),
        ("state", "default", None),
        ("message", "shop", "cart?"),
        ("state", "shop", None),
    ]
    assert {r["user_id"] for r in lines} == {"alice"}
    assert lines[-1]["state"] == {"n": 2}
    assert Message.from_dict(lines[1]).role == "assistant"


def test_export_to_a_file(db: str, tmp_path: Path) -> None:
    out = tmp_path / "bob.jsonl"
    result = runner.invoke(app, ["users", "export", "bob", "-o", str(out), "--store", db])
    assert result.exit_code == 0
    assert "wrote 2 line(s)" in result.stderr
    assert [json.loads(x)["type"] for x in out.read_text().splitlines()] == ["message", "state"]
    bad = runner.invoke(app, ["users", "export", "bob", "-o", str(tmp_path), "--store", db])
    assert bad.exit_code == 1
    assert "cannot write" in bad.stderr


def test_prune_deletes_only_sessions_idle_longer_than_the_duration(tmp_path: Path) -> None:
    path = tmp_path / "prune.db"
    two_days_ago = FakeClock(start=time.time() - 2 * 86400)
    with SyncStore(SQLiteStore(path, clock=two_days_ago)) as old:
        old.add(Message.user("old"), user_id="idle")
        old.add(Message.user("old"), user_id="both", session_id="old")
    with SyncStore(SQLiteStore(path)) as fresh:
        fresh.add(Message.user("new"), user_id="both", session_id="new")
    url = f"sqlite:///{path}"
    result = runner.invoke(app, ["users", "prune", "--inactive", "24h", "--store", url])
    assert result.exit_code == 0, result.output
    assert "deleted 2 session(s) inactive for more than 1 day" in result.stdout
    assert _users(url) == ["both/new"]


@pytest.mark.parametrize("bad", ["", "24", "h", "-1h", "1h-", "24 hours", "1y", "1.h"])
def test_a_bad_duration_is_a_usage_error(db: str, bad: str) -> None:
    result = runner.invoke(app, ["users", "prune", "--inactive", bad, "--store", db])
    assert result.exit_code == 2
    assert "is not a duration" in result.stderr
    assert "Traceback" not in result.output
    assert len(_users(db)) == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("1.5H", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_raises_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("not-a-url", 2, "store URL must look like scheme://"),
        ("ftp://x", 2, "no store backend for scheme 'ftp'"),
        ("sqlite:///x.db?colour=red", 2, "unknown store option(s) colour"),
        ("redis://127.0.0.1:1/0", 1, "Redis is unreachable"),
        ("postgresql://postgres@127.0.0.1:1/x?connect_timeout=1", 1, "is unreachable"),
    ],
)
def test_a_bad_or_unreachable_store_is_a_clear_error(url: str, code: int, message: str) -> None:
    result = runner.invoke(app, ["users", "list", "--store", url])
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_user_id_is_a_usage_error(db: str) -> None:
    result = runner.invoke(app, ["users", "export", "x" * 300, "--store", db])
    assert result.exit_code == 2
    assert "at most 255 characters" in result.stderr


@pytest.mark.parametrize(
    ("inactive", "said"),
    [
        ("24h", "1 day"),
        ("1h30m", "1 h 30 min"),
        ("90s", "1 min 30 s"),
        ("2w", "14 days"),
        ("1d2h", "1 day 2 h"),
        ("0.5s", "0.5 s"),
    ],
)
def test_prune_says_the_duration_as_a_person_writes_it(
    tmp_path: Path, inactive: str, said: str
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, ["users", "prune", "--inactive", inactive, "--store", url])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"deleted 0 session(s) inactive for more than {said}\n"
