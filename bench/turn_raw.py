"""The in-process turn on SQLite against the raw `sqlite3` work it does, side by side.

tenantry: `agent.arun` on a `SQLiteStore` file, `history_window=20`, a model that answers at
once (`FunctionModel`), USERS users × TURNS turns each. Raw: the same file layout (a scopes
table and a messages table indexed by (scope_id, seq)) and the same PRAGMAs (WAL,
synchronous=NORMAL, busy_timeout), and per turn the work a turn needs from the database:
find the scope's row, read its newest 20 messages, then in one IMMEDIATE transaction upsert
the scope's row (count and activity) and insert the turn's two rows. The raw side runs
synchronously on one connection, with no threads and no event loop: the floor.

Two ways to run the turns, each timed as wall time and as the process's CPU time (every
thread's) per turn:

- one caller: the users' turns interleaved one at a time (round robin);
- USERS concurrent callers: one task per user on one event loop, TURNS turns each (raw: the
  same turns one after the other; one connection cannot do better).

Every user first gets WARM_TURNS turns (unmeasured) so the 20-message window is full. The
sides alternate over RUNS runs, each on fresh files; medians are reported. Target: tenantry's
turn within 2× of raw. A third side, raw + usage, also does what usage accounting (on by
default since the target was set) adds to the database work: it shows how much of the gap
that is.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Config, Report, table
from tenantry import Agent, FunctionModel, SQLiteStore

WINDOW = 20
TARGET = 2.0
RAW_USAGE = "raw sqlite3 + usage"
"""The raw side doing usage accounting's part of the turn too (the target is against the
issue's raw work, without it; this shows how much of the gap accounting is)."""
TEXT = "a user message of about the length people type into a chat box, give or take"
REPLY = "ok"

RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS scopes (
    scope_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT NOT NULL,
    state TEXT, message_count INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
    UNIQUE (user_id, session_id)
);
CREATE INDEX IF NOT EXISTS scopes_by_activity ON scopes (updated_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT, name TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_scope ON messages (scope_id, seq);
"""
FIND = "SELECT scope_id, state FROM scopes WHERE user_id = ? AND session_id = ?"
NEWEST = (
    "SELECT id, role, content, tool_calls, tool_call_id, name, created_at FROM messages "
    "WHERE scope_id = ? ORDER BY seq DESC LIMIT ?"
)
UPSERT = (
    "INSERT INTO scopes (user_id, session_id, state, message_count, updated_at) "
    "VALUES (?, ?, NULL, 2, ?) ON CONFLICT (user_id, session_id) DO UPDATE SET "
    "updated_at = excluded.updated_at, message_count = message_count + 2 RETURNING scope_id"
)
INSERT = (
    "INSERT INTO messages (scope_id, id, role, content, tool_calls, tool_call_id, name, "
    "created_at) VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?)"
)
USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_days (
    user_id TEXT NOT NULL, day TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0, estimated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_by_day ON usage_days (day);
CREATE TABLE IF NOT EXISTS budgets (
    user_id TEXT PRIMARY KEY, tokens_per_day INTEGER, requests_per_day INTEGER,
    tokens_per_month INTEGER, requests_per_month INTEGER
) WITHOUT ROWID;
"""
BUDGET = "SELECT * FROM budgets WHERE user_id = ?"
COUNT = (
    "INSERT INTO usage_days (user_id, day, requests, input_tokens, output_tokens, estimated) "
    "VALUES (?, ?, 1, ?, ?, 1) ON CONFLICT (user_id, day) DO UPDATE SET "
    "requests = requests + 1, input_tokens = input_tokens + excluded.input_tokens, "
    "output_tokens = output_tokens + excluded.output_tokens"
)


class RawTurns:
    """sqlite3 doing a turn's database work, synchronously on one connection; with `usage`,
    also what usage accounting adds to it (the user's budget row read with the history, the
    user's row of the day upserted with the messages), as a tenantry turn does by default
    when no default budget is set."""

    def __init__(self, path: Path, *, usage: bool = False) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.executescript(RAW_SCHEMA + (USAGE_SCHEMA if usage else ""))
        self.usage = usage

    def turn(self, user_id: str, text: str) -> list[Any]:
        conn = self.conn
        conn.execute("BEGIN")  # the read in one snapshot, as the store's
        found = conn.execute(FIND, (user_id, "default")).fetchone()
        rows = [] if found is None else conn.execute(NEWEST, (found[0], WINDOW)).fetchall()
        if self.usage:
            conn.execute(BUDGET, (user_id,)).fetchone()
        conn.execute("COMMIT")
        rows.reverse()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        (scope_id,) = conn.execute(UPSERT, (user_id, "default", now)).fetchone()
        conn.executemany(
            INSERT,
            [
                (scope_id, os.urandom(16).hex(), "user", text, now),
                (scope_id, os.urandom(16).hex(), "assistant", REPLY, now),
            ],
        )
        if self.usage:
            day = time.strftime("%Y-%m-%d", time.gmtime(now))
            conn.execute(COUNT, (user_id, day, len(text) // 4 + 1, len(REPLY) // 4 + 1))
        conn.execute("COMMIT")
        return rows

    def close(self) -> None:
        self.conn.close()


def tenantry_agent(path: Path) -> Agent:
    return Agent(
        name="bench",
        model=FunctionModel(lambda messages, tools: REPLY),
        store=SQLiteStore(path),
        history_window=WINDOW,
    )


Timed = dict[str, float]


def _timed(started: float, cpu: float, turns: int) -> Timed:
    return {
        "wall_ms": (time.perf_counter() - started) * 1000 / turns,
        "cpu_ms": (time.process_time() - cpu) * 1000 / turns,
    }


async def tenantry_run(path: Path, users: int, turns: int, warm: int) -> dict[str, Timed]:
    agent = tenantry_agent(path)
    names = [f"user-{n}" for n in range(users)]
    try:
        for _ in range(warm):
            await asyncio.gather(*(agent.arun(TEXT, user_id=name) for name in names))
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(turns):
            for name in names:
                await agent.arun(TEXT, user_id=name)
        sequential = _timed(started, cpu, users * turns)

        async def caller(name: str) -> None:
            for _ in range(turns):
                await agent.arun(TEXT, user_id=name)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(name) for name in names))
        concurrent = _timed(started, cpu, users * turns)
        window = await agent.store.snapshot(names[0], limit=WINDOW)
        assert len(window.messages) == WINDOW, len(window.messages)
    finally:
        await agent.store.close()
    return {"one caller": sequential, "concurrent": concurrent}


def raw_run(
    path: Path, users: int, turns: int, warm: int, *, usage: bool = False
) -> dict[str, Timed]:
    raw = RawTurns(path, usage=usage)
    names = [f"user-{n}" for n in range(users)]
    try:
        for _ in range(warm):
            for name in names:
                raw.turn(name, TEXT)
        timed = {}
        for mode in ("one caller", "concurrent"):  # the same on one connection
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(turns):
                for name in names:
                    raw.turn(name, TEXT)
            timed[mode] = _timed(started, cpu, users * turns)
        assert len(raw.turn(names[0], TEXT)) == WINDOW
        if usage:  # every turn counted, as the store counts them
            (counted,) = raw.conn.execute("SELECT sum(requests) FROM usage_days").fetchone()
            assert counted == users * (warm + 2 * turns) + 1, counted
    finally:
        raw.close()
    return timed


def measure(users: int, turns: int, warm: int, runs: int) -> dict[str, Any]:
    sides: dict[str, Callable[[Path], dict[str, Timed]]] = {
        "tenantry": lambda p: asyncio.run(tenantry_run(p, users, turns, warm)),
        "raw sqlite3": lambda p: raw_run(p, users, turns, warm),
        RAW_USAGE: lambda p: raw_run(p, users, turns, warm, usage=True),
    }
    collected: dict[str, list[dict[str, Timed]]] = {name: [] for name in sides}
    for run in range(runs):
        order = list(sides) if run % 2 == 0 else list(reversed(sides))
        for name in order:
            with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
                collected[name].append(sides[name](Path(tmp) / "turns.db"))
    results: dict[str, Any] = {}
    for name, measured in collected.items():
        results[name] = {
            mode: {
                key: round(statistics.median(r[mode][key] for r in measured), 4)
                for key in ("wall_ms", "cpu_ms")
            }
            for mode in ("one caller", "concurrent")
        }
        results[name]["runs_wall_ms"] = {
            mode: [round(r[mode]["wall_ms"], 4) for r in measured]
            for mode in ("one caller", "concurrent")
        }
    return results


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for mode in ("one caller", "concurrent"):
        for key in ("wall_ms", "cpu_ms"):
            factor = results["tenantry"][mode][key] / results["raw sqlite3"][mode][key]
            found.append(
                {"mode": mode, "time": key, "factor": round(factor, 2), "met": factor <= TARGET}
            )
    return found


def markdown(results: dict[str, Any], users: int, turns: int, runs: int) -> list[str]:
    lines = [
        f"{users} users × {turns} turns on SQLite (a file in a temporary directory), "
        f"`history_window={WINDOW}`, a model that answers at once; every user had "
        f"{WINDOW // 2} turns before, so the window is full. **raw sqlite3** does the turn's "
        "database work on one connection with no threads and no event loop: in one read "
        f"transaction the scope's row and its newest {WINDOW} rows, then in one IMMEDIATE "
        "transaction the scope's upsert and the two new rows; same layout and PRAGMAs (WAL, "
        "synchronous=NORMAL, busy_timeout). Per turn: wall time, and the process's CPU time "
        f"(all threads). Medians of {runs} run(s), the sides alternating, fresh files each "
        "run. **concurrent**: one task per user on one event loop (raw: the same turns one "
        "after the other). **raw + usage** also does what usage accounting (on by default, "
        "added after the target was set) adds: the user's budget row read with the history "
        "and the user's row of the day upserted in the write transaction; the target is "
        "against raw without it.",
        "",
        "## Per turn",
        "",
    ]
    rows = []
    for mode in ("one caller", "concurrent"):
        t, r, u = results["tenantry"][mode], results["raw sqlite3"][mode], results[RAW_USAGE][mode]
        rows.append(
            [
                mode,
                t["wall_ms"],
                r["wall_ms"],
                f"{t['wall_ms'] / r['wall_ms']:.2f}×",
                t["cpu_ms"],
                r["cpu_ms"],
                f"{t['cpu_ms'] / r['cpu_ms']:.2f}×",
                u["cpu_ms"],
                f"{t['cpu_ms'] / u['cpu_ms']:.2f}×",
            ]
        )
    lines += table(
        [
            "callers",
            "tenantry wall ms",
            "raw wall ms",
            "tenantry ÷ raw",
            "tenantry CPU ms",
            "raw CPU ms",
            "tenantry ÷ raw (CPU)",
            "raw + usage CPU ms",
            "tenantry ÷ raw + usage (CPU)",
        ],
        rows,
    )
    lines += ["", "## Where we stand", ""]
    lines += table(
        ["target", "measured", "met"],
        [
            [
                f"turn ≤ {TARGET:g}× raw sqlite3, {v['mode']}, {v['time'].split('_')[0]} time",
                f"{v['factor']:.2f}×",
                "yes" if v["met"] else "no",
            ]
            for v in verdicts(results)
        ],
    )
    return lines


def instruction_lines(counted: dict[str, int] | str) -> list[str]:
    """The report's section on instructions per turn (`bench.turn_instructions`), or why it
    was not counted."""
    lines = ["", "## Instructions per turn (callgrind)", ""]
    if isinstance(counted, str):
        return [*lines, counted]
    from bench.turn_instructions import TURN_NOTE

    lines += [TURN_NOTE, ""]
    lines += table(
        ["side", "instructions per turn", "tenantry ÷ side"],
        [
            [side, f"{n:,}", "—" if side == "tenantry" else f"{counted['tenantry'] / n:.2f}×"]
            for side, n in counted.items()
        ],
    )
    return lines


def run(config: Config) -> list[Report]:
    users: int = config.pick(100, 10)
    turns: int = config.pick(20, 3)
    runs: int = config.pick(5, 1)
    warm = WINDOW // 2
    results = measure(users, turns, warm, runs)
    counted: dict[str, int] | str
    if config.smoke:
        counted = "skipped in the smoke run (each count takes a valgrind run of about 30 s)"
    else:
        from bench import turn_instructions

        counted = turn_instructions.available() or turn_instructions.measure()
    workload = {
        "users": users,
        "turns_per_user": turns,
        "warm_turns_per_user": warm,
        "history_window": WINDOW,
        "runs": runs,
        "pragmas": "journal_mode=WAL, synchronous=NORMAL, busy_timeout=5000",
    }
    return [
        Report(
            name="turn_raw",
            title="In-process turn on SQLite against raw sqlite3",
            workload=workload,
            results={"sides": results, "verdicts": verdicts(results), "instructions": counted},
            lines=markdown(results, users, turns, runs) + instruction_lines(counted),
        )
    ]


__all__ = ["RawTurns", "run"]
