"""The in-process turn against raw sqlite3 in instructions: a count that machine noise cannot move.

`turn_raw` times the turns; on a shared machine consecutive runs of it differ by up to a
quarter. Here each side runs under `valgrind --tool=callgrind`, which counts the
instructions the process executes (user space only: the kernel's work for a syscall is not
in it, and a cache miss costs one instruction like any other), so the same work gives the
same count whatever else the machine does. Each side runs twice, with WARM turns per user
and with WARM + MEASURED; the difference over USERS × MEASURED is what one turn costs, start-up
and warm-up cancelled out. The turns are those of `turn_raw` (its agent, its raw sides).

Run as a child: `python -m bench.turn_instructions SIDE TURNS` runs TURNS turns per user once.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.turn_raw import TEXT, WINDOW, RawTurns, tenantry_agent

USERS = 100
WARM = WINDOW // 2
MEASURED = 5
"""Turns per user between a side's two counts."""
SIDES = ("tenantry", "raw sqlite3", "raw sqlite3 + usage")
_COLLECTED = re.compile(rb"Collected : (\d+)")
TURN_NOTE = (
    f"The same turns counted in instructions by `valgrind --tool=callgrind` "
    f"(`bench/turn_instructions.py`): each side run with {WARM} turns per user and with "
    f"{WARM} + {MEASURED}, {USERS} users, the difference per turn. Machine noise does not move "
    "these counts; they leave out the kernel's work (the sides make about the same syscalls: "
    "8 fcntl locks and 9-11 WAL writes a turn) and weigh a cache miss like any instruction, "
    "so they are a view beside the CPU times, not the target's measure."
)


def _names(users: int) -> list[str]:
    return [f"user-{n}" for n in range(users)]


async def _tenantry_turns(path: Path, users: int, turns: int) -> None:
    agent = tenantry_agent(path)
    try:
        for _ in range(turns):
            for name in _names(users):
                await agent.arun(TEXT, user_id=name)
    finally:
        await agent.store.close()


def run_side(side: str, users: int, turns: int) -> None:
    """Run `turns` turns of each of `users` users on `side`, on a fresh file."""
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        path = Path(tmp) / "turns.db"
        if side == "tenantry":
            asyncio.run(_tenantry_turns(path, users, turns))
            return
        raw = RawTurns(path, usage=side == "raw sqlite3 + usage")
        try:
            for _ in range(turns):
                for name in _names(users):
                    raw.turn(name, TEXT)
        finally:
            raw.close()


def available() -> str | None:
    """None if valgrind can count; else why not, for the report."""
    if shutil.which("valgrind") is None:
        return "skipped: valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
    return None


def _count(side: str, turns: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-m", "bench.turn_instructions", side, str(turns)]
    done = subprocess.run(command, capture_output=True, env=env, timeout=900, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = done.stderr.decode(errors="replace")[-500:]
        raise RuntimeError(f"callgrind run of {side!r} failed ({done.returncode}): {tail}")
    return int(found.group(1))


def measure(turns: int = MEASURED) -> dict[str, int]:
    """Give each side's instructions per turn (two counts per side, two at a time)."""
    jobs = [(side, WARM + extra) for side in SIDES for extra in (0, turns)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _count(*job), jobs), strict=True))
    return {
        side: round((counts[side, WARM + turns] - counts[side, WARM]) / (USERS * turns))
        for side in SIDES
    }


def main(argv: list[str]) -> int:
    side, turns = argv[0], int(argv[1])
    if side not in SIDES:
        print(f"unknown side {side!r}; one of {', '.join(SIDES)}", file=sys.stderr)
        return 2
    run_side(side, USERS, turns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
