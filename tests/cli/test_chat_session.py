"""An interactive `tenantry chat` as a person uses it: it says how to quit, the quit words
quit (and never reach the model), and Ctrl-C at the prompt ends it at once, in a real
terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantry import SQLiteStore, SyncStore
from tenantry.cli import app

TENANTRY = str(Path(sys.executable).parent / "tenantry")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TENANTRY_MODEL", "TENANTRY_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_the_chat_says_how_to_quit(runner: CliRunner) -> None:
    result = runner.invoke(app, ["chat", "-u", "alice", "--store", "memory://"], input="")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == (
        "chatting as 'alice' in session 'default' with offline; "
        "type /quit or exit (or press Ctrl-D or Ctrl-C) to leave"
    )


@pytest.mark.parametrize("word", ["exit", "quit", "/quit", "/exit", "  /QUIT  ", "Exit"])
def test_a_quit_word_quits_and_never_reaches_the_model(
    runner: CliRunner, tmp_path: Path, word: str
) -> None:
    path = tmp_path / "chat.db"
    typed = f"My name is Eve\n{word}\nWhat's my name?\n"
    result = runner.invoke(app, ["chat", "-u", "eve", "--store", f"sqlite:///{path}"], input=typed)
    assert result.exit_code == 0, result.output
    assert "Nice to meet you, Eve" in result.output
    assert "Your name is Eve" not in result.output  # the line after the quit word was not read
    with SyncStore(SQLiteStore(path)) as store:
        said = [m.content for m in store.get_messages("eve") if m.role == "user"]
    assert said == ["My name is Eve"]


class Terminal:
    """The parent's side of a pseudo-terminal: what the child wrote, read up to a marker."""

    def __init__(self, fd: int) -> None:
        self.fd, self.unread = fd, b""

    def read_until(self, wanted: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while wanted not in self.unread:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} in {self.unread!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 1024)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the terminal closed before {wanted!r}: {self.unread!r}"
                self.unread += chunk
        seen, _, self.unread = self.unread.partition(wanted)
        return seen + wanted


# x86-64 and aarch64 numbers of the calls a process blocks in while it reads a terminal
_READING = {"x86_64": {0, 7, 23, 270, 271}, "aarch64": {63, 72, 73}}.get(os.uname().machine)


def _wait_until_reading_the_terminal(pid: int, timeout: float) -> None:
    """Wait until the child is blocked reading its terminal, as a person's Ctrl-C finds it.

    Python's input() acts on a SIGINT that lands between writing its prompt and starting to
    read only once a line arrives; a person never presses that fast, a test does."""
    if _READING is None:
        pytest.skip(f"no system call numbers for {os.uname().machine}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as current:
            call = current.read().split()[0]
        if call.isdigit() and int(call) in _READING:
            return
        time.sleep(0.01)
    raise AssertionError("tenantry chat never waited for input")


def _exit_status(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("key", [b"\x03", b"\x04"], ids=["ctrl-c", "ctrl-d"])
def test_ctrl_c_or_ctrl_d_at_the_prompt_quits_at_once(tmp_path: Path, key: bytes) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: tenantry chat on a real terminal
        os.chdir(tmp_path)
        os.execve(TENANTRY, [TENANTRY, "chat", "--store", "memory://"], env)
    screen, status = Terminal(terminal), None
    try:
        assert b"/quit" in screen.read_until(b"> ", 60)
        os.write(terminal, b"My name is Eve\r")
        screen.read_until(b"Nice to meet you, Eve", 30)
        screen.read_until(b"> ", 30)
        _wait_until_reading_the_terminal(pid, 30)
        pressed = time.monotonic()
        os.write(terminal, key)  # the terminal turns Ctrl-C into SIGINT, Ctrl-D into EOF
        status = _exit_status(pid, 5)
        quit_after = time.monotonic() - pressed
    finally:
        if status is None:  # it did not quit (or the test failed before): end it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert status == 0, "tenantry chat did not quit within 5 s (or failed)"
    assert quit_after < 2
