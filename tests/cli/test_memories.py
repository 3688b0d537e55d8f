"""`tenantry memories ...` as an operator runs it: against a SQLite file, with typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantry import Message, SQLiteStore, Summary, SyncStore
from tenantry.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store URL whose file holds two memories of alice and one of bob."""
    path = tmp_path / "memories.db"
    with SyncStore(SQLiteStore(path)) as store:
        store.add_memory("The user likes green tea.", user_id="alice")
        store.add_memory("The user lives in Rome.", user_id="alice")
        store.add_memory("The user's name is Bob.", user_id="bob")
    return f"sqlite:///{path}"


def _texts(url: str, user: str) -> list[str]:
    with SyncStore(SQLiteStore(url.removeprefix("sqlite:///"))) as store:
        return [m.text for m in store.list_memories(user_id=user)]


def test_list_prints_one_memory_per_line_newest_first(db: str) -> None:
    result = runner.invoke(app, ["memories", "list", "alice", "--store", db])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(version, text) for _, version, text in rows] == [
        ("1", "The user lives in Rome."),
        ("1", "The user likes green tea."),
    ]
    limited = runner.invoke(app, ["memories", "list", "alice", "-n", "1", "--store", db])
    assert len(limited.stdout.splitlines()) == 1


def test_a_table_on_request(db: str) -> None:
    result = runner.invoke(app, ["memories", "list", "bob", "--table", "--store", db])
    assert result.exit_code == 0
    assert "memories of bob" in result.stdout
    assert "Bob." in result.stdout  # the text column wraps at the terminal's width


def test_search_shows_the_best_matches_of_that_user_only(db: str) -> None:
    result = runner.invoke(app, ["memories", "search", "alice", "tea", "--store", db])
    assert result.exit_code == 0
    assert [line.split("\t")[2] for line in result.stdout.splitlines()] == [
        "The user likes green tea."
    ]
    other = runner.invoke(app, ["memories", "search", "alice", "Bob name", "--store", db])
    assert other.exit_code == 1
    assert "has no memories to show" in other.stderr


def test_delete_one_by_id_and_never_another_users(db: str) -> None:
    listed = runner.invoke(app, ["memories", "list", "alice", "--store", db]).stdout
    rome = listed.splitlines()[0].split("\t")[0]
    bobs = runner.invoke(app, ["memories", "list", "bob", "--store", db]).stdout.split("\t")[0]
    crossed = runner.invoke(app, ["memories", "delete", "alice", bobs, "--store", db])
    assert crossed.exit_code == 1
    assert "has no memory" in crossed.stderr
    assert _texts(db, "bob") == ["The user's name is Bob."]
    # an id never begins with "-" (new_id), so it is never read as an option; "--" works too
    result = runner.invoke(app, ["memories", "delete", "--store", db, "--", "alice", rome])
    assert result.exit_code == 0
    assert "deleted 1 memory of user 'alice'" in result.stdout
    assert _texts(db, "alice") == ["The user likes green tea."]


def test_delete_all_after_confirmation(db: str) -> None:
    declined = runner.invoke(app, ["memories", "delete", "alice", "--all", "--store", db], "n\n")
    assert declined.exit_code == 1
    assert len(_texts(db, "alice")) == 2
    agreed = runner.invoke(app, ["memories", "delete", "alice", "--all", "--store", db], "y\n")
    assert agreed.exit_code == 0
    assert "deleted 2 memories of user 'alice'" in agreed.stdout
    assert _texts(db, "alice") == []
    assert _texts(db, "bob") == ["The user's name is Bob."]
    again = runner.invoke(app, ["memories", "delete", "alice", "--all", "-y", "--store", db])
    assert again.exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["memories", "delete", "alice"],
        ["memories", "delete", "alice", "some-id", "--all"],
        ["memories", "list", "x" * 300],
        ["memories", "delete", "alice", "bad\x01id"],
    ],
)
def test_bad_input_is_exit_code_2(db: str, args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--store", db])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(_texts(db, "alice")) == 2


def test_a_user_with_no_memories_is_exit_code_1(db: str) -> None:
    result = runner.invoke(app, ["memories", "list", "carol", "--store", db])
    assert result.exit_code == 1
    assert "user 'carol' has no memories to show" in result.stderr


def test_tenantry_chat_learns_with_memory_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    monkeypatch.setenv("TENANTRY_MEMORY", "on")
    said = runner.invoke(
        app, ["chat", "-u", "alice", "-s", "s1", "-m", "My name is Alice", "--store", url]
    )
    assert said.exit_code == 0, said.output
    assert _texts(url, "alice") == ["The user's name is Alice."]  # learned before exit
    asked = runner.invoke(
        app, ["chat", "-u", "alice", "-s", "s2", "-m", "What's my name?", "--store", url]
    )
    assert asked.output.strip() == "Your name is Alice."
    monkeypatch.setenv("TENANTRY_MEMORY", "off")
    off = runner.invoke(
        app, ["chat", "-u", "alice", "-s", "s3", "-m", "What's my name?", "--store", url]
    )
    assert "don't know your name" in off.output


def test_users_export_and_delete_cover_memories_and_summaries(db: str) -> None:
    with SyncStore(SQLiteStore(db.removeprefix("sqlite:///"))) as store:
        store.add(Message.user("hi"), user_id="alice", session_id="s1")
        first = store.get_messages("alice", "s1")[0]
        store.set_summary(
            Summary("The user said hi.", first.id, 1.0), user_id="alice", session_id="s1"
        )
    export = runner.invoke(app, ["users", "export", "alice", "--store", db])
    assert export.exit_code == 0, export.output
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert [r["type"] for r in lines] == ["message", "state", "summary", "memory", "memory"]
    assert lines[2]["summary"]["text"] == "The user said hi."
    assert {r["text"] for r in lines[3:]} == {
        "The user likes green tea.",
        "The user lives in Rome.",
    }
    only_memories = runner.invoke(app, ["users", "export", "bob", "--store", db])
    assert [json.loads(x)["type"] for x in only_memories.stdout.splitlines()] == ["memory"]
    deleted = runner.invoke(app, ["users", "delete", "alice", "--yes", "--store", db])
    assert "deleted 1 session(s) of user 'alice', and 2 memories" in deleted.stdout
    assert _texts(db, "alice") == []
    assert _texts(db, "bob") == ["The user's name is Bob."]
    gone = runner.invoke(app, ["users", "delete", "bob", "--yes", "--store", db])
    assert gone.exit_code == 0
    assert _texts(db, "bob") == []
