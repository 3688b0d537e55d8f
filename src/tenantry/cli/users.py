"""`tenantry users ...`: list, delete, export and prune tenants' stored conversations.

    tenantry users list [--sessions]
    tenantry users delete USER_ID [--session S] [--yes]     (the whole user: memories too)
    tenantry users export USER_ID [--session S] [--output FILE]     (JSON lines)
    tenantry users prune --inactive 24h                     (sessions only; memories stay)

Every command takes `--store URL` (default: TENANTRY_STORE_URL, else sqlite:///tenantry.db).
Exit codes: 0 done, 1 the store failed or the user has nothing stored, 2 bad input.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption, run_with_store
from tenantry.storage.base import Store
from tenantry.types import Memory

users_app = typer.Typer(
    name="users",
    help="List, delete, export and prune tenants' stored conversations.",
    no_args_is_help=True,
)
app.add_typer(users_app)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Give the timedelta of "90s", "30m", "24h", "7d", "2w" or a sum such as "1h30m"."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise typer.BadParameter(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
            "e.g. 90s, 30m, 24h, 7d or 1h30m"
        )
    return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))


def human_duration(span: timedelta) -> str:
    """Give `span` as a person writes it: "1 day", "2 days 3 h", "1 h 30 min", "45 s"."""
    days, rest = divmod(span.total_seconds(), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days:.0f} day" + ("" if days == 1 else "s")] if days else []
    parts += [f"{hours:.0f} h"] if hours else []
    parts += [f"{minutes:.0f} min"] if minutes else []
    if seconds or not parts:
        parts.append(f"{round(seconds, 3):g} s")
    return " ".join(parts)


UserArgument = Annotated[str, typer.Argument(help="The user id.", show_default=False)]
SessionOption = Annotated[
    str | None, typer.Option("--session", "-s", help="Only this session (default: all).")
]


@users_app.command("list")
def list_users(
    store: StoreOption = None,
    sessions: Annotated[
        bool, typer.Option("--sessions", help="Print 'user<TAB>session' for every session.")
    ] = False,
) -> None:
    """Print the ids of users that have stored sessions, one per line, sorted."""

    async def rows(opened: Store) -> list[str]:
        users = await opened.list_users()
        if not sessions:
            return users
        return [f"{user}\t{s}" for user in users for s in await opened.list_sessions(user)]

    found = run_with_store(store, rows)
    for row in found:
        typer.echo(row)
    if not found:
        typer.echo("no users stored", err=True)


async def _stored(
    opened: Store, user_id: str, session: str | None
) -> tuple[list[str], list[Memory]]:
    """Give the sessions and memories a command acts on (no memories for one session); exit
    1 when there is nothing."""
    sessions = await opened.list_sessions(user_id)
    if session is not None:
        if session not in sessions:
            typer.echo(f"error: user {user_id!r} has no session {session!r}", err=True)
            raise typer.Exit(1)
        return [session], []
    memories = await opened.list_memories(user_id=user_id)
    if not sessions and not memories:
        typer.echo(f"error: user {user_id!r} has no stored sessions or memories", err=True)
        raise typer.Exit(1)
    return sessions, memories


@users_app.command("delete")
def delete(
    user_id: UserArgument,
    session: SessionOption = None,
    store: StoreOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user's messages, session state and memories (or just --session's messages,
    state and summary)."""

    async def delete_sessions(opened: Store) -> tuple[int, int]:
        chosen, memories = await _stored(opened, user_id, session)
        if not yes:
            what = (
                f"session {session!r}"
                if session
                else f"all {len(chosen)} session(s) and {len(memories)} memories"
            )
            typer.confirm(f"Delete {what} of user {user_id!r}?", abort=True)
        await opened.clear(user_id, session)
        return len(chosen), len(memories)

    sessions, memories = run_with_store(store, delete_sessions)
    also = "" if session else f", and {memories} memories"
    typer.echo(f"deleted {sessions} session(s) of user {user_id!r}{also}")


@users_app.command("export")
def export(
    user_id: UserArgument,
    session: SessionOption = None,
    store: StoreOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Write a user's conversations and memories as JSON lines.

    Each line is one message, with its user_id and session_id; after a session's messages,
    that session's state, {"type": "state", ..., "state": {...}}, and its summary if it has
    one, {"type": "summary", ..., "summary": {...}}; last, without --session, the user's
    memories, {"type": "memory", "id": ..., "text": ..., "version": ...}.
    """

    async def lines(opened: Store) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        sessions, memories = await _stored(opened, user_id, session)
        for name in sessions:
            snapshot = await opened.snapshot(user_id, name)
            scope = {"user_id": user_id, "session_id": name}
            found += [{"type": "message", **scope, **m.to_dict()} for m in snapshot.messages]
            found.append({"type": "state", **scope, "state": snapshot.state})
            summary = await opened.get_summary(user_id, name)
            if summary is not None:
                found.append({"type": "summary", **scope, "summary": summary.to_dict()})
        found += [{"type": "memory", **m.to_dict()} for m in memories]
        return found

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in run_with_store(store, lines))
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {text.count(chr(10))} line(s) to {output}", err=True)


@users_app.command("prune")
def prune(
    inactive: Annotated[
        timedelta,
        typer.Option(
            "--inactive",
            parser=parse_duration,
            metavar="DURATION",
            help="Delete sessions with no write for longer than this: 90s, 30m, 24h, 7d ...",
            show_default=False,
        ),
    ],
    store: StoreOption = None,
) -> None:
    """Delete every session (messages, state, summary) idle for longer than --inactive.
    Memories belong to the user, not a session, and stay."""

    async def prune_idle(opened: Store) -> int:
        return await opened.prune_inactive(inactive)

    deleted = run_with_store(store, prune_idle)
    typer.echo(f"deleted {deleted} session(s) inactive for more than {human_duration(inactive)}")
