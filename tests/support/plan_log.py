"""Read the plans a PostgreSQL server logged (auto_explain, JSON, in its jsonlog file) and
find the table scans that are not confined to one tenant by a `user_id = <value>` condition.

Why plans and not statement texts: a plan names every table a statement reads, updates or
deletes, after views, CTEs and subqueries are resolved, with each scan's own conditions; and
auto_explain with `log_nested_statements` logs the statements that run inside functions
(append_turn, add_memory, search_memories ...) as well, which the statement log does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAN_LOG_SETTINGS = {
    "session_preload_libraries": "'auto_explain'",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "json",
    "auto_explain.log_verbose": "on",
    "log_statement": "'all'",
    "logging_collector": "on",
    "log_destination": "'jsonlog'",
    "log_directory": "'log'",
    "log_filename": "'server.log'",
}
"""postgresql.conf lines that make the server log every statement and the plan of every
executed statement, nested ones included, to <data>/log/server.json."""

TENANT_CONDITION = re.compile(r"\buser_id = (?P<value>'(?:[^']|'')*'::text|\$\d+)")
"""`user_id = 'literal'` or `user_id = $n` (a parameter, e.g. a function's argument). A row-
level-security policy's `user_id = current_setting(...)` does not match on purpose: Citus
routes by the statement's own conditions, not by policies."""

CONDITIONS = ("Index Cond", "Recheck Cond", "Filter")


@dataclass(frozen=True)
class Scan:
    """One plan node that reads or changes rows of a table."""

    query: str
    node: str
    table: str
    conditions: tuple[str, ...]
    values: tuple[str, ...]
    """The values each `user_id =` condition compares with."""


def log_entries(data: Path) -> Iterator[dict[str, Any]]:
    """Give the server's jsonlog entries, oldest first."""
    for path in sorted((data / "log").glob("*.json")):
        for line in path.read_text(errors="replace").splitlines():
            if line.strip():
                yield json.loads(line)


def logged_plans(entries: list[dict[str, Any]], start: str, end: str) -> list[dict[str, Any]]:
    """Give the plans (auto_explain's JSON) logged after the statement holding the marker
    `start` and before the one holding `end`."""
    plans: list[dict[str, Any]] = []
    inside = False
    for entry in entries:
        message = str(entry.get("message", ""))
        if message.startswith("statement:") and start in message:
            inside = True
        elif message.startswith("statement:") and end in message:
            return plans
        elif inside and "plan:" in message and message.startswith("duration:"):
            plans.append(json.loads(message.split("plan:", 1)[1]))
    raise AssertionError(f"the log holds no statement with marker {end!r} after {start!r}")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def scans(plans: list[dict[str, Any]], schema: str, tables: set[str]) -> list[Scan]:
    """Give every scan of one of `tables` of `schema` in `plans`, with its conditions (a
    bitmap heap scan's include those of the bitmap index scans below it). Inserts are no
    scans: a row's user_id is a NOT NULL column, so an insert is routed by its value."""
    found = []
    for plan in plans:
        for node in _nodes(plan["Plan"]):
            table = node.get("Relation Name")
            if table not in tables or node.get("Schema") != schema:
                continue
            if node["Node Type"] == "ModifyTable":
                continue  # its rows come from the scans below it, checked on their own
            conditions = [str(node[key]) for key in CONDITIONS if key in node]
            for child in _nodes(node):
                if child is not node and child["Node Type"] == "Bitmap Index Scan":
                    conditions += [str(child[key]) for key in CONDITIONS if key in child]
            values = [m["value"] for c in conditions for m in TENANT_CONDITION.finditer(c)]
            found.append(
                Scan(
                    plan["Query Text"],
                    node["Node Type"],
                    table,
                    tuple(conditions),
                    tuple(values),
                )
            )
    return found


def unconfined(found: list[Scan], user_id: str) -> list[Scan]:
    """Give the scans with no `user_id = value` condition, or one whose literal value is not
    `user_id` (a statement of this tenant that reads another's shard)."""
    literal = "'" + user_id.replace("'", "''") + "'::text"
    return [
        scan
        for scan in found
        if not scan.values or any(v != literal and not v.startswith("$") for v in scan.values)
    ]


__all__ = [
    "CONDITIONS",
    "PLAN_LOG_SETTINGS",
    "TENANT_CONDITION",
    "Scan",
    "log_entries",
    "logged_plans",
    "scans",
    "unconfined",
]
